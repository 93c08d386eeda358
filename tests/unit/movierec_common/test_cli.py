"""Every command answers `--help` at once, with exit 0 and without side effects: no database
connection (MONGO_URL points at a listening socket that must see no connection), no state
directory, no server started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT

MODULES = [
    ["movierec_init"],
    ["movierec_trainer"],
    ["movierec_trainer", "train"],
    ["movierec_trainer", "retrain"],
    ["movierec_trainer", "worker"],
    ["catalog_api"],
    ["recommender_api"],
]
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py"))
COMMANDS = [["-m", *m] for m in MODULES] + [[f"scripts/{name}"] for name in SCRIPTS]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_exits_zero_fast_without_side_effects(argv: list[str], tmp_path: Path) -> None:
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        port = trap.getsockname()[1]
        env = {
            **os.environ,
            "MONGO_URL": f"mongodb://127.0.0.1:{port}/?directConnection=true",
            "VAR_DIR": str(tmp_path / "var"),
            "MODEL_DIR": str(tmp_path / "models"),
            "WORK_DIR": str(tmp_path / "work"),
        }
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, *argv, "--help"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - t0
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody connected to "MongoDB"
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout
    assert took < 45, f"--help took {took:.1f}s"  # generous: a shared 2-core box under load
    assert list(tmp_path.iterdir()) == [], "--help created files"
