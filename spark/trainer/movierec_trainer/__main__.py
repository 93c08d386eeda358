"""`python -m movierec_trainer train|retrain|worker` — the trainer's command line (contract).

With `--json` the LAST line on stdout is one JSON object other tools parse; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec_common import als
from movierec_common.loader import MalformedRowError
from movierec_common.logs import setup_logging
from movierec_common.training_params import RetrainParams, validation_message
from pydantic import ValidationError

from movierec_trainer.blas import cap_blas_threads
from movierec_trainer.config import TrainerSettings

log = logging.getLogger("movierec_trainer")

JSON_KEYS = (
    "rmse",
    "mae",
    "train_seconds",
    "n_ratings",
    "version",
    "ndcg_at_10",
    "precision_at_10",
    "recall_at_10",
    "coverage_at_10",
    "popularity_ndcg_at_10",
)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """The model options; None = not given (the kernel's default applies). Their bounds are
    checked by movierec_common.training_params, like every other entrance's."""
    d, r = als.DEFAULT_EXPLICIT, als.DEFAULT_IMPLICIT
    p.add_argument("--engine", choices=["local", "spark"], default=None)
    p.add_argument("--spark-master", default=None, help="default: SPARK_MASTER or local[2]")
    p.add_argument("--partitions", type=int, default=None, help="Spark blocks per side")
    p.add_argument("--rank", type=int, default=None, help=f"default {d.rank}")
    p.add_argument(
        "--reg",
        type=float,
        default=None,
        help="λ, scaled by each row's count (default: chosen on validation data carved from "
        "the training ratings, among movierec_trainer.tune.REG_CANDIDATES)",
    )
    p.add_argument("--bias-reg", type=float, default=None, help=f"default {d.bias_reg}")
    p.add_argument("--iterations", type=int, default=None, help=f"default {d.iterations}")
    p.add_argument("--seed", type=int, default=None, help=f"default {d.seed}")
    p.add_argument("--holdout", type=float, default=None, help="0 = train on all ratings (0.2)")
    p.add_argument("--ranking-rank", type=int, default=None, help=f"default {r.rank}")
    p.add_argument("--ranking-reg", type=float, default=None, help=f"default {r.reg}")
    p.add_argument("--ranking-alpha", type=float, default=None, help=f"default {r.alpha}")
    p.add_argument("--ranking-iterations", type=int, default=None, help=f"default {r.iterations}")
    p.add_argument("--no-ranking", action="store_true", help="explicit model only")
    p.add_argument(
        "--publish-full",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the holdout evaluation, refit on all ratings and publish that "
        "(default: off for train, on for retrain)",
    )
    p.add_argument("--output", type=Path, default=None, help="MODEL_DIR to publish into")
    p.add_argument("--json", action="store_true", help="print one JSON object as last line")


_MODEL_FIELDS = (
    "rank",
    "reg",
    "bias_reg",
    "iterations",
    "seed",
    "holdout",
    "ranking_rank",
    "ranking_reg",
    "ranking_alpha",
    "ranking_iterations",
    "publish_full",
)


def params_from_args(args: argparse.Namespace) -> RetrainParams:
    """The command line's options as the shared, validated job parameters (ValidationError on
    a value out of bounds; `main` turns it into the shared message and exit status 2)."""
    given: dict[str, Any] = {k: getattr(args, k) for k in _MODEL_FIELDS}
    given["no_ranking"] = bool(args.no_ranking) or None
    if getattr(args, "db_only", False):
        given["db_only"] = True
    csv_path = getattr(args, "csv_path", None)
    if csv_path is not None:
        given["csv_path"] = str(csv_path)
    return RetrainParams(**{k: v for k, v in given.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    """The `train`, `retrain` and `worker` subcommands and their options."""
    parser = argparse.ArgumentParser(prog="python -m movierec_trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from MovieLens CSVs")
    train.add_argument("--data-dir", type=Path, default=None)
    _add_model_args(train)
    train.add_argument(
        "--no-ease",
        action="store_true",
        help="no EASE model (list: ranking ALS alone; stars: explicit ALS alone)",
    )
    retrain = sub.add_parser("retrain", help="MongoDB ratings merged with the CSV, once")
    retrain.add_argument("--db-only", action="store_true")
    retrain.add_argument("--csv-path", type=Path, default=None, help="ratings.csv or its dir")
    _add_model_args(retrain)
    sub.add_parser("worker", help="run the job queue and the retrain triggers")
    return parser


def config_from_args(args: argparse.Namespace, settings: TrainerSettings, publish_full: bool):
    """`train`'s configuration: the shared conversion, with `train`'s own publish default."""
    from movierec_trainer.retrain import config_from_params

    params = params_from_args(args)
    if params.publish_full is None:
        params = params.model_copy(update={"publish_full": publish_full})
    cfg = config_from_params(params, settings, args.engine or "local")
    if args.partitions:
        cfg = replace(cfg, num_partitions=args.partitions)
    if getattr(args, "no_ease", False):
        cfg = replace(cfg, ease=None)
    return cfg


def summary(outcome: Any, version: str | None) -> dict[str, Any]:
    """`train`'s report: the JSON_KEYS first, then every other metric, the load summary and
    the phase seconds (`outcome` is a pipeline.TrainOutcome; `version` None when unpublished)."""
    m = outcome.metrics
    out = {key: m.get(key) for key in JSON_KEYS}
    out["n_ratings"] = outcome.manifest["data"]["n_ratings"]
    out["version"] = version
    out.update({k: v for k, v in m.items() if k not in out})
    out["published"] = outcome.manifest["evaluation"]["published"]
    out["load"] = outcome.manifest["data"].get("load")
    out["phases"] = outcome.phases
    return out


def cmd_train(args: argparse.Namespace, settings: TrainerSettings) -> int:
    """`python -m movierec_trainer train`: fit on a MovieLens CSV directory, publish into
    `--output` when given; exit 0 (main maps the errors it raises to exit statuses)."""
    from movierec_common import artifacts

    from movierec_trainer import data as tdata
    from movierec_trainer.pipeline import ConsoleProgress, train_job
    from movierec_trainer.session import make_spark

    cfg = config_from_args(args, settings, publish_full=False)
    data_dir = args.data_dir or settings.data_dir
    ds = tdata.load_dataset_dir(data_dir, "raise" if settings.strict_load else "skip")
    ratings = ds.ratings
    for line in ds.summary.lines():
        print(f"load: {line}", file=sys.stderr, flush=True)
    log.info("loaded %d ratings from %s (%s layout)", len(ratings), data_dir, ds.layout)
    spark = None
    if cfg.engine == "spark":
        spark = make_spark(settings, args.spark_master)  # the same session the worker builds
    try:
        with ConsoleProgress(cfg) as progress:
            outcome = train_job(
                ratings,
                cfg,
                spark_context=None if spark is None else spark.sparkContext,
                progress=progress,
                source={"source": "csv", "path": str(data_dir), "load": ds.summary.to_dict()},
                genres_of={m.movieId: m.genres for m in ds.movies},
            )
    finally:
        if spark is not None:
            spark.stop()
    version = None
    if args.output is not None:
        version = artifacts.save_model(
            args.output, outcome.arrays, outcome.manifest, keep=settings.keep_versions
        )
        log.info("published model %s to %s", version, args.output)
    _report(outcome, version, args.json)
    return 0


def cmd_retrain(args: argparse.Namespace, settings: TrainerSettings) -> int:
    """`python -m movierec_trainer retrain`: one retrain run from the command line; exit
    status 0 when published, 4 when rejected by the gate (main maps the errors it raises:
    TrainingDivergedError 3, MalformedRowError / FileNotFoundError 2, OSError 4)."""
    from movierec_trainer.pipeline import ConsoleProgress
    from movierec_trainer.retrain import Reporter, run_retrain
    from movierec_trainer.session import make_spark, mongo

    params = params_from_args(args)
    if args.csv_path is not None and args.csv_path.is_absolute():
        # On the command line the operator may point anywhere; the DATA_DIR fence is for HTTP.
        settings = settings.model_copy(update={"data_dir": args.csv_path.parent})
    engine = args.engine or "spark"
    model_dir = args.output or settings.model_dir
    client = mongo(settings)
    spark = make_spark(settings, args.spark_master) if engine == "spark" else None
    try:
        with ConsoleProgress() as progress:  # sized by the run's own progress entries
            result = run_retrain(
                client[settings.mongo_db],
                settings,
                params,
                name=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}",
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


def _report(outcome: Any, version: str | None, as_json: bool) -> None:
    s = summary(outcome, version)
    if as_json:
        print(json.dumps(s, default=str, allow_nan=False), flush=True)
        return
    fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    for key in (*JSON_KEYS, "popularity_coverage_at_10", "published"):
        print(f"{key:>24}: {fmt(s.get(key))}")


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (bad parameters: exit 2 with the HTTP API's message) and run the command;
    the exit status: 0 ok, 2 refused input or missing file, 3 diverged, 4 rejected or I/O."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "retrain"):
        try:
            params_from_args(args)
        except ValidationError as exc:  # the same words as the HTTP API's 422
            parser.error(validation_message(exc.errors()))
    settings = TrainerSettings()
    setup_logging(settings.log_level, settings.log_json)
    cap_blas_threads()  # train, retrain and the worker all run the kernel in this process
    try:
        if args.command == "train":
            return cmd_train(args, settings)
        if args.command == "retrain":
            return cmd_retrain(args, settings)
        from movierec_trainer.worker import run_worker

        return run_worker(settings)
    except als.TrainingDivergedError as exc:
        log.error("training diverged: %s", exc)
        if getattr(args, "json", False):
            print(json.dumps({"error": {"code": "training_diverged", "message": str(exc)}}))
        return 3
    except MalformedRowError as exc:
        log.error("refused (strict load): %s", exc)
        if getattr(args, "json", False):
            print(json.dumps({"error": {"code": "malformed_data", "message": str(exc)}}))
        return 2
    except FileNotFoundError as exc:
        log.error("%s", exc)
        if getattr(args, "json", False):
            print(json.dumps({"error": {"code": "not_found", "message": str(exc)}}))
        return 2
    except OSError as exc:  # e.g. a read-only or full MODEL_DIR at publish: nothing was activated
        log.error("I/O error, nothing published: %s", exc)
        if getattr(args, "json", False):
            print(json.dumps({"error": {"code": "io_error", "message": str(exc)}}))
        return 4


if __name__ == "__main__":
    sys.exit(main())
