"""The retrain job document (ARCHITECTURE.md `jobs`), built in one place.

The catalog enqueues jobs from the admin API and the trainer enqueues them from its schedule
and new-ratings triggers; both must write the same fields, or the worker and the admin page
would meet documents they do not understand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from bson import ObjectId

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
