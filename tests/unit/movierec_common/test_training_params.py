"""The one training-parameter model: bounds, the shared message, the conversion to the kernel,
and the same refusal at the command line as at the HTTP API."""

from __future__ import annotations

import subprocess
import sys

import pytest
from movierec_common import als
from movierec_common.training_params import RetrainParams, TrainingParams, validation_message
from pydantic import ValidationError

from tests.support import ROOT


def _message(**values) -> str:
    with pytest.raises(ValidationError) as exc:
        RetrainParams(**values)
    return validation_message(exc.value.errors())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rank": 0}, "invalid request: rank: Input should be greater than or equal to 2"),
        ({"rank": 201}, "invalid request: rank: Input should be less than or equal to 200"),
        (
            {"iterations": 0},
            "invalid request: iterations: Input should be greater than or equal to 1",
        ),
        ({"reg": 0}, "invalid request: reg: Input should be greater than 0"),
        ({"reg": True}, "invalid request: reg: Value error, must be a number"),
        ({"reg": "0.1"}, "invalid request: reg: Value error, must be a number"),
        ({"holdout": 1.0}, "invalid request: holdout: Input should be less than 1"),
        ({"ranking_alpha": -1}, "invalid request: ranking_alpha: Input should be greater than 0"),
        ({"iterations": "5"}, "invalid request: iterations: Input should be a valid integer"),
        ({"db_only": "yes"}, "invalid request: db_only: Input should be a valid boolean"),
        ({"unknown": 1}, "invalid request: unknown: Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_refused_with_one_message(values: dict, message: str) -> None:
    assert _message(**values) == message


def test_conversion_fills_the_kernel_defaults_and_keeps_given_values() -> None:
    empty = TrainingParams()
    assert empty.to_explicit() == als.DEFAULT_EXPLICIT
    assert empty.to_ranking() == als.DEFAULT_IMPLICIT
    p = TrainingParams(rank=8, reg=1, seed=3, ranking_rank=16, ranking_alpha=2.0)
    assert isinstance(p.reg, float) and p.reg == 1.0  # an integer JSON value is a number too
    e, r = p.to_explicit(), p.to_ranking()
    assert (e.rank, e.reg, e.seed, e.iterations) == (8, 1.0, 3, als.DEFAULT_EXPLICIT.iterations)
    assert r is not None and (r.rank, r.alpha, r.seed, r.reg) == (
        16,
        2.0,
        3,
        als.DEFAULT_IMPLICIT.reg,
    )
    assert TrainingParams(no_ranking=True).to_ranking() is None


def test_job_document_round_trip() -> None:
    """What the catalog stores (the model's dump) is what the worker validates back."""
    sent = RetrainParams(rank=8, iterations=5, reg=0.1, db_only=True)
    stored = sent.model_dump(exclude_none=True)
    assert stored == {"rank": 8, "iterations": 5, "reg": 0.1, "db_only": True}
    assert RetrainParams.model_validate(stored) == sent


def test_cli_refuses_rank_zero_with_the_api_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "movierec_trainer", "train", "--rank", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "invalid request: rank: Input should be greater than or equal to 2" in proc.stderr
