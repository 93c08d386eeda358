"""Faults on the running stack: the database goes away, the recommender dies mid-reload, the
model files are corrupt, the model volume is read-only.

Covered elsewhere (not repeated here):
  * a truncated / tampered factors.npz and a CURRENT naming a missing version while serving:
    tests/integration/recommender/test_hot_reload.py
  * the trainer worker killed mid-job (lease expiry):
    tests/spark/test_worker.py::test_killed_worker_lease_expires_and_job_does_not_stay_running
  * a Spark worker and its executor killed mid-retrain: tests/spark/test_worker_spark_faults.py::
    test_spark_worker_killed_mid_retrain_fails_clearly_and_serving_is_unaffected
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from movierec_common import artifacts
from pymongo import MongoClient

from tests.hardening.conftest import (
    API_KEY,
    HStack,
    model_version,
    start_recommender,
    train_args,
    wait_for,
)
from tests.support import ManagedProcess

pytestmark = pytest.mark.timeout(400)
SERVICE = {"X-API-Key": API_KEY}


def assert_json_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.request.url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert err["code"] and err["message"], err
    return err


def copy_models(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def republish(model_dir: Path, *, activate: bool = True, tag: str = "h") -> str:
    """A new version with the same arrays as the current one (a real, valid publish)."""
    current = artifacts.current_version(model_dir)
    vdir = model_dir / "versions" / str(current)
    with np.load(vdir / "factors.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest.pop("created_at", None)
    name = f"{current}-{tag}"[:100]
    return artifacts.save_model(model_dir, arrays, manifest, activate=activate, version=name)


def write_current(model_dir: Path, raw: bytes) -> None:
    tmp = model_dir / ".CURRENT.test.tmp"
    tmp.write_bytes(raw)
    os.replace(tmp, model_dir / "CURRENT")


# --- MongoDB stopped and restarted -----------------------------------------------------------


def test_mongodb_outage_is_json_503_then_full_recovery_without_losing_ratings(
    hstack: HStack,
) -> None:
    token, _, user_id = hstack.register("outage")
    auth = {"Authorization": f"Bearer {token}"}
    web = httpx.Client(base_url=hstack.base_url, timeout=30)
    acknowledged: dict[int, float] = {}
    for movie, value in ((1, 4.0), (2, 3.5), (50, 5.0)):
        r = web.put(f"/api/movies/{movie}/rating", json={"rating": value}, headers=auth)
        assert r.status_code == 200, r.text
        acknowledged[movie] = value
    assert web.get("/api/recs/me", headers=auth).status_code == 200

    hstack.mongo.stop()
    try:
        # While it is down: everything that must touch the database is a JSON 503, quickly.
        needs_db = [
            ("PUT", "/api/movies/3/rating", {"rating": 2.0}),
            ("DELETE", "/api/movies/1/rating", None),
            ("GET", "/api/me/ratings", None),
            ("POST", "/api/auth/login", {"username": "ml1", "password": "whatever-pw"}),
            ("GET", "/api/recs/me", None),
            ("GET", f"/api/recs/users/{user_id}", None),
        ]
        # Catalog pages may be answered from a cache; if not, they are a JSON 503 too.
        may_be_cached = [
            ("GET", "/api/movies", None),
            ("GET", "/api/movies/1", None),
            ("GET", "/api/movies/popular", None),
            ("GET", "/api/genres", None),
        ]
        for method, path, body in needs_db + may_be_cached:
            t0 = time.monotonic()
            r = web.request(method, path, json=body, headers=auth)
            if (method, path, body) in may_be_cached and r.status_code == 200:
                assert r.json(), path
            else:
                assert_json_error(r, 503)
            assert time.monotonic() - t0 < 15, (path, "a 503 should not hang")
        for url in (hstack.catalog_url, hstack.recs_url):
            assert httpx.get(f"{url}/readyz", timeout=15).status_code == 503
            assert httpx.get(f"{url}/healthz", timeout=15).status_code == 200  # alive
        # What needs no database keeps working from memory.
        assert web.get("/api/recs/similar/1").status_code == 200
        assert web.get("/api/recs/model").json()["version"] == hstack.version
    finally:
        hstack.mongo.start()

    # Full recovery without restarting any service.
    wait_for(
        lambda: all(
            httpx.get(f"{u}/readyz", timeout=5).status_code == 200
            for u in (hstack.catalog_url, hstack.recs_url)
        ),
        90,
        "both APIs ready again after MongoDB restarted",
    )
    wait_for(
        lambda: (
            web.put("/api/movies/3/rating", json={"rating": 2.0}, headers=auth).status_code == 200
        ),
        60,
        "ratings accepted again",
    )
    acknowledged[3] = 2.0
    assert web.get("/api/movies").status_code == 200
    recs = web.get("/api/recs/me", headers=auth)
    assert recs.status_code == 200 and recs.json()["n_user_ratings"] == len(acknowledged)
    mine = web.get("/api/me/ratings", headers=auth).json()
    assert {i["movieId"]: i["rating"] for i in mine["items"]} == acknowledged

    # Nothing acknowledged was lost, and the touched movies' stats converge to a recount by
    # themselves. A request that failed during the restart may have written its rating and not
    # its `$inc`; its pending entry is reclaimed after STATS_DEAD_GRACE_SECONDS (2 s) and the
    # movie recounted (repositories/stats.py), so the bound is a few seconds, not a restart.
    client: MongoClient = MongoClient(hstack.mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[hstack.db_name]
        stored = {d["movieId"]: d["rating"] for d in db.ratings.find({"userId": user_id})}
        assert stored == acknowledged

        def stats_off() -> list[tuple[int, int, float, int, float, int]]:
            off = []
            for movie in acknowledged:
                docs = list(db.ratings.find({"movieId": movie}, {"rating": 1}))
                m = db.movies.find_one({"movieId": movie})
                n, s = len(docs), sum(d["rating"] for d in docs)
                pending = len(m.get("stats_pending") or [])
                if m["rating_count"] != n or abs(m["rating_sum"] - s) > 1e-6 or pending:
                    off.append((movie, m["rating_count"], m["rating_sum"], n, s, pending))
            return off

        deadline = time.monotonic() + 30
        while (off := stats_off()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert off == [], "(movie, count, sum, recount, resum, pending) not converged in 30 s"
    finally:
        client.close()
    web.close()


# --- the recommender killed during a hot reload ------------------------------------------------


def test_recommender_killed_during_hot_reload_serves_newest_current_after_restart(
    hstack: HStack, tmp_path: Path
) -> None:
    model_dir = copy_models(hstack.model_dir, tmp_path / "models")
    proc, url = start_recommender(hstack.service_env, model_dir, hstack.logs / "recs-kill.log")
    try:
        assert model_version(url) == hstack.version
        # Publish while requests are being served, and kill -9 the process right away: the
        # reload it started (file event → load → verify → swap) dies half done.
        for i in range(3):
            newest = republish(model_dir, tag=f"kill{i}")
            time.sleep(0.05 * i)  # before, during and after the load
            proc.kill()
            assert proc.proc is not None and proc.proc.poll() is not None
            proc, url = start_recommender(
                hstack.service_env, model_dir, hstack.logs / "recs-kill.log"
            )
            assert model_version(url) == newest
            r = httpx.get(f"{url}/api/recs/users/1", headers=SERVICE, timeout=30)
            assert r.status_code == 200 and r.json()["model_version"] == newest
            assert r.json()["strategy"] == "personalized"
    finally:
        proc.stop()


# --- corrupt CURRENT / factors.npz -------------------------------------------------------------

GARBAGE_CURRENT = [
    b"../../../../etc/passwd\n",
    b"no-such-version\n",
    b"\x00\xff\xfe garbage \x80\n",
    b"",
    b"v" * 5000,
]


def test_garbage_current_keeps_the_old_model_serving(hstack: HStack, tmp_path: Path) -> None:
    model_dir = copy_models(hstack.model_dir, tmp_path / "models")
    proc, url = start_recommender(hstack.service_env, model_dir, hstack.logs / "recs-garbage.log")
    try:
        v1 = hstack.version
        for raw in GARBAGE_CURRENT:
            before = httpx.get(f"{url}/api/recs/model", timeout=10).json()
            write_current(model_dir, raw)
            time.sleep(2.0)  # file event + one poll period (1 s)
            info = httpx.get(f"{url}/api/recs/model", timeout=10).json()
            assert info["version"] == v1, raw
            if raw.strip():
                assert info["reloads_failed"] > before["reloads_failed"], (raw, info)
            r = httpx.get(f"{url}/api/recs/users/1", headers=SERVICE, timeout=30)
            assert r.status_code == 200 and r.json()["model_version"] == v1, raw
        # A good publish afterwards is picked up: the store did not get stuck.
        write_current(model_dir, f"{v1}\n".encode())
        v2 = republish(model_dir, tag="after-garbage")
        wait_for(lambda: model_version(url) == v2, 15, "the next good version")
    finally:
        proc.stop()


def _corrupt_npz(vdir: Path) -> None:
    npz = vdir / "factors.npz"
    data = bytearray(npz.read_bytes())
    for i in range(100, len(data), max(1, len(data) // 50)):
        data[i] ^= 0x5A
    npz.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["factors_npz", "current_garbage", "manifest_missing"])
def test_fresh_start_with_only_a_corrupt_model_serves_popularity(
    hstack: HStack, tmp_path: Path, damage: str
) -> None:
    model_dir = copy_models(hstack.model_dir, tmp_path / "models")
    vdir = model_dir / "versions" / hstack.version
    if damage == "factors_npz":
        _corrupt_npz(vdir)
    elif damage == "current_garbage":
        write_current(model_dir, b"\x00\x01garbage/../..\n")
    else:
        (vdir / "manifest.json").unlink()
    proc, url = start_recommender(hstack.service_env, model_dir, hstack.logs / f"recs-{damage}.log")
    try:
        info = httpx.get(f"{url}/api/recs/model", timeout=10).json()
        assert info["version"] is None and info["strategy"] == "popular", info
        assert info["last_error"], info
        wait_for(
            lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
            30,
            "ready on popularity alone",
        )
        r = httpx.get(f"{url}/api/recs/users/1", headers=SERVICE, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "popular" and len(body["items"]) == 10
        assert body["model_version"] is None
        assert_json_error(httpx.get(f"{url}/api/recs/similar/1", timeout=10), 503)
    finally:
        proc.stop()


# --- read-only MODEL_DIR during publish --------------------------------------------------------


def _read_only_command(model_dir: Path, argv: list[str]) -> list[str]:
    """Run argv with model_dir read-only. As root (CI) file modes do not stop writes, so the
    directory is bind-mounted read-only in a private mount namespace; otherwise chmod does."""
    if os.geteuid() == 0:
        script = f'mount --bind -o ro "{model_dir}" "{model_dir}" && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]
    for p in [model_dir, *model_dir.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    return argv


def test_publish_into_a_read_only_model_dir_fails_clearly_and_keeps_current(
    hstack: HStack, tmp_path: Path
) -> None:
    if os.geteuid() == 0 and shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to make a read-only mount as root")
    model_dir = copy_models(hstack.model_dir, tmp_path / "models")
    before_current = (model_dir / "CURRENT").read_bytes()
    before_versions = sorted(p.name for p in (model_dir / "versions").iterdir())
    proc, url = start_recommender(hstack.service_env, model_dir, hstack.logs / "recs-ro.log")
    try:
        argv = train_args(hstack.data_dir, model_dir, "--no-ranking")
        res = subprocess.run(
            _read_only_command(model_dir, argv),
            env={**os.environ, **hstack.service_env, "MODEL_DIR": str(model_dir)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        out = res.stdout + res.stderr
        (hstack.logs / "train-readonly.log").write_text(out)
        assert res.returncode != 0, out[-3000:]
        # A clear error naming the cause (the --json contract's last line), not a traceback.
        assert "Traceback" not in out, out[-3000:]
        error = json.loads(res.stdout.strip().splitlines()[-1])["error"]
        assert error["code"] == "io_error", error
        assert (
            "Read-only file system" in error["message"] or "Permission denied" in error["message"]
        )
        assert (model_dir / "CURRENT").read_bytes() == before_current
        assert sorted(p.name for p in (model_dir / "versions").iterdir()) == before_versions
        assert model_version(url) == hstack.version
        r = httpx.get(f"{url}/api/recs/users/1", headers=SERVICE, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"] == hstack.version
    finally:
        proc.stop()
        if os.geteuid() != 0:
            for p in [model_dir, *model_dir.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o755)


@pytest.mark.spark
@pytest.mark.slow
def test_retrain_job_publishing_into_a_read_only_model_dir_fails_and_keeps_current(
    hstack: HStack, admin_token: str, tmp_path: Path
) -> None:
    """The same fault through the job queue: the trainer worker (Spark local[1]) runs a retrain
    whose publish hits the read-only volume; the job ends `failed` with the reason, and CURRENT
    and the published versions are untouched."""
    if os.geteuid() == 0 and shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to make a read-only mount as root")
    model_dir = copy_models(hstack.model_dir, tmp_path / "models")
    before_current = (model_dir / "CURRENT").read_bytes()
    before_versions = sorted(p.name for p in (model_dir / "versions").iterdir())
    admin = {"Authorization": f"Bearer {admin_token}"}
    api = httpx.Client(base_url=hstack.catalog_url, headers=admin, timeout=30)
    for status in ("queued", "running"):  # e.g. left by another test: not ours to run
        for job in api.get("/api/admin/jobs", params={"status": status}).json()["items"]:
            api.post(f"/api/admin/jobs/{job['id']}/cancel")
    worker = ManagedProcess(
        _read_only_command(model_dir, [sys.executable, "-m", "movierec_trainer", "worker"]),
        env={
            **hstack.service_env,
            "MODEL_DIR": str(model_dir),
            "SPARK_MASTER": "local[1]",
            "SPARK_DRIVER_MEMORY": "1g",
            "POLL_SECONDS": "1",
            "SCHEDULE": "off",
            "NEW_RATINGS_THRESHOLD": "0",
            "WORK_DIR": str(tmp_path / "work"),
        },
        log_path=hstack.logs / "worker-readonly.log",
    ).start()
    try:
        r = api.post("/api/admin/retrain", json={"iterations": 2, "rank": 8})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        def finished() -> dict | None:
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
            job = api.get(f"/api/admin/jobs/{job_id}").json()
            return job if job["status"] not in ("queued", "running") else None

        job = wait_for(finished, 300, f"the retrain job to end\n{worker.log_tail()}", 1.0)
        assert job["status"] == "failed", job
        assert "Read-only file system" in str(job["error"]), job["error"]
        assert job.get("model_version") is None
        assert (model_dir / "CURRENT").read_bytes() == before_current
        assert sorted(p.name for p in (model_dir / "versions").iterdir()) == before_versions
    finally:
        worker.stop()
        api.close()
