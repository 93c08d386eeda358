"""A MovieRec database initialised by the real `python -m movierec_init` from ml-latest-small.

Shared by every suite through the session fixture `movielens_db` (tests/conftest.py): the
catalog, recommender, retraining and browser tests all log in with these accounts. Tests that
write to it (ratings, new users) must not assume they are alone in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "test-admin-password-1"  # test-only database, never a deployment
DEMO_PASSWORD = "test-demo-password-1"  # every demo login ml<userId> shares it
POPULARITY_PRIOR_WEIGHT = 20.0


@dataclass(frozen=True)
class MovieLensDB:
    url: str  # MongoDB connection string
    db: str  # database name
    admin_username: str = ADMIN_USERNAME
    admin_password: str = ADMIN_PASSWORD
    demo_password: str = DEMO_PASSWORD  # log in as ml1 … ml610
    prior_weight: float = POPULARITY_PRIOR_WEIGHT
    init_seconds: float = 0.0

    def env(self) -> dict[str, str]:
        """Environment for a service process pointed at this database."""
        return {
            "MONGO_URL": self.url,
            "MONGO_DB": self.db,
            "POPULARITY_PRIOR_WEIGHT": str(self.prior_weight),
        }


def init_env(url: str, db: str, data_dir: Path, demo: bool = True) -> dict[str, str]:
    return {
        "MONGO_URL": url,
        "MONGO_DB": db,
        "DATA_DIR": str(data_dir),
        "ADMIN_USERNAME": ADMIN_USERNAME,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DEMO_ACCOUNTS": "1" if demo else "0",
        "DEMO_PASSWORD": DEMO_PASSWORD,
        "POPULARITY_PRIOR_WEIGHT": str(POPULARITY_PRIOR_WEIGHT),
        "LOG_JSON": "false",
    }


def run_init(
    url: str, db: str, data_dir: Path, log_path: Path, demo: bool = True, timeout: float = 600
) -> float:
    """Run `python -m movierec_init` as a child process; return its wall time in seconds."""
    env = {**os.environ, **init_env(url, db, data_dir, demo), "COLUMNS": "100"}
    start = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "movierec_init"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"movierec_init exited with {proc.returncode}:\n{tail}")
    return time.monotonic() - start


def create_movielens_db(url: str, data_dir: Path, log_dir: Path) -> MovieLensDB:
    db = f"ml_{uuid.uuid4().hex[:10]}"
    seconds = run_init(url, db, data_dir, log_dir / f"movierec_init-{db}.log")
    return MovieLensDB(url=url, db=db, init_seconds=seconds)
