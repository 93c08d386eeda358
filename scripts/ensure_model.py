"""Train the first model when MODEL_DIR has none, so the site recommends from its first minute.

Used by `make run` (scripts/run_stack.py) and by the `initial-model` one-shot service of
docker-compose.yml, so both start the same way. It only calls the trainer's CLI contract
(`python -m movierec_trainer train ...`) and imports nothing from the project, which keeps it
runnable in any image that has the trainer installed.

If the Spark run fails (no cluster, JVM trouble) it says so and trains with `--engine local`,
the in-process NumPy engine, rather than leaving the recommender without a model.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def active_version(model_dir: Path) -> str | None:
    """The version CURRENT names, if that version directory really exists."""
    current = model_dir / "CURRENT"
    if not current.is_file():
        return None
    version = current.read_text().strip()
    if version and (model_dir / "versions" / version / "manifest.json").is_file():
        return version
    return None


def master_reachable(url: str, timeout: float = 3.0) -> bool:
    """A quick TCP check, because Spark itself retries an absent master for ~100 s."""
    host_port = url.removeprefix("spark://").split(",")[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# The Spark training's bound grows with the data: it chooses the explicit λ on validation (5-9
# short fits), evaluates on a holdout, then refits on every rating; on 2 workers × 1 core a
# 25M set (a 680 MB ratings.csv) was still in its first fit after 900 s, where
# ml-latest-small's whole run takes 1-2 minutes.
SPARK_SECONDS_PER_MB = 3.0


def spark_bound(data_dir: Path, floor: float) -> float:
    """Seconds before a Spark training is abandoned: `floor` plus SPARK_SECONDS_PER_MB per MB
    of the data set's ratings file(s) (~48 minutes in all at 25M ratings)."""
    size = sum(p.stat().st_size for p in data_dir.glob("ratings.*") if p.is_file())
    return floor + SPARK_SECONDS_PER_MB * size / 2**20


def run_bounded(cmd: list[str], timeout: float) -> int:
    """Run cmd; past the timeout, end its whole process group (driver JVM included).

    A cluster whose executors cannot reach the driver does not fail, it waits for ever; the
    bound turns that into the local fallback instead of a stack that never comes up.
    """
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"model: the Spark training took over {timeout:.0f}s; stopping it", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return -1
    except BaseException:  # Ctrl-C or SIGTERM of this script: the training goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def train_command(args: argparse.Namespace, engine: str) -> list[str]:
    cmd = [
        args.python,
        "-m",
        "movierec_trainer",
        "train",
        "--data-dir",
        str(args.data_dir),
        "--engine",
        engine,
        "--output",
        str(args.output),
        # Evaluate on the seeded holdout (so the admin page has metrics), then refit on every
        # rating: the first model people are served should not ignore a fifth of the data.
        "--publish-full",
    ]
    if engine == "spark":
        cmd += ["--spark-master", args.spark_master]
    return cmd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--output", type=Path, required=True, help="MODEL_DIR")
    ap.add_argument("--spark-master", default="", help="spark://HOST:PORT; empty = local engine")
    ap.add_argument(
        "--spark-timeout",
        type=float,
        default=900.0,
        help="seconds before a Spark training is abandoned for the local engine, plus "
        f"{SPARK_SECONDS_PER_MB:g} s per MB of the ratings file",
    )
    ap.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # SIGTERM (make run's stop, docker stop) must unwind into run_bounded's cleanup.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))

    version = active_version(args.output)
    if version:
        print(f"model: {args.output} already serves version {version}; not retraining", flush=True)
        return 0

    args.output.mkdir(parents=True, exist_ok=True)
    if args.spark_master and not master_reachable(args.spark_master):
        print(
            f"model: WARNING no Spark master answers at {args.spark_master}; "
            "falling back to --engine local (in-process NumPy ALS, same algorithm)",
            flush=True,
        )
    elif args.spark_master:
        print(f"model: none in {args.output}; training on Spark at {args.spark_master}", flush=True)
        rc = run_bounded(
            train_command(args, "spark"), spark_bound(args.data_dir, args.spark_timeout)
        )
        if rc == 0 and active_version(args.output):
            return 0
        print(
            f"model: WARNING the Spark training failed (exit code {rc}); "
            "falling back to --engine local (in-process NumPy ALS, same algorithm)",
            flush=True,
        )
    else:
        print(f"model: none in {args.output}; training with the local engine", flush=True)
    rc = subprocess.call(train_command(args, "local"))
    if rc != 0 or not active_version(args.output):
        print(f"model: ERROR training failed (exit code {rc}); no model in {args.output}")
        return rc or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
