"""Recommender fixtures: ml-latest-small in a real SecantusDB, a real trained model, and a real
uvicorn process running `python -m recommender_api` on a free port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.integration.recommender.support import (
    API_KEY,
    JWT_SECRET,
    RecsServer,
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
    seed_movielens,
    train_and_publish,
)
from tests.support import VENV_BIN, ManagedProcess, free_port, wait_http


@pytest.fixture(scope="session")
def recs_db(mongo_url: str, movielens_dir: Path) -> Iterator[SeededDb]:
    name = f"recs_{uuid.uuid4().hex[:8]}"
    seed_movielens(mongo_url, name, movielens_dir)
    yield SeededDb(mongo_url, name)
    client = MongoClient(mongo_url)
    client.drop_database(name)
    client.close()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, movielens_dir: Path) -> TrainedModel:
    return train_and_publish(movielens_dir, tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def trained_explicit_only(
    tmp_path_factory: pytest.TempPathFactory, movielens_dir: Path
) -> TrainedModel:
    return train_and_publish(movielens_dir, tmp_path_factory.mktemp("explicit"), ranking=False)


@pytest.fixture(scope="session")
def start_recs_server(
    tmp_path_factory: pytest.TempPathFactory, output_dir: Path
) -> Iterator[StartServer]:
    """Factory: a real `python -m recommender_api` process; all are stopped at session end."""
    started: list[RecsServer] = []

    def _start(db: SeededDb, model_dir: Path, **env: str) -> RecsServer:
        port = free_port()
        log = output_dir / f"recommender-{port}.log"
        proc = ManagedProcess(
            [str(VENV_BIN / "python"), "-m", "recommender_api"],
            env={
                "MONGO_URL": db.url,
                "MONGO_DB": db.name,
                "MODEL_DIR": str(model_dir),
                "RECOMMENDER_HOST": "127.0.0.1",
                "RECOMMENDER_PORT": str(port),
                "JWT_SECRET": JWT_SECRET,
                "API_KEYS": f'["{API_KEY}"]',
                "LOG_LEVEL": "INFO",
                **env,
            },
            log_path=log,
        ).start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/healthz", timeout=60, proc=proc.proc)
        except Exception:
            print(proc.log_tail())
            proc.stop()
            raise
        server = RecsServer(base, proc, model_dir)
        started.append(server)
        return server

    yield _start
    for s in started:
        s.client.close()
        s.proc.stop()


@pytest.fixture(scope="session")
def recs(
    recs_db: SeededDb,
    trained: TrainedModel,
    tmp_path_factory: pytest.TempPathFactory,
    start_recs_server: StartServer,
) -> RecsServer:
    """One shared server on the trained model (tests that mutate state use their own ids)."""
    model_dir = tmp_path_factory.mktemp("served")
    install_version(trained.root, trained.version, model_dir)
    return start_recs_server(recs_db, model_dir)
