"""The two retrain triggers of the worker: a daily schedule (SCHEDULE=HH:MM UTC, "off" to
disable) and a new-ratings threshold (NEW_RATINGS_THRESHOLD ratings with a timestamp after the
active model's created_at, or after the last threshold job). Both enqueue through the same slot
the catalog's POST /api/admin/retrain uses (meta `retrain_slot`,
movierec_common.jobs.take_retrain_slot), so a trigger never adds a job while one is queued or
running.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from movierec_common.data_model import JOBS, META, RATINGS, RETRAIN_SLOT_ID
from movierec_common.jobs import ACTIVE_STATUSES, SlotBusy, new_job, take_retrain_slot
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from movierec_trainer.config import TrainerSettings
from movierec_trainer.gate import active_model_info

log = logging.getLogger(__name__)

SCHEDULE_ID = "trainer_schedule"  # meta doc {_id, last_slot}: the last schedule slot that fired
ACTIVE = list(ACTIVE_STATUSES)


class Triggers:
    """The schedule and new-ratings triggers over `db` (a pymongo Database). Methods raise
    PyMongoError when MongoDB is unreachable and ValueError on a malformed SCHEDULE."""

    def __init__(self, db: Any, settings: TrainerSettings) -> None:
        self.settings = settings
        self.jobs = db[JOBS]
        self.meta = db[META]
        self.ratings = db[RATINGS]

    def enqueue(self, trigger: str, params: dict[str, Any] | None = None) -> dict | None:
        """Insert a queued job for `trigger` ("schedule", "threshold") unless one is queued or
        running (the catalog's slot rule, take_retrain_slot); the inserted job document, or None
        when the slot is taken."""
        if self.jobs.find_one({"status": {"$in": ACTIVE}}) is not None:
            return None
        slot = self.meta.find_one({"_id": RETRAIN_SLOT_ID})
        holder = None
        if slot is not None and slot.get("job_id") is not None:
            holder = self.jobs.find_one({"_id": slot["job_id"]})
        job_id = ObjectId()
        now = datetime.now(UTC)
        stale = timedelta(seconds=self.settings.retrain_slot_stale_seconds)
        try:
            flt, update = take_retrain_slot(slot, holder, job_id, now, stale)
            won = self.meta.find_one_and_update(
                flt, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except (SlotBusy, DuplicateKeyError):
            return None
        if won is None or won.get("job_id") != job_id:
            return None
        job = new_job(params, f"trainer:{trigger}", trigger, job_id=job_id, now=now)
        self.jobs.insert_one(job)
        log.info("enqueued %s retrain %s", trigger, job_id)
        return job

    def _schedule_slot(self, now: datetime) -> datetime | None:
        spec = (self.settings.schedule or "").strip().lower()
        if spec in ("", "off", "none", "false", "0"):
            return None
        hh, mm = (int(x) for x in spec.split(":"))
        slot = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        return slot if slot <= now else slot - timedelta(days=1)

    def check(self) -> str | None:
        """Enqueue a job when the daily schedule slot passed or enough new ratings arrived;
        returns the trigger that fired, if any."""
        now = datetime.now(UTC)
        slot = self._schedule_slot(now)
        if slot is not None:
            doc = self.meta.find_one({"_id": SCHEDULE_ID})
            if doc is None:
                # First start: remember the current slot, do not fire for the past.
                with contextlib.suppress(DuplicateKeyError):
                    self.meta.insert_one({"_id": SCHEDULE_ID, "last_slot": slot})
            elif doc.get("last_slot") is None or doc["last_slot"] < slot:
                won = self.meta.find_one_and_update(
                    {"_id": SCHEDULE_ID, "last_slot": doc.get("last_slot")},
                    {"$set": {"last_slot": slot}},
                )
                if won is not None and self.enqueue("schedule"):
                    return "schedule"
        threshold = self.settings.new_ratings_threshold
        if threshold > 0:
            active = active_model_info(self.settings.model_dir)
            since = 0
            if active is not None and active.get("created_at"):
                since = int(datetime.fromisoformat(active["created_at"]).timestamp())
            # Count from the last threshold job too: a rejected or failed retrain must not
            # re-fire on the very same ratings every check.
            last = self.jobs.find_one({"trigger": "threshold"}, sort=[("created_at", -1)])
            if last is not None and last.get("created_at") is not None:
                since = max(since, int(last["created_at"].timestamp()))
            n_new = self.ratings.count_documents({"timestamp": {"$gt": since}}, limit=threshold)
            if n_new >= threshold and self.enqueue("threshold", {}):
                return "threshold"
        return None
