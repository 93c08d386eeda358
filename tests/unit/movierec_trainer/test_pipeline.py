"""The trained users' rated lists the trainer puts in the artifact, and their `rated_since`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from movierec_common import artifacts
from movierec_common.movielens import Ratings
from movierec_trainer.pipeline import RATED_SINCE_SLACK_S, rated_lists

from tests.support.tiny_data import write_movielens


def _ratings(rows: list[tuple[int, int, int]]) -> Ratings:
    u, m, t = (np.asarray(c, np.int64) for c in zip(*rows, strict=True))
    return Ratings(u, m, np.full(u.shape, 3.0, np.float32), t)


def test_lists_per_model_user_sorted_and_users_outside_the_model_dropped() -> None:
    data = _ratings([(7, 30, 100), (3, 20, 50), (7, 10, 400), (9, 5, 70), (3, 40, 60)])
    out = rated_lists(data, np.asarray([3, 5, 7], np.int64))
    assert out["rated_indptr"].tolist() == [0, 2, 2, 4]  # user 5 has none, user 9 is unknown
    assert out["rated_movie_ids"].tolist() == [20, 40, 10, 30]
    assert int(out["rated_since"]) == 400 - RATED_SINCE_SLACK_S
    artifacts._validate_rated(out, 3)


def test_rated_since_is_capped_by_when_the_database_read_began() -> None:
    data = _ratings([(1, 1, 10_000), (1, 2, 99_999)])  # a clock-skewed future stamp
    out = rated_lists(data, np.asarray([1], np.int64), db_read_started_at=50_000)
    assert int(out["rated_since"]) == 50_000 - RATED_SINCE_SLACK_S


def test_published_model_lists_holdout_ratings_too(tmp_path: Path) -> None:
    """With a holdout the model trains on 80 %, but a user's held-out movies are still rated
    by them, so the lists come from all of the data."""
    data_dir = tmp_path / "data"
    write_movielens(data_dir, n_users=40, n_movies=30, seed=3)
    r = subprocess.run(
        [sys.executable, "-m", "movierec_trainer", "train", "--data-dir", str(data_dir),
         "--iterations", "2", "--rank", "3", "--ranking-iterations", "1", "--holdout", "0.2",
         "--output", str(tmp_path / "models"), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    version = json.loads(r.stdout.splitlines()[-1])["version"]
    model = artifacts.load_model(tmp_path / "models", version)
    assert model.rated_indptr is not None and model.rated_movie_ids is not None
    csv = np.loadtxt(data_dir / "ratings.csv", delimiter=",", skiprows=1)
    for u, user_id in enumerate(model.user_ids.tolist()):
        mine = model.rated_movie_ids[model.rated_indptr[u] : model.rated_indptr[u + 1]]
        assert sorted(mine.tolist()) == sorted(csv[csv[:, 0] == user_id, 1].astype(int).tolist())
    assert int(model.item_counts.sum()) < len(csv)  # it really was trained on a part
    assert model.manifest["data"]["rated_since"] == model.rated_since
