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
        for _ in range(50):
            count, total, n, s = await _stats(db, 7)
            if (count, total) == (n, s):
                break
            await asyncio.sleep(0.1)
        assert (count, total) == (2, 7.5) == (n, s)

        # The same for a delete whose decrement fails.
        stats.fail_next = 1
        with pytest.raises(AutoReconnect):
            await repo.delete(1, 7)
        for _ in range(50):
            count, total, n, s = await _stats(db, 7)
            if (count, total) == (n, s):
                break
            await asyncio.sleep(0.1)
        assert (count, total) == (1, 4.5) == (n, s)

        # Without a failure nothing extra happens: exact deltas as before.
        await repo.upsert(3, 7, 1.0)
        assert await _stats(db, 7) == (2, 5.5, 2, 5.5)
    finally:
        await client.close()
