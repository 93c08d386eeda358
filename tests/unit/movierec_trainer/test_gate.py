"""The validation gate (movierec_trainer.gate): a new model is published only if its holdout
RMSE is no worse than the active model's by more than the tolerance."""

from __future__ import annotations

import pytest
from movierec_trainer.gate import gate


def test_no_active_model_or_no_rmse_passes() -> None:
    assert gate({"rmse": 0.9}, None, 0.02) == {"passed": True, "reason": "no active model"}
    verdict = gate({"rmse": None}, {"version": "v1", "metrics": {"rmse": 0.9}}, 0.02)
    assert verdict["passed"] and verdict["reason"] == "no holdout RMSE to compare"


@pytest.mark.parametrize(
    ("new", "passed"),
    [(0.85, True), (0.9, True), (0.918, True), (0.9181, False), (1.2, False)],
)
def test_rmse_within_tolerance_of_the_active_model(new: float, passed: bool) -> None:
    active = {"version": "v1", "metrics": {"rmse": 0.9}}
    verdict = gate({"rmse": new}, active, 0.02)
    assert verdict["passed"] is passed
    assert verdict["active_version"] == "v1" and verdict["tolerance"] == 0.02
    assert verdict["active_rmse"] == 0.9 and verdict["new_rmse"] == new
    word = "≤" if passed else "worse than the active model's"
    assert word in verdict["reason"]


def test_best_accepted_model_bounds_a_slow_slide() -> None:
    """Within tolerance of the active model but too far above the best accepted one: refused."""
    active = {"version": "v3", "metrics": {"rmse": 0.9}}
    verdict = gate({"rmse": 0.91}, active, 0.02, best=(0.88, "v1"))
    assert not verdict["passed"] and "best accepted model's 0.8800 (v1)" in verdict["reason"]
    assert gate({"rmse": 0.895}, active, 0.02, best=(0.88, "v1"))["passed"]
