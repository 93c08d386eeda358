"""movierec_trainer.retrain: a job document's raw params are checked with the HTTP API's bounds
and message before anything is read (the worker hands them on untouched)."""

from __future__ import annotations

from pathlib import Path

import pytest
from movierec_common.training_params import validation_message
from movierec_trainer.config import TrainerSettings
from movierec_trainer.retrain import Reporter, run_retrain
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
