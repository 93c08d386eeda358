"""The retraining worker (`python -m movierec_trainer worker`) and `retrain` (the same pipeline,
once, from the command line).

Queue protocol (MongoDB `jobs`, contract 4; no transactions, so it works on SecantusDB and a
standalone mongod alike):

* Claim: `find_one_and_update({status: queued}, {$set: running + lease}, sort created_at)` —
  atomic, so two workers never get the same job. A worker only claims after winning the
  `meta` lock document `trainer_lock` (compare-and-set with an expiry), so at most one retrain
  runs at a time however many workers are started.
* Lease: the running job carries `lease_owner` and `lease_expires_at`; a heartbeat thread
  renews both (and the lock) every HEARTBEAT_SECONDS. If a renewal finds the job no longer
  ours (reaped), the run is abandoned without publishing.
* Reaper: every loop, any `running` job whose lease expired is re-queued if it has been
  attempted fewer than MAX_ATTEMPTS times, else failed with "lease expired". A job never stays
  `running` after its worker died.
* Cancel: `cancel_requested` is read after every iteration (the progress write returns the
  document); the run stops between iterations and the job ends `cancelled`.

Pipeline of one job: snapshot (MongoDB ⊕ CSV → Parquet) → train on Spark (SPARK_MASTER) →
validate on the seeded holdout → gate (RMSE no worse than the active model's by more than
GATE_TOLERANCE, same protocol) → publish atomically (CURRENT) or end `rejected`.

Triggers: a daily schedule (SCHEDULE=HH:MM UTC, "off" to disable) and a new-ratings threshold
(NEW_RATINGS_THRESHOLD ratings with a timestamp after the active model's created_at). Both
enqueue through the same slot the catalog's POST /api/admin/retrain uses (meta
`retrain_slot`), so a trigger never adds a job while one is queued or running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from movierec_common import als, artifacts
from movierec_common.data_model import RETRAIN_SLOT_ID
from movierec_common.jobs import ACTIVE_STATUSES, SlotBusy, new_job, take_retrain_slot
from movierec_common.training_params import (
    RetrainParams,
    TrainingParams,
    validation_message,
)
from pydantic import ValidationError
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from movierec_trainer.config import TrainerSettings
from movierec_trainer.pipeline import TrainConfig, TrainOutcome, train_job
from movierec_trainer.session import SparkKeeper, make_spark, mongo
from movierec_trainer.snapshot import (
    prune_snapshots,
    read_snapshot_local,
    remove_snapshot,
    take_snapshot,
)

log = logging.getLogger(__name__)

JOBS, META, RATINGS = "jobs", "meta", "ratings"
LOCK_ID = "trainer_lock"
SCHEDULE_ID = "trainer_schedule"
ACTIVE = list(ACTIVE_STATUSES)


class JobCancelled(Exception):
    """cancel_requested was set; stop between iterations."""


class LeaseLost(Exception):
    """The job was reaped or taken over; this worker must not publish anything."""


class WorkerStopping(Exception):
    """SIGTERM/SIGINT: give the job back to the queue."""


@dataclass
class RetrainResult:
    """Outcome of one retrain run: status, the published version (None when rejected), the
    holdout metrics, phase seconds and the gate's verdict."""

    status: str  # succeeded | rejected
    version: str | None
    metrics: dict[str, Any]
    phases: dict[str, float]
    gate: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)  # the loader's summary of the snapshot


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------- pipeline


def config_from_params(params: TrainingParams, settings: TrainerSettings, engine: str):
    """The one conversion from validated job parameters to the trainer's configuration."""
    d = als.DEFAULT_EXPLICIT
    return TrainConfig(
        engine=engine,  # type: ignore[arg-type]
        explicit=params.to_explicit(),
        ranking=params.to_ranking(),
        holdout=0.2 if params.holdout is None else params.holdout,
        split_seed=d.seed if params.seed is None else params.seed,
        publish_full=settings.publish_full if params.publish_full is None else params.publish_full,
        num_partitions=settings.spark_partitions,
    )


def active_model_info(model_dir: Path) -> dict[str, Any] | None:
    """The active version's manifest (metrics and holdout protocol), or None."""
    version = artifacts.current_version(model_dir)
    if version is None:
        return None
    for m in artifacts.list_versions(model_dir):
        if m.get("version") == version:
            return m
    return None


def _protocol(manifest: dict[str, Any]) -> tuple:
    ev = manifest.get("evaluation") or {}
    return (ev.get("protocol"), ev.get("fraction"), ev.get("seed"))


def best_accepted(model_dir: Path, like: dict[str, Any] | None) -> tuple[float, str] | None:
    """(RMSE, version) of the best model ever accepted under `like`'s holdout protocol.

    Every published version passed the gate; each also records in its manifest
    (`job.gate.best_rmse`) the best RMSE known when it was accepted, so the best survives the
    pruning of old versions. Versions evaluated another way are not comparable and are skipped.
    """
    if like is None:
        return None
    want = _protocol(like)
    best: tuple[float, str] | None = None
    for m in artifacts.list_versions(model_dir):
        if "error" in m or _protocol(m) != want:
            continue
        recorded = ((m.get("job") or {}).get("gate") or {}).get("best_rmse")
        candidates = [
            (value, source)
            for value, source in (
                ((m.get("metrics") or {}).get("rmse"), m.get("version")),
                (recorded, ((m.get("job") or {}).get("gate") or {}).get("best_version")),
            )
            if isinstance(value, int | float) and math.isfinite(value)
        ]
        for value, source in candidates:
            if best is None or float(value) < best[0]:
                best = (float(value), str(source or m.get("version")))
    return best


def gate(
    new_metrics: dict[str, Any],
    active: dict[str, Any] | None,
    tolerance: float,
    best: tuple[float, str] | None = None,
) -> dict[str, Any]:
    """Accept unless the new holdout RMSE is worse than the active one's by > tolerance, or
    worse than the best accepted model's (`best`, see best_accepted) by > tolerance: without
    the second check, retrains each up to `tolerance` worse could slide without limit."""
    if active is None:
        return {"passed": True, "reason": "no active model"}
    old = (active.get("metrics") or {}).get("rmse")
    new = new_metrics.get("rmse")
    info = {
        "active_version": active.get("version"),
        "active_rmse": old,
        "new_rmse": new,
        "tolerance": tolerance,
    }
    if old is None or new is None:
        return {**info, "passed": True, "reason": "no holdout RMSE to compare"}
    best_rmse, best_version = best if best is not None else (float(old), active.get("version"))
    best_rmse = min(best_rmse, float(old))
    info |= {
        "best_version": best_version if best_rmse < float(old) else active.get("version"),
        # Recorded in the published manifest: the best known once this model is accepted.
        "best_rmse": min(best_rmse, float(new)),
    }
    limit = float(old) * (1.0 + tolerance)
    best_limit = best_rmse * (1.0 + tolerance)
    if float(new) > limit:
        reason = (
            f"new RMSE {new:.4f} is worse than the active model's {old:.4f} by more than "
            f"{tolerance:.0%} (limit {limit:.4f})"
        )
        return {**info, "passed": False, "reason": reason}
    if float(new) > best_limit:
        reason = (
            f"new RMSE {new:.4f} is worse than the best accepted model's {best_rmse:.4f} "
            f"({info['best_version']}) by more than {tolerance:.0%} (limit {best_limit:.4f})"
        )
        return {**info, "passed": False, "reason": reason}
    reason = (
        f"new RMSE {new:.4f} ≤ {min(limit, best_limit):.4f} (active {old:.4f}, best "
        f"{best_rmse:.4f}, + {tolerance:.0%})"
    )
    return {**info, "passed": True, "reason": reason}


@dataclass
class Reporter:
    """Where a run reports to: the job document (worker) or the console (retrain CLI)."""

    progress: Callable[[str, dict], None] = lambda _m, _e: None
    phase: Callable[[str], None] = lambda _p: None
    log: Callable[[str], None] = lambda msg: log.info("%s", msg)


def run_retrain(
    db: Any,
    settings: TrainerSettings,
    params: RetrainParams,
    *,
    name: str,
    model_dir: Path,
    spark: Any,
    reporter: Reporter,
) -> RetrainResult:
    """One retrain: snapshot the ratings (MongoDB + CSV per `params`), train with the Spark
    engine when `spark` is given (else the local one), evaluate on the active model's holdout
    protocol, gate against the active model and publish into `model_dir` if it passes.

    Raises TrainingDivergedError (NaN/inf or exploding factors: nothing is published),
    ExecutorLostError (Spark lost the executors holding the blocks), OSError on publish.
    """
    phases: dict[str, float] = {}
    engine = "spark" if spark is not None else "local"
    cfg = config_from_params(params, settings, engine)
    active = active_model_info(model_dir)
    if active is not None:
        ev = active.get("evaluation") or {}
        if ev.get("protocol") == "random" and ev.get("fraction"):
            # The gate compares like with like: the active model's holdout protocol.
            cfg = replace(
                cfg,
                holdout=float(ev["fraction"]),
                split_seed=int(ev.get("seed", cfg.split_seed)),
            )
    reporter.phase("snapshot")
    t0 = time.perf_counter()
    snap = take_snapshot(
        db,
        settings.work_dir,
        name,
        db_only=params.db_only,
        csv_path=params.csv_path,
        data_dir=settings.data_dir,
        strict=settings.strict_load,
    )
    for line in snap.summary.lines():
        reporter.log(f"load: {line}")
    try:
        result = _train_gate_publish(
            settings, params, name, model_dir, spark, reporter, cfg, active, snap, phases, t0
        )
    except BaseException:
        remove_snapshot(snap.path)  # a failed job's snapshot is never needed again
        raise
    if result.status != "succeeded":
        remove_snapshot(snap.path)  # nor a rejected one's
    # Scratch stays bounded: snapshots go with the versions that name them (pruned above).
    removed = prune_snapshots(settings.work_dir, model_dir, settings.snapshot_min_age_seconds)
    if removed:
        reporter.log(f"pruned {len(removed)} old snapshot(s)")
    return result


def _train_gate_publish(
    settings: TrainerSettings,
    params: dict[str, Any],
    name: str,
    model_dir: Path,
    spark: Any,
    reporter: Reporter,
    cfg: TrainConfig,
    active: dict[str, Any] | None,
    snap: Any,
    phases: dict[str, float],
    t0: float,
) -> RetrainResult:
    """The rest of `run_retrain` once the snapshot exists (`t0`: when it was started)."""
    # The driver wrote the snapshot and reads it back itself: the engines ship each block to
    # the executors, so the file never needs a filesystem shared with the Spark workers (in
    # Compose they are other containers; reading it through Spark failed there).
    ratings = read_snapshot_local(snap.path)
    phases["snapshot_s"] = time.perf_counter() - t0
    reporter.log(
        f"snapshot: {snap.n_ratings} ratings ({snap.n_db} from MongoDB, {snap.n_csv} from CSV)"
        f" → {snap.path.name}"
    )
    outcome: TrainOutcome = train_job(
        ratings,
        cfg,
        spark_context=None if spark is None else spark.sparkContext,
        progress=reporter.progress,
        source={**snap.source, "snapshot": str(snap.path)},
        phase=reporter.phase,
    )
    phases["train_s"] = outcome.phases.get("train_s", 0.0) + outcome.phases.get("refit_s", 0.0)
    phases["validate_s"] = outcome.phases.get("validate_s", 0.0)
    m = outcome.metrics
    reporter.log(
        "validation: RMSE {} MAE {} NDCG@10 {} (popularity {})".format(
            *(
                ("-" if m.get(k) is None else f"{m[k]:.4f}")
                for k in ("rmse", "mae", "ndcg_at_10", "popularity_ndcg_at_10")
            )
        )
    )
    verdict = gate(m, active, settings.gate_tolerance, best_accepted(model_dir, active))
    reporter.log(f"gate: {verdict['reason']}")
    if not verdict["passed"]:
        return RetrainResult("rejected", None, m, phases, verdict, snap.summary.to_dict())
    reporter.phase("publish")
    t0 = time.perf_counter()
    job = {"name": name, "params": params.model_dump(exclude_none=True), "gate": verdict}
    manifest = {**outcome.manifest, "job": job}
    version = artifacts.save_model(model_dir, outcome.arrays, manifest, keep=settings.keep_versions)
    phases["publish_s"] = time.perf_counter() - t0
    reporter.log(f"published {version}")
    return RetrainResult("succeeded", version, m, phases, verdict, snap.summary.to_dict())


# ---------------------------------------------------------------------------------- retrain CLI


def cmd_retrain(args: Any, settings: TrainerSettings) -> int:
    """`python -m movierec_trainer retrain`: one retrain run from the command line; exit
    status 0 when published, 1 when rejected by the gate."""
    from movierec_trainer.__main__ import params_from_args
    from movierec_trainer.pipeline import ConsoleProgress

    params = params_from_args(args)
    if args.csv_path is not None and args.csv_path.is_absolute():
        # On the command line the operator may point anywhere; the DATA_DIR fence is for HTTP.
        settings = settings.model_copy(update={"data_dir": args.csv_path.parent})
    engine = args.engine or "spark"
    model_dir = args.output or settings.model_dir
    client = mongo(settings)
    spark = make_spark(settings, args.spark_master) if engine == "spark" else None
    try:
        cfg = config_from_params(params, settings, engine)
        with ConsoleProgress(cfg) as progress:
            result = run_retrain(
                client[settings.mongo_db],
                settings,
                params,
                name=f"cli-{_now():%Y%m%dT%H%M%S}",
                model_dir=model_dir,
                spark=spark,
                reporter=Reporter(progress=progress),
            )
    finally:
        if spark is not None:
            spark.stop()
        client.close()
    out = {
        "status": result.status,
        "version": result.version,
        **{
            k: result.metrics.get(k)
            for k in (
                "rmse",
                "mae",
                "train_seconds",
                "ndcg_at_10",
                "precision_at_10",
                "recall_at_10",
                "coverage_at_10",
                "popularity_ndcg_at_10",
            )
        },
        "gate": result.gate,
        "phases": result.phases,
        "load": result.load,
    }
    if args.json:
        print(json.dumps(out, default=str), flush=True)
    else:
        for k, v in out.items():
            print(f"{k:>24}: {v}")
    return 0 if result.status == "succeeded" else 4


# ---------------------------------------------------------------------------------- the worker


class Worker:
    """The trainer worker: takes the singleton lock, runs the schedule / new-ratings triggers,
    claims queued jobs under a renewed lease, runs them (`run_retrain`) and reaps the jobs of
    workers whose lease expired."""

    def __init__(self, settings: TrainerSettings, client: MongoClient | None = None) -> None:
        self.settings = settings
        self.client = client or mongo(settings)
        self.db = self.client[settings.mongo_db]
        self.jobs = self.db[JOBS]
        self.meta = self.db[META]
        self.owner = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = threading.Event()
        self.sessions = SparkKeeper(settings)
        self._last_trigger_check = 0.0

    # -- lock, lease, reaper ---------------------------------------------------------------

    def _lease_until(self) -> datetime:
        return _now() + timedelta(seconds=self.settings.lease_seconds)

    def acquire_lock(self) -> bool:
        """Take (or renew) the singleton worker lock; False when another live worker holds it."""
        now = _now()
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
                {"$set": {"owner": self.owner, "expires_at": self._lease_until()}},
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
        """Running jobs whose lease expired: re-queue (attempts left) or fail."""
        n = 0
        now = _now()
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
        """Atomically move the oldest queued job to running under this worker's lease."""
        now = _now()
        return self.jobs.find_one_and_update(
            {"status": "queued", "cancel_requested": {"$ne": True}},
            {
                "$set": {
                    "status": "running",
                    "started_at": now,
                    "lease_owner": self.owner,
                    "lease_expires_at": self._lease_until(),
                    "progress": {"phase": "starting"},
                    "error": None,
                },
                "$inc": {"attempts": 1},
            },
            sort=[("created_at", 1), ("_id", 1)],
            return_document=ReturnDocument.AFTER,
        )

    # -- triggers --------------------------------------------------------------------------

    def enqueue(self, trigger: str, params: dict[str, Any] | None = None) -> dict | None:
        """Insert a queued job unless one is queued or running (the catalog's slot rule)."""
        if self.jobs.find_one({"status": {"$in": ACTIVE}}) is not None:
            return None
        slot = self.meta.find_one({"_id": RETRAIN_SLOT_ID})
        holder = None
        if slot is not None and slot.get("job_id") is not None:
            holder = self.jobs.find_one({"_id": slot["job_id"]})
        job_id = ObjectId()
        now = _now()
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

    def check_triggers(self) -> str | None:
        """Enqueue a job when the daily schedule slot passed or enough new ratings arrived;
        returns the trigger that fired, if any."""
        now = _now()
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
            n_new = self.db[RATINGS].count_documents({"timestamp": {"$gt": since}}, limit=threshold)
            if n_new >= threshold and self.enqueue("threshold", {}):
                return "threshold"
        return None

    # -- running a job ---------------------------------------------------------------------

    def run_job(self, job: dict[str, Any]) -> None:
        """Run one claimed job to a final status (succeeded, rejected, failed, cancelled, or
        back to queued when the worker stops), renewing the lease from a heartbeat thread and
        streaming progress and log lines into the job document. Job parameters are validated
        again (movierec_common.training_params); a bad document fails with the API's message."""
        job_id = job["_id"]
        s = self.settings
        tail: deque[str] = deque(maxlen=s.log_tail_lines)
        lost = threading.Event()
        done = threading.Event()

        def write(update: dict[str, Any]) -> dict[str, Any] | None:
            doc = self.jobs.find_one_and_update(
                {"_id": job_id, "lease_owner": self.owner, "status": "running"},
                update,
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                lost.set()
            return doc

        def say(msg: str) -> None:
            line = f"{_now():%H:%M:%S} {msg}"
            tail.append(line)
            log.info("job %s: %s", job_id, msg)
            write({"$push": {"log_tail": {"$each": [line], "$slice": -s.log_tail_lines}}})

        def heartbeat() -> None:
            while not done.wait(s.heartbeat_seconds):
                try:
                    if write({"$set": {"lease_expires_at": self._lease_until()}}) is None:
                        return
                    self.acquire_lock()
                except PyMongoError as exc:
                    log.warning("heartbeat failed: %s", exc)

        def check(doc: dict[str, Any] | None) -> None:
            if lost.is_set() or doc is None:
                raise LeaseLost(f"job {job_id} is no longer leased to {self.owner}")
            if doc.get("cancel_requested"):
                raise JobCancelled("cancelled by request")
            if self.stop_event.is_set():
                raise WorkerStopping("worker is stopping")

        current_phase = {"name": "starting"}

        def phase(name: str) -> None:
            current_phase["name"] = name
            check(write({"$set": {"progress.phase": name}}))
            say(f"phase {name}")

        def progress(model: str, entry: dict) -> None:
            p = {
                "phase": current_phase["name"],
                "model": model,
                "iteration": entry["iteration"],
                "of": entry["of"],
                "train_rmse": entry.get("train_rmse"),
                "valid_rmse": entry.get("valid_rmse"),
                "seconds": entry.get("seconds"),
            }
            p = {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in p.items()
            }
            line = (
                f"{_now():%H:%M:%S} {model} {entry['iteration']}/{entry['of']} train RMSE "
                f"{p['train_rmse']:.4f}"
                + (f" valid RMSE {p['valid_rmse']:.4f}" if p["valid_rmse"] is not None else "")
            )
            check(
                write(
                    {
                        "$set": {"progress": p},
                        "$push": {"log_tail": {"$each": [line], "$slice": -s.log_tail_lines}},
                    }
                )
            )

        hb = threading.Thread(target=heartbeat, name="lease-heartbeat", daemon=True)
        hb.start()
        queue_s = 0.0
        if job.get("created_at") and job.get("started_at"):
            queue_s = (job["started_at"] - job["created_at"]).total_seconds()
        try:
            say(f"claimed by {self.owner} (attempt {job.get('attempts')})")
            spark = self.sessions.get()
            params = RetrainParams.model_validate(job.get("params") or {})
            result = run_retrain(
                self.db,
                s,
                params,
                name=f"job-{job_id}",
                model_dir=s.model_dir,
                spark=spark,
                reporter=Reporter(progress=progress, phase=phase, log=say),
            )
            if lost.is_set():
                raise LeaseLost("lease lost during publish")
            phases = {"queue_s": queue_s, **result.phases}
            metrics = {**result.metrics, "gate": result.gate}
            final = {
                "status": result.status,
                "finished_at": _now(),
                "phases": phases,
                "metrics": metrics,
                "model_version": result.version,
                "load": result.load,
                "progress.phase": result.status,
                "lease_owner": None,
            }
            if result.status == "rejected":
                final["error"] = "rejected by the validation gate: " + result.gate["reason"]
            self.jobs.update_one({"_id": job_id, "lease_owner": self.owner}, {"$set": final})
            log.info("job %s %s (version %s)", job_id, result.status, result.version)
        except LeaseLost as exc:
            log.error("job %s abandoned: %s", job_id, exc)
        except JobCancelled:
            self._finish(job_id, "cancelled", "cancelled while running", queue_s)
        except WorkerStopping:
            self.jobs.update_one(
                {"_id": job_id, "lease_owner": self.owner},
                {
                    "$set": {
                        "status": "queued",
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "progress": {"phase": "queued (worker stopped)"},
                    }
                },
            )
        except Exception as exc:  # every other failure ends the job with its reason
            log.exception("job %s failed", job_id)
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, als.TrainingDivergedError):
                reason = f"training diverged: {exc}"
            elif isinstance(exc, ValidationError):  # a job document written around the API
                reason = validation_message(exc.errors())
            self._finish(job_id, "failed", reason[:2000], queue_s)
        finally:
            done.set()
            hb.join(timeout=5)

    def _finish(self, job_id: Any, status: str, error: str, queue_s: float) -> None:
        self.jobs.update_one(
            {"_id": job_id, "lease_owner": self.owner},
            {
                "$set": {
                    "status": status,
                    "finished_at": _now(),
                    "error": error,
                    "lease_owner": None,
                    "progress.phase": status,
                    "phases.queue_s": queue_s,
                }
            },
        )
        log.info("job %s %s: %s", job_id, status, error)

    # -- main loop -------------------------------------------------------------------------

    def step(self) -> bool:
        """One pass: reap, maybe trigger, maybe run one job. True if a job ran."""
        self.reap_expired()
        if time.monotonic() - self._last_trigger_check >= self.settings.trigger_check_seconds:
            self._last_trigger_check = time.monotonic()
            try:
                self.check_triggers()
            except (PyMongoError, ValueError, OSError) as exc:
                log.warning("trigger check failed: %s", exc)
        if not self.acquire_lock():
            return False
        try:
            job = self.claim()
            if job is None:
                return False
            self.run_job(job)
            return True
        finally:
            self.release_lock()

    def run_forever(self) -> None:
        """Poll until `stop_event` is set: lock, reap, triggers, claim and run."""
        log.info(
            "trainer worker %s polling %s/%s (spark %s)",
            self.owner,
            self.settings.mongo_db,
            JOBS,
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
        """Stop Spark, release the lock and close the MongoDB client."""
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
