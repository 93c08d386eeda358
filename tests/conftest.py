"""Fixtures every suite may use. Suites put their own fixtures in their folder's conftest."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import DATA_DIR, ROOT, MongoServer
from tests.support.movielens_db import MovieLensDB, create_movielens_db

OUTPUT_DIR = ROOT / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The real ml-latest-small CSVs (`make test` runs `make data` first)."""
    if not (DATA_DIR / "ratings.csv").exists():
        pytest.fail(f"{DATA_DIR} is missing: run `make data` (make test does it for you)")
    return DATA_DIR


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[str]:
    """A real MongoDB wire-protocol server: MONGO_URL when set, else an embedded SecantusDB."""
    external = os.environ.get("MONGO_URL")
    if external:
        yield external
        return
    server = MongoServer(
        tmp_path_factory.mktemp("secantus"), log_path=output_dir / "secantus-session.log"
    ).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def db_name() -> str:
    """A fresh database name per test, so tests sharing one server never see each other's data."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def movielens_db(mongo_url: str, movielens_dir: Path, output_dir: Path) -> MovieLensDB:
    """A database initialised once per session by `python -m movierec_init` from ml-latest-small:
    admin account (ADMIN_USERNAME/ADMIN_PASSWORD) and demo logins ml<userId> (DEMO_PASSWORD).
    Shared by every suite: write to it only in ways other tests tolerate."""
    return create_movielens_db(mongo_url, movielens_dir, output_dir)
