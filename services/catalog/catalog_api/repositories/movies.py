"""Movies: search/filter/sort/paginate, detail, popular, genres, and the stats delta writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from movierec_common import data_model as model
from pymongo.asynchronous.database import AsyncDatabase

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
}

# The direction each sort key uses unless `order` says otherwise.
DEFAULT_ORDER = {
    "popularity": "desc",
    "rating": "desc",
    "count": "desc",
    "title": "asc",
    "year": "asc",
}


class MoviesRepo:
    def __init__(self, db: AsyncDatabase, prior_weight: float, refresh_seconds: float) -> None:
        self.movies = db[model.MOVIES]
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
        return await self.movies.find_one({"movieId": movie_id}, PUBLIC_FIELDS)

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
        return self.cache.search(
            q=q,
            genre=genre,
            year_min=year_min,
            year_max=year_max,
            sort=sort,
            descending_flip=(order or DEFAULT_ORDER[sort]) != DEFAULT_ORDER[sort],
            skip=skip,
            limit=limit,
        )

    async def popular(self, genre: str | None, limit: int, min_count: int) -> list[dict[str, Any]]:
        await self._ensure_cache()
        return self.cache.popular(genre, limit, min_count)

    async def genres(self) -> list[dict[str, Any]]:
        await self._ensure_cache()
        return self.cache.genres()

    async def _ensure_cache(self) -> None:
        if not self.cache.loaded:
            await self.cache.full_load(await self.global_mean())

    async def apply_rating_delta(
        self, movie_id: int, count_delta: int, sum_delta: float
    ) -> dict[str, Any] | None:
        """Atomically $inc the exact counters, then recompute the derived fields from them.

        The follow-up pipeline update reads the document's *current* count and sum, so
        concurrent writers converge: whoever writes last computes from the final counters.
        (update_one, not find_one_and_update: SecantusDB runs findAndModify as a collection
        scan, ~300 ms on movies, while these indexed updates take ~1–10 ms.)
        """
        flt = {"movieId": movie_id}
        await self.movies.update_one(
            flt,
            {
                "$inc": {"rating_count": count_delta, "rating_sum": float(sum_delta)},
                # Lets every process's movie cache pick up the change with an indexed query.
                "$set": {"stats_updated_at": datetime.now(UTC)},
            },
        )
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
        movie = await self.movies.find_one(flt, PUBLIC_FIELDS)
        if movie is not None and self.cache.loaded:
            self.cache.apply(movie)
        return movie
