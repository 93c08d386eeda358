"""The recommendation API: personalised top-N, fold-in, similar movies, predictions, batch.

The process holds one immutable in-memory model (hot-reloaded from MODEL_DIR) and reads each
user's ratings from MongoDB per request, so ratings made after training are honoured at once.
"""
