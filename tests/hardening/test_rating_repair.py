"""A rating write whose movie-stats update fails (database outage or pool reset between the two
operations) must not leave the movie's count/sum drifting: the catalog recounts it from
`ratings` in the background. Real SecantusDB; the failure is injected at the repository seam
(the one place a real outage cannot be timed between two operations)."""

from __future__ import annotations

import asyncio

import pytest
from catalog_api.repositories.movies import MoviesRepo
from catalog_api.repositories.ratings import RatingsRepo
from movierec_common.mongo import make_client
from pymongo.errors import AutoReconnect

pytestmark = pytest.mark.timeout(120)


class FlakyStats(MoviesRepo):
    """The real movies repository whose counters update fails on demand."""

    def __init__(self, db) -> None:
        super().__init__(db, prior_weight=20.0, refresh_seconds=5.0)
        self.fail_next = 0

    async def apply_rating_delta(self, movie_id, count_delta, sum_delta, op=None):
        if self.fail_next:
            self.fail_next -= 1
            raise AutoReconnect("connection pool reset (injected)")
        return await super().apply_rating_delta(movie_id, count_delta, sum_delta, op)


async def _stats(db, movie_id: int) -> tuple[int, float, int, float]:
    m = await db.movies.find_one({"movieId": movie_id})
    docs = await db.ratings.find({"movieId": movie_id}).to_list(None)
    return m["rating_count"], m["rating_sum"], len(docs), sum(d["rating"] for d in docs)


async def _converged(db, movie_id: int, tries: int) -> tuple[int, float, int, float]:
    """`_stats` once the movie's counters equal the recount, or after `tries` × 0.1 s."""
    for _ in range(tries):
        stats = await _stats(db, movie_id)
        if stats[:2] == stats[2:]:
            break
        await asyncio.sleep(0.1)
    return stats


async def test_failed_stats_update_is_repaired_by_a_recount(mongo_url: str, db_name: str) -> None:
    client = make_client(mongo_url, 5000)
    try:
        db = client[db_name]
        await db.ratings.create_index([("userId", 1), ("movieId", 1)], unique=True)
        await db.movies.insert_one({"movieId": 7, "rating_count": 1, "rating_sum": 3.0})
        await db.ratings.insert_one({"userId": 1, "movieId": 7, "rating": 3.0, "v": 1})
        stats = FlakyStats(db)
        repo = RatingsRepo(db, stats)

        # The rating lands, its $inc does not: the caller sees the error ...
        stats.fail_next = 1
        with pytest.raises(AutoReconnect):
            await repo.upsert(2, 7, 4.5)
        assert await db.ratings.find_one({"userId": 2, "movieId": 7}) is not None
        # ... and the movie is recounted in the background: count 2, sum 7.5.
        count, total, n, s = await _converged(db, 7, 50)
        assert (count, total) == (2, 7.5) == (n, s)

        # The same for a delete whose decrement fails.
        stats.fail_next = 1
        with pytest.raises(AutoReconnect):
            await repo.delete(1, 7)
        count, total, n, s = await _converged(db, 7, 50)
        assert (count, total) == (1, 4.5) == (n, s)

        # Without a failure nothing extra happens: exact deltas as before.
        await repo.upsert(3, 7, 1.0)
        assert await _stats(db, 7) == (2, 5.5, 2, 5.5)
    finally:
        await client.close()


class LateIncrement(MoviesRepo):
    """The real repository whose first counters update waits until released: a PUT that has
    written its rating but not yet its increment, while a DELETE of that rating overtakes it."""

    def __init__(self, db) -> None:
        super().__init__(db, prior_weight=20.0, refresh_seconds=5.0)
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def apply_rating_delta(self, movie_id, count_delta, sum_delta, op=None):
        if self.hold is not None and count_delta == 1:
            hold, self.hold = self.hold, None
            self.held.set()
            await hold.wait()
        return await super().apply_rating_delta(movie_id, count_delta, sum_delta, op)


async def test_a_delete_overtaking_its_put_is_acknowledged_and_recounted(
    mongo_url: str, db_name: str
) -> None:
    """Found by an attack run: with concurrent writes of one rating the increments can land out
    of order, and a decrement would take a movie's counters below zero, which the collection's
    validator (mongo-init's schema) refuses: the DELETE answered 500 although the rating was
    gone. Now both writes succeed and the movie converges to the exact recount."""
    from movierec_init.schema import ensure_schema

    client = make_client(mongo_url, 5000)
    try:
        db = client[db_name]
        await ensure_schema(db)
        await db.movies.insert_one(
            {"movieId": 9, "title": "T", "genres": [], "rating_count": 0, "rating_sum": 0.0}
        )
        stats = LateIncrement(db)
        repo = RatingsRepo(db, stats)
        release = asyncio.Event()
        stats.hold = release
        put = asyncio.create_task(repo.upsert(1, 9, 3.0))
        await asyncio.wait_for(stats.held.wait(), 10)  # the rating is written, +1 not yet
        deleted = await repo.delete(1, 9)  # its -1 would take the counters below zero
        assert deleted is not None and deleted["rating"] == 3.0
        assert await db.ratings.find_one({"userId": 1, "movieId": 9}) is None
        release.set()
        doc, _, movie = await asyncio.wait_for(put, 10)
        assert doc["rating"] == 3.0 and movie is not None
        count, total, n, s = await _converged(db, 9, 100)
        assert (count, total) == (0, 0.0) == (n, s)
        assert (await db.movies.find_one({"movieId": 9}))["stats_pending"] == []
    finally:
        await client.close()
