"""The retraining worker against a real SecantusDB and a real standalone Spark cluster.

Jobs are inserted the way the catalog's POST /api/admin/retrain inserts them (contract 4); the
worker runs as its own process (`python -m movierec_trainer worker`), exactly as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson import ObjectId
from movierec_common import artifacts
from movierec_common.jobs import new_job as shared_new_job
from pymongo import MongoClient

from tests.support import ManagedProcess
from tests.support.tiny_data import write_movielens

pytestmark = pytest.mark.spark

NEW_USER = 100_001
FAST = {"iterations": 3, "rank": 4, "ranking_rank": 4, "ranking_reg": 1.0, "ranking_iterations": 3}


def new_job(params: dict[str, Any]) -> dict[str, Any]:
    """A queued job exactly as the catalog's admin API would insert it."""
    return shared_new_job(params, "test")


class Env:
    def __init__(self, tmp: Path, mongo_url: str, db_name: str, master: str) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "ml"
        self.n_csv = write_movielens(self.data_dir)
        self.model_dir = tmp / "models"
        self.client: MongoClient = MongoClient(mongo_url, tz_aware=True)
        self.db = self.client[db_name]
        self.env = {
            "MONGO_URL": mongo_url,
            "MONGO_DB": db_name,
            "MODEL_DIR": str(self.model_dir),
            "DATA_DIR": str(self.data_dir),
            "WORK_DIR": str(tmp / "work"),
            "SPARK_MASTER": master,
            "POLL_SECONDS": "0.3",
            "SCHEDULE": "off",
            "NEW_RATINGS_THRESHOLD": "0",
            "LOG_JSON": "false",
            "SPARK_DRIVER_MEMORY": "1g",
            "SPARK_EXECUTOR_MEMORY": "1g",
        }
        self.workers: list[ManagedProcess] = []

    def load_csv_into_db(self) -> None:
        """What mongo-init does: the MovieLens ratings are in MongoDB too."""
        lines = (self.data_dir / "ratings.csv").read_text().splitlines()[1:]
        docs = []
        for line in lines:
            u, m, r, t = line.split(",")
            docs.append(
                {"userId": int(u), "movieId": int(m), "rating": float(r), "timestamp": int(t)}
            )
        self.db.ratings.insert_many(docs)

    def start_worker(self, name: str, **extra: str) -> ManagedProcess:
        w = ManagedProcess(
            [sys.executable, "-m", "movierec_trainer", "worker"],
            env={**self.env, "WORKER_ID": name, **extra},
            log_path=self.tmp / f"{name}.log",
        ).start()
        self.workers.append(w)
        return w

    def wait_iterating(self, job_id: ObjectId, worker: ManagedProcess, timeout: float) -> dict:
        """The job is `running` and has finished its first iteration (so it is mid-fit)."""
        deadline = time.monotonic() + timeout
        doc = None
        while time.monotonic() < deadline:
            doc = self.db.jobs.find_one({"_id": job_id})
            if doc["status"] == "running" and (doc.get("progress") or {}).get("iteration", 0) >= 1:
                return doc
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
            time.sleep(0.25)
        raise AssertionError(f"job never got going: {doc}\n{worker.log_tail()}")

    def wait_job(
        self, job_id: ObjectId, until: set[str], timeout: float = 420, seen: list | None = None
    ) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = self.db.jobs.find_one({"_id": job_id})
            if seen is not None and doc and doc.get("progress"):
                seen.append((doc["status"], dict(doc["progress"])))
            if doc and doc["status"] in until:
                return doc
            for w in self.workers:
                if (
                    w.proc is not None
                    and w.proc.poll() is not None
                    and w.proc.returncode not in (0, -9, -15)
                ):
                    raise AssertionError(f"worker died:\n{w.log_tail()}")
            time.sleep(0.25)
        logs = "\n".join(w.log_tail(40) for w in self.workers)
        raise AssertionError(f"job {job_id} not in {until} after {timeout}s: {doc}\n{logs}")

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.client.close()


@pytest.fixture
def env(tmp_path: Path, mongo_url: str, db_name: str, spark_cluster):
    e = Env(tmp_path, mongo_url, db_name, spark_cluster.master_url)
    try:
        yield e
    finally:
        e.close()


def _train_cli(e: Env) -> str:
    """An active model trained from the CSV alone (same holdout protocol as the worker)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "movierec_trainer",
            "train",
            "--data-dir",
            str(e.data_dir),
            "--rank",
            "4",
            "--iterations",
            "3",
            "--ranking-rank",
            "4",
            "--ranking-reg",
            "1",
            "--ranking-iterations",
            "3",
            "--output",
            str(e.model_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["version"]


def test_job_queued_running_succeeded_with_progress(env: Env) -> None:
    env.load_csv_into_db()
    # A new user rated 10 movies; and user 1 changed a rating (the database wins).
    rng = np.random.default_rng(5)
    env.db.ratings.insert_many(
        [
            {"userId": NEW_USER, "movieId": int(m), "rating": 4.5, "timestamp": int(time.time())}
            for m in rng.choice(np.arange(1, 81, 2), 10, replace=False)
        ]
    )
    job = new_job(FAST)
    env.db.jobs.insert_one(job)
    env.start_worker("w1")
    seen: list = []
    doc = env.wait_job(job["_id"], {"succeeded", "failed", "rejected"}, seen=seen)
    assert doc["status"] == "succeeded", doc
    assert any(s == "running" and p.get("iteration") for s, p in seen), seen[:5]
    assert doc["model_version"] == artifacts.current_version(env.model_dir)
    assert doc["lease_owner"] is None and doc["attempts"] == 1
    for key in ("queue_s", "snapshot_s", "train_s", "validate_s", "publish_s"):
        assert doc["phases"][key] >= 0, doc["phases"]
    assert doc["metrics"]["rmse"] > 0 and doc["metrics"]["gate"]["passed"]
    assert any("published" in line for line in doc["log_tail"])
    model = artifacts.load_model(env.model_dir)
    assert NEW_USER in set(model.user_ids.tolist())  # the new user graduated into the model
    assert model.has_ranking
    data = model.manifest["data"]
    assert data["n_ratings"] == env.n_csv + 10 and data["source"] == "mongodb+csv"
    assert model.manifest["evaluation"]["published"] == "full_refit"
    assert Path(data["snapshot"]).suffix == ".parquet" and Path(data["snapshot"]).exists()


def test_worse_model_is_rejected_and_current_unchanged(env: Env) -> None:
    before = _train_cli(env)
    # The database holds pure noise for the same users and movies: any model trained on it
    # predicts held-out noise far worse than the active model predicts real ratings.
    rng = np.random.default_rng(9)
    env.db.ratings.insert_many(
        [
            {
                "userId": int(u),
                "movieId": int(m),
                "rating": float(rng.integers(1, 11) / 2),
                "timestamp": int(time.time()),
            }
            for u in range(1, 61)
            for m in rng.choice(80, 25, replace=False) + 1
        ]
    )
    job = new_job({**FAST, "db_only": True})
    env.db.jobs.insert_one(job)
    env.start_worker("w2")
    doc = env.wait_job(job["_id"], {"succeeded", "failed", "rejected"})
    assert doc["status"] == "rejected", doc
    gate = doc["metrics"]["gate"]
    assert gate["active_version"] == before and not gate["passed"]
    assert gate["new_rmse"] > gate["active_rmse"] * 1.02
    assert str(round(gate["active_rmse"], 4)) in doc["error"]
    assert artifacts.current_version(env.model_dir) == before
    assert len(artifacts.list_versions(env.model_dir)) == 1  # nothing was published


def test_killed_worker_lease_expires_and_job_does_not_stay_running(env: Env) -> None:
    env.load_csv_into_db()
    job = new_job({**FAST, "reg": 0.18, "iterations": 400, "ranking_iterations": 400})
    env.db.jobs.insert_one(job)
    w = env.start_worker("doomed", LEASE_SECONDS="4", HEARTBEAT_SECONDS="1")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        doc = env.db.jobs.find_one({"_id": job["_id"]})
        if doc["status"] == "running" and (doc.get("progress") or {}).get("iteration", 0) >= 2:
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"job never got going: {doc}\n{w.log_tail()}")
    assert doc["lease_owner"] == "doomed"
    os.killpg(w.proc.pid, signal.SIGKILL)  # no goodbye: the lease is all that is left
    w.proc.wait(10)
    # A second worker (one attempt allowed) reaps the expired lease.
    env.start_worker("reaper", MAX_ATTEMPTS="1", LEASE_SECONDS="4")
    doc = env.wait_job(job["_id"], {"failed", "queued", "succeeded"}, timeout=60)
    assert doc["status"] == "failed", doc
    assert "lease expired" in doc["error"]
    assert artifacts.current_version(env.model_dir) is None


def test_cancel_requested_stops_a_running_job(tmp_path: Path, mongo_url: str, db_name: str) -> None:
    """cancel_requested (what POST /api/admin/jobs/{id}/cancel sets) is honoured between
    iterations; nothing is published. Spark local[1] here: the cluster path is covered above."""
    e = Env(tmp_path, mongo_url, db_name, "local[1]")
    try:
        e.load_csv_into_db()
        # λ given, so the 400 iterations are the main fit's (no λ search before them; a cancel
        # during the search is tests/unit/movierec_trainer/test_tune.py's, through train_job)
        job = new_job({**FAST, "reg": 0.18, "iterations": 400, "ranking_iterations": 400})
        e.db.jobs.insert_one(job)
        w = e.start_worker("canceller")
        e.wait_iterating(job["_id"], w, timeout=180)
        e.db.jobs.update_one({"_id": job["_id"]}, {"$set": {"cancel_requested": True}})
        doc = e.wait_job(job["_id"], {"cancelled", "failed", "succeeded"}, timeout=60)
        assert doc["status"] == "cancelled", doc
        assert doc["progress"]["iteration"] < 400
        assert artifacts.current_version(e.model_dir) is None
        assert w.proc.poll() is None  # the worker itself keeps serving the queue
    finally:
        e.close()


def test_retrain_cli_merges_db_over_csv(tmp_path: Path, mongo_url: str, db_name: str) -> None:
    """`retrain` runs the same pipeline once: DB ratings override the CSV for the same pair."""
    data_dir = tmp_path / "ml"
    n_csv = write_movielens(data_dir)
    client: MongoClient = MongoClient(mongo_url, tz_aware=True)
    try:
        # One override of an existing CSV pair (user 1's first movie) and one brand-new rating.
        first = (data_dir / "ratings.csv").read_text().splitlines()[1].split(",")
        now = int(time.time())  # a rating made now: later than the file's, so it wins
        client[db_name].ratings.insert_many(
            [
                {"userId": 1, "movieId": int(first[1]), "rating": 0.5, "timestamp": now},
                {"userId": NEW_USER, "movieId": 3, "rating": 5.0, "timestamp": now},
            ]
        )
    finally:
        client.close()
    out = tmp_path / "models"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "movierec_trainer",
            "retrain",
            "--engine",
            "local",
            "--csv-path",
            str(data_dir / "ratings.csv"),
            "--rank",
            "4",
            "--iterations",
            "3",
            "--ranking-rank",
            "4",
            "--ranking-iterations",
            "2",
            "--ranking-reg",
            "1",
            "--output",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "MONGO_URL": mongo_url,
            "MONGO_DB": db_name,
            "WORK_DIR": str(tmp_path / "work"),
            "LOG_JSON": "false",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["gate"]["passed"]
    model = artifacts.load_model(out, result["version"])
    assert model.manifest["data"]["n_ratings"] == n_csv + 1  # the override replaced, not added
    snap = Path(model.manifest["data"]["snapshot"])
    import pyarrow.parquet as pq

    t = pq.read_table(snap).to_pydict()
    pairs = {(u, m): r for u, m, r in zip(t["userId"], t["movieId"], t["rating"], strict=True)}
    assert pairs[(1, int(first[1]))] == 0.5 and pairs[(NEW_USER, 3)] == 5.0


# ------------------------------------------------------------------ queue logic, in-process


@pytest.fixture
def worker_factory(tmp_path: Path, mongo_url: str, db_name: str):
    from movierec_trainer.config import TrainerSettings
    from movierec_trainer.worker import Worker

    made: list[Worker] = []

    def make(name: str, **overrides: Any) -> Worker:
        fields: dict[str, Any] = {
            "mongo_url": mongo_url,
            "mongo_db": db_name,
            "model_dir": tmp_path / "models",
            "data_dir": tmp_path / "ml",
            "work_dir": tmp_path / "work",
            "worker_id": name,
            "schedule": "off",
            "new_ratings_threshold": 0,
        }
        settings = TrainerSettings(**{**fields, **overrides})
        w = Worker(settings)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_claim_is_exclusive_and_oldest_first(worker_factory) -> None:
    a, b = worker_factory("a"), worker_factory("b")
    from datetime import timedelta

    older, newer = new_job({}), new_job({})
    older["created_at"] = newer["created_at"] - timedelta(seconds=5)
    a.queue.jobs.insert_many([newer, older])  # inserted out of order on purpose
    assert a.queue.acquire_lock()
    assert not b.queue.acquire_lock()  # one retrain at a time, whoever asks
    got = a.queue.claim()
    assert got["_id"] == older["_id"] and got["status"] == "running" and got["attempts"] == 1
    assert got["lease_owner"] == "a"
    second = b.queue.claim()  # even without the lock, the same job can never be claimed twice
    assert second is None or second["_id"] != older["_id"]
    a.queue.release_lock()
    assert b.queue.acquire_lock()


def test_reaper_requeues_then_fails(worker_factory) -> None:
    from datetime import timedelta

    w = worker_factory("reaper", max_attempts=2)
    job = new_job({})
    past = datetime.now(UTC) - timedelta(seconds=30)
    job.update(status="running", lease_owner="dead", lease_expires_at=past, attempts=1)
    w.queue.jobs.insert_one(job)
    assert w.queue.reap_expired() == 1
    doc = w.queue.jobs.find_one({"_id": job["_id"]})
    assert doc["status"] == "queued" and doc["lease_owner"] is None
    assert "re-queued" in doc["log_tail"][-1]
    w.queue.jobs.update_one(
        {"_id": job["_id"]},
        {"$set": {"status": "running", "lease_expires_at": past, "attempts": 2}},
    )
    assert w.queue.reap_expired() == 1
    doc = w.queue.jobs.find_one({"_id": job["_id"]})
    assert doc["status"] == "failed" and "lease expired" in doc["error"]
    # A live lease is left alone.
    live = new_job({})
    live.update(
        status="running",
        lease_owner="alive",
        lease_expires_at=datetime.now(UTC) + timedelta(seconds=60),
        attempts=1,
    )
    w.queue.jobs.insert_one(live)
    assert w.queue.reap_expired() == 0


def test_threshold_trigger_enqueues_once(worker_factory) -> None:
    w = worker_factory("t", new_ratings_threshold=5)
    w.db.ratings.insert_many(
        [{"userId": 1, "movieId": m, "rating": 4.0, "timestamp": 100 + m} for m in range(4)]
    )
    assert w.triggers.check() is None  # 4 new ratings < 5
    w.db.ratings.insert_one({"userId": 2, "movieId": 1, "rating": 3.0, "timestamp": 200})
    assert w.triggers.check() == "threshold"
    assert w.triggers.check() is None  # never a second one while one is queued
    jobs = list(w.queue.jobs.find())
    assert len(jobs) == 1 and jobs[0]["trigger"] == "threshold" and jobs[0]["status"] == "queued"
    # The catalog's enqueue slot now names this job, so a POST would see the conflict too.
    assert w.queue.meta.find_one({"_id": "retrain_slot"})["job_id"] == jobs[0]["_id"]
    # That retrain was rejected: the same ratings must not fire it again, new ones will.
    w.queue.jobs.update_many({}, {"$set": {"status": "rejected"}})
    assert w.triggers.check() is None
    later = int(time.time()) + 5
    w.db.ratings.insert_many(
        [{"userId": 3, "movieId": m, "rating": 4.0, "timestamp": later} for m in range(5)]
    )
    assert w.triggers.check() == "threshold"


def test_schedule_fires_once_per_slot(worker_factory) -> None:
    from datetime import timedelta

    now = datetime.now(UTC)
    w = worker_factory("s", schedule=f"{now:%H}:{now:%M}")
    assert w.triggers.check() is None  # first start remembers the slot, no catch-up storm
    w.queue.meta.update_one(
        {"_id": "trainer_schedule"}, {"$set": {"last_slot": now - timedelta(days=1)}}
    )
    assert w.triggers.check() == "schedule"
    w.queue.jobs.update_many({}, {"$set": {"status": "succeeded"}})
    assert w.triggers.check() is None  # the same slot never fires twice
    assert [j["trigger"] for j in w.queue.jobs.find()] == ["schedule"]
