"""The whole product, started for real, for the browser tests.

`stack` brings up, in order: the session's MongoDB server (SecantusDB, or $MONGO_URL) with a
fresh database initialised from ml-latest-small by `python -m movierec_init` (admin account
included), a first model trained by `python -m movierec_trainer train --engine local`, the
catalog and recommender APIs (`python -m catalog_api` / `python -m recommender_api`), the
trainer worker (`python -m movierec_trainer worker`, Spark local[1]) and Debian's nginx with
the config scripts/nginx_conf.py renders from frontend/nginx.conf. Every process is a child in
its own process group and is stopped when the module's tests are done.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import NGINX, ROOT, ManagedProcess, free_port, start_nginx, wait_http

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PACKAGES = ("movierec_init", "movierec_trainer", "catalog_api", "recommender_api")


@dataclass
class Stack:
    base_url: str
    catalog_url: str
    recs_url: str
    mongo_url: str
    db_name: str
    model_dir: Path
    admin_username: str
    admin_password: str
    initial_version: str
    logs: Path
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def log_tails(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.log_tail(40)}" for n, p in self.procs.items())


def _run_step(name: str, args: list[str], env: dict[str, str], logs: Path, timeout: float) -> str:
    """A one-shot step (init, train); its output goes to a log file and is returned."""
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        res = subprocess.run(
            args,
            env={**_base_env(), **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    text = log.read_text(errors="replace")
    if res.returncode != 0:
        pytest.fail(f"{name} failed with exit code {res.returncode}:\n{text[-4000:]}")
    return text


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MONGO_URL", None)  # the stack's own value is passed explicitly
    env["LOG_JSON"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _require_packages() -> None:
    def runnable(pkg: str) -> bool:
        try:
            return importlib.util.find_spec(f"{pkg}.__main__") is not None
        except ModuleNotFoundError:
            return False

    missing = [p for p in PACKAGES if not runnable(p)]
    if missing:
        pytest.skip(f"stack parts not built yet: {', '.join(missing)}")


@pytest.fixture(scope="module")
def stack(
    mongo_url: str, movielens_dir: Path, output_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    _require_packages()
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (`make system-check` installs it)")
    run_id = uuid.uuid4().hex[:8]
    # Logs and nginx's files live under the repo's test-output (world-readable) because nginx
    # started as root serves from unprivileged workers.
    logs = output_dir / "e2e" / run_id
    logs.mkdir(parents=True)
    model_dir = tmp_path_factory.mktemp("e2e-models")
    db_name = f"e2e_{run_id}"
    admin_password = secrets.token_urlsafe(12)
    jwt_secret = secrets.token_urlsafe(48)
    common = {
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(movielens_dir),
        "JWT_SECRET": jwt_secret,
        "API_KEYS": '["e2e-service-key-0123456789"]',
        "LOG_LEVEL": "INFO",
    }
    py = sys.executable

    _run_step(
        "init",
        [py, "-m", "movierec_init"],
        {
            **common,
            "ADMIN_USERNAME": "admin",
            "ADMIN_PASSWORD": admin_password,
            "DEMO_ACCOUNTS": "0",
        },
        logs,
        timeout=600,
    )
    out = _run_step(
        "train",
        [
            py,
            "-m",
            "movierec_trainer",
            "train",
            "--data-dir",
            str(movielens_dir),
            "--engine",
            "local",
            "--holdout",
            "0",
            "--output",
            str(model_dir),
            "--json",
        ],
        common,
        logs,
        timeout=600,
    )
    initial_version = (model_dir / "CURRENT").read_text().strip()
    assert initial_version, out[-2000:]

    catalog_port, recs_port, web_port = free_port(), free_port(), free_port()
    env = {**_base_env(), **common}
    procs: dict[str, ManagedProcess] = {}
    stack = Stack(
        base_url=f"http://127.0.0.1:{web_port}",
        catalog_url=f"http://127.0.0.1:{catalog_port}",
        recs_url=f"http://127.0.0.1:{recs_port}",
        mongo_url=mongo_url,
        db_name=db_name,
        model_dir=model_dir,
        admin_username="admin",
        admin_password=admin_password,
        initial_version=initial_version,
        logs=logs,
        procs=procs,
    )
    try:
        procs["catalog"] = ManagedProcess(
            [py, "-m", "catalog_api"],
            env={**env, "CATALOG_HOST": "127.0.0.1", "CATALOG_PORT": str(catalog_port)},
            log_path=logs / "catalog.log",
        ).start()
        procs["recommender"] = ManagedProcess(
            [py, "-m", "recommender_api"],
            env={
                **env,
                "RECOMMENDER_HOST": "127.0.0.1",
                "RECOMMENDER_PORT": str(recs_port),
                "RELOAD_POLL_SECONDS": "1",
            },
            log_path=logs / "recommender.log",
        ).start()
        procs["worker"] = ManagedProcess(
            [py, "-m", "movierec_trainer", "worker"],
            env={
                **env,
                "SPARK_MASTER": "local[1]",
                "SPARK_DRIVER_MEMORY": "1g",
                "POLL_SECONDS": "1",
                "SCHEDULE": "off",
                "NEW_RATINGS_THRESHOLD": "0",
                "WORK_DIR": str(tmp_path_factory.mktemp("e2e-trainer")),
            },
            log_path=logs / "worker.log",
        ).start()
        procs["nginx"] = start_nginx(
            logs / "nginx", web_port, catalog_port, recs_port, logs / "nginx.log"
        )

        wait_http(f"{stack.catalog_url}/healthz", timeout=90, proc=procs["catalog"].proc)
        wait_http(f"{stack.recs_url}/healthz", timeout=90, proc=procs["recommender"].proc)
        wait_http(f"{stack.base_url}/healthz", timeout=30, proc=procs["nginx"].proc)
        _wait_ready(stack)
        yield stack
    except Exception:
        print(stack.log_tails(), file=sys.stderr)
        raise
    finally:
        for p in reversed(list(procs.values())):
            p.stop()


def _wait_ready(stack: Stack, timeout: float = 120.0) -> None:
    """Both APIs answer /readyz, and the recommender serves the trained model with movies."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            ok = all(
                httpx.get(f"{u}/readyz", timeout=5).status_code == 200
                for u in (stack.catalog_url, stack.recs_url)
            )
            info = httpx.get(f"{stack.base_url}/api/recs/model", timeout=5).json()
            popular = httpx.get(f"{stack.base_url}/api/movies/popular", timeout=5)
            if ok and info.get("version") == stack.initial_version and popular.status_code == 200:
                return
            last = f"ready={ok} model={info.get('version')} popular={popular.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    pytest.fail(f"stack not ready after {timeout}s: {last}\n{stack.log_tails()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (`make system-check` installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots(output_dir: Path) -> Path:
    d = output_dir / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d
