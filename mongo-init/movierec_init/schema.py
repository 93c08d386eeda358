"""Collections, JSON-schema validators and indexes (ARCHITECTURE.md's data model).

`ensure_schema` is idempotent: it creates what is missing and re-applies validators with
`collMod`, so a re-run after a schema change updates an existing database in place.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pymongo
from movierec_common import data_model as model
from movierec_common.movie_changes import CHANGE_STAMP
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

log = logging.getLogger(__name__)

INT = ["int", "long"]
NUM = ["double", "int", "long", "decimal"]

VALIDATORS: dict[str, dict[str, Any]] = {
    model.MOVIES: {
        "bsonType": "object",
        "required": ["movieId", "title", "genres", "rating_count", "rating_sum"],
        "properties": {
            "movieId": {"bsonType": INT, "minimum": 1},
            "title": {"bsonType": "string", "minLength": 1},
            "year": {"bsonType": [*INT, "null"]},
            "genres": {"bsonType": "array", "items": {"bsonType": "string"}},
            "title_tokens": {"bsonType": "array", "items": {"bsonType": "string"}},
            "tags": {"bsonType": "array", "items": {"bsonType": "string"}},
            "imdbId": {"bsonType": ["string", "null"]},
            "tmdbId": {"bsonType": [*INT, "null"]},
            "rating_count": {"bsonType": INT, "minimum": 0},
            "rating_sum": {"bsonType": NUM, "minimum": 0},
            "avg_rating": {"bsonType": [*NUM, "null"]},
            "popularity_score": {"bsonType": [*NUM, "null"]},
        },
    },
    model.RATINGS: {
        "bsonType": "object",
        "required": ["userId", "movieId", "rating", "timestamp"],
        "properties": {
            "userId": {"bsonType": INT, "minimum": 1},
            "movieId": {"bsonType": INT, "minimum": 1},
            "rating": {"bsonType": NUM, "minimum": model.RATING_MIN, "maximum": model.RATING_MAX},
            "timestamp": {"bsonType": INT},
        },
    },
    model.USERS: {
        "bsonType": "object",
        "required": ["userId", "username", "username_key", "password_hash", "role", "created_at"],
        "properties": {
            "userId": {"bsonType": INT, "minimum": 1},
            "username": {"bsonType": "string", "minLength": 1, "maxLength": 64},
            "username_key": {"bsonType": "string", "minLength": 1, "maxLength": 64},
            "password_hash": {"bsonType": "string", "pattern": "^\\$argon2id\\$"},
            "role": {"enum": [model.ROLE_USER, model.ROLE_ADMIN]},
            "created_at": {"bsonType": "date"},
        },
    },
    model.JOBS: {
        "bsonType": "object",
        # Kept loose on purpose: the trainer worker writes progress/lease fields as it goes.
        "required": ["status"],
        "properties": {
            "status": {
                "enum": ["queued", "running", "succeeded", "failed", "rejected", "cancelled"]
            },
            "trigger": {"enum": ["manual", "schedule", "threshold"]},
            "params": {"bsonType": "object"},
            "created_at": {"bsonType": "date"},
        },
    },
}

# Few indexes on purpose: every index costs SecantusDB insert time on the 100k-row import, and
# the other sorts (title, year, count) run on at most ~10k movies. The (userId, movieId) index
# also serves "my ratings" (prefix userId).
INDEXES: dict[str, list[IndexModel]] = {
    model.MOVIES: [
        IndexModel([("movieId", ASCENDING)], unique=True, name="movieId_unique"),
        IndexModel([("title_tokens", ASCENDING)], name="title_tokens"),
        IndexModel([("genres", ASCENDING)], name="genres"),
        IndexModel([("popularity_score", DESCENDING)], name="popularity"),
        # The catalog's in-process movie cache asks "which stats changed since T?".
        IndexModel([(CHANGE_STAMP, ASCENDING)], name=CHANGE_STAMP),
        # The catalog's stats reconciler: "which movies have pending rating changes?".
        IndexModel([("stats_pending.at", ASCENDING)], name="stats_pending_at"),
    ],
    model.RATINGS: [
        IndexModel([("userId", ASCENDING), ("movieId", ASCENDING)], unique=True, name="user_movie"),
    ],
    model.USERS: [
        IndexModel([("userId", ASCENDING)], unique=True, name="userId_unique"),
        IndexModel([("username_key", ASCENDING)], unique=True, name="username_unique"),
    ],
    model.RATING_DELETIONS: [
        IndexModel([("userId", ASCENDING), ("movieId", ASCENDING)], unique=True, name="user_movie"),
    ],
    model.JOBS: [
        IndexModel([("status", ASCENDING), ("created_at", ASCENDING)], name="status_created"),
        IndexModel([("created_at", DESCENDING)], name="created_desc"),
    ],
}

# Indexes that only serve reads, built once the bulk import is done: on SecantusDB building one
# over 100k ratings takes ~3 s, maintaining it during the import 5-8 s. Without them each of
# these queries is a collection scan (~1.4 s on SecantusDB) that stalls every other query for
# up to 0.7 s; the trainer's threshold check alone ran one every 30 s.
LATE_INDEXES: dict[str, list[IndexModel]] = {
    model.RATINGS: [
        # The recommender: "which movies did this user rate since the model's data?".
        IndexModel([("userId", ASCENDING), ("timestamp", ASCENDING)], name="user_time"),
        # The trainer's threshold trigger: "how many ratings since the active model?".
        IndexModel([("timestamp", ASCENDING)], name="timestamp"),
        # The catalog's exact stats recount of one movie after a failed write.
        IndexModel([("movieId", ASCENDING)], name="movieId"),
    ],
}

ALL_COLLECTIONS = [
    model.MOVIES,
    model.RATINGS,
    model.USERS,
    model.JOBS,
    model.COUNTERS,
    model.META,
    model.RATING_DELETIONS,
]

# Online evaluation (issue 17): the recommender's impressions (read by time for the admin's
# metrics) and A/B experiments (each replica polls for the running one).
ALL_COLLECTIONS += [model.IMPRESSIONS, model.EXPERIMENTS]
INDEXES[model.IMPRESSIONS] = [
    IndexModel([("ts", ASCENDING)], name="ts"),
    IndexModel([("experiment_id", ASCENDING), ("ts", ASCENDING)], name="experiment_ts"),
]
INDEXES[model.EXPERIMENTS] = [
    IndexModel([("status", ASCENDING)], name="status"),
    IndexModel([("started_at", DESCENDING)], name="started_desc"),
]


async def ensure_schema(db: AsyncDatabase) -> None:
    existing = set(await db.list_collection_names())
    for name in ALL_COLLECTIONS:
        validator = VALIDATORS.get(name)
        options: dict[str, Any] = {}
        if validator is not None:
            options = {
                "validator": {"$jsonSchema": validator},
                "validationLevel": "strict",
                "validationAction": "error",
            }
        if name not in existing:
            await db.create_collection(name, **options)
        elif options:
            try:
                await db.command({"collMod": name, **options})
            except OperationFailure as exc:  # a server without collMod keeps the old validator
                log.warning("could not update validator", extra={"coll": name, "error": str(exc)})
        if name in INDEXES:
            await db[name].create_indexes(INDEXES[name])


# Seconds allowed per late index and per document of its collection (at least the minimum):
# SecantusDB builds one over 100k ratings in ~3 s on an idle core and ~5x that under load; at
# 1M ratings the three indexes in one command outlasted the client's 300 s socket timeout on a
# loaded machine and mongo-init failed (bench-scale). Each index now has its own command and a
# bound that grows with the data: 1 ms per document, i.e. ~7 h for 25M ratings, never unbounded.
LATE_INDEX_SECONDS_PER_DOC = 1e-3
LATE_INDEX_MIN_SECONDS = 300.0


def late_index_timeout(n_docs: int) -> float:
    """The bound, in seconds, on building (or dropping) one late index over `n_docs` documents."""
    return max(LATE_INDEX_MIN_SECONDS, n_docs * LATE_INDEX_SECONDS_PER_DOC)


async def ensure_late_indexes(db: AsyncDatabase) -> dict[str, int]:
    """Build the read-only indexes after the bulk import, one command per index (a no-op for an
    index that exists), each bounded by `late_index_timeout` of its collection's size.

    Each finished build is recorded in `meta` (LATE_INDEXES_ID). An index that exists but is
    not recorded is dropped and built again: SecantusDB writes an index's catalogue entry
    before its 25M entries, so an init stopped mid-build (Ctrl-C, `docker compose down`, a
    crash) could leave a partial index that every later query trusts.

    Returns each collection's document count (estimated: SecantusDB counts by scanning, ~7 µs
    per document, so it is done once here and reused by the init's summary)."""
    counted: dict[str, int] = {}
    record = await db[model.META].find_one({"_id": model.LATE_INDEXES_ID}) or {}
    built = set(record.get("built", []))
    for name, indexes in LATE_INDEXES.items():
        n_docs = counted[name] = await db[name].estimated_document_count()
        existing = {ix["name"] async for ix in await db[name].list_indexes()}
        for index in indexes:
            key = f"{name}.{index.document['name']}"
            if index.document["name"] in existing and key not in built:
                log.warning("index %s: not recorded as built whole; dropping and rebuilding", key)
                # Dropping deletes the index's entries one by one: as slow as building them
                # (at 25M ratings it outlasted the client's 300 s socket timeout).
                with pymongo.timeout(late_index_timeout(n_docs)):
                    await db[name].drop_index(index.document["name"])
            started = time.perf_counter()
            with pymongo.timeout(late_index_timeout(n_docs)):
                await db[name].create_indexes([index])
            if key not in built:
                await db[model.META].update_one(
                    {"_id": model.LATE_INDEXES_ID}, {"$addToSet": {"built": key}}, upsert=True
                )
                built.add(key)
            log.info(
                "index %s.%s ready (%d documents, %.1f s)",
                name,
                index.document["name"],
                n_docs,
                time.perf_counter() - started,
            )
    return counted
