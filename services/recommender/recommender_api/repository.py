"""The only module that queries MongoDB: a user's ratings and the movie catalogue.

Ratings are read per request (never cached) so a rating made a second ago is already excluded
from that user's list and already used by fold-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymongo.asynchronous.database import AsyncDatabase


@dataclass(frozen=True)
class UserRatings:
    movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32

    def __len__(self) -> int:
        return int(self.movie_ids.shape[0])


EMPTY = UserRatings(np.empty(0, np.int64), np.empty(0, np.float32))
_PROJECTION = {"_id": 0, "movieId": 1, "rating": 1}


def _to_arrays(docs: Iterable[dict[str, Any]]) -> UserRatings:
    pairs = [(int(d["movieId"]), float(d["rating"])) for d in docs if "movieId" in d]
    if not pairs:
        return EMPTY
    movie_ids, ratings = zip(*pairs, strict=True)
    return UserRatings(np.asarray(movie_ids, np.int64), np.asarray(ratings, np.float32))


class Repository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db

    async def ping(self) -> None:
        await self.db.command("ping")

    async def user_ratings(self, user_id: int) -> UserRatings:
        docs = await self.db.ratings.find({"userId": user_id}, _PROJECTION).to_list(None)
        return _to_arrays(docs)

    async def many_user_ratings(self, user_ids: list[int]) -> dict[int, UserRatings]:
        """One query for a whole batch; users without ratings map to EMPTY."""
        grouped: dict[int, list[dict[str, Any]]] = {u: [] for u in user_ids}
        cursor = self.db.ratings.find(
            {"userId": {"$in": list(grouped)}}, {"_id": 0, "userId": 1, "movieId": 1, "rating": 1}
        )
        async for doc in cursor:
            bucket = grouped.get(int(doc["userId"]))
            if bucket is not None:
                bucket.append(doc)
        return {u: _to_arrays(docs) for u, docs in grouped.items()}

    async def movies(self) -> list[dict[str, Any]]:
        fields = {"_id": 0, "movieId": 1, "title": 1, "year": 1, "genres": 1}
        fields |= {"rating_count": 1, "popularity_score": 1}
        return await self.db.movies.find({}, fields).to_list(None)
