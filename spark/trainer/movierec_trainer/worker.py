"""The retraining worker (`python -m movierec_trainer worker`): one loop that composes

* the job queue (movierec_trainer.job_queue: the singleton lock, claim, lease and heartbeat,
  reaper, cancel),
* the retrain triggers (movierec_trainer.triggers: daily schedule, new-ratings threshold),
* the retrain run (movierec_trainer.retrain: snapshot → train → validate → gate → publish),
* the Spark and MongoDB sessions (movierec_trainer.session; the Spark session is rebuilt when
  it can no longer run a job, e.g. after the application was killed or the master restarted).

Each pass: reap expired leases, maybe fire a trigger, take the lock, claim the oldest queued job
and run it to a final status. The `retrain` command runs the same pipeline once
(movierec_trainer.__main__.cmd_retrain).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from movierec_common import als, artifacts
from movierec_common.training_params import validation_message
from pydantic import ValidationError
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from movierec_trainer.config import TrainerSettings
from movierec_trainer.job_queue import (
    JobCancelled,
    JobQueue,
    LeaseLost,
    WorkerStopping,
    utc_now,
)
from movierec_trainer.retrain import Reporter, run_retrain
from movierec_trainer.session import SparkKeeper, mongo
from movierec_trainer.triggers import Triggers

log = logging.getLogger(__name__)


class Worker:
    """The trainer worker: takes the singleton lock, runs the schedule / new-ratings triggers,
    claims queued jobs under a renewed lease, runs them (`run_retrain`) and reaps the jobs of
    workers whose lease expired. `client` defaults to `session.mongo(settings)`."""

    def __init__(self, settings: TrainerSettings, client: MongoClient | None = None) -> None:
        self.settings = settings
        self.client = client or mongo(settings)
        self.db = self.client[settings.mongo_db]
        self.owner = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.queue = JobQueue(self.db, settings, self.owner)
        self.triggers = Triggers(self.db, settings)
        self.sessions = SparkKeeper(settings)
        self.stop_event = threading.Event()
        self._last_trigger_check = 0.0

    def run_job(self, job: dict[str, Any]) -> None:
        """Run one claimed job to a final status (succeeded, rejected, failed, cancelled, or
        back to queued when the worker stops), renewing the lease from a heartbeat thread and
        streaming progress and log lines into the job document. Job parameters are validated
        again (movierec_common.training_params); a bad document fails with the API's message.
        Raises nothing but PyMongoError from the final writes."""
        job_id = job["_id"]
        with self.queue.lease(job, self.stop_event) as lease:
            try:
                lease.say(f"claimed by {self.owner} (attempt {job.get('attempts')})")
                spark = self.sessions.get()
                result = run_retrain(  # validates the document's params (ValidationError)
                    self.db,
                    self.settings,
                    job.get("params") or {},
                    name=f"job-{job_id}",
                    model_dir=self.settings.model_dir,
                    spark=spark,
                    reporter=Reporter(
                        progress=lease.progress, phase=lease.phase, log=lease.say, step=lease.step
                    ),
                )
                if lease.lost.is_set():
                    raise LeaseLost("lease lost during publish")
                final = {
                    "status": result.status,
                    "finished_at": utc_now(),
                    "phases": {"queue_s": lease.queue_seconds, **result.phases},
                    "metrics": {**result.metrics, "gate": result.gate},
                    "model_version": result.version,
                    "load": result.load,
                    "progress.phase": result.status,
                    "lease_owner": None,
                }
                if result.status == "rejected":
                    final["error"] = "rejected by the validation gate: " + result.gate["reason"]
                lease.complete(final)
                log.info("job %s %s (version %s)", job_id, result.status, result.version)
            except LeaseLost as exc:
                log.error("job %s abandoned: %s", job_id, exc)
            except JobCancelled:
                lease.finish("cancelled", "cancelled while running")
            except WorkerStopping:
                lease.requeue()
            except Exception as exc:  # every other failure ends the job with its reason
                log.exception("job %s failed", job_id)
                reason = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, als.TrainingDivergedError):
                    reason = f"training diverged: {exc}"
                elif isinstance(exc, ValidationError):  # a job document written around the API
                    reason = validation_message(exc.errors())
                lease.finish("failed", reason[:2000])

    def step(self) -> bool:
        """One pass: reap, maybe trigger, maybe run one job. True if a job ran. Raises
        PyMongoError when MongoDB is unreachable (trigger failures are only logged)."""
        self.queue.reap_expired()
        if time.monotonic() - self._last_trigger_check >= self.settings.trigger_check_seconds:
            self._last_trigger_check = time.monotonic()
            try:
                self.triggers.check()
            except (PyMongoError, ValueError, OSError) as exc:
                log.warning("trigger check failed: %s", exc)
        if not self.queue.acquire_lock():
            return False
        try:
            job = self.queue.claim()
            if job is None:
                return False
            self.run_job(job)
            return True
        finally:
            self.queue.release_lock()

    def run_forever(self) -> None:
        """Poll until `stop_event` is set: lock, reap, triggers, claim and run; then close."""
        log.info(
            "trainer worker %s polling %s/%s (spark %s)",
            self.owner,
            self.settings.mongo_db,
            self.queue.jobs.name,
            self.settings.spark_master,
        )
        while not self.stop_event.is_set():
            try:
                ran = self.step()
            except PyMongoError as exc:
                log.warning("mongodb unavailable: %s", exc)
                ran = False
            if not ran:
                self.stop_event.wait(self.settings.poll_seconds)
        self.close()

    def close(self) -> None:
        """Stop Spark and close the MongoDB client."""
        self.sessions.close()
        self.client.close()


def run_worker(settings: TrainerSettings) -> int:
    """`python -m movierec_trainer worker`: run the worker until SIGTERM/SIGINT; exit 0."""
    removed = artifacts.clean_leftovers(settings.model_dir)  # a publish killed before a restart
    if removed:
        log.info("removed leftovers of interrupted publishes: %s", ", ".join(removed))
    worker = Worker(settings)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current iteration", signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
    return 0
