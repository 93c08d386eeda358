"""Code shared by MovieRec's services and trainer: settings, Mongo access, data loading, the ALS
kernel and the model artifact format. Nothing here imports a web framework or pyspark."""
