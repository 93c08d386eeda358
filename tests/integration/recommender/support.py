"""Helpers for the recommender suites (fixtures live in conftest.py): seeding ml-latest-small
into a real SecantusDB, training and publishing a real model, talking to a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from movierec_common import artifacts
from movierec_common.loader import load_dataset
from movierec_common.tokens import issue_token
from movierec_init.schema import INDEXES, LATE_INDEXES
from pymongo import ASCENDING, MongoClient

from tests.support import ROOT, VENV_BIN, ManagedProcess

JWT_SECRET = "recommender-tests-secret-0123456789abcdef-0123456789"
ADMIN_USER_ID = 999_999  # seeded with role admin
API_KEY = "recs-test-service-key-0123456789"
PRIOR_WEIGHT = 20.0


@dataclass(frozen=True)
class SeededDb:
    url: str
    name: str


@dataclass(frozen=True)
class TrainedModel:
    root: Path  # a MODEL_DIR holding exactly one version, never served directly
    version: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    user_bias: np.ndarray
    X: np.ndarray


def seed_movielens(url: str, db_name: str, data_dir: Path) -> None:
    """movies (with damped-mean popularity, as the catalog computes it) and every rating, read
    and cleaned by the one loader (as mongo-init does)."""
    ds = load_dataset(data_dir)
    ratings, movies = ds.ratings, ds.movies
    client = MongoClient(url)
    try:
        db = client[db_name]
        db.ratings.create_indexes(INDEXES["ratings"] + LATE_INDEXES["ratings"])  # as mongo-init
        db.movies.create_index([("movieId", ASCENDING)], unique=True)
        mu = float(ratings.ratings.astype(np.float64).mean())
        ids, inv = np.unique(ratings.movie_ids, return_inverse=True)
        counts = np.bincount(inv)
        sums = np.bincount(inv, weights=ratings.ratings.astype(np.float64))
        stats = {int(m): (int(c), float(s)) for m, c, s in zip(ids, counts, sums, strict=True)}
        docs = []
        for m in movies:
            c, s = stats.get(m.movieId, (0, 0.0))
            docs.append(
                {
                    "movieId": m.movieId,
                    "title": m.title,
                    "year": m.year,
                    "genres": m.genres,
                    "rating_count": c,
                    "rating_sum": s,
                    "avg_rating": s / c if c else None,
                    "popularity_score": (s + PRIOR_WEIGHT * mu) / (c + PRIOR_WEIGHT),
                }
            )
        db.movies.insert_many(docs, ordered=False)
        db.meta.insert_one({"_id": "ratings_stats", "global_mean": mu})
        # The accounts tokens are issued to (as mongo-init's demo logins): both APIs check a
        # token's account and role in `users` on every request. 999_999 is an admin.
        db.users.create_index([("userId", ASCENDING)], unique=True)
        db.users.insert_many(
            [
                {"userId": int(u), "username": f"user{u}", "role": "user"}
                for u in np.unique(ratings.user_ids)
            ]
            + [{"userId": ADMIN_USER_ID, "username": "admin", "role": "admin"}]
        )
        rows = [
            {"userId": int(u), "movieId": int(m), "rating": float(r), "timestamp": int(t)}
            for u, m, r, t in zip(
                ratings.user_ids,
                ratings.movie_ids,
                ratings.ratings,
                ratings.timestamps,
                strict=True,
            )
        ]
        for s in range(0, len(rows), 20000):
            db.ratings.insert_many(rows[s : s + 20000], ordered=False)
    finally:
        client.close()


def train_and_publish(data_dir: Path, model_dir: Path, *, ranking: bool = True) -> TrainedModel:
    """The real path: `python -m movierec_trainer train --engine local --holdout 0`."""
    args = [
        str(VENV_BIN / "python"), "-m", "movierec_trainer", "train", "--data-dir", str(data_dir),
        "--engine", "local", "--holdout", "0", "--output", str(model_dir), "--json",
    ]  # fmt: skip
    if not ranking:
        args.append("--no-ranking")
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    version = json.loads(r.stdout.strip().splitlines()[-1])["version"]
    art = artifacts.load_model(model_dir, version)
    return TrainedModel(
        model_dir,
        version,
        art.user_ids,
        art.item_ids,
        art.P,
        art.Q,
        art.user_bias,
        art.rank_X if art.rank_X is not None else np.zeros((0, 0)),
    )


def install_version(src_root: Path, version: str, dst_root: Path, activate: bool = True) -> None:
    """Copy a published version into another MODEL_DIR (what a shared volume sync would do)."""
    (dst_root / "versions").mkdir(parents=True, exist_ok=True)
    shutil.copytree(src_root / "versions" / version, dst_root / "versions" / version)
    if activate:
        artifacts.activate(dst_root, version)


class RecsServer:
    def __init__(self, base_url: str, proc: ManagedProcess, model_dir: Path) -> None:
        self.base_url = base_url
        self.proc = proc
        self.model_dir = model_dir
        self.client = httpx.Client(base_url=base_url, timeout=60.0)  # shared, busy CI box

    def token(self, user_id: int, role: str = "user", ttl: int = 600) -> str:
        return issue_token(JWT_SECRET, user_id, f"user{user_id}", role, ttl)  # type: ignore[arg-type]

    def as_user(self, user_id: int, role: str = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}

    @property
    def service(self) -> dict[str, str]:
        return {"X-API-Key": API_KEY}


StartServer = Callable[..., RecsServer]
