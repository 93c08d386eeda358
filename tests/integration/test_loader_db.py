"""The one loader through the database paths, on a real SecantusDB with the issue-18 fault data:
mongo-init stores and counts exactly the cleaned ratings (faults 1-3), the strict mode refuses
with file:line, and a rating deleted through the catalog API stays deleted through a retrain
that merges the MovieLens file again (issue 19 A2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from movierec_common import artifacts
from pymongo import MongoClient

from tests.integration.catalog.support import bearer, login, start_catalog
from tests.support.fault_data import UNKNOWN_MOVIE, write_fault_dataset
from tests.support.movielens_db import DEMO_PASSWORD, init_env, run_init

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fault_dataset(tmp_path_factory.mktemp("faults") / "ml", ms_row=True)


@pytest.fixture(scope="module")
def fault_db(mongo_url: str, fault_dir: Path, output_dir: Path) -> Iterator[str]:
    db = f"faults_{uuid.uuid4().hex[:8]}"
    run_init(mongo_url, db, fault_dir, output_dir / f"movierec_init-{db}.log", demo=True)
    yield db
    client = MongoClient(mongo_url)
    client.drop_database(db)
    client.close()


@pytest.fixture(scope="module")
def sync_db(mongo_url: str, fault_db: str):
    client = MongoClient(mongo_url, tz_aware=True)
    yield client[fault_db]
    client.close()


def test_mongo_init_stores_and_counts_the_cleaned_ratings(sync_db, output_dir: Path, fault_db):
    # Fault 1: latest timestamp wins, statistics count what is stored.
    assert sync_db.ratings.count_documents({}) == 450
    assert sync_db.ratings.find_one({"userId": 1, "movieId": 1})["rating"] == 1.0
    movie1 = sync_db.movies.find_one({"movieId": 1})
    assert (movie1["rating_count"], movie1["rating_sum"]) == (9, 23.5)
    stored = list(sync_db.ratings.find({"movieId": 1}))
    assert (len(stored), sum(d["rating"] for d in stored)) == (9, 23.5)
    # Fault 3: unknown movies dropped, the mean over the kept ratings.
    assert sync_db.ratings.count_documents({"movieId": UNKNOWN_MOVIE}) == 0
    stats = sync_db.meta.find_one({"_id": "ratings_stats"})
    assert f"{stats['global_mean']:.4f}" == "2.8000" and stats["n_ratings"] == 450
    # Fault 2 and 5: the undecodable and the millisecond rows reported and skipped.
    assert sync_db.movies.count_documents({}) == 22
    marker = sync_db.meta.find_one({"_id": "movielens_import"})
    load = marker["load_summary"]
    assert load["files"]["ratings.csv"] == {
        "read": 483,
        "kept": 450,
        "dropped": {"duplicate": 2, "unknown_movie": 29, "malformed": 2},
    }
    assert "movies.csv:4: not valid UTF-8" in load["issues"]
    assert "ratings.csv:6: not valid UTF-8" in load["issues"]
    log = (output_dir / f"movierec_init-{fault_db}.log").read_text(errors="replace")
    assert (
        "ratings.csv: read 483, kept 450, dropped: duplicate 2, malformed 2, unknown_movie 29"
        in log
    )


def test_mongo_init_strict_mode_refuses_with_file_and_line(mongo_url: str, fault_dir: Path):
    db = f"strict_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **init_env(mongo_url, db, fault_dir, demo=False), "STRICT_LOAD": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "movierec_init"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert "movies.csv:4: not valid UTF-8" in out and "Traceback" not in out
        client = MongoClient(mongo_url)
        assert client[db].ratings.count_documents({}) == 0
        client.close()
    finally:
        client = MongoClient(mongo_url)
        client.drop_database(db)
        client.close()


def test_a_deleted_rating_stays_deleted_through_retrain(
    mongo_url: str, fault_db: str, fault_dir: Path, output_dir: Path, tmp_path: Path, sync_db
):
    """Issue 19 A2: user 1 deletes (1, 2), which ratings.csv also holds; the next retrain
    merges the file again, and the pair is in neither the snapshot nor the model."""
    assert sync_db.ratings.find_one({"userId": 1, "movieId": 2}) is not None
    catalog = start_catalog(mongo_url, fault_db, tmp_path / "cat-models", fault_dir, output_dir)
    try:
        with catalog.client() as c:
            token = login(c, "ml1", DEMO_PASSWORD)
            r = c.delete("/api/movies/2/rating", headers=bearer(token))
            assert r.status_code == 204, r.text
    finally:
        catalog.stop()
    assert sync_db.ratings.find_one({"userId": 1, "movieId": 2}) is None
    assert sync_db.rating_deletions.find_one({"userId": 1, "movieId": 2}) is not None

    out, work = tmp_path / "models", tmp_path / "work"
    env = {
        **os.environ,
        "MONGO_URL": mongo_url,
        "MONGO_DB": fault_db,
        "DATA_DIR": str(fault_dir),
        "WORK_DIR": str(work),
        "MODEL_DIR": str(out),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "LOG_JSON": "false",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "movierec_trainer",
            "retrain",
            "--engine",
            "local",
            "--csv-path",
            str(fault_dir / "ratings.csv"),
            "--rank",
            "2",
            "--iterations",
            "2",
            "--no-ranking",
            "--holdout",
            "0",
            "--output",
            str(out),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded"
    assert result["load"]["files"]["ratings.csv"]["dropped"]["deleted"] == 1
    snaps = list((work / "snapshots").glob("*.parquet"))
    assert len(snaps) == 1
    t = pq.read_table(snaps[0])
    users, movies = t["userId"].to_numpy(), t["movieId"].to_numpy()
    assert not ((users == 1) & (movies == 2)).any()
    assert ((users == 1) & (movies == 3)).any()  # the rest of user 1 is there
    assert len(t) == 449 and UNKNOWN_MOVIE not in set(movies.tolist())
    model = artifacts.load_model(out)
    u = int(np.searchsorted(model.user_ids, 1))
    rated = model.rated_movie_ids[model.rated_indptr[u] : model.rated_indptr[u + 1]]
    assert 2 not in set(rated.tolist()) and 3 in set(rated.tolist())
