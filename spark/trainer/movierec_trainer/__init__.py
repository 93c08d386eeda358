"""MovieRec trainer: Spark ALS engine, evaluation, CLI and the retraining worker."""
