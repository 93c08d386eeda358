"""MovieLens-25M scale, end to end (issue 16): one run, one table per area, ratios side by side.

    make bench-scale                                   # synthetic-25m (make data generates it)
    make bench-scale SCALE_DATASET=synthetic-1m        # the same table at 1M ratings
    make bench-scale SCALE_DATASET=ml-25m              # the real release, once in data/ml-25m
    .venv/bin/python bench/bench_scale.py --data-dir data/synthetic-1m --skip stack
    make bench-scale BENCH_SCALE_ARGS="--var-dir var/scale-25m"   # keep the imported database

At 25M ratings the embedded server's import and indexes take about two hours of its CPU. With
`--var-dir` the stack's VAR_DIR is kept, and the import's figures are saved in it as soon as
they are measured (bench-import.json); a later run on the same directory skips the import and
reports those figures, saying which run measured them.

Two parts, each in its own processes so one part's memory is not the other's:

  stack   `make run`'s stack (scripts/run_stack.py) on the data set, from an empty VAR_DIR
          (or `--var-dir`'s):
          mongo-init's import rate into the embedded SecantusDB (its own log line) and the time
          to a serving stack ("MovieRec is up."); one retrain through the admin API (snapshot of
          every rating from MongoDB, Spark fit, POST → the new version served); the
          recommender's model load time and resident memory; known-user, fold-in and similar
          p50/p99 at 200 req/s (open loop, bench_recs' load generator in its own process) and
          the highest rate of a doubling ladder held with p99 ≤ 15 ms; the catalog's search
          and popular p99.
  train   a Spark standalone cluster started here (master + 2 workers × 1 core): our Spark
          engine vs Spark MLlib ALS with the same rank, iterations and partitions (= MLlib's
          user and item blocks), fit seconds, test RMSE and the peak resident memory of the
          driver (this process + its JVM) and of each executor (executor JVM + its Python
          daemon and workers), sampled every 0.2 s; then the local engine's ranking model vs
          implicit's ALS (same rank, iterations, CG steps, one BLAS thread each).

Targets (issue 16): Spark engine ≤ 0.5× MLlib's fit time; local engine ≤ 1.0× implicit; driver
≤ 8 GB; recommender ≤ 1.5 GB per replica and p99 ≤ 15 ms at 200 req/s; import ≥ 50k ratings/s.
Each row says met / missed by how much. The tables go to stdout and to bench/out/scale.md, and
replace the "MovieLens-25M scale" section of bench/REPORT.md (--no-report leaves it alone).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
OUT = ROOT / "bench" / "out"
BIN = Path(sys.executable).parent
SECTION = "## MovieLens-25M scale (bench/bench_scale.py, `make bench-scale`)"

TARGETS = {
    "spark_vs_mllib": 0.5,
    "local_vs_implicit": 1.0,
    "driver_gb": 8.0,
    "replica_gb": 1.5,
    "p99_ms": 15.0,
    "import_rps": 50_000.0,
}


def say(msg: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load() -> str:
    return "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())


def verdict(value: float | None, target: float, higher_is_better: bool = False) -> str:
    """'met' or 'missed by N %' against a target."""
    if value is None:
        return "not measured"
    if higher_is_better:
        return "met" if value >= target else f"missed by {100 * (1 - value / target):.0f} %"
    return "met" if value <= target else f"missed by {100 * (value / target - 1):.0f} %"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ memory


def tree_rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def descendants(p: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return p.children(recursive=True)
    return []


class PeakSampler:
    """Peak RSS of named process groups, sampled every `interval` s in a thread; a group is a
    function returning its processes (re-evaluated each sample: executors come and go)."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]], interval=0.2):
        self.groups, self.interval = groups, interval
        self.peak = dict.fromkeys(groups, 0)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, fn in self.groups.items():
            self.peak[name] = max(self.peak[name], tree_rss(fn()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self._sample()


def gb(n: float) -> float:
    return n / 2**30


# ------------------------------------------------------------------------------ part 1: stack


@dataclass
class Stack:
    proc: subprocess.Popen
    env: dict[str, str]
    log: Path
    # (monotonic s, server CPU s, "ratings import started" logged, "ratings imported" logged)
    import_samples: list[tuple[float, float, bool, bool]] = field(default_factory=list)

    def server_us_per_rating(self, n_ratings: int | None) -> float | None:
        """The database server's CPU µs per inserted rating: its CPU time from the last sample
        before the importer logged the ratings' start to the first after it logged their end
        (±1 sample interval of CPU over the whole import)."""
        before = [x for x in self.import_samples if not x[2]]
        after = [x for x in self.import_samples if x[3]]
        if not n_ratings or not before or not after:
            return None
        return 1e6 * (after[0][1] - before[-1][1]) / n_ratings

    def import_record(self) -> dict[str, Any] | None:
        """What the import measured, from the stack log: ratings, seconds, rate, the server's
        µs per rating and each late index's build seconds (None before the import ended)."""
        text = self.log.read_text(errors="replace")
        m = re.search(r"ratings imported: (\d+) in ([\d.]+) s \((\d+) ratings/s\)", text)
        if not m:
            return None
        idx = re.findall(r"index \w+\.(\w+) ready \((\d+) documents, ([\d.]+) s\)", text)
        return {
            "ratings": int(m[1]),
            "seconds": float(m[2]),
            "rate": float(m[3]),
            "server_us_per_rating": self.server_us_per_rating(int(m[1])),
            "index_seconds": {name: float(sec) for name, _n, sec in idx},
        }

    def url(self, port_key: str) -> str:
        return f"http://127.0.0.1:{self.env[port_key]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_stack(var_dir: Path, data_dir: Path, api_key: str, db: str, timeout: float) -> Stack:
    keys = ("MOVIEREC_HTTP_PORT", "CATALOG_PORT", "RECOMMENDER_PORT", "MONGO_PORT",
            "SPARK_MASTER_PORT", "SPARK_UI_PORT", "SPARK_WORKER_UI_PORT")  # fmt: skip
    env = {
        **os.environ,
        **{k: str(free_port()) for k in keys},
        "VAR_DIR": str(var_dir),
        "DATA_DIR": str(data_dir),
        "ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "DEMO_PASSWORD": secrets.token_urlsafe(16),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "API_KEYS": json.dumps([api_key]),
        "MONGO_DB": db,
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    env.pop("MONGO_URL", None)
    log = OUT / "scale-stack.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_stack.py")],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack = Stack(proc, env, log)
    deadline = time.monotonic() + timeout
    server: psutil.Process | None = None
    saved: dict[str, Any] | None = None
    # No database queries while waiting: SecantusDB answers a count by scanning the collection,
    # so polling the ratings count every 2 s cost more server CPU than the import itself.
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the stack exited ({proc.returncode}); see {log}")
            text = log.read_text(errors="replace")
            if "ratings imported" in text:  # saved at once, and again as each index is ready
                rec = stack.import_record()
                if rec is not None and rec != saved:
                    save_import_record(var_dir, rec)
                    saved = rec
            if "MovieRec is up." in text:
                return stack
            with contextlib.suppress(psutil.Error):
                server = server or listening_process(int(env["MONGO_PORT"]))
                if server is not None and not any(x[3] for x in stack.import_samples):
                    t = server.cpu_times()
                    stack.import_samples.append((time.monotonic(), t.user + t.system,
                                                 "ratings import started" in text,
                                                 "ratings imported" in text))  # fmt: skip
            time.sleep(2)
    except BaseException:  # Ctrl-C or SIGTERM while waiting: no stack left behind
        stack.stop()
        raise
    stack.stop()
    raise RuntimeError(f"the stack was not up after {timeout:.0f} s; see {log}")


IMPORT_RECORD = "bench-import.json"


def git_commit() -> str:
    """This checkout's short commit id (what the report and the import record name)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def save_import_record(var_dir: Path, rec: dict[str, Any]) -> None:
    """Keep the import's figures (`Stack.import_record`) in VAR_DIR with the date, commit and
    load, so a later run on the same `--var-dir`, which skips the import, still reports them.
    A record of the same import keeps when and where it was first measured."""
    path = var_dir / IMPORT_RECORD
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("ratings") != rec["ratings"]:
        old = {"measured": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
               "commit": git_commit(), "load": load()}  # fmt: skip
    rec = rec | {k: old[k] for k in ("measured", "commit", "load")}
    path.write_text(json.dumps(rec, indent=1))


def listening_process(port: int) -> psutil.Process | None:
    for c in psutil.net_connections("tcp"):
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
            return psutil.Process(c.pid)
    return None


def stack_part(args: argparse.Namespace, lines: list[str]) -> None:
    import bench_recs
    from movierec_trainer import data as tdata
    from run_all import bench_retrain

    if args.var_dir is not None:  # kept, and reused: a run on it skips what is done
        var_dir = args.var_dir.resolve()
        var_dir.mkdir(parents=True, exist_ok=True)
    else:
        var_dir = Path(tempfile.mkdtemp(prefix="bench-scale-var-", dir=args.scratch))
    say(f"stack: make run's stack on {args.data_dir} (VAR_DIR {var_dir}) …")
    t0 = time.monotonic()
    load_start = load()
    try:
        stack = start_stack(var_dir, args.data_dir, bench_recs.API_KEY, bench_recs.DB,
                            args.timeout)  # fmt: skip
    except BaseException:
        if args.var_dir is None:
            shutil.rmtree(var_dir, ignore_errors=True)
        raise
    up_s = time.monotonic() - t0
    rec = stack.import_record()
    earlier = rec is None and (var_dir / IMPORT_RECORD).exists()
    if earlier:
        rec = json.loads((var_dir / IMPORT_RECORD).read_text())
    n_imp, imp_s, imp_rate = (rec["ratings"], rec["seconds"], rec["rate"]) if rec else (None,) * 3
    try:
        token = httpx.post(
            f"{stack.url('CATALOG_PORT')}/api/auth/login",
            json={"username": "admin", "password": stack.env["ADMIN_PASSWORD"]},
            timeout=60,
        ).json()["access_token"]
        recs_port = int(stack.env["RECOMMENDER_PORT"])
        rproc = listening_process(recs_port)
        rss_idle = gb(rproc.memory_info().rss) if rproc else None
        ratings = tdata.load_ratings_dir(args.data_dir)
        # Model load (verify sha256 + precompute), in this process, as a replica does it.
        from recommender_api.config import RecommenderSettings
        from recommender_api.model_store import load_serving_model

        model_dir = var_dir / "models"
        parts_mb = RecommenderSettings.model_fields["trained_user_parts_mb"].default
        t = time.perf_counter()
        load_serving_model(model_dir, None, "auto", 10, int(parts_mb * 2**20))
        model_load_s = time.perf_counter() - t
        mongo_url = f"mongodb://127.0.0.1:{stack.env['MONGO_PORT']}/?directConnection=true"
        folds = bench_recs.add_fold_in_users(mongo_url, ratings, 20)
        rng = np.random.default_rng(1)
        users = np.unique(ratings.user_ids)
        known = [f"/api/recs/users/{u}?k=10" for u in rng.permutation(users)[:5000]]
        mids, counts = np.unique(ratings.movie_ids, return_counts=True)
        sim = [f"/api/recs/similar/{m}?k=10" for m in rng.permutation(mids[counts >= 10])[:5000]]
        fold = [f"/api/recs/users/{u}?k=10" for u in folds]
        base = stack.url("RECOMMENDER_PORT")
        http = []
        for name, paths in (("known user", known), ("fold-in", fold), ("similar", sim)):
            say(f"recommender: {name} at {args.rate:.0f} req/s …")
            res = bench_recs.run_load_in_child(base, paths, args.rate, args.duration)
            http.append((name, args.rate, res))
        ladder = []
        rate = args.rate
        while rate <= args.max_rate:
            say(f"recommender: known user at {rate:.0f} req/s (ladder) …")
            res = bench_recs.run_load_in_child(base, known, rate, args.duration)
            ladder.append((rate, res))
            if res["p99"] > TARGETS["p99_ms"] or res["errors"]:
                break
            rate *= 2
        bench_recs.remove_fold_in_users(mongo_url, folds)  # never trained on: see there
        held = max((r for r, x in ladder if x["p99"] <= TARGETS["p99_ms"] and not x["errors"]),
                   default=None)  # fmt: skip
        rss_after = gb(rproc.memory_info().rss) if rproc else None
        cat = stack.url("CATALOG_PORT")
        catalog = []
        for name, paths in (
            ("search `q=` (title token)", [f"/api/movies?q={w}" for w in
                                          ("love", "man", "night", "star", "war", "life")]),
            ("popular", ["/api/movies/popular"]),
        ):  # fmt: skip
            say(f"catalog: {name} at {args.catalog_rate:.0f} req/s …")
            res = bench_recs.run_load_in_child(cat, paths, args.catalog_rate, args.duration)
            catalog.append((name, res))
        n_movies = httpx.get(f"{cat}/api/movies?page_size=1", timeout=30).json().get("total")
        say("retrain through the admin API …")
        retrain_md = bench_retrain(_RunAllStack(stack), token, timeout=args.timeout)
    finally:
        say("stopping the stack …")
        stack.stop()
        if args.var_dir is None:
            shutil.rmtree(var_dir, ignore_errors=True)

    us = rec.get("server_us_per_rating") if rec else None
    index_s = rec.get("index_seconds", {}) if rec else {}
    where = "from an empty VAR_DIR"
    up_what = "empty VAR_DIR → serving stack (import, accounts, first model, Spark, APIs, nginx)"
    if earlier and rec:
        where = (
            f"the import was measured by an earlier run on this VAR_DIR ({rec['measured']}, "
            f"commit {rec['commit']}, load average {rec['load']}), which this run reused"
        )
        up_what = "imported VAR_DIR → serving stack (init re-check, first model, APIs)"
        if rec.get("note"):
            where += f" (note saved with it: {rec['note']})"
    imp_target = verdict(imp_rate, TARGETS["import_rps"], higher_is_better=True)
    lines += [
        "### Import and a serving stack",
        "",
        f"`make run`'s stack (scripts/run_stack.py); {where}; load average at start "
        f"{load_start}, after {load()}.",
        "",
        "| what | value | target | verdict |",
        "|---|---:|---:|---|",
        f"| mongo-init: ratings imported into the embedded SecantusDB | "
        f"{n_imp if n_imp is not None else '–'} in {imp_s or 0:.0f} s | | |",
        f"| import rate, ratings/s | {imp_rate or 0:,.0f} | ≥ 50,000 | {imp_target} |",
        f"| what bounds it: the embedded server's CPU per inserted rating (independent of the "
        f"load) | {'–' if us is None else f'{us:.0f} µs'} → at most "
        f"{'–' if not us else f'{1e6 / us:,.0f}'} ratings/s on one idle core | | |",
        "| read-only indexes built after the import, s | "
        + (", ".join(f"{k} {v:.0f}" for k, v in index_s.items()) or "–")
        + " | | |",
        f"| {up_what} | {up_s:.0f} s | | |",
        f"| recommender model load (verify sha256 + precompute), one replica | "
        f"{model_load_s:.2f} s | | |",
        f"| recommender resident memory, idle / after the load | "
        f"{rss_idle or 0:.2f} / {rss_after or 0:.2f} GB | ≤ 1.5 GB | "
        f"{verdict(rss_after, TARGETS['replica_gb'])} |",
        "",
        f"### Recommender under load (open loop, {args.duration:.0f} s per row, latency from "
        "the scheduled start)",
        "",
        "| scenario | offered req/s | achieved | p50 ms | p99 ms | errors | p99 ≤ 15 ms | load |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, rate, res in http:
        lines.append(
            f"| {name} | {rate:.0f} | {res['rps']:.0f} | {res['p50']:.2f} | {res['p99']:.2f} | "
            f"{sum(res['errors'].values())} | {verdict(res['p99'], TARGETS['p99_ms'])} | "
            f"{res['load_avg']:.1f} |"
        )
    for rate, res in ladder[1:]:
        lines.append(
            f"| known user (ladder) | {rate:.0f} | {res['rps']:.0f} | {res['p50']:.2f} | "
            f"{res['p99']:.2f} | {sum(res['errors'].values())} | "
            f"{verdict(res['p99'], TARGETS['p99_ms'])} | {res['load_avg']:.1f} |"
        )
    lines += [
        "",
        f"Highest rate held with p99 ≤ 15 ms (known user, doubling from {args.rate:.0f}): "
        f"{'none' if held is None else f'{held:.0f} req/s'}.",
        "",
        f"### Catalog ({n_movies} movies; open loop at {args.catalog_rate:.0f} req/s)",
        "",
        "| request | achieved req/s | p50 ms | p99 ms | errors | load |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, res in catalog:
        lines.append(
            f"| {name} | {res['rps']:.0f} | {res['p50']:.2f} | {res['p99']:.2f} | "
            f"{sum(res['errors'].values())} | {res['load_avg']:.1f} |"
        )
    lines += ["", "### Retrain (admin API → trainer worker on Spark → served)", "", retrain_md]


class _RunAllStack:
    """The few attributes run_all.bench_retrain reads."""

    def __init__(self, s: Stack) -> None:
        self.base = s.url("MOVIEREC_HTTP_PORT")


# ------------------------------------------------------------------------------ part 2: train


@dataclass
class Cluster:
    master_url: str
    procs: list[subprocess.Popen]

    def workers(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self.procs[1:]]

    def stop(self) -> None:
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)


@contextlib.contextmanager
def standalone_cluster(workers: int, worker_memory: str) -> Iterator[Cluster]:
    import pyspark

    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent),
           "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
           "PYSPARK_PYTHON": sys.executable}  # fmt: skip
    port, ui = free_port(), free_port()
    spark_class = str(BIN / "spark-class")
    logs = OUT / "scale-spark"
    logs.mkdir(parents=True, exist_ok=True)

    def spawn(cmd: list[str], name: str) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    master = spawn([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(port), "--webui-port", str(ui)], "master")  # fmt: skip
    cluster = Cluster(f"spark://127.0.0.1:{port}", [master])
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError(f"Spark master did not start; see {logs}")
            time.sleep(0.5)
        for w in range(workers):
            cluster.procs.append(spawn(
                [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url,
                 "--host", "127.0.0.1", "--cores", "1", "--memory", worker_memory,
                 "--webui-port", str(free_port())], f"worker-{w}"))  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                alive = httpx.get(f"http://127.0.0.1:{ui}/json/", timeout=5).json()["aliveworkers"]
            except (httpx.HTTPError, ValueError, KeyError):
                alive = 0
            if alive >= workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{alive} of {workers} Spark workers registered; see {logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        cluster.stop()


def baseline_engine(rev: str):
    """spark_als.py as of git revision `rev`, loaded as its own module and pickled by value
    (executors cannot import it), for a side-by-side row of the engine before a change."""
    import importlib.util

    from pyspark import cloudpickle

    src = subprocess.run(
        ["git", "show", f"{rev}:spark/trainer/movierec_trainer/spark_als.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = OUT / f"spark_als_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"spark_als_{rev}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    return module


def train_part(args: argparse.Namespace, lines: list[str]) -> None:
    from movierec_common import als
    from movierec_trainer import data as tdata
    from movierec_trainer.blas import cap_blas_threads
    from movierec_trainer.evaluate import mae, rmse
    from movierec_trainer.session import build_spark
    from movierec_trainer.spark_als import SparkALS

    cap_blas_threads()
    ep = replace(als.DEFAULT_EXPLICIT, rank=args.rank, iterations=args.iterations)
    parts = args.partitions
    me = psutil.Process()
    rows: list[tuple[str, float, float | None, float, dict[str, float]]] = []
    reg_note: list[str] = []

    def read() -> tuple[als.Interactions, als.Interactions]:
        nonlocal ep
        say(f"train: reading {args.data_dir} …")
        r = tdata.load_ratings_dir(args.data_dir)
        split = tdata.random_holdout(r, 0.2, 42)
        del r
        if args.reg is None:  # what `train` does without --reg: λ chosen on validation
            from movierec_trainer.pipeline import TrainConfig
            from movierec_trainer.tune import choose_explicit_reg

            say("train: choosing λ on validation carved from the training part (local engine) …")
            t = time.perf_counter()
            search = choose_explicit_reg(
                split.train, TrainConfig(explicit=ep, ranking=None, ease=None), say=say
            )
            ep = replace(ep, reg=search.reg)
            reg_note.append(
                f"λ {search.reg:g} for both of our engines, chosen as `train` does without "
                f"`--reg` (`movierec_trainer.tune`, local engine, {search.iterations} "
                f"iterations per candidate, {time.perf_counter() - t:.0f} s, not in the fit "
                "times): validation RMSE "
                + ", ".join(f"{row['reg']:g} → {row['valid_rmse']:.4f}" for row in search.rows)
                + "."
            )
        else:
            ep = replace(ep, reg=args.reg)
        train, users, items = als.index_ratings(
            split.train.user_ids, split.train.movie_ids, split.train.ratings
        )
        keep = np.isin(split.test.user_ids, users) & np.isin(split.test.movie_ids, items)
        test = als.Interactions(
            np.searchsorted(users, split.test.user_ids[keep]).astype(np.int32),
            np.searchsorted(items, split.test.movie_ids[keep]).astype(np.int32),
            split.test.ratings[keep],
            train.n_users,
            train.n_items,
        )
        del split
        return train, test

    def clip(x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0.5, 5.0)

    load_start = load()
    with standalone_cluster(args.workers, args.worker_memory) as cluster:
        say(f"train: Spark standalone {cluster.master_url}, {args.workers} workers × 1 core")
        spark = build_spark(
            cluster.master_url,
            "movierec-bench-scale",
            driver_memory=args.driver_memory,
            executor_memory=args.executor_memory,
        )
        try:
            sc = spark.sparkContext
            deadline = time.monotonic() + 120
            while len(sc._jsc.sc().statusTracker().getExecutorInfos()) < args.workers + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("executors did not register")
                time.sleep(0.5)
            # The data is read once the cluster is up, as the trainer worker does (its Spark
            # session starts with the worker): arrays left idle while the JVMs start were
            # measured to cost the first pass over them several seconds on this VM.
            train, test = read()
            # Both engines fit on warm executors, as in a trainer worker that has run a job
            # before: one small Python job starts every executor's Python daemon and worker
            # (MLlib, which fits second, would otherwise get the executors our fit warmed).
            # Measured at 25M: the first task on a cold executor spends ~2.5 s starting up.
            # After read(): its λ search takes minutes at 25M, and Spark retires Python
            # workers idle for a minute.
            n_warm = 2 * args.workers
            sc.parallelize(range(n_warm), n_warm).map(str).collect()

            def groups() -> dict[str, Callable[[], list[psutil.Process]]]:
                g: dict[str, Callable[[], list[psutil.Process]]] = {
                    "driver": lambda: [me, *descendants(me)]
                }
                for j, w in enumerate(cluster.workers()):
                    g[f"executor {j + 1}"] = lambda w=w: descendants(w)
                return g

            say(f"train: our Spark engine, rank {ep.rank}, {ep.iterations} it., {parts} parts …")
            with PeakSampler(groups()) as mem:
                t = time.perf_counter()
                model, _ = SparkALS(sc, train, num_partitions=parts).fit(ep, None)
                ours_s = time.perf_counter() - t
            pred = clip(als.predict_explicit(model, test.user_idx, test.item_idx))
            rows.append(("ours, Spark engine", ours_s, rmse(pred, test.rating),
                         mae(pred, test.rating), dict(mem.peak)))  # fmt: skip
            del model

            if args.baseline_rev:
                old = baseline_engine(args.baseline_rev)
                say(f"train: our Spark engine as of {args.baseline_rev} …")
                with PeakSampler(groups()) as mem:
                    t = time.perf_counter()
                    model, _ = old.SparkALS(sc, train, num_partitions=parts).fit(ep, None)
                    old_s = time.perf_counter() - t
                pred = clip(als.predict_explicit(model, test.user_idx, test.item_idx))
                name = f"ours, Spark engine as of {args.baseline_rev} (before issue 16)"
                rows.append((name, old_s, rmse(pred, test.rating), mae(pred, test.rating),
                             dict(mem.peak)))  # fmt: skip
                del model

            import pandas as pd
            from pyspark.ml.recommendation import ALS

            say("train: Spark MLlib ALS …")
            frame = spark.createDataFrame(
                pd.DataFrame({"u": train.user_idx, "i": train.item_idx, "r": train.rating})
            ).repartition(parts).cache()  # fmt: skip
            frame.count()
            ml = ALS(rank=ep.rank, maxIter=ep.iterations, regParam=args.mllib_reg, userCol="u",
                     itemCol="i", ratingCol="r", seed=42, numUserBlocks=parts,
                     numItemBlocks=parts, coldStartStrategy="nan")  # fmt: skip
            with PeakSampler(groups()) as mem:
                t = time.perf_counter()
                mm = ml.fit(frame)
                mm.userFactors.count()
                mm.itemFactors.count()
                mllib_s = time.perf_counter() - t
            uf = mm.userFactors.toPandas()
            itf = mm.itemFactors.toPandas()
            pu = np.zeros((train.n_users, ep.rank), np.float32)
            qi = np.zeros((train.n_items, ep.rank), np.float32)
            pu[uf["id"].to_numpy()] = np.stack(uf["features"].to_numpy())
            qi[itf["id"].to_numpy()] = np.stack(itf["features"].to_numpy())
            pred = clip(np.einsum("nk,nk->n", pu[test.user_idx], qi[test.item_idx]))
            name = f"Spark MLlib ALS (regParam {args.mllib_reg})"
            e_rmse, e_mae = rmse(pred, test.rating), mae(pred, test.rating)
            rows.append((name, mllib_s, e_rmse, e_mae, dict(mem.peak)))
            frame.unpersist()
        finally:
            spark.stop()

    say("train: local engine vs implicit's ALS (ranking model) …")
    # implicit's problem: confidence 1 + α·r on every rating (no evidence-against signal)
    rp = replace(als.DEFAULT_IMPLICIT, rank=args.rank, iterations=args.iterations, negative_at=None)
    kernel: list[tuple[str, float | None, str]] = []
    with PeakSampler({"this process": lambda: [me]}) as mem:
        t = time.perf_counter()
        als.fit_implicit(train, rp, dtype=np.float32)
        local_s = time.perf_counter() - t
    kernel.append(("MovieRec local engine (float32 CG, last user step exact)", local_s,
                   f"{gb(mem.peak['this process']):.2f}"))  # fmt: skip
    try:
        from bench_kernel import implicit_fit

        with PeakSampler({"this process": lambda: [me]}) as mem:
            t = time.perf_counter()
            implicit_fit(train, rp, 1)
            impl_s: float | None = time.perf_counter() - t
        kernel.append(("implicit ALS 0.7.3, 1 thread (reference)", impl_s,
                       f"{gb(mem.peak['this process']):.2f}"))  # fmt: skip
    except ImportError:
        impl_s = None
        kernel.append(("implicit ALS (not installed: `make bench-kernel` installs it)", None, ""))

    ours_row, mllib_row = rows[0], rows[-1]
    ratio = ours_row[1] / mllib_row[1]
    lines += [
        "### Training: our Spark engine vs Spark MLlib ALS",
        "",
        f"Standalone cluster started by the bench: {args.workers} workers × 1 core "
        f"(worker memory {args.worker_memory}, executor memory {args.executor_memory}, driver "
        f"memory {args.driver_memory}); explicit ALS rank {ep.rank}, {ep.iterations} "
        f"iterations, {parts} partitions (MLlib: {parts} user and {parts} item blocks). "
        f"{len(train):,} training ratings ({train.n_users:,} users × {train.n_items:,} movies), "
        f"{len(test):,} test. Peak RSS sampled every 0.2 s: driver = this process + its JVM; "
        f"executor = its JVM + Python daemon + workers. Load average at start {load_start}, "
        f"after {load()}. Ours: {reg_note[0] if reg_note else f'λ {ep.reg:g} (--reg)'}",
        "",
        "| engine | fit s | × MLlib | test RMSE | test MAE | driver peak GB | "
        + " | ".join(f"{k} peak GB" for k in ours_row[4] if k != "driver")
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(ours_row[4]) - 1),
    ]
    for name, secs, e_rmse, e_mae, peak in rows:
        lines.append(
            f"| {name} | {secs:.1f} | {secs / mllib_row[1]:.2f} | {e_rmse:.4f} | {e_mae:.4f} | "
            f"{gb(peak['driver']):.2f} | "
            + " | ".join(f"{gb(v):.2f}" for k, v in peak.items() if k != "driver")
            + " |"
        )
    lines += [
        "",
        f"Spark engine / MLlib fit time: **{ratio:.2f}×** (target ≤ 0.5×: "
        f"{verdict(ratio, TARGETS['spark_vs_mllib'])}); driver peak "
        f"{gb(ours_row[4]['driver']):.2f} GB (target ≤ 8 GB: "
        f"{verdict(gb(ours_row[4]['driver']), TARGETS['driver_gb'])}).",
        "",
        "### Training: local engine vs implicit's ALS",
        "",
        f"Ranking model (confidence 1 + α·r), rank {rp.rank}, {rp.iterations} iterations, "
        f"{rp.cg_steps} CG steps, one BLAS thread, same training ratings; load average {load()}.",
        "",
        "| engine | fit s | peak RSS GB |",
        "|---|---:|---:|",
    ]
    for name, secs, peak_gb in kernel:
        lines.append(f"| {name} | {'–' if secs is None else f'{secs:.1f}'} | {peak_gb} |")
    if impl_s:
        lr = local_s / impl_s
        lines += ["", f"Local engine / implicit: **{lr:.2f}×** (target ≤ 1.0×: "
                      f"{verdict(lr, TARGETS['local_vs_implicit'])})."]  # fmt: skip


# ------------------------------------------------------------------------------ report


def write_report(md: str, report: Path = ROOT / "bench" / "REPORT.md") -> None:
    """Replace (or append) this bench's section of `report` (`md` starts with SECTION)."""
    text = report.read_text() if report.exists() else "# MovieRec benchmark report\n"
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + md + ("" if nxt < 0 else text[nxt:])
    else:
        text = text.rstrip("\n") + "\n\n" + md
    report.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "synthetic-25m")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: stack, train")
    ap.add_argument("--rank", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="6g")
    ap.add_argument("--executor-memory", default="4g")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument(
        "--reg", type=float, default=None,
        help="our explicit λ (default: chosen on validation, as `train` does without --reg)",
    )  # fmt: skip
    ap.add_argument("--mllib-reg", type=float, default=0.1)
    ap.add_argument(
        "--baseline-rev",
        default="",
        help="also fit the Spark engine as of this git revision (e.g. the one before a change)",
    )
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--max-rate", type=float, default=1600.0)
    ap.add_argument("--catalog-rate", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--timeout", type=float, default=4 * 3600.0)
    ap.add_argument("--scratch", type=Path, default=None, help="where VAR_DIR goes (default tmp)")
    ap.add_argument(
        "--var-dir",
        type=Path,
        default=None,
        help="the stack's VAR_DIR, kept afterwards; a run on one already imported skips the "
        "import and reports the figures the importing run saved in it (a 25M import takes over "
        "an hour of the embedded server's CPU)",
    )
    ap.add_argument("--out", type=Path, default=OUT / "scale.md")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the stack and the Spark cluster are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.data_dir = args.data_dir.resolve()
    if not (args.data_dir / "ratings.csv").exists() and not any(args.data_dir.glob("ratings.*")):
        print(f"error: no ratings in {args.data_dir} (make data DATASET=...)", file=sys.stderr)
        return 2
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    commit = git_commit()
    lines = [
        SECTION,
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, data "
        f"`{args.data_dir.name}`, {os.cpu_count()} cores, {gb(psutil.virtual_memory().total):.1f} "
        f"GiB RAM, load average at start {load()} (the machine may be shared: ratios measured "
        "side by side in this run are the comparison; absolute seconds are not). Command: "
        f"`bench/bench_scale.py {' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
    ]
    failures = []
    for name, part in (("stack", stack_part), ("train", train_part)):
        if name in skip:
            lines += [f"Part `{name}` skipped (--skip).", ""]
            continue
        t = time.monotonic()
        try:
            part(args, lines)
        except Exception as exc:  # one part's failure is reported; the other still runs
            failures.append(name)
            traceback.print_exc()
            # str(), not repr(): a Py4JJavaError's repr leaves out the Java cause.
            why = " ".join(f"{type(exc).__name__}: {exc}".split())
            lines += [f"Part `{name}` FAILED after {time.monotonic() - t:.0f} s: `{why}`"[:1200]]
        lines.append("")
        say(f"{name}: {time.monotonic() - t:.0f} s")
        # Written after each part too: a 25M run takes hours, and a stopped train part must
        # not lose the stack part's tables.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines).rstrip("\n") + "\n")
    md = "\n".join(lines).rstrip("\n") + "\n"
    args.out.write_text(md)
    print(md)
    if not args.no_report:
        write_report(md)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
