"""The retrain-slot rule (one pure function, used by the catalog and the trainer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from movierec_common.data_model import RETRAIN_SLOT_ID
from movierec_common.jobs import SlotBusy, take_retrain_slot

NOW = datetime(2026, 1, 1, tzinfo=UTC)
STALE = timedelta(seconds=30)


def test_free_slot_is_taken_with_a_compare_and_set_on_what_was_seen() -> None:
    new = ObjectId()
    flt, update = take_retrain_slot(None, None, new, NOW, STALE)
    assert flt == {"_id": RETRAIN_SLOT_ID, "job_id": None}
    assert update == {"$set": {"job_id": new, "updated_at": NOW}}
    old = ObjectId()
    slot = {"_id": RETRAIN_SLOT_ID, "job_id": old, "updated_at": NOW - timedelta(hours=1)}
    flt, _ = take_retrain_slot(slot, {"_id": old, "status": "succeeded"}, new, NOW, STALE)
    assert flt == {"_id": RETRAIN_SLOT_ID, "job_id": old}


@pytest.mark.parametrize("status", ["queued", "running"])
def test_active_holder_keeps_the_slot(status: str) -> None:
    held = ObjectId()
    holder = {"_id": held, "status": status}
    slot = {"_id": RETRAIN_SLOT_ID, "job_id": held, "updated_at": NOW - timedelta(days=3)}
    with pytest.raises(SlotBusy) as exc:
        take_retrain_slot(slot, holder, ObjectId(), NOW, STALE)
    assert exc.value.job is holder


def test_slot_taken_moments_ago_waits_for_its_job_then_goes_stale() -> None:
    slot = {"_id": RETRAIN_SLOT_ID, "job_id": ObjectId(), "updated_at": NOW - timedelta(seconds=5)}
    with pytest.raises(SlotBusy) as exc:
        take_retrain_slot(slot, None, ObjectId(), NOW, STALE)
    assert exc.value.job is None
    later = NOW + STALE
    flt, _ = take_retrain_slot(slot, None, ObjectId(), later, STALE)
    assert flt["job_id"] == slot["job_id"]
