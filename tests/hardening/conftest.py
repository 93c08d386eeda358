"""One real MovieRec stack for the hardening suite, on its own restartable MongoDB.

Unlike the e2e stack it owns its SecantusDB daemon (the fault tests stop and restart it), runs
on a MovieLens subset (every movie, the ratings of the first users) so that mongo-init and
training take seconds, configures CORS for one origin, and keeps every service's log so tests
can grep them. The trainer worker is not started: nothing here needs retraining, and admin
retrain calls made by the fuzzer simply stay queued.
"""

from __future__ import annotations

import csv
import json
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import (
    NGINX,
    ROOT,
    ManagedProcess,
    MongoServer,
    free_port,
    start_nginx,
    wait_http,
)

ALLOWED_ORIGIN = "http://allowed.example"
API_KEY = "hardening-service-key-0123456789abcdef"
DEMO_PASSWORD = "hardening-demo-password-1"
SUBSET_MAX_USER = 60  # ratings of MovieLens users 1..60 (~8.7k ratings)


@dataclass
class HStack:
    mongo: MongoServer
    db_name: str
    data_dir: Path
    model_dir: Path
    logs: Path
    jwt_secret: str
    admin_username: str
    admin_password: str
    base_url: str = ""
    catalog_url: str = ""
    recs_url: str = ""
    version: str = ""
    procs: dict[str, ManagedProcess] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)

    @property
    def mongo_url(self) -> str:
        return self.mongo.url

    def log_tails(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.log_tail(40)}" for n, p in self.procs.items())

    def login(self, username: str, password: str) -> str:
        r = httpx.post(
            f"{self.catalog_url}/api/auth/login",
            json={"username": username, "password": password},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def register(self, prefix: str = "h") -> tuple[str, str, int]:
        """A new account: (token, password, userId)."""
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        password = secrets.token_urlsafe(16)
        r = httpx.post(
            f"{self.catalog_url}/api/auth/register",
            json={"username": name, "password": password},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return body["access_token"], password, body["user"]["userId"]


def make_subset(src: Path, dst: Path, max_user: int = SUBSET_MAX_USER) -> Path:
    """Every movie and link, the ratings of users 1..max_user (a real, small MovieLens)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("movies.csv", "links.csv"):
        shutil.copyfile(src / name, dst / name)
    with open(src / "ratings.csv", newline="") as fin, open(dst / "ratings.csv", "w") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            if int(row[0]) <= max_user:
                writer.writerow(row)
    return dst


def base_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("MONGO_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_step(name: str, args: list[str], env: dict[str, str], logs: Path, timeout: float) -> str:
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        res = subprocess.run(
            args,
            env={**base_env(), **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    text = log.read_text(errors="replace")
    if res.returncode != 0:
        pytest.fail(f"{name} failed with exit code {res.returncode}:\n{text[-4000:]}")
    return text


def train_args(data_dir: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "movierec_trainer",
        "train",
        "--data-dir",
        str(data_dir),
        "--engine",
        "local",
        "--holdout",
        "0",
        "--iterations",
        "5",
        "--ranking-iterations",
        "3",
        "--output",
        str(model_dir),
        "--json",
        *extra,
    ]


def start_recommender(
    env: dict[str, str], model_dir: Path, log_path: Path, port: int | None = None
) -> tuple[ManagedProcess, str]:
    port = port or free_port()
    proc = ManagedProcess(
        [sys.executable, "-m", "recommender_api"],
        env={
            **base_env(),
            **env,
            "MODEL_DIR": str(model_dir),
            "RECOMMENDER_HOST": "127.0.0.1",
            "RECOMMENDER_PORT": str(port),
            "RELOAD_POLL_SECONDS": "1",
            "RELOAD_DEBOUNCE_MS": "50",
        },
        log_path=log_path,
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", timeout=90, proc=proc.proc)
    return proc, url


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Poll until predicate() returns a truthy value (returned) or fail with `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = repr(exc)
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last})")


def model_version(url: str) -> str | None:
    return httpx.get(f"{url}/api/recs/model", timeout=5).json().get("version")


@pytest.fixture(scope="session")
def hstack(
    movielens_dir: Path, output_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HStack]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (`make system-check` installs it)")
    run_id = uuid.uuid4().hex[:8]
    logs = output_dir / "hardening" / run_id  # world-readable: nginx workers write here
    logs.mkdir(parents=True)
    data_dir = make_subset(movielens_dir, tmp_path_factory.mktemp("h-data"))
    model_dir = tmp_path_factory.mktemp("h-models")
    mongo = MongoServer(tmp_path_factory.mktemp("h-mongo"), log_path=logs / "mongo.log").start()
    st = HStack(
        mongo=mongo,
        db_name=f"hard_{run_id}",
        data_dir=data_dir,
        model_dir=model_dir,
        logs=logs,
        jwt_secret=secrets.token_urlsafe(48),
        admin_username="admin",
        admin_password=secrets.token_urlsafe(16),
    )
    st.service_env = {
        "MONGO_URL": mongo.url,
        "MONGO_DB": st.db_name,
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(data_dir),
        "JWT_SECRET": st.jwt_secret,
        "API_KEYS": json.dumps([API_KEY]),
        "CORS_ORIGINS": json.dumps([ALLOWED_ORIGIN]),
        "LOG_LEVEL": "INFO",
        "LOG_JSON": "true",
        "POPULARITY_PRIOR_WEIGHT": "20",
        # The fuzzer sends many failed logins from 127.0.0.1; the per-username limit (5) is
        # what the brute-force test checks, the per-client one has its own catalog test.
        "LOGIN_MAX_FAILURES_PER_CLIENT": "100000",
        "SIGNUP_MAX_PER_CLIENT": "100000",  # the fuzzer registers; test_accounts tests the limit
        "TRUST_FORWARDED_FOR": "true",
    }
    procs = st.procs
    try:
        run_step(
            "init",
            [sys.executable, "-m", "movierec_init"],
            {
                **st.service_env,
                "ADMIN_USERNAME": st.admin_username,
                "ADMIN_PASSWORD": st.admin_password,
                "DEMO_ACCOUNTS": "1",
                "DEMO_PASSWORD": DEMO_PASSWORD,
                "LOG_JSON": "false",
            },
            logs,
            timeout=300,
        )
        run_step("train", train_args(data_dir, model_dir), st.service_env, logs, timeout=300)
        st.version = (model_dir / "CURRENT").read_text().strip()
        catalog_port, recs_port, web_port = free_port(), free_port(), free_port()
        st.catalog_url = f"http://127.0.0.1:{catalog_port}"
        st.base_url = f"http://127.0.0.1:{web_port}"
        procs["catalog"] = ManagedProcess(
            [sys.executable, "-m", "catalog_api"],
            env={
                **base_env(),
                **st.service_env,
                "CATALOG_HOST": "127.0.0.1",
                "CATALOG_PORT": str(catalog_port),
            },
            log_path=logs / "catalog.log",
        ).start()
        procs["recommender"], st.recs_url = start_recommender(
            st.service_env, model_dir, logs / "recommender.log", recs_port
        )
        procs["nginx"] = start_nginx(
            logs / "nginx", web_port, catalog_port, recs_port, logs / "nginx.log"
        )
        wait_http(f"{st.catalog_url}/healthz", timeout=90, proc=procs["catalog"].proc)
        wait_http(f"{st.base_url}/healthz", timeout=30, proc=procs["nginx"].proc)
        wait_ready(st)
        yield st
    except Exception:
        print(st.log_tails(), file=sys.stderr)
        raise
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
        mongo.stop()


def wait_ready(st: HStack, timeout: float = 120.0) -> None:
    """Both APIs ready through nginx, the recommender serving the trained model."""

    def ready() -> bool:
        ok = all(
            httpx.get(f"{u}/readyz", timeout=5).status_code == 200
            for u in (st.catalog_url, st.recs_url)
        )
        popular = httpx.get(f"{st.base_url}/api/movies/popular", timeout=5).status_code
        return ok and popular == 200 and model_version(st.base_url) == st.version

    wait_for(ready, timeout, f"the stack to be ready\n{st.log_tails()}")


@pytest.fixture(scope="session")
def admin_token(hstack: HStack) -> str:
    return hstack.login(hstack.admin_username, hstack.admin_password)
