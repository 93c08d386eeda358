"""The retrain job document (ARCHITECTURE.md `jobs`), built in one place.

The catalog enqueues jobs from the admin API and the trainer enqueues them from its schedule
and new-ratings triggers; both must write the same fields, or the worker and the admin page
would meet documents they do not understand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bson import ObjectId

from movierec_common.data_model import RETRAIN_SLOT_ID

Trigger = Literal["manual", "schedule", "threshold"]
STATUSES = ("queued", "running", "succeeded", "failed", "rejected", "cancelled")
ACTIVE_STATUSES = ("queued", "running")


def new_job(
    params: dict[str, Any] | None,
    requested_by: str,
    trigger: Trigger = "manual",
    *,
    job_id: ObjectId | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    return {
        "_id": job_id or ObjectId(),
        "status": "queued",
        "trigger": trigger,
        "params": params or {},
        "requested_by": requested_by,
        "created_at": now or datetime.now(UTC),
        "started_at": None,
        "finished_at": None,
        "progress": None,
        "phases": {},
        "log_tail": [],
        "model_version": None,
        "metrics": None,
        "error": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": 0,
        "cancel_requested": False,
    }


class SlotBusy(Exception):
    """The retrain slot is held: `job` is the active job holding it, or None when another
    request took the slot moments ago and is still inserting its job."""

    def __init__(self, job: dict[str, Any] | None) -> None:
        super().__init__("a retrain job is already queued or running")
        self.job = job


# A slot naming a job that does not exist yet is left alone this long (its taker is inserting
# the job); the default of RETRAIN_SLOT_STALE_SECONDS in the catalog and the trainer alike.
SLOT_STALE_SECONDS = 30.0


def take_retrain_slot(
    slot: dict[str, Any] | None,
    holder: dict[str, Any] | None,
    new_job_id: ObjectId,
    now: datetime,
    stale: timedelta,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The retrain-slot rule (one active job at a time), for the catalog and the trainer alike.

    `slot` is the meta document `RETRAIN_SLOT_ID` ({job_id, updated_at}) or None, `holder` the
    job it names (None when it names none or the job does not exist). Raises SlotBusy when the
    holder is queued/running, or when it does not exist yet and the slot moved less than
    `stale` ago (its taker is inserting the job). Otherwise returns the compare-and-set as
    (filter, update) for `find_one_and_update(..., upsert=True)`: it matches only while the
    slot still names the job seen here, so of two racing takers one moves it and the other
    matches nothing (its upsert collides with the slot document: DuplicateKeyError); the caller
    then checks that the returned document names `new_job_id`.
    """
    held_by = slot.get("job_id") if slot else None
    if held_by is not None:
        if holder is not None and holder.get("status") in ACTIVE_STATUSES:
            raise SlotBusy(holder)
        updated = slot.get("updated_at") if slot else None
        if holder is None and updated is not None and now - updated < stale:
            raise SlotBusy(None)
    flt = {"_id": RETRAIN_SLOT_ID, "job_id": held_by}
    return flt, {"$set": {"job_id": new_job_id, "updated_at": now}}
