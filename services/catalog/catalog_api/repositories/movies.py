"""Movies: search/filter/sort/paginate, detail, popular, genres, and the stats delta writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from movierec_common import data_model as model
from movierec_common import movie_changes
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import WriteError

from ..core.active_model import ActiveModelItems
from .movie_cache import MovieCache

PUBLIC_FIELDS = {
    "_id": 0,
    "movieId": 1,
    "title": 1,
    "year": 1,
    "genres": 1,
    "imdbId": 1,
    "tmdbId": 1,
    "rating_count": 1,
    "rating_sum": 1,
    "avg_rating": 1,
    "popularity_score": 1,
    "added_at": 1,
}

# The direction each sort key uses unless `order` says otherwise.
DEFAULT_ORDER = {
    "popularity": "desc",
    "rating": "desc",
    "count": "desc",
    "title": "asc",
    "year": "asc",
}


DOCUMENT_VALIDATION_FAILURE = 121  # MongoDB's error code for a $jsonSchema refusal


class StatsDeferred(Exception):
    """A movie's counters cannot take this change yet: applied now they would go below zero
    (the collection's validator refuses), because a concurrent change of the same rating has
    written its rating but not yet its own increment. Nothing was applied; the change's
    pending entry is still there for the reconciler's exact recount."""


class MoviesRepo:
    def __init__(
        self,
        db: AsyncDatabase,
        prior_weight: float,
        refresh_seconds: float,
        active: ActiveModelItems | None = None,
    ) -> None:
        self.movies = db[model.MOVIES]
        self.active = active or ActiveModelItems(None)
        self.meta = db[model.META]
        self.prior_weight = prior_weight
        self._global_mean: float | None = None
        self.cache = MovieCache(self.movies, prior_weight, refresh_seconds)

    async def global_mean(self) -> float:
        """C of the damped mean, fixed by mongo-init (re-read only after a restart)."""
        if self._global_mean is None:
            doc = await self.meta.find_one({"_id": model.RATINGS_STATS_ID})
            self._global_mean = float(doc["global_mean"]) if doc else 3.5
        return self._global_mean

    async def exists(self, movie_id: int) -> bool:
        return await self.movies.find_one({"movieId": movie_id}, {"_id": 1}) is not None

    async def get(self, movie_id: int) -> dict[str, Any] | None:
        """The movie with `new`: added by an admin and not yet in the active model (as lists)."""
        doc = await self.movies.find_one({"movieId": movie_id}, PUBLIC_FIELDS)
        if doc is None:
            return None
        doc["new"] = doc.pop("added_at", None) is not None
        if "avg_rating" not in doc or "popularity_score" not in doc:  # derived, as the lists do
            derived = model.movie_stats(
                float(doc.get("rating_sum") or 0.0),
                int(doc.get("rating_count") or 0),
                await self.global_mean(),
                self.prior_weight,
            )
            for key, value in derived.items():
                doc.setdefault(key, value)
        return (await self.active.mark([doc]))[0]

    async def get_many(self, movie_ids: list[int]) -> dict[int, dict[str, Any]]:
        cursor = self.movies.find({"movieId": {"$in": movie_ids}}, PUBLIC_FIELDS)
        return {d["movieId"]: d async for d in cursor}

    async def search(
        self,
        *,
        q: str | None,
        genre: str | None,
        year_min: int | None,
        year_max: int | None,
        sort: str,
        order: str | None,
        skip: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """Served from the in-process read model (see movie_cache.py for why)."""
        await self._ensure_cache()
        items, total = self.cache.search(
            q=q,
            genre=genre,
            year_min=year_min,
            year_max=year_max,
            sort=sort,
            descending_flip=(order or DEFAULT_ORDER[sort]) != DEFAULT_ORDER[sort],
            skip=skip,
            limit=limit,
        )
        return await self.active.mark(items), total

    async def popular(self, genre: str | None, limit: int, min_count: int) -> list[dict[str, Any]]:
        await self._ensure_cache()
        return await self.active.mark(self.cache.popular(genre, limit, min_count))

    async def genres(self) -> list[dict[str, Any]]:
        await self._ensure_cache()
        return self.cache.genres()

    async def resolve_genre(self, genre: str) -> str | None:
        """The catalogue's spelling of `genre` (matched by `data_model.genre_key`, as the
        recommender does), or None when no movie has it."""
        names = {model.genre_key(g["genre"]): g["genre"] for g in await self.genres()}
        return names.get(model.genre_key(genre))

    async def _ensure_cache(self) -> None:
        if not self.cache.loaded:
            await self.cache.full_load(await self.global_mean())

    async def ensure_stats_index(self) -> None:
        """The reconciler's "which movies have pending changes?" (mongo-init creates it too;
        a database initialised before it existed gets it here; idempotent)."""
        await self.movies.create_index([("stats_pending.at", 1)], name="stats_pending_at")

    async def mark_pending(self, movie_id: int, op: str) -> bool:
        """Record an intended rating change `op` on the movie (`stats_pending`), before the
        rating itself is written. False while a stats repair holds the movie (retry shortly)
        or when there is no such movie. See `catalog_api.repositories.stats`."""
        now = datetime.now(UTC)
        res = await self.movies.update_one(
            {
                "movieId": movie_id,
                "$or": [
                    {"stats_repair": {"$exists": False}},
                    {"stats_repair.until": {"$lt": now}},
                ],
            },
            {"$push": {"stats_pending": {"op": op, "at": now}}},
        )
        return res.matched_count == 1

    async def abandon_pending(self, movie_id: int, op: str) -> None:
        """Mark `op` dead (its request failed): a repair need not wait for it to go stale."""
        await self.movies.update_one(
            {"movieId": movie_id, "stats_pending.op": op},
            {"$set": {"stats_pending.$.dead": datetime.now(UTC)}},
        )

    async def apply_rating_delta(
        self, movie_id: int, count_delta: int, sum_delta: float, op: str | None = None
    ) -> dict[str, Any] | None:
        """Atomically $inc the exact counters, then recompute the derived fields from them.

        With `op` (a change recorded by `mark_pending`) the increment and the removal of that
        pending entry are one update, applied only while the entry is still there: a repair
        that already recounted the movie (and cleared its pending entries) is never added to
        twice. The follow-up pipeline update reads the document's *current* count and sum, so
        concurrent writers converge: whoever writes last computes from the final counters.
        (update_one, not find_one_and_update: SecantusDB runs findAndModify as a collection
        scan, ~300 ms on movies, while these indexed updates take ~1–10 ms.)
        """
        flt = {"movieId": movie_id}
        update: dict[str, Any] = {
            "$inc": {"rating_count": count_delta, "rating_sum": float(sum_delta)},
            # Lets every process's movie snapshot pick up the change with an indexed query.
            "$set": movie_changes.stamp(),
        }
        if op is not None:
            update["$pull"] = {"stats_pending": {"op": op}}
        try:
            await self.movies.update_one({**flt, "stats_pending.op": op} if op else flt, update)
        except WriteError as exc:
            if exc.code == DOCUMENT_VALIDATION_FAILURE:
                raise StatsDeferred(movie_id) from exc
            raise
        c = await self.global_mean()
        m = self.prior_weight
        await self.movies.update_one(
            flt,
            [
                {
                    "$set": {
                        "avg_rating": {
                            "$cond": [
                                {"$gt": ["$rating_count", 0]},
                                {"$divide": ["$rating_sum", "$rating_count"]},
                                None,
                            ]
                        },
                        "popularity_score": {
                            "$divide": [
                                {"$add": ["$rating_sum", m * c]},
                                {"$add": ["$rating_count", m]},
                            ]
                        },
                    }
                }
            ],
        )
        return await self.current(movie_id)

    async def current(self, movie_id: int) -> dict[str, Any] | None:
        """The movie's public fields as stored now (also applied to the in-memory snapshot)."""
        movie = await self.movies.find_one({"movieId": movie_id}, PUBLIC_FIELDS)
        if movie is not None and self.cache.loaded:
            self.cache.apply(movie)
        return movie
