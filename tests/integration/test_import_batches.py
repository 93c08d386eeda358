"""mongo-init's batched inserts with several batches in flight (`insert_ignoring_duplicates`):
duplicates of the unique index are skipped and not counted in any batch, and a document the
validator refuses raises after the batches already sent are stored."""

from __future__ import annotations

import asyncio

import pytest
from movierec_common import data_model as model
from movierec_init.importer import insert_ignoring_duplicates
from movierec_init.schema import ensure_schema
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError


def _rating(user: int, movie: int, stars: float = 4.0) -> dict:
    return {"userId": user, "movieId": movie, "rating": stars, "timestamp": 1_600_000_000}


async def _run(mongo_url: str, db_name: str, docs: list[dict], in_flight: int) -> tuple:
    client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        await ensure_schema(db)
        await db[model.RATINGS].delete_many({})
        await db[model.RATINGS].insert_one(_rating(1, 1))  # already there before the import
        try:
            n = await insert_ignoring_duplicates(db[model.RATINGS], docs, 7, in_flight=in_flight)
        except BulkWriteError as exc:
            n = exc
        stored = {
            (d["userId"], d["movieId"])
            async for d in db[model.RATINGS].find({}, {"_id": 0, "userId": 1, "movieId": 1})
        }
        return n, stored
    finally:
        await client.close()


@pytest.mark.parametrize("in_flight", [1, 3])
def test_duplicates_across_batches_are_skipped_and_not_counted(
    mongo_url: str, db_name: str, in_flight: int
) -> None:
    pairs = [(u, m) for u in range(1, 8) for m in range(1, 7)]  # 42 ratings, 6 batches of 7
    docs = [_rating(u, m) for u, m in pairs] + [_rating(3, 2), _rating(5, 6)]  # late repeats
    n, stored = asyncio.run(_run(mongo_url, db_name, docs, in_flight))
    assert n == len(pairs) - 1  # (1, 1) was there already; the two repeats are skipped
    assert stored == set(pairs)


def test_a_refused_document_raises_after_the_batches_sent_are_stored(
    mongo_url: str, db_name: str
) -> None:
    good = [_rating(u, m) for u in range(10, 20) for m in range(1, 8)]  # 70 ratings
    docs = [*good[:14], _rating(20, 1, stars=9.0), *good[14:]]  # batch 2 holds a refused one
    err, stored = asyncio.run(_run(mongo_url, db_name, docs, 3))
    assert isinstance(err, BulkWriteError)
    assert {e["code"] for e in err.details["writeErrors"]} == {121}  # document validation
    # Batch 2's failure is seen when batch 5 waits for a slot: batches 0-4 (docs[:35]) were
    # sent and are all stored (unordered: batch 2's other six too); nothing later was sent.
    sent = {(d["userId"], d["movieId"]) for d in docs[:35]} - {(20, 1)}
    assert stored == sent | {(1, 1)}
