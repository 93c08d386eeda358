"""A/B experiments and the online-metrics aggregation (impressions joined with ratings).

At most one experiment runs: starting one inserts the `meta` document "experiment_running"
(unique `_id`), so two simultaneous starts cannot both succeed; ending it deletes that document
in the same step that marks the experiment ended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

from movierec_common import data_model, online_metrics
from movierec_common.impressions import bucket_filter, lists_of
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

LOCK_ID = "experiment_running"


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
        self._server_aggregates: bool | None = None

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

    async def in_database(self, engine: str) -> bool:
        """Whether online metrics run as a MongoDB aggregation (`engine` database / python /
        auto: database unless the server is SecantusDB, told by buildInfo.secantusVersion)."""
        if engine != "auto":
            return engine == "database"
        if self._server_aggregates is None:
            info = await self.impressions.database.client.admin.command("buildInfo")
            self._server_aggregates = "secantusVersion" not in info
        return self._server_aggregates

    async def online_metrics(
        self,
        since: dt.datetime,
        *,
        window_days: float,
        experiment_id: str | None = None,
        engine: str = "auto",
    ) -> dict[str, Any]:
        """The `online_metrics.summarise` shape for impressions since `since`: in MongoDB (one
        aggregation on `ratings`, `online_metrics.pipeline`) or by reading the impressions and
        the ratings since then and counting here (`online_metrics.summarise`, in a thread)."""
        size = await self.catalogue_size()
        if await self.in_database(engine):
            cursor = await self.ratings.aggregate(
                online_metrics.pipeline(since, window_days, experiment_id)
            )
            docs = await cursor.to_list(None)
            return online_metrics.from_pipeline(
                docs[0] if docs else {},
                window_days=window_days,
                catalogue_size=size,
                experiment_id=experiment_id,
            )
        docs = await self.impressions.find(bucket_filter(since, experiment_id)).to_list(None)
        lists = list(lists_of(docs, since, experiment_id))
        ratings = await self.ratings.find(
            {"timestamp": {"$gte": int(since.timestamp())}},
            {"_id": 0, "userId": 1, "movieId": 1, "timestamp": 1},
        ).to_list(None)
        return await asyncio.to_thread(
            online_metrics.summarise,
            lists,
            ratings,
            window_days=window_days,
            catalogue_size=size,
            experiment_id=experiment_id,
        )

    async def catalogue_size(self) -> int:
        """The number of movies (estimated: SecantusDB scans keys only, where an exact
        count_documents({}) decodes each of the 62k documents at ml-25m's size)."""
        return await self.movies.estimated_document_count()
