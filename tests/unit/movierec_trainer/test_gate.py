"""The validation gate (movierec_trainer.gate: `gate`, `best_accepted`): a new model is
published only if its holdout RMSE is no worse than the active model's, nor than the best
accepted model's under the same holdout protocol, by more than the tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts
from movierec_trainer.gate import best_accepted, gate


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


# ------------------------------------------------------------------- best_accepted


def _arrays() -> dict[str, np.ndarray]:
    n_users, n_items, k = 3, 4, 2
    return {
        "P": np.ones((n_users, k), np.float32),
        "Q": np.ones((n_items, k), np.float32),
        "user_bias": np.zeros(n_users, np.float32),
        "item_bias": np.zeros(n_items, np.float32),
        "global_mean": np.asarray(3.5, np.float32),
        "user_ids": np.arange(1, n_users + 1),
        "item_ids": np.arange(1, n_items + 1),
        "item_counts": np.ones(n_items, np.int64),
    }


HOLDOUT = {"protocol": "random", "fraction": 0.2, "seed": 42}


def _publish(
    model_dir: Path,
    version: str,
    rmse: float | None,
    evaluation: dict | None = HOLDOUT,
    recorded: tuple[float, str] | None = None,
) -> dict:
    """A real published version with the given holdout RMSE, protocol and recorded best."""
    manifest: dict = {"metrics": {"rmse": rmse}, "evaluation": evaluation}
    if recorded is not None:
        manifest["job"] = {"gate": {"best_rmse": recorded[0], "best_version": recorded[1]}}
    artifacts.save_model(model_dir, _arrays(), manifest, version=version, keep=100)
    return next(m for m in artifacts.list_versions(model_dir) if m["version"] == version)


def test_best_accepted_without_a_reference_or_versions(tmp_path: Path) -> None:
    assert best_accepted(tmp_path, None) is None
    assert best_accepted(tmp_path, {"evaluation": HOLDOUT}) is None


def test_best_accepted_is_the_lowest_rmse_under_the_same_protocol(tmp_path: Path) -> None:
    _publish(tmp_path, "v1", 0.90)
    _publish(tmp_path, "v2", 0.86)
    _publish(tmp_path, "v3", 0.88)
    # Other protocols (another seed, a temporal split, none) are not comparable: skipped.
    _publish(tmp_path, "v4", 0.50, evaluation={**HOLDOUT, "seed": 7})
    _publish(tmp_path, "v5", 0.40, evaluation={"protocol": "temporal", "fraction": 0.2})
    _publish(tmp_path, "v6", 0.30, evaluation=None)
    # Non-finite or missing RMSEs never win.
    _publish(tmp_path, "v7", None)
    like = {"evaluation": HOLDOUT}
    assert best_accepted(tmp_path, like) == (0.86, "v2")
    assert best_accepted(tmp_path, {"evaluation": {**HOLDOUT, "seed": 7}}) == (0.5, "v4")
    assert best_accepted(tmp_path, {"evaluation": None}) == (0.3, "v6")


def test_best_accepted_survives_pruning_through_the_recorded_best(tmp_path: Path) -> None:
    """The version that held the best is gone; the manifests that saw it still name it."""
    _publish(tmp_path, "v8", 0.89, recorded=(0.84, "v0-pruned"))
    _publish(tmp_path, "v9", 0.87, recorded=(0.84, "v0-pruned"))
    assert best_accepted(tmp_path, {"evaluation": HOLDOUT}) == (0.84, "v0-pruned")


def test_an_unreadable_version_is_skipped(tmp_path: Path) -> None:
    _publish(tmp_path, "v1", 0.9)
    _publish(tmp_path, "v2", 0.8)
    (tmp_path / "versions" / "v2" / "manifest.json").write_text("{not json")
    assert best_accepted(tmp_path, {"evaluation": HOLDOUT}) == (0.9, "v1")


def test_gate_with_best_accepted_from_disk_refuses_the_slow_slide(tmp_path: Path) -> None:
    """Each retrain 2 % worse than the last would pass the active-model check alone."""
    _publish(tmp_path, "v1", 0.85)
    active = _publish(tmp_path, "v2", 0.866, recorded=(0.85, "v1"))
    best = best_accepted(tmp_path, active)
    assert best == (0.85, "v1")
    verdict = gate({"rmse": 0.88}, active, 0.02, best=best)
    assert verdict["passed"] is False and "(v1)" in verdict["reason"]
    assert gate({"rmse": 0.866}, active, 0.02, best=best)["passed"]
