"""Retrain jobs (contract 4) as the catalog sees them: enqueue, list, get, cancel.

At most one job is queued or running at a time. An enqueue first refuses when any job is queued
or running (including ones the trainer's scheduler enqueued), and two simultaneous POSTs are
serialised by a compare-and-set on the `meta` document "retrain_slot": only the request that
moves the slot from the previous job to its own may insert, the other gets the winner (409).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from movierec_common import data_model as model
from movierec_common.jobs import ACTIVE_STATUSES, SlotBusy, new_job, take_retrain_slot
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

ACTIVE = list(ACTIVE_STATUSES)


class JobConflict(Exception):
    def __init__(self, job: dict[str, Any] | None) -> None:
        super().__init__("a retrain job is already queued or running")
        self.job = job


class JobsRepo:
    def __init__(self, db: AsyncDatabase, slot_stale_seconds: float) -> None:
        self.jobs = db[model.JOBS]
        self.meta = db[model.META]
        self.stale = timedelta(seconds=slot_stale_seconds)

    async def active(self) -> dict[str, Any] | None:
        return await self.jobs.find_one({"status": {"$in": ACTIVE}}, sort=[("created_at", 1)])

    async def enqueue(self, params: dict[str, Any], requested_by: str) -> dict[str, Any]:
        running = await self.active()
        if running is not None:
            raise JobConflict(running)
        slot = await self.meta.find_one({"_id": model.RETRAIN_SLOT_ID})
        holder = None
        if slot is not None and slot.get("job_id") is not None:
            holder = await self.jobs.find_one({"_id": slot["job_id"]})
        job = new_job(params, requested_by)
        try:
            flt, update = take_retrain_slot(slot, holder, job["_id"], datetime.now(UTC), self.stale)
        except SlotBusy as exc:
            raise JobConflict(exc.job) from None
        try:
            won = await self.meta.find_one_and_update(
                flt, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:  # the slot moved under us
            won = None
        if won is None or won.get("job_id") != job["_id"]:
            raise JobConflict(await self.active())
        await self.jobs.insert_one(job)
        return job

    async def get(self, job_id: ObjectId) -> dict[str, Any] | None:
        return await self.jobs.find_one({"_id": job_id})

    async def page(
        self, skip: int, limit: int, status: str | None
    ) -> tuple[list[dict[str, Any]], int]:
        flt: dict[str, Any] = {"status": status} if status else {}
        total = await self.jobs.count_documents(flt)
        cursor = self.jobs.find(flt).sort([("created_at", -1), ("_id", -1)]).skip(skip)
        return await cursor.limit(limit).to_list(limit), total

    async def cancel(self, job_id: ObjectId) -> tuple[str, dict[str, Any] | None]:
        """Returns (outcome, job): cancelled | cancel_requested | finished | missing."""
        now = datetime.now(UTC)
        job = await self.jobs.find_one_and_update(
            {"_id": job_id, "status": "queued"},
            {
                "$set": {
                    "status": "cancelled",
                    "finished_at": now,
                    "cancel_requested": True,
                    "error": "cancelled before it started",
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if job is not None:
            return "cancelled", job
        job = await self.jobs.find_one_and_update(
            {"_id": job_id, "status": "running"},
            {"$set": {"cancel_requested": True}},
            return_document=ReturnDocument.AFTER,
        )
        if job is not None:
            return "cancel_requested", job
        job = await self.jobs.find_one({"_id": job_id})
        return ("finished", job) if job is not None else ("missing", None)
