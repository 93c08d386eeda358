"""The Spark worker (and its executor) SIGKILLed in the middle of a retrain.

A private standalone cluster (master + one worker from the venv's spark-class) so that killing
its worker cannot disturb the session's shared cluster; a real SecantusDB; a real recommender
process serving the initial model; the trainer worker as its own process, exactly as in
production. The training blocks are local checkpoints (spark_als.SparkALS._distribute), so a
lost executor cannot be recomputed: the job must end `failed` with a clear reason, CURRENT must
not move, serving must not notice, and the same trainer worker must run the next job once a
Spark worker is back.
"""

from __future__ import annotations

import contextlib
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
import pyspark
import pytest
from movierec_common import artifacts

from tests.hardening.conftest import start_recommender
from tests.integration.recommender.support import API_KEY, JWT_SECRET, seed_movielens
from tests.spark.conftest import _alive_workers
from tests.spark.test_worker import FAST, Env, _train_cli, new_job
from tests.support import VENV_BIN, ManagedProcess, free_port, wait_port

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(400)]

WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
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

    def _env(self) -> dict[str, str]:
        return {
            "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_NO_DAEMONIZE": "1",
            "PYSPARK_PYTHON": sys.executable,
        }

    def start(self) -> PrivateCluster:
        self.master = ManagedProcess(
            [
                str(VENV_BIN / "spark-class"),
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui_port),
            ],
            env=self._env(),
            log_path=self.logs / "fault-spark-master.log",
        ).start()
        wait_port(self.port, timeout=60, proc=self.master.proc)
        return self

    def start_worker(self) -> ManagedProcess:
        n = len(self.workers) + 1
        before = _alive_workers(self.ui_url)
        worker = ManagedProcess(
            [
                str(VENV_BIN / "spark-class"),
                WORKER_CLASS,
                self.url,
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                "2g",
                "--webui-port",
                str(free_port()),
            ],
            env=self._env(),
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

        job = new_job({**FAST, "iterations": 400, "ranking_iterations": 400})
        e.db.jobs.insert_one(job)
        trainer = e.start_worker("spark-fault")
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            doc = e.db.jobs.find_one({"_id": job["_id"]})
            if doc["status"] == "running" and (doc.get("progress") or {}).get("iteration", 0) >= 1:
                break
            assert trainer.proc is not None and trainer.proc.poll() is None, trainer.log_tail()
            time.sleep(0.25)
        else:
            raise AssertionError(f"job never got going: {doc}\n{trainer.log_tail()}")
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
        cluster.start_worker()
        second = new_job(FAST)
        e.db.jobs.insert_one(second)
        doc = e.wait_job(second["_id"], {"succeeded", "failed", "rejected"}, timeout=150)
        assert doc["status"] == "succeeded", (doc, trainer.log_tail())
        print(f"second job on the new Spark worker: {doc['phases']}")
        assert doc["attempts"] == 1
        assert artifacts.current_version(e.model_dir) == doc["model_version"] != before
        assert trainer.proc.poll() is None

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
