"""The Spark worker (and its executor) SIGKILLed in the middle of a retrain.

A private standalone cluster (master + one worker from the venv's spark-class) so that killing
its worker cannot disturb the session's shared cluster; a real SecantusDB; a real recommender
process serving the initial model; the trainer worker as its own process, exactly as in
production. The training blocks live in the executors' Python workers
(spark_als.SparkHalfSteps.load), and a fit that lost them is not patched: the job must
end `failed` with a clear reason, CURRENT must
not move, serving must not notice, and the same trainer worker must run the next job once a
Spark worker is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
from movierec_common import artifacts

from tests.hardening.conftest import start_recommender
from tests.integration.recommender.support import API_KEY, JWT_SECRET, seed_movielens
from tests.spark.conftest import (
    WORKER_CLASS,
    _alive_workers,
    master_command,
    spark_env,
    worker_command,
)
from tests.spark.test_worker import FAST, Env, _train_cli, new_job
from tests.support import ManagedProcess, free_port, wait_port

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(400)]

EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


@dataclass
class PrivateCluster:
    """A master and the workers started against it; workers can be killed and replaced."""

    logs: Path
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    master: ManagedProcess | None = None
    workers: list[ManagedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> PrivateCluster:
        self.master = ManagedProcess(
            master_command(self.port, self.ui_port),
            env=spark_env(),
            log_path=self.logs / "fault-spark-master.log",
        ).start()
        wait_port(self.port, timeout=60, proc=self.master.proc)
        return self

    def start_worker(self) -> ManagedProcess:
        n = len(self.workers) + 1
        before = _alive_workers(self.ui_url)
        worker = ManagedProcess(
            worker_command(self.url, free_port()),
            env=spark_env(),
            log_path=self.logs / f"fault-spark-worker-{n}.log",
        ).start()
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while _alive_workers(self.ui_url) <= before:
            assert worker.proc is not None
            if worker.proc.poll() is not None:
                raise RuntimeError("spark worker exited:\n" + worker.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError("spark worker did not register:\n" + worker.log_tail())
            time.sleep(0.5)
        return worker

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        if self.master is not None:
            self.master.stop()


def kill_spark_worker(worker: ManagedProcess) -> list[str]:
    """SIGKILL the Worker JVM's process group and every descendant (its executor backend and
    the executor's Python workers), found by command line; only this worker's tree is touched,
    never another engineer's cluster. Returns what was killed."""
    assert worker.proc is not None
    root = psutil.Process(worker.proc.pid)
    tree = [root, *root.children(recursive=True)]
    killed = []
    for p in tree:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if WORKER_CLASS in cmd:
            killed.append("worker")
        elif EXECUTOR_CLASS in cmd:
            killed.append("executor")
    assert "worker" in killed and "executor" in killed, (
        f"worker/executor JVMs not found: {[' '.join(p.cmdline())[:120] for p in tree]}"
    )
    os.killpg(worker.proc.pid, signal.SIGKILL)
    for p in tree:  # anything that left the group (setsid) goes too
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    worker.proc.wait(10)
    psutil.wait_procs(tree, timeout=10)
    return killed


class RecsPoller(threading.Thread):
    """GET /api/recs/users/{id} with the service key, back to back, for the whole test."""

    def __init__(self, url: str, user_id: int) -> None:
        super().__init__(name="recs-poller", daemon=True)
        self.url, self.user_id = url, user_id
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()

    def run(self) -> None:
        with httpx.Client(headers={"X-API-Key": API_KEY}, timeout=10) as client:
            while not self.stop_event.is_set():
                t = time.strftime("%H:%M:%S")
                try:
                    r = client.get(f"{self.url}/api/recs/users/{self.user_id}")
                    if r.status_code == 200:
                        self.ok += 1
                        self.versions.add(r.json().get("model_version"))
                    else:
                        self.failures.append(f"{t} {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{t} {exc!r}")
                self.stop_event.wait(0.2)


def next_job_succeeds_on_a_new_worker(
    e: Env, cluster: PrivateCluster, trainer: ManagedProcess
) -> dict:
    """After a failure: a Spark worker comes back, and the SAME trainer process (no restart)
    runs the next job to success on its first attempt and publishes it."""
    cluster.start_worker()
    job = new_job(FAST)
    e.db.jobs.insert_one(job)
    doc = e.wait_job(job["_id"], {"succeeded", "failed", "rejected"}, timeout=150)
    assert doc["status"] == "succeeded", (doc, trainer.log_tail())
    print(f"next job on the new Spark worker: {doc['phases']}")
    assert doc["attempts"] == 1
    assert artifacts.current_version(e.model_dir) == doc["model_version"]
    assert trainer.proc is not None and trainer.proc.poll() is None
    return doc


@pytest.fixture
def cluster(output_dir: Path) -> Iterator[PrivateCluster]:
    c = PrivateCluster(output_dir).start()
    try:
        yield c
    finally:
        c.stop()


def test_spark_worker_killed_mid_retrain_fails_clearly_and_serving_is_unaffected(
    tmp_path: Path, mongo_url: str, db_name: str, cluster: PrivateCluster
) -> None:
    doomed = cluster.start_worker()
    e = Env(tmp_path, mongo_url, db_name, cluster.url)
    recs: ManagedProcess | None = None
    poller: RecsPoller | None = None
    try:
        seed_movielens(mongo_url, db_name, e.data_dir)  # movies + stats + ratings, as mongo-init
        before = _train_cli(e)
        before_current = (e.model_dir / "CURRENT").read_bytes()
        recs, url = start_recommender(
            {
                "MONGO_URL": mongo_url,
                "MONGO_DB": db_name,
                "JWT_SECRET": JWT_SECRET,
                "API_KEYS": f'["{API_KEY}"]',
            },
            e.model_dir,
            tmp_path / "recommender.log",
        )
        poller = RecsPoller(url, 1)
        poller.start()

        # λ given, so the 400 iterations are the main fit's (no λ search before it)
        job = new_job({**FAST, "reg": 0.18, "iterations": 400, "ranking_iterations": 400})
        e.db.jobs.insert_one(job)
        trainer = e.start_worker("spark-fault")
        doc = e.wait_iterating(job["_id"], trainer, timeout=150)
        killed_at_iteration = doc["progress"]["iteration"]

        killed_at = datetime.now(UTC)
        killed = kill_spark_worker(doomed)
        doc = e.wait_job(job["_id"], {"succeeded", "failed", "rejected", "cancelled"}, timeout=90)
        detect_s = (doc["finished_at"] - killed_at).total_seconds()
        print(
            f"\nkilled {killed} at iteration {killed_at_iteration}; job {doc['status']} "
            f"{detect_s:.2f}s later at iteration {doc['progress'].get('iteration')}: "
            f"{doc['error']!r}"
        )
        assert doc["status"] == "failed", doc
        assert doc["progress"]["iteration"] < 400, doc["progress"]
        error = doc["error"]
        assert re.search(r"executor\(s\) at 127\.0\.0\.1:\d+ lost", error), error  # names it
        assert "Traceback" not in error and len(error) < 600, error  # a reason, not a stack
        assert doc["lease_owner"] is None and doc["model_version"] is None
        assert (e.model_dir / "CURRENT").read_bytes() == before_current
        assert artifacts.current_version(e.model_dir) == before
        assert [v["version"] for v in artifacts.list_versions(e.model_dir)] == [before]
        assert trainer.proc is not None and trainer.proc.poll() is None, trainer.log_tail()

        # A Spark worker comes back; the same trainer process runs the next job on it.
        doc = next_job_succeeds_on_a_new_worker(e, cluster, trainer)
        assert doc["model_version"] != before

        # Serving never noticed: every request of the whole run answered 200.
        poller.stop_event.set()
        poller.join(15)
        print(f"recommender: {poller.ok} × 200 during the run, versions {poller.versions}")
        assert poller.failures == []
        assert poller.ok >= 20 and before in poller.versions
    finally:
        if poller is not None:
            poller.stop_event.set()
            poller.join(15)
        if recs is not None:
            recs.stop()
        e.close()


# --- the watch itself (movierec_trainer.spark_watch) ---------------------------------------

# The driver lives in a child process (one SparkContext per process; the suite's local[2]
# session is in this one). It reports each outcome as one JSON line.
WATCH_CHILD = r"""
import json, sys, time
from pathlib import Path

from movierec_trainer.session import build_spark
from movierec_trainer.spark_watch import executors, run_watched

master, marker = sys.argv[1], Path(sys.argv[2])
spark = build_spark(master, "watch-test", driver_memory="1g", executor_memory="1g")
sc = spark.sparkContext


def report(**kw):
    print(json.dumps(kw), flush=True)


def attempt(what, action, **kw):
    t0 = time.monotonic()
    try:
        value = run_watched(sc, action, what, **kw)
        report(what=what, ok=True, value=value, seconds=time.monotonic() - t0)
    except Exception as exc:
        report(what=what, ok=False, type=type(exc).__name__, error=str(exc),
               seconds=time.monotonic() - t0)


def sleeper(rows):
    marker.write_text("running")
    time.sleep(120)
    yield from rows


attempt("warm-up", lambda: sc.parallelize(range(10), 1).sum(), timeout=60)
report(what="executors", value=sorted(executors(sc)))
attempt("sleepy action", lambda: sc.parallelize(range(4), 1).mapPartitions(sleeper).collect())
attempt("after the loss", lambda: sc.parallelize(range(4), 1).sum(), timeout=3)
spark.stop()
"""


def test_watch_abandons_an_action_whose_worker_is_killed_and_one_with_no_executor(
    tmp_path: Path, cluster: PrivateCluster
) -> None:
    """(a) a long action (a task sleeping 120 s) is abandoned with ExecutorLostError naming the
    lost executor once the worker is SIGKILLed under it; (b) the next action, with no executor
    registered at all, fails after the grace period instead of waiting forever."""
    worker = cluster.start_worker()
    marker = tmp_path / "task-started"
    child = ManagedProcess(
        [sys.executable, "-c", WATCH_CHILD, cluster.url, str(marker)],
        log_path=tmp_path / "watch-child.log",
    ).start()
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.proc is not None and child.proc.poll() is None, child.log_tail()
            assert time.monotonic() < deadline, "the sleeping task never started:\n" + (
                child.log_tail()
            )
            time.sleep(0.2)
        killed_at = time.monotonic()
        kill_spark_worker(worker)
        assert child.proc is not None
        child.proc.wait(90)  # a hang (the 120 s sleep, or waiting for resources) fails here
        exited_s = time.monotonic() - killed_at
        lines = [
            json.loads(line)
            for line in (tmp_path / "watch-child.log").read_text().splitlines()
            if line.startswith("{")
        ]
        by_what = {r["what"]: r for r in lines}
        print(f"\nwatch child, {exited_s:.1f}s after the kill: {lines}")
        assert by_what["warm-up"] == {**by_what["warm-up"], "ok": True, "value": 45}
        (executor,) = by_what["executors"]["value"]
        lost = by_what["sleepy action"]
        assert lost["ok"] is False and lost["type"] == "ExecutorLostError", lost
        assert lost["error"].startswith(
            f"sleepy action: Spark executor(s) at {executor} lost (worker died or was killed)"
        ), lost
        assert lost["seconds"] < 100, lost  # abandoned, not the task's 120 s sleep
        starved = by_what["after the loss"]
        assert starved["ok"] is False and starved["type"] == "ExecutorLostError", starved
        assert starved["error"].startswith(
            "after the loss: no Spark executor registered for 3 s"
        ), starved
        assert starved["seconds"] >= 3, starved
        assert child.proc.returncode == 0, child.log_tail()
    finally:
        child.stop()


def test_watch_is_a_no_op_in_local_mode(spark) -> None:
    """local[N] has only the driver's block manager: no executor to lose, none to wait for —
    a tiny grace period must not fire while a slow action runs."""
    from movierec_trainer.spark_watch import executors, run_watched

    sc = spark.sparkContext

    def slow(rows: Iterator[int]) -> Iterator[int]:
        time.sleep(1.0)
        yield from rows

    assert executors(sc) == set()
    value = run_watched(
        sc, lambda: sc.parallelize(range(100), 2).mapPartitions(slow).sum(), "local", timeout=0.1
    )
    assert value == sum(range(100))


def test_job_started_with_no_spark_worker_fails_clearly_then_next_job_runs(
    tmp_path: Path, mongo_url: str, db_name: str, cluster: PrivateCluster
) -> None:
    """The trainer's SparkSession is on a cluster with no live worker (it died while the trainer
    was idle): the job fails after SPARK_NO_EXECUTOR_TIMEOUT_SECONDS instead of staying
    `running` forever, and the same trainer runs the next job once a worker is back."""
    e = Env(tmp_path, mongo_url, db_name, cluster.url)
    try:
        job = new_job(FAST)
        e.db.jobs.insert_one(job)
        # 15 s: long enough for the next job's executor to start on the worker brought back
        # below (an executor JVM takes 5-10 s here), short enough to keep the test quick.
        trainer = e.start_worker("spark-none", SPARK_NO_EXECUTOR_TIMEOUT_SECONDS="15")
        doc = e.wait_job(job["_id"], {"succeeded", "failed", "rejected", "cancelled"}, timeout=120)
        ran_s = (doc["finished_at"] - doc["started_at"]).total_seconds()
        print(f"\nno worker: job {doc['status']} after {ran_s:.1f}s: {doc['error']!r}")
        assert doc["status"] == "failed", doc
        error = doc["error"]
        assert error.startswith(
            "ExecutorLostError: distributing the training blocks: no Spark executor registered "
            "for 15 s"
        ), error
        assert cluster.url in error, error  # says where it looked
        assert "Traceback" not in error and len(error) < 600, error
        assert doc["lease_owner"] is None and doc["model_version"] is None
        assert not (e.model_dir / "CURRENT").exists()
        assert trainer.proc is not None and trainer.proc.poll() is None, trainer.log_tail()

        next_job_succeeds_on_a_new_worker(e, cluster, trainer)
    finally:
        e.close()
