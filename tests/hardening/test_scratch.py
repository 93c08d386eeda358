"""The trainer's scratch stays bounded (issue 19 C): a rejected or failed retrain leaves no
ratings snapshot behind, and snapshots are pruned with the model versions that name them.

Real retrains (`run_retrain`, the worker's job body, local engine) on a small MovieLens-format
file and a real SecantusDB database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from movierec_common import artifacts
from movierec_common.training_params import RetrainParams
from movierec_trainer.config import TrainerSettings
from movierec_trainer.retrain import Reporter, run_retrain
from pymongo import MongoClient

from tests.support.tiny_data import write_movielens

pytestmark = pytest.mark.timeout(300)
FAST = {"iterations": 3, "rank": 4, "no_ranking": True}


def snapshots(work: Path) -> set[str]:
    folder = work / "snapshots"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def named_by_versions(models: Path) -> set[str]:
    return {Path(m["data"]["snapshot"]).name for m in artifacts.list_versions(models)}


def test_rejected_and_failed_jobs_leave_no_snapshot_and_pruning_follows_versions(
    mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    data, work, models = tmp_path / "ml", tmp_path / "work", tmp_path / "models"
    write_movielens(data)
    settings = TrainerSettings(
        mongo_url=mongo_url,
        mongo_db=db_name,
        model_dir=models,
        data_dir=data,
        work_dir=work,
        keep_versions=2,
        snapshot_min_age_seconds=0,
    )
    client: MongoClient = MongoClient(mongo_url)
    db = client[db_name]

    def retrain(name: str, params: dict, model_dir: Path = models):
        typed = RetrainParams.model_validate(params)  # as the worker validates a job's params
        return run_retrain(
            db, settings, typed, name=name, model_dir=model_dir, spark=None, reporter=Reporter()
        )

    try:
        first = retrain("job-1", FAST)
        assert first.status == "succeeded"
        assert snapshots(work) == {"job-1.parquet"} == named_by_versions(models)

        # Rejected by the gate (a much worse model): its snapshot is removed.
        worse = retrain("job-2", {**FAST, "iterations": 1, "rank": 2, "reg": 10.0})
        assert worse.status == "rejected", worse.gate
        assert snapshots(work) == {"job-1.parquet"}

        # Failed after the snapshot was taken (the publish cannot write): removed too.
        broken = tmp_path / "broken-models"
        broken.mkdir()
        (broken / "versions").write_text("not a directory")
        with pytest.raises(OSError):
            retrain("job-3", FAST, model_dir=broken)
        assert snapshots(work) == {"job-1.parquet"}

        # A crashed job's leftover and the snapshots of pruned versions go with the next publish:
        # only the kept versions' snapshots remain.
        (work / "snapshots" / "crashed.parquet").write_bytes(b"left by a killed worker")
        for i in (4, 5, 6):
            assert retrain(f"job-{i}", FAST).status == "succeeded"
        assert len(artifacts.list_versions(models)) == 2
        assert snapshots(work) == named_by_versions(models) == {"job-5.parquet", "job-6.parquet"}
    finally:
        client.close()
