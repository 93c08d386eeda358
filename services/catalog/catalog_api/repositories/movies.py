"""Movies: search/filter/sort/paginate, detail, popular, genres, and the stats delta writes."""

from __future__ import annotations

import re
import time
from typing import Any

from movierec_init import model
from pymongo.asynchronous.database import AsyncDatabase

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

# sort key -> MongoDB sort spec for descending=True (ascending flips every direction).
_SORTS: dict[str, list[tuple[str, int]]] = {
    "popularity": [("popularity_score", -1), ("rating_count", -1), ("movieId", 1)],
    # "Highest rated" is the damped mean too: a plain avg_rating sort would put a movie with a
    # single 5-star rating first.
    "rating": [("popularity_score", -1), ("avg_rating", -1), ("movieId", 1)],
    "count": [("rating_count", -1), ("popularity_score", -1), ("movieId", 1)],
    "title": [("title", 1), ("year", 1), ("movieId", 1)],
    "year": [("year", 1), ("title", 1), ("movieId", 1)],
}
DEFAULT_ORDER = {
    "popularity": "desc",
    "rating": "desc",
    "count": "desc",
    "title": "asc",
    "year": "asc",
}


def title_filter(q: str) -> dict[str, Any] | None:
    """Every whole word typed must be a title token; the last one may be a prefix.

    Returns None when q has no searchable characters (the caller then matches nothing).
    """
    words = model.tokenize(q)
    if not words:
        return None
    *whole, last = words
    clauses: list[dict[str, Any]] = [{"title_tokens": {"$regex": "^" + re.escape(last)}}]
    if whole:
        clauses.insert(0, {"title_tokens": {"$all": whole}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class MoviesRepo:
    def __init__(self, db: AsyncDatabase, prior_weight: float) -> None:
        self.movies = db[model.MOVIES]
        self.meta = db[model.META]
        self.prior_weight = prior_weight
        self._global_mean: float | None = None
        self._genres: tuple[float, list[dict[str, Any]]] | None = None

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
        clauses: list[dict[str, Any]] = []
        if q:
            tf = title_filter(q)
            if tf is None:
                return [], 0
            clauses.append(tf)
        if genre:
            clauses.append({"genres": genre})
        if year_min is not None or year_max is not None:
            rng: dict[str, int] = {}
            if year_min is not None:
                rng["$gte"] = year_min
            if year_max is not None:
                rng["$lte"] = year_max
            clauses.append({"year": rng})
        flt: dict[str, Any] = (
            {} if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
        )
        spec = _SORTS[sort]
        if (order or DEFAULT_ORDER[sort]) != DEFAULT_ORDER[sort]:
            spec = [(k, -d) for k, d in spec]
        total = await self.movies.count_documents(flt)
        if skip >= total:
            return [], total
        cursor = self.movies.find(flt, PUBLIC_FIELDS).sort(spec).skip(skip).limit(limit)
        return await cursor.to_list(limit), total

    async def popular(self, genre: str | None, limit: int, min_count: int) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {"rating_count": {"$gte": min_count}}
        if genre:
            flt["genres"] = genre
        cursor = (
            self.movies.find(flt, PUBLIC_FIELDS)
            .sort([("popularity_score", -1), ("rating_count", -1), ("movieId", 1)])
            .limit(limit)
        )
        return await cursor.to_list(limit)

    async def genres(self, ttl: float = 60.0) -> list[dict[str, Any]]:
        """Genre names with movie counts; cached briefly (they change only on re-import)."""
        now = time.monotonic()
        if self._genres is not None and now - self._genres[0] < ttl:
            return self._genres[1]
        rows = await (
            await self.movies.aggregate(
                [
                    {"$unwind": "$genres"},
                    {"$group": {"_id": "$genres", "count": {"$sum": 1}}},
                    {"$sort": {"_id": 1}},
                ]
            )
        ).to_list(None)
        out = [{"genre": r["_id"], "count": int(r["count"])} for r in rows]
        self._genres = (now, out)
        return out

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
        if count_delta or sum_delta:
            await self.movies.update_one(
                flt, {"$inc": {"rating_count": count_delta, "rating_sum": float(sum_delta)}}
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
        return await self.movies.find_one(flt, PUBLIC_FIELDS)
