"""A/B experiments and the reads behind online metrics (impressions, recent ratings).

At most one experiment runs: starting one inserts the `meta` document "experiment_running"
(unique `_id`), so two simultaneous starts cannot both succeed; ending it deletes that document
in the same step that marks the experiment ended.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from movierec_common import data_model
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

LOCK_ID = "experiment_running"
_IMPRESSION_FIELDS = {
    "_id": 0,
    "userId": 1,
    "movieIds": 1,
    "model_version": 1,
    "ts": 1,
    "experiment_id": 1,
    "arm": 1,
}


class ExperimentConflict(Exception):
    def __init__(self, running: dict[str, Any] | None) -> None:
        super().__init__("an experiment is already running")
        self.running = running


class ExperimentsRepo:
    def __init__(self, db: AsyncDatabase) -> None:
        self.experiments = db[data_model.EXPERIMENTS]
        self.impressions = db[data_model.IMPRESSIONS]
        self.ratings = db[data_model.RATINGS]
        self.movies = db[data_model.MOVIES]
        self.meta = db[data_model.META]

    async def running(self) -> dict[str, Any] | None:
        return await self.experiments.find_one({"status": "running"})

    async def get(self, experiment_id: str) -> dict[str, Any] | None:
        return await self.experiments.find_one({"_id": experiment_id})

    async def page(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.experiments.find({}).sort("started_at", DESCENDING).limit(limit)
        return await cursor.to_list(None)

    async def start(
        self, control: str, candidate: str, split: float, started_by: str
    ) -> dict[str, Any]:
        """Insert a running experiment; ExperimentConflict when one is already running."""
        exp_id = secrets.token_hex(12)
        try:
            await self.meta.insert_one({"_id": LOCK_ID, "experiment_id": exp_id})
        except DuplicateKeyError:
            raise ExperimentConflict(await self.running()) from None
        doc = {
            "_id": exp_id,
            "control": control,
            "candidate": candidate,
            "split": split,
            "status": "running",
            "started_at": dt.datetime.now(dt.UTC),
            "started_by": started_by,
            "ended_at": None,
            "winner": None,
        }
        try:
            await self.experiments.insert_one(doc)
        except BaseException:
            await self.meta.delete_one({"_id": LOCK_ID, "experiment_id": exp_id})
            raise
        return doc

    async def end(self, experiment_id: str, winner: str | None, who: str) -> dict[str, Any] | None:
        """Mark a running experiment ended (None if it is not running) and free the slot."""
        doc = await self.experiments.find_one_and_update(
            {"_id": experiment_id, "status": "running"},
            {
                "$set": {
                    "status": "ended",
                    "ended_at": dt.datetime.now(dt.UTC),
                    "winner": winner,
                    "ended_by": who,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        await self.meta.delete_one({"_id": LOCK_ID, "experiment_id": experiment_id})
        return doc

    async def impressions_since(
        self, since: dt.datetime, experiment_id: str | None = None
    ) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {"ts": {"$gte": since}}
        if experiment_id is not None:
            flt["experiment_id"] = experiment_id
        return await self.impressions.find(flt, _IMPRESSION_FIELDS).to_list(None)

    async def ratings_since(self, since_seconds: int) -> list[dict[str, Any]]:
        """Ratings stamped at or after `since_seconds` (the timestamp index makes it a range)."""
        cursor = self.ratings.find(
            {"timestamp": {"$gte": since_seconds}},
            {"_id": 0, "userId": 1, "movieId": 1, "timestamp": 1},
        )
        return await cursor.to_list(None)

    async def catalogue_size(self) -> int:
        return await self.movies.count_documents({})
