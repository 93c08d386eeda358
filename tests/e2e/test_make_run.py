"""`make run` end to end: up on free ports, answering through nginx, Ctrl-C leaves nothing.

The test runs the real `make run` (scripts/run_stack.py: embedded SecantusDB, Spark master and
worker, mongo-init, the first model, both APIs, the trainer worker, nginx) in its own process
group with a temporary VAR_DIR, reusing the repository's .venv (`-o install`: `make test` has
just installed it) and data. Ctrl-C is a SIGINT to the whole foreground process group, which
is what the test sends. A second start must reuse the database and the model.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.timeout(1800)]

PORT_VARS = (
    "MOVIEREC_HTTP_PORT",
    "CATALOG_PORT",
    "RECOMMENDER_PORT",
    "MONGO_PORT",
    "SPARK_MASTER_PORT",
    "SPARK_UI_PORT",
    "SPARK_WORKER_UI_PORT",
)
FIRST_START_TIMEOUT = 1200.0
READY_LINE = "MovieRec is up."
# What make run prints when it came up without nginx: this test needs nginx, so it fails at once
# instead of waiting FIRST_START_TIMEOUT for a READY_LINE that can never come.
NO_NGINX_LINE = "MovieRec APIs are up (no nginx"


@dataclass
class Run:
    proc: subprocess.Popen
    log: Path
    started: float

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 80) -> str:
        return "\n".join(self.text().splitlines()[-n:])


def terminal_signals() -> None:
    """In the child before exec: the signal dispositions a terminal's shell gives a job (all
    default), whatever the test runner inherited. Under `nohup` (SIGHUP ignored) make would
    keep SIGHUP ignored, as it should for a user who asked for that, and the SIGHUP case of
    the supervision test would test nohup instead of make run."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def start_make_run(env: dict[str, str], log: Path) -> Run:
    out = open(log, "wb")  # noqa: SIM115 - the child keeps writing after this returns
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-o", "install", "run"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a shell's foreground job
        preexec_fn=terminal_signals,
    )
    out.close()
    return Run(proc, log, time.monotonic())


def wait_ready(run: Run, timeout: float) -> float:
    deadline = run.started + timeout
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            pytest.fail(f"make run exited with {run.proc.returncode}:\n{run.tail()}")
        text = run.text()
        if READY_LINE in text:
            return time.monotonic() - run.started
        if NO_NGINX_LINE in text or "WARNING not starting nginx" in text:
            pytest.fail(f"make run started without nginx (apt-get install nginx):\n{run.tail()}")
        time.sleep(0.5)
    pytest.fail(f"make run not up after {timeout:.0f}s:\n{run.tail()}")


def tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def cmdlines(pid: int) -> list[str]:
    out = []
    for p in tree(pid):
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(p.cmdline()))
    return out


def alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
    return left


def processes_mentioning(var_dir: Path) -> list[str]:
    """Anything still running with our temporary state dir on its command line or in its env."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if str(var_dir) in cmd or p.environ().get("VAR_DIR") == str(var_dir):
                found.append(f"{p.pid} {cmd[:160]}")
    return found


def ctrl_c(run: Run, ports: dict[str, int], var_dir: Path) -> float:
    """SIGINT to the process group, as a terminal does; returns the seconds it took to stop."""
    procs = tree(run.proc.pid)
    assert len(procs) > 8, "expected make, run_stack, two honchos and their services"
    t0 = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)
    try:
        run.proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(run.proc.pid, signal.SIGKILL)
        pytest.fail(f"make run did not stop within 90 s of Ctrl-C:\n{run.tail()}")
    took = time.monotonic() - t0
    time.sleep(1.0)
    assert alive(procs) == [], "processes survived Ctrl-C"
    assert processes_mentioning(var_dir) == []
    for name, port in ports.items():
        with socket.socket() as s:
            s.settimeout(0.5)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name}={port} still listening"
    return took


def check_serving(base: str, demo_password: str, api_key: str) -> dict:
    home = httpx.get(base + "/", timeout=10)
    assert home.status_code == 200
    assert "<html" in home.text.lower()
    login = httpx.post(
        base + "/api/auth/login",
        json={"username": "ml1", "password": demo_password},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    body = login.json()
    token = next(body[k] for k in ("access_token", "token") if k in body)
    recs = httpx.get(
        base + "/api/recs/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert recs.status_code == 200, recs.text
    data = recs.json()
    items = data["items"] if isinstance(data, dict) else data
    assert len(items) == 10
    assert all("movieId" in it for it in items)
    # Another service, with the API key make run generated (README's batch example).
    batch = httpx.post(
        base + "/api/recs/batch",
        json={"userIds": [1, 2, 3], "k": 5},
        headers={"X-API-Key": api_key},
        timeout=30,
    )
    assert batch.status_code == 200, batch.text
    assert len(batch.json()["results"]) == 3
    return data


def login(base: str, username: str, password: str) -> str:
    r = httpx.post(
        base + "/api/auth/login", json={"username": username, "password": password}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def start_retrain_and_wait_running(base: str, admin_password: str, timeout: float = 180) -> dict:
    """Admin → POST /api/admin/retrain through nginx; the trainer worker must claim it."""
    headers = {"Authorization": f"Bearer {login(base, 'admin', admin_password)}"}
    r = httpx.post(base + "/api/admin/retrain", json={"iterations": 20}, headers=headers)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/api/admin/jobs/{job_id}", headers=headers, timeout=10).json()
        assert job["status"] in ("queued", "running"), job
        if job["status"] == "running" and (job.get("progress") or {}).get("iteration"):
            return job
        time.sleep(0.5)
    pytest.fail(f"job not running an ALS iteration after {timeout:.0f}s: {job}")


def require_programs() -> None:
    """Fail at once (not after FIRST_START_TIMEOUT) when make run cannot bring up the stack."""
    missing = [
        c for c in ("java", "nginx") if not (shutil.which(c) or Path(f"/usr/sbin/{c}").exists())
    ]
    if missing:
        pytest.fail(f"make run needs {', '.join(missing)}: run `make system-check` (see README)")


NOISE = (
    "Traceback",
    " ERROR ",
    "ERROR ",
    "Closing down clientserver connection",
    "task of very large size",
    "RECEIVED SIGNAL",
    "\x1b[",  # colour codes, although the output is a file
)
ACCESS_LINE = re.compile(
    r"(catalog|recommender)_api\.access: (GET|POST|PUT) /api/\S+ \d{3} [\d.]+ms"
)


def assert_quiet_normal_run(log: str) -> None:
    """A normal start and Ctrl-C: no error, no traceback, no known noise, no escape codes;
    one access line per API request, with method, path, status and duration, from both APIs."""
    noisy = [ln for ln in log.splitlines() if any(n in ln for n in NOISE)]
    assert noisy == [], "\n".join(noisy[:40])
    services = {m.group(1) for m in ACCESS_LINE.finditer(log)}
    assert services == {"catalog", "recommender"}, services


def read_secrets(var_dir: Path) -> dict[str, str]:
    lines = (var_dir / "secrets.env").read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#"))


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, int], Path]]:
    var_dir = tmp_path / "var"
    ports = {name: free_port() for name in PORT_VARS}
    env = {k: v for k, v in os.environ.items() if k not in ("MONGO_URL", "MAKEFLAGS", "MFLAGS")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"VAR_DIR": str(var_dir), "STARTUP_TIMEOUT": "600", "LOG_JSON": "false"})
    yield env, ports, var_dir
    # Whatever happened in the test, leave nothing behind.
    for line in processes_mentioning(var_dir):
        with contextlib.suppress(psutil.Error):
            psutil.Process(int(line.split()[0])).kill()


def test_make_run_serves_stops_cleanly_and_restarts_from_state(
    stack_env: tuple[dict[str, str], dict[str, int], Path], output_dir: Path
) -> None:
    env, ports, var_dir = stack_env
    require_programs()
    base = f"http://127.0.0.1:{ports['MOVIEREC_HTTP_PORT']}"
    log_dir = var_dir.parent

    first = start_make_run(env, log_dir / "make-run-1.log")
    try:
        first_up = wait_ready(first, FIRST_START_TIMEOUT)
        secrets = read_secrets(var_dir)
        recs = check_serving(base, secrets["DEMO_PASSWORD"], secrets["API_KEY"])
        assert secrets["ADMIN_PASSWORD"] in first.text(), "admin login is printed"
        current = (var_dir / "models" / "CURRENT").read_text().strip()
        versions = sorted(p.name for p in (var_dir / "models" / "versions").iterdir())
        assert versions == [current]
        first_stop = ctrl_c(first, ports, var_dir)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.proc.pid, signal.SIGKILL)
        (output_dir / "make-run-1.log").write_text(first.text())
    assert_quiet_normal_run(first.text())

    # The second start gets what a .env written for Docker holds (settings reach make run the
    # same way from .env and from the environment): another ADMIN_PASSWORD than the account was
    # created with, and .env.example's empty API_KEYS. What make run prints must work.
    new_admin_password = "changed-Admin-pw-2"
    env2 = {**env, "ADMIN_PASSWORD": new_admin_password, "API_KEYS": "[]"}
    second = start_make_run(env2, log_dir / "make-run-2.log")
    try:
        second_up = wait_ready(second, 300)
        log = second.text()
        assert f"admin / {new_admin_password}   (ADMIN_PASSWORD from environment)" in log
        assert "admin 'admin' password (or role) changed" in log
        assert "API_KEY in var/secrets.env (API_KEYS from environment is an empty list)" in log
        login(base, "admin", new_admin_password)
        assert "already initialised; skipping" in log
        assert f"already serves version {current}; not retraining" in log
        assert re.search(r"model: none in .*; training", log) is None
        assert (var_dir / "models" / "CURRENT").read_text().strip() == current
        assert sorted(p.name for p in (var_dir / "models" / "versions").iterdir()) == versions
        assert read_secrets(var_dir) == secrets, "secrets are generated once"
        check_serving(base, secrets["DEMO_PASSWORD"], secrets["API_KEY"])
        # Ctrl-C in the middle of a retrain on the cluster: the driver JVM and the executors
        # must go too.
        job = start_retrain_and_wait_running(base, new_admin_password)
        assert any("CoarseGrainedExecutorBackend" in c for c in cmdlines(second.proc.pid))
        second_stop = ctrl_c(second, ports, var_dir)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(second.proc.pid, signal.SIGKILL)
        (output_dir / "make-run-2.log").write_text(second.text())

    assert second_up < first_up
    report = (
        "| start | up (s) | Ctrl-C to all stopped (s) |\n|---|---|---|\n"
        f"| first (init + training) | {first_up:.1f} | {first_stop:.1f} |\n"
        f"| second (reuses state) | {second_up:.1f} | {second_stop:.1f} |\n"
        f"strategy of ml1's list: {recs.get('strategy') if isinstance(recs, dict) else '?'}\n"
        f"Ctrl-C during retrain job {job['id']} at iteration {job['progress']['iteration']}\n"
    )
    (output_dir / "make-run-timings.md").write_text(report)
    print("\n" + report)


def test_first_model_falls_back_to_the_local_engine_without_spark(
    tmp_path: Path, movielens_dir: Path
) -> None:
    """scripts/ensure_model.py (make run's and compose's first-model step) never leaves the
    recommender without a model because the cluster is missing, and never retrains one."""
    models = tmp_path / "models"
    dead_master = f"spark://127.0.0.1:{free_port()}"
    cmd = [
        str(ROOT / ".venv" / "bin" / "python"),
        "scripts/ensure_model.py",
        "--data-dir",
        str(movielens_dir),
        "--output",
        str(models),
        "--spark-master",
        dead_master,
    ]
    env = {**os.environ, "LOG_JSON": "false"}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"no Spark master answers at {dead_master}" in first.stdout
    version = (models / "CURRENT").read_text().strip()
    assert (models / "versions" / version / "factors.npz").is_file()

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert f"already serves version {version}; not retraining" in again.stdout
    assert sorted(p.name for p in (models / "versions").iterdir()) == [version]


def test_make_run_without_java_says_how_to_get_it_and_starts_nothing(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make is not None
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "VAR_DIR": str(tmp_path / "var")}
    r = subprocess.run(
        [make, "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "Java 17+ is required" in r.stdout + r.stderr
    assert "apt-get install -y openjdk-17-jre-headless" in r.stdout + r.stderr
    assert not (tmp_path / "var").exists(), "nothing was started"
