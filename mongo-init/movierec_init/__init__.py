"""mongo-init: the one-shot, idempotent set-up of MovieRec's MongoDB database.

It creates the collections with JSON-schema validators and indexes, imports the MovieLens CSVs
(movies + links, ratings), computes each movie's rating statistics and popularity, and creates
the admin account and (optionally) one demo login per MovieLens user. Re-running it changes
nothing: the import is skipped when the `meta` import marker matches the data set, and every
write is an upsert or an insert guarded by a unique index.

The data-model rules the services must apply exactly the same way (collection names, title
tokens for search, the damped-mean popularity, the rating scale) live in
`movierec_common.data_model`; mongo-init imports movierec_common, never the reverse.
"""
