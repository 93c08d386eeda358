"""One retrain run, the pipeline every retrain goes through (the worker's jobs and the
`retrain` command alike): snapshot (MongoDB ⊕ CSV → Parquet) → train (Spark when a session is
given, else local) → validate on the active model's holdout protocol → gate (movierec_trainer.gate)
→ publish atomically (CURRENT) or end `rejected`.

Scratch stays bounded: a failed or rejected run's snapshot is removed, and snapshots are pruned
with the model versions that name them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from movierec_common import als, artifacts
from movierec_common.training_params import RetrainParams, TrainingParams

from movierec_trainer.config import TrainerSettings
from movierec_trainer.gate import active_model_info, best_accepted, gate
from movierec_trainer.pipeline import TrainConfig, TrainOutcome, train_job
from movierec_trainer.snapshot import (
    ReadPacing,
    Snapshot,
    prune_snapshots,
    read_snapshot_local,
    remove_snapshot,
    take_snapshot,
)
from movierec_trainer.tune import EASE_REG_CANDIDATES, RANKING_REG_CANDIDATES, REG_CANDIDATES

log = logging.getLogger(__name__)


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


def config_from_params(
    params: TrainingParams, settings: TrainerSettings, engine: str
) -> TrainConfig:
    """The one conversion from validated job parameters (`rank`, `reg`, `iterations`, … as the
    HTTP API, the CLI and job documents give them) to the trainer's configuration; what
    `params` leaves unset comes from the kernel's defaults (holdout 0.2, seed) or `settings`
    (publish_full, spark_partitions). `engine` is "local" or "spark". Raises nothing: the
    bounds were checked when `params` was built (pydantic ValidationError there)."""
    d = als.DEFAULT_EXPLICIT
    return TrainConfig(
        engine=engine,  # type: ignore[arg-type]
        explicit=params.to_explicit(),
        ranking=params.to_ranking(),
        holdout=0.2 if params.holdout is None else params.holdout,
        split_seed=d.seed if params.seed is None else params.seed,
        publish_full=settings.publish_full if params.publish_full is None else params.publish_full,
        num_partitions=settings.spark_partitions,
        # λ given → used as given; left unset → chosen on validation data at every run.
        reg_candidates=REG_CANDIDATES if params.reg is None else None,
        # Likewise the ranking model's λ (and with it the served blend's weights), on the same
        # validation split, so only when the explicit λ is chosen too.
        ranking_reg_candidates=(
            RANKING_REG_CANDIDATES if params.reg is None and params.ranking_reg is None else None
        ),
        # EASE's λ, on the same split, whenever the explicit λ is chosen (no job sets it).
        ease_reg_candidates=EASE_REG_CANDIDATES if params.reg is None else None,
    )


@dataclass
class Reporter:
    """Where a run reports to: the job document (worker) or the console (retrain CLI).

    `progress(model, entry)` gets one fit-history entry per iteration (model "explicit",
    "ranking", or "explicit λ <value>" / "ranking λ <value>" during the λ searches; entry
    keys iteration, of, train_rmse, valid_rmse, seconds) and may raise to stop the run between
    iterations;
    `phase(name)` is called at each phase (snapshot, tune, train, validate, refit, publish);
    `log(line)` gets human-readable lines; `step(fields)` a long phase's progress as job fields
    (`progress.read`, `progress.expected` during the snapshot's MongoDB read) and may raise
    like `progress`."""

    progress: Callable[[str, dict], None] = lambda _m, _e: None
    phase: Callable[[str], None] = lambda _p: None
    log: Callable[[str], None] = lambda msg: log.info("%s", msg)
    step: Callable[[dict], None] = lambda _f: None


def _known_users(
    model_dir: Path, active: Mapping[str, Any] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The active model's users and their rating counts, which place the snapshot read's
    range cuts; None (the read walks without them) when there is no model or it has no rated
    lists."""
    version = None if active is None else active.get("version")
    if not version:
        return None
    try:
        return artifacts.user_rating_counts(model_dir, str(version))
    except artifacts.ArtifactError as exc:
        log.info("snapshot read without the model's user counts: %s", exc)
        return None


SNAPSHOT_REPORT_SECONDS = 10.0
"""How often the snapshot's MongoDB read reports its progress (a log line and the job fields)."""


def snapshot_pacing(settings: TrainerSettings, reporter: Reporter, expected: int) -> ReadPacing:
    """The snapshot read's pacing (`settings.snapshot_pause_ratio`) and its progress: every
    SNAPSHOT_REPORT_SECONDS a line "read N of ~M ratings" and `reporter.step` (which checks for
    a cancel, so a cancel stops a 20-minute read within a range, not after it)."""
    last = [time.monotonic()]

    def on_range(n: int) -> None:
        if time.monotonic() - last[0] < SNAPSHOT_REPORT_SECONDS:
            return
        last[0] = time.monotonic()
        of = f" of ~{expected:,} ({100 * n / expected:.0f} %)" if expected else ""
        reporter.log(f"snapshot: {n:,}{of} ratings read from MongoDB")
        reporter.step({"progress.read": n, "progress.expected": expected})

    return ReadPacing(settings.snapshot_pause_ratio, on_range)


def run_retrain(
    db: Any,
    settings: TrainerSettings,
    params: RetrainParams | Mapping[str, Any],
    *,
    name: str,
    model_dir: Path,
    spark: Any,
    reporter: Reporter,
) -> RetrainResult:
    """One retrain: snapshot the ratings (MongoDB + CSV per `params`), train with the Spark
    engine when `spark` (a SparkSession) is given (else the local one), evaluate on the active
    model's holdout protocol, gate against the active and the best accepted model and publish
    into `model_dir` if it passes. `db` is the pymongo Database; `name` names the snapshot file
    (and the manifest's job); progress, phases and log lines go to `reporter`. Returns the
    result whether published or rejected. `params` may be a job document's raw `params`: they
    are validated here, with the bounds and messages of the HTTP API.

    Raises pydantic ValidationError (bad `params`, before anything is read),
    TrainingDivergedError (NaN/inf or exploding factors: nothing is published),
    ExecutorLostError (Spark lost the executors holding the blocks), OSError on publish.
    """
    if not isinstance(params, RetrainParams):
        params = RetrainParams.model_validate(params)
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
        pacing=lambda expected: snapshot_pacing(settings, reporter, expected),
        known_users=_known_users(model_dir, active),
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
    params: RetrainParams,
    name: str,
    model_dir: Path,
    spark: Any,
    reporter: Reporter,
    cfg: TrainConfig,
    active: dict[str, Any] | None,
    snap: Snapshot,
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
        genres_of=snap.genres_of,
    )
    phases["tune_s"] = outcome.phases.get("tune_s", 0.0)
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
