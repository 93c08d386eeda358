"""`python -m movierec_trainer train … --json` end to end on tiny CSVs (local engine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from movierec_common import artifacts

from tests.support.tiny_data import write_movielens

CONTRACT_KEYS = {
    "rmse",
    "mae",
    "train_seconds",
    "n_ratings",
    "version",
    "ndcg_at_10",
    "precision_at_10",
    "recall_at_10",
    "coverage_at_10",
    "popularity_ndcg_at_10",
}


def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[dict, subprocess.CompletedProcess]:
    proc = subprocess.run(
        [sys.executable, "-m", "movierec_trainer", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last), proc


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, int]:
    n = write_movielens(tmp_path / "ml", bad_rows=2)
    return tmp_path / "ml", n


def test_train_json_line_and_published_version(tiny, tmp_path: Path) -> None:
    data_dir, n_valid = tiny
    out = tmp_path / "models"
    result, proc = run_cli(
        "train",
        "--data-dir",
        str(data_dir),
        "--engine",
        "local",
        "--rank",
        "4",
        "--iterations",
        "5",
        "--ranking-rank",
        "4",
        "--ranking-reg",
        "1",
        "--ranking-iterations",
        "4",
        "--output",
        str(out),
        "--json",
    )
    assert set(result) >= CONTRACT_KEYS
    assert result["n_ratings"] == n_valid  # the two malformed rows were skipped …
    assert "ratings.csv" in proc.stderr and "skipping malformed row" in proc.stderr  # … loudly
    assert 0 < result["rmse"] < 1.5 and 0 < result["mae"] < result["rmse"] + 1e-9
    for key in ("ndcg_at_10", "precision_at_10", "recall_at_10", "coverage_at_10"):
        assert 0 <= result[key] <= 1
    # Two disjoint taste groups: the ranking model must beat "most rated" clearly.
    assert result["ndcg_at_10"] > result["popularity_ndcg_at_10"] + 0.1
    version = result["version"]
    assert (out / "versions" / version / "factors.npz").exists()
    assert artifacts.current_version(out) == version
    model = artifacts.load_model(out)
    assert model.has_ranking and model.P.shape[1] == 4 and model.rank_X.shape[1] == 4
    m = model.manifest
    assert m["metrics"]["rmse"] == pytest.approx(result["rmse"])
    assert m["data"]["n_ratings"] == n_valid and m["data"]["fingerprint"].startswith("sha256:")
    assert m["evaluation"]["published"] == "train_part"
    assert m["params"]["explicit"]["rank"] == 4 and m["params"]["ranking"]["iterations"] == 4
    iters = [(h["model"], h["iteration"]) for h in m["history"]]
    assert iters[:5] == [("explicit", i) for i in range(1, 6)] and ("ranking", 4) in iters
    assert model.item_counts.sum() == m["data"]["n_train_ratings"]


def test_holdout_zero_trains_on_everything(tiny, tmp_path: Path) -> None:
    data_dir, n_valid = tiny
    out = tmp_path / "models"
    result, _ = run_cli(
        "train",
        "--data-dir",
        str(data_dir),
        "--holdout",
        "0",
        "--iterations",
        "3",
        "--rank",
        "3",
        "--no-ranking",
        "--output",
        str(out),
        "--json",
    )
    assert result["rmse"] is None and result["ndcg_at_10"] is None
    assert result["train_rmse"] > 0
    model = artifacts.load_model(out, result["version"])
    assert not model.has_ranking
    assert int(model.item_counts.sum()) == n_valid


def test_publish_full_refits_on_all_ratings(tiny, tmp_path: Path) -> None:
    data_dir, n_valid = tiny
    out = tmp_path / "models"
    result, _ = run_cli(
        "train",
        "--data-dir",
        str(data_dir),
        "--iterations",
        "3",
        "--rank",
        "3",
        "--ranking-iterations",
        "2",
        "--publish-full",
        "--output",
        str(out),
        "--json",
    )
    assert result["published"] == "full_refit" and result["rmse"] is not None
    model = artifacts.load_model(out)
    assert int(model.item_counts.sum()) == n_valid
    assert model.manifest["evaluation"]["published"] == "full_refit"


def test_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "movierec_trainer",
            "train",
            "--data-dir",
            str(tmp_path / "nope"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    err = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert err["code"] == "not_found" and "ratings.csv" in err["message"]
