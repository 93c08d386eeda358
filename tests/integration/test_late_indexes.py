"""mongo-init's read-only indexes, built after the bulk import one command each, with a bound
that grows with the collection (a 1M-rating import outlasted one shared 300 s command)."""

from __future__ import annotations

import asyncio

import pytest
from movierec_common import data_model as model
from movierec_init.schema import (
    LATE_INDEXES,
    ensure_late_indexes,
    ensure_schema,
    late_index_timeout,
)
from pymongo import AsyncMongoClient, monitoring


def test_bound_grows_with_the_collection_and_has_a_floor() -> None:
    assert late_index_timeout(0) == 300.0
    assert late_index_timeout(100_000) == 300.0
    assert late_index_timeout(25_000_000) == pytest.approx(25_000.0)


def test_each_late_index_is_built_and_a_rerun_is_a_no_op(
    mongo_url: str, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> set[str]:
        client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
        try:
            db = client[db_name]
            await ensure_schema(db)
            await db[model.RATINGS].insert_many(
                [
                    {"userId": u, "movieId": m, "rating": 4.0, "timestamp": 1_600_000_000 + u}
                    for u in range(1, 41)
                    for m in range(1, 6)
                ]
            )
            assert await ensure_late_indexes(db) == {model.RATINGS: 200}  # counted once, reused
            await ensure_late_indexes(db)  # idempotent
            return {ix["name"] async for ix in await db[model.RATINGS].list_indexes()}
        finally:
            await client.close()

    with caplog.at_level("INFO", logger="movierec_init.schema"):
        names = asyncio.run(run())
    wanted = {ix.document["name"] for ix in LATE_INDEXES[model.RATINGS]}
    assert wanted <= names and "user_movie" in names
    built = [r.getMessage() for r in caplog.records if "ready (200 documents" in r.getMessage()]
    assert len(built) == 2 * len(wanted)


def test_an_index_not_recorded_as_built_whole_is_rebuilt_once(
    mongo_url: str, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A late index that exists without mongo-init's record (an init stopped mid-build) may be
    partial: it is dropped and built again, and once recorded it is left alone."""

    drops: list[dict] = []

    class Drops(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name == "dropIndexes":
                drops.append(dict(event.command))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    async def run() -> tuple[dict, int]:
        client = AsyncMongoClient(
            mongo_url, serverSelectionTimeoutMS=10_000, event_listeners=[Drops()]
        )
        try:
            db = client[db_name]
            await ensure_schema(db)
            await db[model.RATINGS].insert_many(
                [
                    {"userId": u, "movieId": 1, "rating": 3.0, "timestamp": 1_600_000_000 + u}
                    for u in range(1, 31)
                ]
            )
            # What a build cut short leaves: the index in the catalogue, no record of it.
            await db[model.RATINGS].create_index("timestamp", name="timestamp")
            await ensure_late_indexes(db)
            await ensure_late_indexes(db)
            record = await db[model.META].find_one({"_id": model.LATE_INDEXES_ID})
            late = await db[model.RATINGS].count_documents(
                {"timestamp": {"$gte": 1_600_000_021}}, hint="timestamp"
            )
            return record or {}, late
        finally:
            await client.close()

    with caplog.at_level("INFO", logger="movierec_init.schema"):
        record, late = asyncio.run(run())
    rebuilt = [
        r.getMessage() for r in caplog.records if "dropping and rebuilding" in r.getMessage()
    ]
    assert rebuilt == [
        "index ratings.timestamp: not recorded as built whole; dropping and rebuilding"
    ]
    wanted = {f"ratings.{ix.document['name']}" for ix in LATE_INDEXES[model.RATINGS]}
    assert set(record["built"]) == wanted
    assert late == 10
    # The drop carries the build's bound, not the client's 300 s socket timeout: dropping
    # deletes the entries one by one, and at 25M ratings it outlasted that timeout.
    assert [d["index"] for d in drops] == ["timestamp"]
    bound_ms = late_index_timeout(30) * 1000
    assert 0.9 * bound_ms < drops[0]["maxTimeMS"] <= bound_ms
