"""Movies added by an admin after the MovieLens import (issue 17).

A new movie gets the next id of the `movieId` counter (first raised to the largest movieId in
the catalogue, so it never collides with MovieLens ids; `$inc` is atomic, so two admins never
get the same id), the same document shape as the import (title tokens for search, zero
stats), and `added_at`/`added_by`, which is how the recommender tells an admin-added movie
from a catalogue one until a retrain gives it factors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from movierec_common import data_model as model
from movierec_common import movie_changes
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

MOVIE_ID_COUNTER = "movieId"


class AdminMoviesRepo:
    def __init__(self, db: AsyncDatabase, prior_mean_weight: float) -> None:
        self.movies = db[model.MOVIES]
        self.counters = db[model.COUNTERS]
        self.weight = prior_mean_weight

    async def _next_movie_id(self) -> int:
        top = await self.movies.find_one({}, {"movieId": 1}, sort=[("movieId", DESCENDING)])
        highest = int(top["movieId"]) if top else 0
        await self.counters.update_one(
            {"_id": MOVIE_ID_COUNTER}, {"$max": {"seq": highest}}, upsert=True
        )
        doc = await self.counters.find_one_and_update(
            {"_id": MOVIE_ID_COUNTER},
            {"$inc": {"seq": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["seq"])

    async def add(
        self,
        *,
        title: str,
        year: int | None,
        genres: list[str],
        imdb_id: str | None,
        tmdb_id: int | None,
        tags: list[str],
        global_mean: float,
        added_by: str,
    ) -> dict[str, Any]:
        """Insert and return the movie document (without `_id`)."""
        for _ in range(5):
            doc = {
                "movieId": await self._next_movie_id(),
                "title": title,
                "year": year,
                "genres": genres,
                "title_tokens": model.title_tokens(title),
                "imdbId": imdb_id,
                "tmdbId": tmdb_id,
                "tags": tags,
                **model.movie_stats(0.0, 0, global_mean, self.weight),
                "added_at": datetime.now(UTC),
                "added_by": added_by,
                **movie_changes.stamp(),
            }
            try:
                await self.movies.insert_one(doc)
            except DuplicateKeyError:
                continue  # a movie inserted by hand above the counter: take the next id
            doc.pop("_id", None)
            return doc
        raise RuntimeError("could not allocate a free movieId")
