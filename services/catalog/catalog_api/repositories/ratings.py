"""Ratings writes that keep movie stats exact under concurrency.

Each write first changes the (userId, movieId) rating document atomically and gets back the
document as it was *before* (find_one_and_update with return_document=BEFORE, or
find_one_and_delete). The difference between before and after is therefore observed exactly
once per write, and applying it with `$inc` makes the movie's count and sum equal to a recount
from `ratings`, whatever the interleaving.
"""

from __future__ import annotations

import time
from typing import Any

from movierec_init import model
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .movies import MoviesRepo


class RatingsRepo:
    def __init__(self, db: AsyncDatabase, movies: MoviesRepo) -> None:
        self.ratings = db[model.RATINGS]
        self.movies = movies

    async def get(self, user_id: int, movie_id: int) -> dict[str, Any] | None:
        return await self.ratings.find_one(
            {"userId": user_id, "movieId": movie_id}, {"_id": 0, "rating": 1, "timestamp": 1}
        )

    async def upsert(
        self, user_id: int, movie_id: int, rating: float
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        """Returns (new rating doc, previous rating doc or None, movie after the change)."""
        now = int(time.time())
        key = {"userId": user_id, "movieId": movie_id}
        update = {"$set": {"rating": float(rating), "timestamp": now}}
        for attempt in range(3):
            try:
                before = await self.ratings.find_one_and_update(
                    key, update, upsert=True, return_document=ReturnDocument.BEFORE
                )
                break
            except DuplicateKeyError:
                # Two first-time upserts of the same pair raced; the loser retries as an update.
                if attempt == 2:
                    raise
        if before is None:
            count_delta, sum_delta = 1, float(rating)
        else:
            count_delta, sum_delta = 0, float(rating) - float(before["rating"])
        movie = await self.movies.apply_rating_delta(movie_id, count_delta, sum_delta)
        return {**key, "rating": float(rating), "timestamp": now}, before, movie

    async def delete(self, user_id: int, movie_id: int) -> dict[str, Any] | None:
        """Returns the deleted rating, or None when there was none (nothing changes)."""
        before = await self.ratings.find_one_and_delete({"userId": user_id, "movieId": movie_id})
        if before is not None:
            await self.movies.apply_rating_delta(movie_id, -1, -float(before["rating"]))
        return before

    async def page_for_user(
        self, user_id: int, skip: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        flt = {"userId": user_id}
        total = await self.ratings.count_documents(flt)
        if skip >= total:
            return [], total
        cursor = (
            self.ratings.find(flt, {"_id": 0, "userId": 0})
            .sort([("timestamp", -1), ("movieId", 1)])
            .skip(skip)
            .limit(limit)
        )
        return await cursor.to_list(limit), total
