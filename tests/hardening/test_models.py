"""Issue 19 F1-F3: absurd models are refused, the gate cannot slide, killed publishes leave
nothing behind. On a real model trained by the trainer CLI on a MovieLens subset."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts
from movierec_common.artifacts import ArtifactError
from movierec_trainer.gate import best_accepted, gate

from tests.hardening.conftest import make_subset, train_args
from tests.support import ROOT


@pytest.fixture(scope="module")
def trained(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_subset(movielens_dir, tmp_path_factory.mktemp("models-data"), max_user=40)
    out = tmp_path_factory.mktemp("models-trained")
    r = subprocess.run(
        train_args(data, out),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _arrays(model_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    version = artifacts.current_version(model_dir)
    vdir = model_dir / "versions" / str(version)
    with np.load(vdir / "factors.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads((vdir / "manifest.json").read_text())
    for k in ("version", "created_at", "files", "models", "format_version"):
        manifest.pop(k, None)
    return arrays, manifest


def _write_unchecked(model_dir: Path, version: str, arrays: dict, manifest: dict) -> None:
    """A version written without save_model (another tool, an older trainer): the files and
    the manifest's sha256 agree, only the numbers are absurd."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    vdir = model_dir / "versions" / version
    vdir.mkdir(parents=True)
    (vdir / "factors.npz").write_bytes(blob)
    full = {
        **manifest,
        "format_version": artifacts.FORMAT_VERSION,
        "version": version,
        "created_at": "2020-01-01T00:00:00+00:00",
        "models": ["explicit", "ranking"] if "rank_X" in arrays else ["explicit"],
        "files": {"factors.npz": {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
    }
    (vdir / "manifest.json").write_text(json.dumps(full))


def _absurd_variants(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    scaled = {
        **arrays,
        **{k: arrays[k] * 1e19 for k in ("P", "Q", "rank_X", "rank_Y") if k in arrays},
    }
    q40 = {**arrays, "Q": arrays["Q"] * 40.0}  # norms still modest, predictions absurd
    shifted = {**arrays, "item_bias": arrays["item_bias"] - 9.0}  # every prediction below 0
    return {"scaled by 1e19": scaled, "Q scaled by 40": q40, "biases shifted": shifted}


def test_absurd_models_are_refused_before_publishing_and_activation(
    trained: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shutil.copytree(trained, model_dir)
    good = artifacts.current_version(model_dir)
    arrays, manifest = _arrays(model_dir)
    artifacts.check_sanity(arrays)  # the real model passes
    for i, (what, bad) in enumerate(_absurd_variants(arrays).items()):
        with pytest.raises(ArtifactError, match="sanity"):
            artifacts.save_model(model_dir, bad, manifest, version=f"bad-publish-{i}")
        assert not (model_dir / "versions" / f"bad-publish-{i}").exists(), what
        assert artifacts.current_version(model_dir) == good, what
        # Written behind the publisher's back: activation (the admin route) and loading
        # (the recommender) refuse it as well.
        name = f"bad-on-disk-{i}"
        _write_unchecked(model_dir, name, bad, manifest)
        with pytest.raises(ArtifactError, match="sanity"):
            artifacts.activate(model_dir, name)
        with pytest.raises(ArtifactError, match="sanity"):
            artifacts.load_model(model_dir, name)
        assert artifacts.current_version(model_dir) == good, what
    leftovers = [p.name for p in (model_dir / "versions").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_gate_compares_with_the_best_accepted_model_too(trained: Path, tmp_path: Path) -> None:
    """Retrains each 1.5 % worse than the active model (tolerance 2 %) must stop sliding once
    they are 2 % worse than the best model ever accepted, even after it was pruned."""
    model_dir = tmp_path / "models"
    shutil.copytree(trained, model_dir)
    arrays, manifest = _arrays(model_dir)
    tolerance = 0.02
    rmse = 0.80
    base = {**manifest, "metrics": {**(manifest.get("metrics") or {}), "rmse": rmse}}
    artifacts.save_model(model_dir, arrays, base, version="v-best", keep=2)
    accepted = 1
    for step in range(1, 10):
        active = next(m for m in artifacts.list_versions(model_dir) if m["active"])
        candidate = {"rmse": rmse * (1.015**step)}
        verdict = gate(candidate, active, tolerance, best_accepted(model_dir, active))
        if not verdict["passed"]:
            assert "best accepted" in verdict["reason"], verdict
            break
        accepted += 1
        m = {**manifest, "metrics": candidate, "job": {"gate": verdict}}
        artifacts.save_model(model_dir, arrays, m, version=f"v-{step}", keep=1)
    else:
        pytest.fail("the gate let every retrain through")
    assert accepted == 2  # 0.80 -> 0.812 (≤ 0.816) accepted; 0.824 refused
    assert "v-best" not in {m["version"] for m in artifacts.list_versions(model_dir)}  # pruned
    # An improvement is always accepted.
    active = next(m for m in artifacts.list_versions(model_dir) if m["active"])
    assert gate({"rmse": 0.79}, active, tolerance, best_accepted(model_dir, active))["passed"]


def test_killed_publish_leftovers_are_removed_by_the_next_publish(
    trained: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shutil.copytree(trained, model_dir)
    arrays, manifest = _arrays(model_dir)
    # What a publisher SIGKILLed midway leaves: a half-written version dir and a CURRENT temp.
    old_tmp = model_dir / "versions" / ".tmp-v20200101T000000Z-dead-0badc0de"
    old_tmp.mkdir()
    (old_tmp / "factors.npz").write_bytes(os.urandom(1 << 16))
    old_cur = model_dir / ".CURRENT.0123456789ab.tmp"
    old_cur.write_text("v-half\n")
    hour_ago = time.time() - 3600
    for p in (old_tmp / "factors.npz", old_tmp, old_cur):
        os.utime(p, (hour_ago, hour_ago))
    # A publish in progress right now in another process must be left alone.
    live_tmp = model_dir / "versions" / ".tmp-v-live-12345678"
    live_tmp.mkdir()
    artifacts.save_model(model_dir, arrays, manifest, version="v-next")
    assert not old_tmp.exists() and not old_cur.exists()
    assert live_tmp.exists()
    assert artifacts.current_version(model_dir) == "v-next"
    artifacts.load_model(model_dir)
