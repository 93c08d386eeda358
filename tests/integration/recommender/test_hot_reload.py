"""Hot reload under load: a client loop keeps calling while versions are published.

Every request must succeed; a good version must be served within 2 s of CURRENT changing; a
truncated, tampered or missing version must be refused while the previous one keeps serving.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from movierec_common import artifacts

from tests.integration.recommender.support import (
    RecsServer,
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
)

pytestmark = pytest.mark.timeout(300)


@dataclass
class Load:
    """Background clients recording (status, model_version, time) for every response."""

    server: RecsServer
    threads: int = 2
    seen: list[tuple[int, str | None, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, n: int) -> None:
        paths = ["/api/recs/users/1", "/api/recs/users/42", "/api/recs/similar/1"]
        with httpx.Client(base_url=self.server.base_url, timeout=10.0) as c:
            i = n
            while not self._stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                try:
                    r = c.get(path, headers=self.server.service)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {exc!r}")
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                    continue
                self.seen.append((r.status_code, r.json().get("model_version"), time.monotonic()))

    def __enter__(self) -> Load:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(15)

    def first_seen(self, version: str, after: float) -> float | None:
        for _, v, t in list(self.seen):
            if v == version and t >= after:
                return t
        return None

    def versions_since(self, after: float) -> set[str | None]:
        return {v for _, v, t in list(self.seen) if t >= after}


def point_current_at(model_dir: Path, version: str) -> None:
    """What a buggy or crashed publisher could leave behind: CURRENT naming an unverified
    version (artifacts.activate would refuse, so write it the way save_model does)."""
    tmp = model_dir / ".CURRENT.test.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, model_dir / "CURRENT")


def republish(source: Path, model_dir: Path, activate: bool = True, tag: str = "") -> str:
    """A new version with the trained arrays and a different manifest (a retrain's stand-in)."""
    art = artifacts.load_model(source)
    arrays = {
        k: getattr(art, k)
        for k in artifacts.REQUIRED_KEYS + artifacts.RANKING_KEYS
        if getattr(art, k) is not None
    }
    manifest = {
        k: v
        for k, v in art.manifest.items()
        if k not in ("version", "created_at", "files", "models", "format_version")
    }
    manifest["metrics"] = {**(manifest.get("metrics") or {}), "tag": tag}
    return artifacts.save_model(model_dir, arrays, manifest, activate=activate, keep=20)


def wait_for(load: Load, version: str, since: float, limit: float = 2.0) -> float:
    deadline = since + limit + 1.0
    while time.monotonic() < deadline:
        t = load.first_seen(version, since)
        if t is not None:
            return t - since
        time.sleep(0.02)
    raise AssertionError(f"{version} not served within {limit + 1.0}s")


def test_hot_reload_under_load_and_refusal_of_corrupt_versions(
    recs_db: SeededDb, trained: TrainedModel, tmp_path: Path, start_recs_server: StartServer
) -> None:
    model_dir = tmp_path / "models"
    install_version(trained.root, trained.version, model_dir)
    server = start_recs_server(recs_db, model_dir, RELOAD_POLL_SECONDS="30")
    v1 = trained.version
    assert server.client.get("/api/recs/model").json()["version"] == v1

    with Load(server) as load:
        time.sleep(0.5)
        # 1. A good new version is served within 2 s, with no failed request around it.
        t0 = time.monotonic()
        v2 = republish(trained.root, model_dir, tag="v2")
        lag = wait_for(load, v2, t0)
        assert lag <= 2.0, f"new version served after {lag:.2f}s"
        time.sleep(0.3)

        # 2. Truncated npz: refused, v2 keeps serving.
        v3 = republish(trained.root, model_dir, activate=False, tag="truncated")
        npz = model_dir / "versions" / v3 / "factors.npz"
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
        t1 = time.monotonic()
        point_current_at(model_dir, v3)
        time.sleep(1.5)
        assert load.versions_since(t1) == {v2}
        info = server.client.get("/api/recs/model").json()
        assert info["version"] == v2
        assert v3 in (info["last_error"] or "")

        # 3. One tampered byte (same size, wrong sha256): refused.
        v4 = republish(trained.root, model_dir, activate=False, tag="tampered")
        npz = model_dir / "versions" / v4 / "factors.npz"
        data = bytearray(npz.read_bytes())
        data[len(data) // 2] ^= 0xFF
        npz.write_bytes(bytes(data))
        t2 = time.monotonic()
        point_current_at(model_dir, v4)
        time.sleep(1.5)
        assert load.versions_since(t2) == {v2}
        info = server.client.get("/api/recs/model").json()
        assert info["version"] == v2 and v4 in info["last_error"] and "sha256" in info["last_error"]

        # 4. CURRENT naming a version that is not there (half-written publish): refused.
        t3 = time.monotonic()
        point_current_at(model_dir, "v-does-not-exist")
        time.sleep(1.0)
        assert load.versions_since(t3) == {v2}

        # 5. Recovery: the next good version is served again within 2 s.
        t4 = time.monotonic()
        v5 = republish(trained.root, model_dir, tag="v5")
        lag = wait_for(load, v5, t4)
        assert lag <= 2.0
        time.sleep(0.3)

    assert not load.failures, load.failures[:5]
    assert len(load.seen) > 50
    assert {v for _, v, _ in load.seen} <= {v1, v2, v5}
    info = server.client.get("/api/recs/model").json()
    assert info["version"] == v5 and info["reloads_failed"] >= 3
    metrics = server.client.get("/metrics").text
    assert f'version="{v5}"' in metrics and f'version="{v2}"' not in metrics
    assert 'movierec_recs_model_reloads_total{result="refused"}' in metrics
    server.proc.stop()


def test_poll_fallback_picks_up_a_new_version_without_file_events(
    recs_db: SeededDb, trained: TrainedModel, tmp_path: Path, start_recs_server: StartServer
) -> None:
    """Without file events (RELOAD_WATCH off, as on an NFS volume) the periodic CURRENT check
    still activates the new version."""
    model_dir = tmp_path / "models"
    install_version(trained.root, trained.version, model_dir)
    server = start_recs_server(recs_db, model_dir, RELOAD_POLL_SECONDS="0.5", RELOAD_WATCH="false")
    v2 = republish(trained.root, model_dir, tag="poll")
    deadline = time.monotonic() + 5.0
    version = None
    while time.monotonic() < deadline:
        version = server.client.get("/api/recs/model").json()["version"]
        if version == v2:
            break
        time.sleep(0.1)
    assert version == v2
    server.proc.stop()


def test_refused_current_is_retried_when_its_folder_completes_and_readyz_says_so(
    recs_db: SeededDb, trained: TrainedModel, tmp_path: Path, start_recs_server: StartServer
) -> None:
    """CURRENT written before its version folder was complete: the version is refused (the old
    one keeps serving, /readyz says `degraded` naming both), and once the folder is complete it
    is served without anyone touching CURRENT again (issue 19 C)."""
    model_dir = tmp_path / "models"
    install_version(trained.root, trained.version, model_dir)
    server = start_recs_server(recs_db, model_dir, RELOAD_POLL_SECONDS="0.5")
    v2 = republish(trained.root, model_dir, activate=False, tag="late-files")
    factors = model_dir / "versions" / v2 / "factors.npz"
    aside = tmp_path / "factors.npz"
    os.replace(factors, aside)  # the folder is not complete yet ...
    point_current_at(model_dir, v2)  # ... but CURRENT already names it

    def model() -> dict:
        return server.client.get("/api/recs/model").json()

    deadline = time.monotonic() + 10.0
    while model()["reloads_failed"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model()["reloads_failed"] >= 1 and model()["version"] == trained.version
    ready = server.client.get("/readyz")
    assert ready.status_code == 200, ready.text  # the old model still serves
    body = ready.json()
    assert body["status"] == "degraded", body
    assert body["checks"]["current"] == v2 and body["checks"]["model"] == trained.version
    assert body["checks"]["model_is_current"] is False and body["checks"]["last_error"]
    time.sleep(3.0)  # several poll periods: still refused, still the old one
    assert model()["version"] == trained.version

    os.replace(aside, factors)  # the publisher finishes; CURRENT is not written again
    t0 = time.monotonic()
    while model()["version"] != v2 and time.monotonic() < t0 + 10.0:
        time.sleep(0.1)
    assert model()["version"] == v2, model()
    body = server.client.get("/readyz").json()
    assert body["status"] == "ready" and body["checks"]["model_is_current"] is True, body
    r = server.client.get("/api/recs/users/1", headers=server.service)
    assert r.status_code == 200 and r.json()["model_version"] == v2
    server.proc.stop()
