"""Fixtures for the Compose stack test: the podman API socket, base images, one project.

The stack fixture is module-scoped: building and booting it takes minutes, and the tests in
test_stack.py walk one user's flow through it in order (sign up, rate, fold-in, retrain on the
Spark cluster, rollback, scale, down). Its finaliser always runs `docker-compose down -v`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.stack import (
    NGINX_BASE,
    PYTHON_BASE,
    TIMINGS,
    ApiService,
    Stack,
    build_base_images,
    podman,
    unavailable_reason,
)
from tests.support import DATA_DIR, ROOT, free_port

VAR = ROOT / "var" / "compose"
REPORT = ROOT / "bench" / "out" / "compose.md"
IMAGES = (
    "movierec/services",
    "movierec/spark",
    "movierec/frontend",
    "movierec-test/secantusdb",
)
SHARED_DATA = ROOT.parent / "shared" / "data" / "ml-latest-small"
# The first start imports MovieLens into the database and trains the first model on Spark; on a
# heavily loaded shared machine the import alone took over 20 minutes (COMPOSE_UP_TIMEOUT).
UP_TIMEOUT = float(os.environ.get("COMPOSE_UP_TIMEOUT", "1800"))


def movielens_dir() -> Path:
    for d in (DATA_DIR, SHARED_DATA):
        if (d / "ratings.csv").is_file():
            return d
    pytest.fail(f"no MovieLens copy in {DATA_DIR} or {SHARED_DATA}: run `make data`")


@pytest.fixture(scope="session")
def podman_api() -> Iterator[ApiService]:
    reason = unavailable_reason()
    if reason and os.environ.get("MOVIEREC_REQUIRE_COMPOSE") == "1":
        pytest.fail(f"make test-compose cannot run: {reason}")
    if reason:
        pytest.skip(f"Compose stack test skipped: {reason}")
    VAR.mkdir(parents=True, exist_ok=True)
    # A socket path must stay under 108 bytes; fall back to /run/podman for deep checkouts.
    sock = VAR / f"podman-{os.getpid()}.sock"
    if len(str(sock)) > 100:
        sock = Path("/run/podman") / f"movierec-{os.getpid()}.sock"
    api = ApiService(sock, VAR / "podman-service.log").start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def stack(podman_api: ApiService) -> Iterator[Stack]:
    TIMINGS["base_images_s"] = build_base_images(VAR)
    env = {
        "PYTHON_IMAGE": PYTHON_BASE,
        "NGINX_IMAGE": NGINX_BASE,
        "MOVIELENS_LOCAL_DIR": str(movielens_dir()),
        "JWT_SECRET": secrets.token_hex(32),
        "ADMIN_PASSWORD": "adm-" + secrets.token_urlsafe(16),
        "SPARK_AUTH_SECRET": secrets.token_hex(32),
        "MOVIEREC_HTTP_BIND": "127.0.0.1",
        "MOVIEREC_HTTP_PORT": str(free_port()),
        "SPARK_UI_BIND": "127.0.0.1",
        "SPARK_UI_PORT": str(free_port()),
        # Start small; test_scale asks for two of each, as a user would.
        "SPARK_WORKER_REPLICAS": "1",
        "RECOMMENDER_REPLICAS": "1",
        "LOG_JSON": "false",
    }
    st = Stack(podman_api, env, VAR / "runs")
    st.log_dir = VAR / "runs" / st.project
    st.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.monotonic()
        st.build(timeout=3600)
        TIMINGS["compose_build_s"] = time.monotonic() - t0
        TIMINGS["up_healthy_s"] = st.up(timeout=UP_TIMEOUT)
        yield st
    finally:
        with contextlib.suppress(Exception):
            write_report(st)
        st.down()


def image_mb(name: str) -> str:
    r = podman("image", "inspect", "--format", "{{.Size}}", name, check=False)
    return f"{int(r.stdout.split()[0]) / 1e6:.0f}" if r.returncode == 0 and r.stdout else "?"


def write_report(st: Stack) -> None:
    """bench/out/compose.md: image sizes and this run's timings (bench/run_all.py includes it)."""
    tag = st.env_extra.get("MOVIEREC_IMAGE_TAG", "0.1.0")
    rows = [f"| `{img}:{tag}` | {image_mb(f'{img}:{tag}')} |" for img in IMAGES]
    rows += [f"| `{b}` (base) | {image_mb(b)} |" for b in (PYTHON_BASE, NGINX_BASE)]
    labels = {
        "base_images_s": "base images (scripts/podman/base_images.sh)",
        "compose_build_s": "`docker-compose build` (every project image)",
        "up_healthy_s": "`docker-compose up -d` → every service healthy (first start)",
        "scale_up_s": "`--scale spark-worker=2 --scale recommender=2` → healthy",
        "retrain_post_to_served_s": "retrain POST → new version served by every replica",
    }
    timings = [f"| {labels[k]} | {v:.0f} |" for k, v in TIMINGS.items() if k in labels]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        "\n".join(
            [
                "Measured by `make test-compose` (podman 4.3 + docker-compose 1.29, this machine).",
                "",
                "| image | size MB |",
                "|---|---:|",
                *rows,
                "",
                "| step | seconds |",
                "|---|---:|",
                *timings,
                "",
            ]
        )
    )
