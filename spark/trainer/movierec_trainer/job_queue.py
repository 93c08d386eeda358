"""The MongoDB job queue (collection `jobs`, contract 4) as the trainer worker uses it. No
transactions, so it works on SecantusDB and a standalone mongod alike.

* Lock: a worker only claims after winning the `meta` document `trainer_lock` (compare-and-set
  with an expiry), so at most one retrain runs at a time however many workers are started.
* Claim: `find_one_and_update({status: queued}, {$set: running + lease}, sort created_at)` —
  atomic, so two workers never get the same job.
* Lease: the running job carries `lease_owner` and `lease_expires_at`; a heartbeat thread
  (`JobLease`) renews both, and the lock, every HEARTBEAT_SECONDS. If a renewal finds the job no
  longer ours (reaped), the run is abandoned without publishing (`LeaseLost`).
* Reaper: any `running` job whose lease expired is re-queued if it has been attempted fewer
  than MAX_ATTEMPTS times, else failed with "lease expired". A job never stays `running` after
  its worker died.
* Cancel: `cancel_requested` is read after every iteration (the progress write returns the
  document); the run stops between iterations (`JobCancelled`) and the job ends `cancelled`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from movierec_common.data_model import JOBS, META
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from movierec_trainer.config import TrainerSettings

log = logging.getLogger(__name__)

LOCK_ID = "trainer_lock"


class JobCancelled(Exception):
    """cancel_requested was set; stop between iterations."""


class LeaseLost(Exception):
    """The job was reaped or taken over; this worker must not publish anything."""


class WorkerStopping(Exception):
    """SIGTERM/SIGINT: give the job back to the queue."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (what every job document field holds)."""
    return datetime.now(UTC)


class JobQueue:
    """The `jobs` collection and the singleton lock, seen by one worker (`owner`, written into
    the lock and the lease of every job it claims). `db` is a pymongo Database; every method
    raises PyMongoError when MongoDB is unreachable unless it says otherwise."""

    def __init__(self, db: Any, settings: TrainerSettings, owner: str) -> None:
        self.settings = settings
        self.owner = owner
        self.jobs = db[JOBS]
        self.meta = db[META]

    def lease_until(self) -> datetime:
        """When a lease (or the lock) taken now expires: now + LEASE_SECONDS."""
        return utc_now() + timedelta(seconds=self.settings.lease_seconds)

    def acquire_lock(self) -> bool:
        """Take (or renew) the singleton worker lock; False when another live worker holds it."""
        now = utc_now()
        try:
            doc = self.meta.find_one_and_update(
                {
                    "_id": LOCK_ID,
                    "$or": [
                        {"owner": None},
                        {"owner": self.owner},
                        {"expires_at": {"$lt": now}},
                    ],
                },
                {"$set": {"owner": self.owner, "expires_at": self.lease_until()}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # the lock exists and is held by a live worker
            return False
        return doc is not None and doc.get("owner") == self.owner

    def release_lock(self) -> None:
        """Give the lock up if this worker holds it (errors ignored: it expires anyway)."""
        with contextlib.suppress(PyMongoError):
            self.meta.update_one({"_id": LOCK_ID, "owner": self.owner}, {"$set": {"owner": None}})

    def reap_expired(self) -> int:
        """Running jobs whose lease expired: re-queue (fewer than MAX_ATTEMPTS attempts) or
        fail, with a log_tail line saying which. Returns how many jobs were reaped."""
        n = 0
        now = utc_now()
        for job in self.jobs.find({"status": "running", "lease_expires_at": {"$lt": now}}):
            attempts = int(job.get("attempts") or 0)
            note = f"{now:%H:%M:%S} lease of {job.get('lease_owner')} expired (worker lost)"
            if attempts < self.settings.max_attempts:
                update = {
                    "$set": {
                        "status": "queued",
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "progress": {"phase": "queued (re-queued after lost lease)"},
                    },
                    "$push": {
                        "log_tail": {
                            "$each": [note + "; re-queued"],
                            "$slice": -self.settings.log_tail_lines,
                        }
                    },
                }
            else:
                update = {
                    "$set": {
                        "status": "failed",
                        "finished_at": now,
                        "lease_owner": None,
                        "error": f"lease expired after {attempts} attempt(s): the worker "
                        "running it died or lost MongoDB",
                        "progress": {**(job.get("progress") or {}), "phase": "failed"},
                    },
                    "$push": {
                        "log_tail": {
                            "$each": [note + "; failed"],
                            "$slice": -self.settings.log_tail_lines,
                        }
                    },
                }
            res = self.jobs.update_one(
                {"_id": job["_id"], "status": "running", "lease_expires_at": {"$lt": now}}, update
            )
            if res.modified_count:
                n += 1
                log.warning("reaped job %s (%s)", job["_id"], note)
        return n

    def claim(self) -> dict[str, Any] | None:
        """Atomically move the oldest queued, not cancelled job to running under this worker's
        lease (attempts + 1); the job document after the claim, or None when none is queued."""
        now = utc_now()
        return self.jobs.find_one_and_update(
            {"status": "queued", "cancel_requested": {"$ne": True}},
            {
                "$set": {
                    "status": "running",
                    "started_at": now,
                    "lease_owner": self.owner,
                    "lease_expires_at": self.lease_until(),
                    "progress": {"phase": "starting"},
                    "error": None,
                },
                "$inc": {"attempts": 1},
            },
            sort=[("created_at", 1), ("_id", 1)],
            return_document=ReturnDocument.AFTER,
        )

    def lease(self, job: dict[str, Any], stop_event: threading.Event) -> JobLease:
        """The lease on `job`, a document `claim` returned (its heartbeat not started yet)."""
        return JobLease(self, job, stop_event)


class JobLease:
    """A claimed job while this worker runs it: every write to its document is conditional on
    the lease (`lease_owner` = this worker, status running), so a reaped job is never written
    again. Used as a context manager: the heartbeat thread renews the lease and the lock every
    HEARTBEAT_SECONDS inside the `with` block and is stopped (joined, bounded) on exit.

    `say`, `phase` and `progress` are what a retrain reports to (retrain.Reporter); `phase`
    and `progress` raise LeaseLost, JobCancelled or WorkerStopping to stop the run between
    iterations."""

    def __init__(self, queue: JobQueue, job: dict[str, Any], stop_event: threading.Event) -> None:
        self.queue = queue
        self.job = job
        self.job_id = job["_id"]
        self.stop_event = stop_event
        self.lost = threading.Event()  # a conditional write found the job no longer ours
        self._done = threading.Event()
        self._phase = "starting"
        self._heartbeat = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    @property
    def queue_seconds(self) -> float:
        """Seconds the job waited in the queue (created_at → started_at), 0 if unknown."""
        job = self.job
        if job.get("created_at") and job.get("started_at"):
            return (job["started_at"] - job["created_at"]).total_seconds()
        return 0.0

    def __enter__(self) -> JobLease:
        self._heartbeat.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._heartbeat.join(timeout=5)

    def write(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """Apply `update` to the job if still leased to this worker; the document after it, or
        None (and `lost` set) when the lease was lost."""
        doc = self.queue.jobs.find_one_and_update(
            {"_id": self.job_id, "lease_owner": self.queue.owner, "status": "running"},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            self.lost.set()
        return doc

    def say(self, msg: str) -> None:
        """Log `msg` and append it, timestamped, to the job's log_tail (last LOG_TAIL_LINES)."""
        line = f"{utc_now():%H:%M:%S} {msg}"
        log.info("job %s: %s", self.job_id, msg)
        self.write({"$push": {"log_tail": {"$each": [line], "$slice": -self._tail_lines}}})

    @property
    def _tail_lines(self) -> int:
        return self.queue.settings.log_tail_lines

    def _beat(self) -> None:
        while not self._done.wait(self.queue.settings.heartbeat_seconds):
            try:
                if self.write({"$set": {"lease_expires_at": self.queue.lease_until()}}) is None:
                    return
                self.queue.acquire_lock()
            except PyMongoError as exc:
                log.warning("heartbeat failed: %s", exc)

    def check(self, doc: dict[str, Any] | None) -> None:
        """Raise LeaseLost, JobCancelled or WorkerStopping when the run must stop, given the
        document a write returned."""
        if self.lost.is_set() or doc is None:
            raise LeaseLost(f"job {self.job_id} is no longer leased to {self.queue.owner}")
        if doc.get("cancel_requested"):
            raise JobCancelled("cancelled by request")
        if self.stop_event.is_set():
            raise WorkerStopping("worker is stopping")

    def phase(self, name: str) -> None:
        """Record the run's phase in `progress.phase` (and the log); may raise like `check`."""
        self._phase = name
        self.check(self.write({"$set": {"progress.phase": name}}))
        self.say(f"phase {name}")

    def step(self, fields: dict[str, Any]) -> None:
        """Record a long phase's progress `fields` (set on the job, e.g. `progress.read`); may
        raise like `check`, so a cancel stops the phase between two steps."""
        self.check(self.write({"$set": fields}))

    def progress(self, model: str, entry: dict) -> None:
        """Record one fit iteration (`entry`: iteration, of, train_rmse, valid_rmse, seconds)
        in `progress` and the log_tail; non-finite RMSEs are stored as null. May raise like
        `check` (this is how a cancel stops a run between iterations)."""
        p = {
            "phase": self._phase,
            "model": model,
            "iteration": entry["iteration"],
            "of": entry["of"],
            "train_rmse": entry.get("train_rmse"),
            "valid_rmse": entry.get("valid_rmse"),
            "seconds": entry.get("seconds"),
        }
        p = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.items()
        }
        line = (
            f"{utc_now():%H:%M:%S} {model} {entry['iteration']}/{entry['of']} train RMSE "
            f"{p['train_rmse']:.4f}"
            + (f" valid RMSE {p['valid_rmse']:.4f}" if p["valid_rmse"] is not None else "")
        )
        self.check(
            self.write(
                {
                    "$set": {"progress": p},
                    "$push": {"log_tail": {"$each": [line], "$slice": -self._tail_lines}},
                }
            )
        )

    def complete(self, fields: dict[str, Any]) -> None:
        """Set the final `fields` (status, metrics, …) if the job is still this worker's."""
        self.queue.jobs.update_one(
            {"_id": self.job_id, "lease_owner": self.queue.owner}, {"$set": fields}
        )

    def finish(self, status: str, error: str) -> None:
        """End the job `status` (failed, cancelled) with `error` as its reason."""
        self.complete(
            {
                "status": status,
                "finished_at": utc_now(),
                "error": error,
                "lease_owner": None,
                "progress.phase": status,
                "phases.queue_s": self.queue_seconds,
            }
        )
        log.info("job %s %s: %s", self.job_id, status, error)

    def requeue(self) -> None:
        """Give the job back to the queue (the worker is stopping); its attempt still counts."""
        self.complete(
            {
                "status": "queued",
                "lease_owner": None,
                "lease_expires_at": None,
                "progress": {"phase": "queued (worker stopped)"},
            }
        )
