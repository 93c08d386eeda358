"""movierec_trainer.retrain: a job document's raw params are checked with the HTTP API's bounds
and message before anything is read (the worker hands them on untouched)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts
from movierec_common.training_params import validation_message
from movierec_trainer import data as tdata
from movierec_trainer import retrain
from movierec_trainer.config import TrainerSettings
from movierec_trainer.gate import active_model_info
from movierec_trainer.pipeline import TrainConfig, train_job
from movierec_trainer.retrain import Reporter, run_retrain
from movierec_trainer.snapshot import range_cuts
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rank": 0}, "invalid request: rank: Input should be greater than or equal to 2"),
        ({"rank": "20"}, "invalid request: rank: Input should be a valid integer"),
        ({"bogus": 1}, "invalid request: bogus: Extra inputs are not permitted"),
    ],
)
def test_bad_job_params_are_refused_with_the_api_message_before_any_read(
    tmp_path: Path, params: dict, message: str
) -> None:
    settings = TrainerSettings(work_dir=tmp_path / "work", model_dir=tmp_path / "models")
    with pytest.raises(ValidationError) as exc:
        # db=None: a read would fail with AttributeError, so refusing first is what passes.
        run_retrain(
            None,
            settings,
            params,
            name="job-x",
            model_dir=tmp_path / "models",
            spark=None,
            reporter=Reporter(),
        )
    assert validation_message(exc.value.errors()) == message
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_the_active_models_users_and_counts_place_the_snapshot_cuts(tmp_path: Path) -> None:
    """`_known_users` reads the active version's user_ids and rated lists (per-user counts of
    the data it was built from); a model dir without a version gives None."""
    rng = np.random.default_rng(3)
    n = 3_000
    ratings = tdata.make_ratings(
        rng.integers(1, 200, n) * 1_000_003, rng.integers(1, 300, n), rng.integers(1, 11, n) / 2
    )
    cfg = TrainConfig(ranking=None, ease=None, holdout=0.0)
    out = train_job(ratings, replace(cfg, explicit=replace(cfg.explicit, iterations=2)))
    model_dir = tmp_path / "models"
    assert retrain._known_users(model_dir, active_model_info(model_dir)) is None
    artifacts.save_model(model_dir, out.arrays, out.manifest)
    users, counts = retrain._known_users(model_dir, active_model_info(model_dir))
    want_users, want_counts = np.unique(ratings.user_ids, return_counts=True)
    assert users.tolist() == want_users.tolist() and counts.tolist() == want_counts.tolist()
    cuts = range_cuts(users, counts, 500)
    assert cuts.size >= n // 500 - 1 and set(cuts.tolist()) <= set(users.tolist())
