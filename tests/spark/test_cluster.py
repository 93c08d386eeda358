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


_OVER_THE_TASK_CAP = """
import dataclasses, json, sys
import numpy as np
from movierec_common import als
from movierec_trainer import spark_als
from movierec_trainer.session import build_spark

spark_als.INLINE_PAYLOAD_BYTES = 0  # every half-step payload as a broadcast as well
rng = np.random.default_rng(5)
n_users, n_items, nnz = 4000, 1500, 240_000
key = np.unique(rng.integers(0, n_users, nnz) * n_items + rng.integers(0, n_items, nnz))
r = rng.integers(1, 11, key.size) / 2.0
inter, _, _ = als.index_ratings(key // n_items, key % n_items, r)
explicit = als.ExplicitParams(rank=4, reg=0.1, iterations=2, seed=1)
ranking = als.ImplicitParams(rank=4, reg=1.0, alpha=1.0, iterations=2, seed=1)
blocks = spark_als.make_blocks(
    inter.item_idx, inter.user_idx, inter.n_items, 2, inter.rating, inter.rating
)
def nbytes(x):
    if isinstance(x, np.ndarray):
        return x.nbytes
    if dataclasses.is_dataclass(x):
        return sum(nbytes(getattr(x, f.name)) for f in dataclasses.fields(x))
    if isinstance(x, (list, tuple)):
        return sum(nbytes(y) for y in x)
    if isinstance(x, dict):
        return sum(nbytes(y) for y in x.values())
    return 0
biggest = max(nbytes(b) for b in blocks)
spark = build_spark(sys.argv[1], "movierec-task-cap", driver_memory="1g",
                    extra_conf={"spark.rpc.message.maxSize": "1"})
try:
    e, k = spark_als.SparkALS(spark.sparkContext, inter, num_partitions=2,
                              broadcast_dtype=np.float64).fit(explicit, ranking)
finally:
    spark.stop()
le, lk = als.fit_explicit(inter, explicit), als.fit_implicit(inter, ranking)
print(json.dumps({
    "biggest_block_bytes": int(biggest),
    "explicit": float(np.abs(e.Q - le.Q).max() / np.abs(le.Q).max()),
    "ranking": float(np.abs(k.Y - lk.Y).max() / np.abs(lk.Y).max()),
}))
"""


def test_blocks_and_payloads_above_the_task_size_cap(spark_cluster) -> None:
    """Spark refuses a task whose serialized size exceeds spark.rpc.message.maxSize (at 25M
    ratings on 2 partitions one block was 185 MB against 128 MiB). The engine ships its blocks,
    and payloads above INLINE_PAYLOAD_BYTES, as broadcasts: with the cap at 1 MiB and blocks
    larger than that, a fit on the cluster still runs and equals the local engine."""
    proc = subprocess.run(
        [sys.executable, "-c", _OVER_THE_TASK_CAP, spark_cluster.master_url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["biggest_block_bytes"] > 1 << 20  # a block's arrays alone exceed the 1 MiB cap
    assert got["explicit"] < 1e-6 and got["ranking"] < 1e-6
