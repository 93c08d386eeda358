"""The retrain snapshot's MongoDB read: one cursor against userId ranges, and what each costs
the server's other clients.

What runs (all real): an embedded SecantusDB daemon on a free port in a temp directory, a
`ratings` collection with mongo-init's own validator and indexes, N generated MovieLens-shaped
ratings (~150 per user), then `movierec_trainer.snapshot.read_db_ratings` three times: with one
cursor (`range_rows=None`, the read before 7f3fcd6), by userId ranges unpaced, and by userId
ranges paced as the retrain reads them (`SNAPSHOT_PAUSE_RATIO`). While
each read runs, a second client sends `find_one` on another collection every 20 ms and times
it: the stall a catalog or recommender request sees during a retrain.

Run: .venv/bin/python bench/bench_snapshot_read.py [--ratings 300000] [--range-rows 5000]
Writes bench/out/snapshot_read.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_catalog import free_port, spawn, stop, wait_port
from movierec_common import data_model
from movierec_init.schema import INDEXES, VALIDATORS
from movierec_trainer.config import TrainerSettings
from movierec_trainer.snapshot import RANGE_ROWS, ReadPacing, read_db_ratings
from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out" / "snapshot_read.md"
PROBE_EVERY_S = 0.02


class Probe(threading.Thread):
    """`find_one` by _id on a one-document collection every 20 ms, timed (ms)."""

    def __init__(self, url: str, db: str) -> None:
        super().__init__(daemon=True)
        self.client = MongoClient(url, serverSelectionTimeoutMS=10_000)
        self.coll = self.client[db]["probe"]
        self.coll.replace_one({"_id": 1}, {"_id": 1, "x": 1}, upsert=True)
        self.ms: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            t0 = time.perf_counter()
            self.coll.find_one({"_id": 1})
            self.ms.append((time.perf_counter() - t0) * 1000)
            self.done.wait(PROBE_EVERY_S)

    def take(self) -> list[float]:
        out, self.ms = self.ms, []
        return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratings", type=int, default=300_000)
    ap.add_argument("--range-rows", type=int, default=RANGE_ROWS)
    ap.add_argument(
        "--pause-ratio",
        type=float,
        default=TrainerSettings.model_fields["snapshot_pause_ratio"].default,
        help="the paced row's SNAPSHOT_PAUSE_RATIO",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mongo = spawn(
        [
            *(str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port)),
            *("--storage-path", str(work / "mongo"), "--standalone", "--log-level", "WARNING"),
        ],
        dict(os.environ),
        ROOT / "bench" / "out" / "snapshot-read-mongo.log",
    )
    try:
        wait_port(port, mongo)
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        client = MongoClient(url, serverSelectionTimeoutMS=10_000)
        db = client["bench_snapshot"]
        ratings = data_model.RATINGS
        db.create_collection(ratings, validator={"$jsonSchema": VALIDATORS[ratings]})
        db[ratings].create_indexes(INDEXES[ratings])
        rng = np.random.default_rng(7)
        n = args.ratings
        t0 = time.perf_counter()
        for s in range(0, n, 10_000):
            idx = np.arange(s, min(n, s + 10_000))
            db["ratings"].insert_many(
                [
                    {
                        "userId": int(1 + i // 150),
                        "movieId": int(1 + i % 150 + 150 * (i // 150 % 50)),
                        "rating": float(rng.integers(1, 11) / 2),
                        "timestamp": int(1_600_000_000 + i),
                    }
                    for i in idx
                ],
                ordered=False,
            )
        console.print(f"inserted {n:,} ratings in {time.perf_counter() - t0:.0f} s")
        probe = Probe(url, "bench_snapshot")
        probe.start()
        time.sleep(2)
        idle = probe.take()
        rows = []
        ranges = f"userId ranges of ~{args.range_rows:,} rows"
        for label, range_rows, pause in (
            ("one cursor (before 7f3fcd6)", None, 0.0),
            (f"{ranges}, unpaced", args.range_rows, 0.0),
            (
                f"{ranges}, paced {args.pause_ratio:g} (the retrain's default)",
                args.range_rows,
                args.pause_ratio,
            ),
        ):
            t0 = time.perf_counter()
            got = read_db_ratings(db, range_rows=range_rows, pacing=ReadPacing(pause))
            secs = time.perf_counter() - t0
            ms = probe.take()
            assert len(got) == n, (label, len(got))
            rows.append((label, secs, len(ms), statistics.median(ms), pct(ms, 99), max(ms)))
        probe.done.set()
        probe.join(5)
    finally:
        stop(mongo)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    table = Table(title=f"snapshot read of {n:,} ratings (probe idle p50 {pct(idle, 50):.1f} ms)")
    for col in ("read", "s", "× one cursor", "probes", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right" if col != "read" else "left")
    base = rows[0][1]
    md = [
        f"Snapshot read of {n:,} ratings from SecantusDB; a second client's `find_one` every "
        f"20 ms meanwhile (idle p50 {pct(idle, 50):.1f} ms, max {max(idle):.1f} ms).",
        "",
        "| read | s | × one cursor | probes | probe p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, secs, k, p50, p99, mx in rows:
        table.add_row(
            label,
            f"{secs:.1f}",
            f"{secs / base:.2f}",
            str(k),
            f"{p50:.1f}",
            f"{p99:.0f}",
            f"{mx:.0f}",
        )
        md.append(
            f"| {label} | {secs:.1f} | {secs / base:.2f} | {k} | {p50:.1f} | {p99:.0f} | {mx:.0f} |"
        )
    console.print(table)
    args.out.write_text("\n".join(md) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
