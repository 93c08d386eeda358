"""The trainer CLI on a real standalone cluster (master + one worker from spark-class)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts

from tests.support.tiny_data import write_movielens

pytestmark = pytest.mark.spark

ARGS = [
    "--rank",
    "4",
    "--iterations",
    "4",
    "--ranking-rank",
    "4",
    "--ranking-reg",
    "1",
    "--ranking-iterations",
    "3",
    "--json",
]


def _train(data_dir: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "movierec_trainer",
            "train",
            "--data-dir",
            str(data_dir),
            "--output",
            str(out),
            *ARGS,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_standalone_cluster_matches_local_engine(spark_cluster, tmp_path: Path) -> None:
    data_dir = tmp_path / "ml"
    write_movielens(data_dir)
    local = _train(data_dir, tmp_path / "local", "--engine", "local")
    remote = _train(
        data_dir,
        tmp_path / "cluster",
        "--engine",
        "spark",
        "--spark-master",
        spark_cluster.master_url,
    )
    assert remote["rmse"] == pytest.approx(local["rmse"], rel=1e-6)
    assert remote["ndcg_at_10"] == pytest.approx(local["ndcg_at_10"], abs=1e-9)
    a = artifacts.load_model(tmp_path / "local")
    b = artifacts.load_model(tmp_path / "cluster")
    assert b.manifest["params"]["engine"] == "spark"
    for x, y in ((a.P, b.P), (a.Q, b.Q), (a.rank_X, b.rank_X), (a.rank_Y, b.rank_Y)):
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6 * float(np.abs(x).max()))
    # The application really ran on the cluster: the master lists it as completed.
    import httpx

    apps = httpx.get(f"{spark_cluster.ui_url}/json/", timeout=5).json()
    assert any(app["name"] == "movierec-trainer" for app in apps.get("completedapps", []))
