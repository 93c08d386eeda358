"""The validation gate: whether a newly trained model may replace the active one.

A model is accepted unless its holdout RMSE is worse than the active model's, or than the best
model ever accepted under the same holdout protocol, by more than GATE_TOLERANCE (a fraction,
0.02 = 2 %). Models are read from their manifests in MODEL_DIR (movierec_common.artifacts); this
module only reads, it never publishes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from movierec_common import artifacts


def active_model_info(model_dir: Path) -> dict[str, Any] | None:
    """The active version's manifest (metrics and holdout protocol), or None."""
    version = artifacts.current_version(model_dir)
    if version is None:
        return None
    for m in artifacts.list_versions(model_dir):
        if m.get("version") == version:
            return m
    return None


def _protocol(manifest: dict[str, Any]) -> tuple:
    ev = manifest.get("evaluation") or {}
    return (ev.get("protocol"), ev.get("fraction"), ev.get("seed"))


def best_accepted(model_dir: Path, like: dict[str, Any] | None) -> tuple[float, str] | None:
    """(RMSE, version) of the best model ever accepted under `like`'s holdout protocol.

    Every published version passed the gate; each also records in its manifest
    (`job.gate.best_rmse`) the best RMSE known when it was accepted, so the best survives the
    pruning of old versions. Versions evaluated another way are not comparable and are skipped.
    """
    if like is None:
        return None
    want = _protocol(like)
    best: tuple[float, str] | None = None
    for m in artifacts.list_versions(model_dir):
        if "error" in m or _protocol(m) != want:
            continue
        recorded = ((m.get("job") or {}).get("gate") or {}).get("best_rmse")
        candidates = [
            (value, source)
            for value, source in (
                ((m.get("metrics") or {}).get("rmse"), m.get("version")),
                (recorded, ((m.get("job") or {}).get("gate") or {}).get("best_version")),
            )
            if isinstance(value, int | float) and math.isfinite(value)
        ]
        for value, source in candidates:
            if best is None or float(value) < best[0]:
                best = (float(value), str(source or m.get("version")))
    return best


def gate(
    new_metrics: dict[str, Any],
    active: dict[str, Any] | None,
    tolerance: float,
    best: tuple[float, str] | None = None,
) -> dict[str, Any]:
    """Accept unless the new holdout RMSE is worse than the active one's by > tolerance, or
    worse than the best accepted model's (`best`, see best_accepted) by > tolerance: without
    the second check, retrains each up to `tolerance` worse could slide without limit."""
    if active is None:
        return {"passed": True, "reason": "no active model"}
    old = (active.get("metrics") or {}).get("rmse")
    new = new_metrics.get("rmse")
    info = {
        "active_version": active.get("version"),
        "active_rmse": old,
        "new_rmse": new,
        "tolerance": tolerance,
    }
    if old is None or new is None:
        return {**info, "passed": True, "reason": "no holdout RMSE to compare"}
    best_rmse, best_version = best if best is not None else (float(old), active.get("version"))
    best_rmse = min(best_rmse, float(old))
    info |= {
        "best_version": best_version if best_rmse < float(old) else active.get("version"),
        # Recorded in the published manifest: the best known once this model is accepted.
        "best_rmse": min(best_rmse, float(new)),
    }
    limit = float(old) * (1.0 + tolerance)
    best_limit = best_rmse * (1.0 + tolerance)
    if float(new) > limit:
        reason = (
            f"new RMSE {new:.4f} is worse than the active model's {old:.4f} by more than "
            f"{tolerance:.0%} (limit {limit:.4f})"
        )
        return {**info, "passed": False, "reason": reason}
    if float(new) > best_limit:
        reason = (
            f"new RMSE {new:.4f} is worse than the best accepted model's {best_rmse:.4f} "
            f"({info['best_version']}) by more than {tolerance:.0%} (limit {best_limit:.4f})"
        )
        return {**info, "passed": False, "reason": reason}
    reason = (
        f"new RMSE {new:.4f} ≤ {min(limit, best_limit):.4f} (active {old:.4f}, best "
        f"{best_rmse:.4f}, + {tolerance:.0%})"
    )
    return {**info, "passed": True, "reason": reason}
