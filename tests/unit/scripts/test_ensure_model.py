"""scripts/ensure_model.py's bound on the first Spark training: it grows with the ratings file,
and past it the whole process group is stopped so the local fallback can run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from scripts import ensure_model


def test_bound_grows_with_the_ratings_files(tmp_path: Path) -> None:
    assert ensure_model.spark_bound(tmp_path, 900.0) == 900.0  # no ratings file
    (tmp_path / "movies.csv").write_bytes(b"x" * 2**20)  # other files do not count
    (tmp_path / "ratings.csv").write_bytes(b"x" * 3 * 2**20)
    assert ensure_model.spark_bound(tmp_path, 900.0) == pytest.approx(909.0)
    (tmp_path / "ratings.dat").write_bytes(b"x" * 2**20)  # ml-1m / ml-10m layouts
    assert ensure_model.spark_bound(tmp_path, 100.0) == pytest.approx(112.0)
    # synthetic-25m's 660 MB ratings.csv: about 48 minutes in all
    assert 2800 < 900 + ensure_model.SPARK_SECONDS_PER_MB * 660 < 3000


def test_a_training_past_its_bound_is_stopped_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    child = (
        "import os, subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    assert ensure_model.run_bounded([sys.executable, "-c", child], timeout=2.0) == -1
    assert time.monotonic() - started < 30
    grandchild = int(marker.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{grandchild}/stat").read_text().split(")")[1].split()[0]
        if state == "Z":  # ended, not yet reaped by its (also ended) parent
            break
        time.sleep(0.1)
    else:
        assert not Path(f"/proc/{grandchild}").exists()
