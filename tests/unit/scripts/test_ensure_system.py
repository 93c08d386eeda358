"""`make test`'s set-up step (scripts/ensure_system.sh): a machine missing a system package
either gets it installed or is told, at once and in one message, the exact command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "ensure_system.sh"


def run(
    env: dict[str, str], argv: list[str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        argv or [str(SCRIPT)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r, time.monotonic() - t0


def test_missing_packages_stop_at_once_naming_the_exact_command() -> None:
    r, took = run({"MOVIEREC_ASSUME_MISSING": "nginx chromium", "MOVIEREC_NO_INSTALL": "1"})
    assert r.returncode == 1
    assert took < 5
    assert "sudo apt-get install -y --no-install-recommends nginx chromium" in r.stderr
    assert r.stderr.count("error:") == 1


def test_the_package_list_is_extensible() -> None:
    r, _ = run(
        {
            "MOVIEREC_EXTRA_SYSTEM_PACKAGES": "movierec-no-such-cmd:movierec-no-such-pkg",
            "MOVIEREC_NO_INSTALL": "1",
        }
    )
    assert r.returncode == 1
    assert "install -y --no-install-recommends movierec-no-such-pkg" in r.stderr


def test_make_test_stops_within_a_minute_on_a_machine_without_nginx() -> None:
    make = shutil.which("make")
    assert make is not None
    r, took = run(
        {"MOVIEREC_ASSUME_MISSING": "nginx", "MOVIEREC_NO_INSTALL": "1"},
        [make, "--no-print-directory", "test"],
    )
    assert r.returncode != 0
    assert took < 60
    assert "apt-get install -y --no-install-recommends nginx" in r.stderr


def test_nothing_to_do_when_everything_is_installed() -> None:
    if not all(
        shutil.which(c) or os.path.exists(f"/usr/sbin/{c}")
        for c in ("java", "nginx", "chromium", "npm")
    ):
        r, _ = run({"MOVIEREC_NO_INSTALL": "1"})
        assert r.returncode == 1  # this machine lacks one: reported, not installed
        return
    r, took = run({})
    assert r.returncode == 0, r.stderr
    assert r.stdout == r.stderr == ""
    assert took < 5
