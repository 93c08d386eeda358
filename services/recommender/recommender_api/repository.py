"""The only module that queries MongoDB: a user's ratings and the movie catalogue.

Ratings are read per request (never cached) so a rating made a second ago is already excluded
from that user's list and already used by fold-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from movierec_common import data_model
from movierec_common.movie_changes import READ_BATCH
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
        cursor = self.db[data_model.RATINGS].find({"userId": user_id}, _PROJECTION, batch_size=5000)
        docs = await cursor.to_list(None)
        return _to_arrays(docs)

    async def user_rated_ids(self, user_id: int) -> UserRatings:
        """Only the movieIds (ratings NaN): all a user who is in the model needs for exclusion."""
        cursor = self.db[data_model.RATINGS].find(
            {"userId": user_id}, {"_id": 0, "movieId": 1}, batch_size=5000
        )
        ids = np.fromiter((int(d["movieId"]) for d in await cursor.to_list(None)), np.int64)
        return UserRatings(ids, np.full(ids.shape, np.nan, np.float32))

    async def user_rating(self, user_id: int, movie_id: int) -> float | None:
        doc = await self.db[data_model.RATINGS].find_one(
            {"userId": user_id, "movieId": movie_id}, {"_id": 0, "rating": 1}
        )
        return float(doc["rating"]) if doc and "rating" in doc else None

    async def user_rated_since(self, user_id: int, since: int) -> UserRatings:
        """The ratings (movieIds and stars) the user made or changed at or after `since`: the
        (userId, timestamp) index makes this a short range scan however many ratings the user
        has."""
        cursor = self.db[data_model.RATINGS].find(
            {"userId": user_id, "timestamp": {"$gte": since}}, _PROJECTION
        )
        return _to_arrays(await cursor.to_list(None))

    async def movies(self, changed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every movie's metadata, or only those matching `changed`
        (`movie_changes.ChangeMark.changed_filter`), read in batches so the server answers other
        queries between them."""
        fields = {"_id": 0, "movieId": 1, "title": 1, "year": 1, "genres": 1}
        fields |= {"rating_count": 1, "popularity_score": 1, "added_at": 1, "tags": 1}
        cursor = self.db[data_model.MOVIES].find(changed or {}, fields, batch_size=READ_BATCH)
        return await cursor.to_list(None)
