"""Movie statistics that converge to an exact recount after any crash, without an operator.

A rating change is three writes: (1) `mark_pending` pushes `{op, at}` onto the movie's
`stats_pending`, (2) the rating itself (compare-and-set on `ratings`), (3) one update that
`$inc`s the movie's count/sum and pulls `op`, applied only while `op` is still pending. A
process that dies after (1) leaves its entry behind; that is the durable record that this
movie's counters may be off, and it lives in the database, not in a process's memory.

`StatsReconciler` repairs such a movie: once every pending entry is either dead (its request
failed, `abandon_pending`) for `dead_grace_seconds` or older than `stale_seconds` (no live
request is that old: a writer gives up before its rating write when half of it has passed), it
takes the movie's repair lock (refused while the pending list differs from what it read),
recounts `ratings` for the movie, and sets count, sum and an empty pending list in one update.
While the lock is held `mark_pending` refuses, so no new change can slip between the recount and
the set; a late step (3) of a reclaimed `op` matches nothing, so nothing is counted twice. The
catalog runs it on start and every `period_seconds`; a failed request also asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from movierec_common import data_model as model
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from .movies import MoviesRepo

log = logging.getLogger(__name__)


class StatsReconciler:
    def __init__(
        self,
        db: AsyncDatabase,
        movies: MoviesRepo,
        stale_seconds: float = 60.0,
        dead_grace_seconds: float = 2.0,
        lock_seconds: float = 30.0,
    ) -> None:
        self.ratings = db[model.RATINGS]
        self.movies = movies
        self.stale_seconds = stale_seconds
        self.dead_grace_seconds = dead_grace_seconds
        self.lock_seconds = lock_seconds

    def _settled(self, entry: dict[str, Any], now: datetime) -> bool:
        dead = entry.get("dead")
        if dead is not None and dead < now - timedelta(seconds=self.dead_grace_seconds):
            return True
        return bool(entry["at"] < now - timedelta(seconds=self.stale_seconds))

    async def reconcile(self, movie_id: int) -> bool:
        """Recount one movie if all its pending changes are settled. True when it was
        recounted, False when there was nothing to do or a live change (or repair) is under way.
        Raises PyMongoError when the database fails (nothing half done: retry)."""
        coll = self.movies.movies
        doc = await coll.find_one({"movieId": movie_id}, {"stats_pending": 1, "stats_repair": 1})
        pending = (doc or {}).get("stats_pending") or []
        now = datetime.now(UTC)
        if not pending or not all(self._settled(e, now) for e in pending):
            return False
        token = uuid.uuid4().hex
        locked = await coll.update_one(
            {
                "movieId": movie_id,
                "stats_pending": pending,
                "$or": [
                    {"stats_repair": {"$exists": False}},
                    {"stats_repair.until": {"$lt": now}},
                ],
            },
            {
                "$set": {
                    "stats_repair": {
                        "token": token,
                        "until": now + timedelta(seconds=self.lock_seconds),
                    }
                }
            },
        )
        if locked.matched_count != 1:
            return False
        cursor = await self.ratings.aggregate(
            [
                {"$match": {"movieId": movie_id}},
                {"$group": {"_id": None, "n": {"$sum": 1}, "s": {"$sum": "$rating"}}},
            ]
        )
        rows = await cursor.to_list(1)
        n, total = (int(rows[0]["n"]), float(rows[0]["s"])) if rows else (0, 0.0)
        done = await coll.update_one(
            {"movieId": movie_id, "stats_repair.token": token},
            {
                "$set": {"rating_count": n, "rating_sum": total, "stats_pending": []},
                "$unset": {"stats_repair": ""},
            },
        )
        if done.matched_count != 1:  # the lock expired under us: the next pass does it
            return False
        await self.movies.apply_rating_delta(movie_id, 0, 0.0)  # derived fields + cache
        log.info(
            "movie stats recounted",
            extra={"movie": movie_id, "pending": len(pending), "count": n, "sum": total},
        )
        return True

    async def reconcile_all(self) -> int:
        """Recount every movie whose pending changes are settled; returns how many."""
        now = datetime.now(UTC)
        cursor = self.movies.movies.find(
            {"stats_pending.at": {"$lt": now}}, {"_id": 0, "movieId": 1}
        )
        repaired = 0
        for doc in await cursor.to_list(None):
            repaired += await self.reconcile(int(doc["movieId"]))
        return repaired

    async def repair_soon(self, movie_id: int, attempts: int = 120) -> None:
        """After a failed request: reconcile this movie as soon as its change is settled,
        retrying once a second while the database is away (the periodic pass is the backstop)."""
        for _ in range(attempts):
            try:
                if await self.reconcile(movie_id):
                    return
                doc = await self.movies.movies.find_one({"movieId": movie_id}, {"stats_pending": 1})
                if not (doc or {}).get("stats_pending"):
                    return
            except PyMongoError:
                pass
            await asyncio.sleep(min(1.0, self.dead_grace_seconds / 2 + 0.1))

    async def run(self, stop: asyncio.Event, period_seconds: float) -> None:
        """Reconcile on start and then every `period_seconds` until `stop` is set."""
        while not stop.is_set():
            try:
                await self.reconcile_all()
            except PyMongoError as exc:
                log.warning("stats reconcile pass failed", extra={"error": str(exc)[:200]})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_seconds)
