"""`make run` supervises like Compose (issue 19 C): a crashed service comes back by itself, and
SIGINT, SIGTERM and SIGHUP stop everything, whether sent to the process group or to `make`
alone, and whether make runs in the foreground or in the background of a non-interactive shell
(which starts it with SIGINT ignored).

One first start (database import, first model) in a temporary VAR_DIR, then quicker restarts
that reuse it; every stop must leave no process and no listening port behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.test_make_run import (
    FIRST_START_TIMEOUT,
    Run,
    alive,
    processes_mentioning,
    stack_env,  # noqa: F401 - fixture
    start_make_run,
    terminal_signals,
    tree,
    wait_ready,
)
from tests.support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.timeout(1800)]


def start_in_background(env: dict[str, str], log: Path) -> Run:
    """As `make run &` in a script: its own process group, SIGINT (and SIGQUIT) ignored."""

    def ignore_sigint() -> None:
        terminal_signals()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)

    out = open(log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-o", "install", "run"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=ignore_sigint,
    )
    out.close()
    return Run(proc, log, time.monotonic())


def stop_with(run: Run, sig: int, to_group: bool, ports: dict[str, int], var_dir: Path) -> float:
    procs = tree(run.proc.pid)
    assert len(procs) > 8, "expected make, run_stack, a honcho per service and the services"
    t0 = time.monotonic()
    if to_group:
        os.killpg(run.proc.pid, sig)
    else:
        os.kill(run.proc.pid, sig)  # make alone
    try:
        run.proc.wait(120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{signal.Signals(sig).name} to make did not stop it:\n{run.tail()}")
    took = time.monotonic() - t0
    time.sleep(1.0)
    assert alive(procs) == [], f"processes survived {signal.Signals(sig).name}"
    assert processes_mentioning(var_dir) == []
    for name, port in ports.items():
        with socket.socket() as s:
            s.settimeout(0.5)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name}={port} still listening"
    return took


def service_pid(run: Run, module: str) -> int:
    for p in tree(run.proc.pid):
        with contextlib.suppress(psutil.Error):
            if module in " ".join(p.cmdline()) and "honcho" not in " ".join(p.cmdline()):
                return p.pid
    pytest.fail(f"no {module} process under make run")


def test_crashed_service_is_restarted_and_signals_stop_everything(
    stack_env: tuple[dict[str, str], dict[str, int], Path],  # noqa: F811
    output_dir: Path,
) -> None:
    env, ports, var_dir = stack_env
    base = f"http://127.0.0.1:{ports['MOVIEREC_HTTP_PORT']}"
    catalog = f"http://127.0.0.1:{ports['CATALOG_PORT']}"
    logs = var_dir.parent
    results: dict[str, float] = {}

    run = start_make_run(env, logs / "sup-1.log")
    try:
        wait_ready(run, FIRST_START_TIMEOUT)
        recs_pid = service_pid(run, "recommender_api")
        # SIGKILL the catalog: the stack stays up and the catalog comes back and answers.
        old = service_pid(run, "catalog_api")
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 120
        back = False
        while time.monotonic() < deadline and not back:
            assert run.proc.poll() is None, f"make run exited:\n{run.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                back = (
                    httpx.get(f"{base}/api/movies/1", timeout=5).status_code == 200
                    and httpx.get(f"{catalog}/readyz", timeout=5).status_code == 200
                )
            time.sleep(0.5)
        assert back, f"the catalog did not come back:\n{run.tail()}"
        results["catalog SIGKILL -> answering again (s)"] = round(time.monotonic() - killed, 1)
        assert service_pid(run, "catalog_api") != old
        assert service_pid(run, "recommender_api") == recs_pid, "only the crashed one restarts"
        assert "catalog exited" in run.text() and "catalog restarted" in run.text()
        # SIGHUP to make alone (a closed terminal, kill -HUP <make>): everything stops.
        results["SIGHUP to make -> all stopped (s)"] = round(
            stop_with(run, signal.SIGHUP, False, ports, var_dir), 1
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGKILL)

    cases = [
        ("background, SIGINT to the group", True, signal.SIGINT, True),
        ("SIGTERM to make", False, signal.SIGTERM, False),
        ("SIGINT to make", False, signal.SIGINT, False),
    ]
    for i, (label, background, sig, to_group) in enumerate(cases, start=2):
        log = logs / f"sup-{i}.log"
        run = start_in_background(env, log) if background else start_make_run(env, log)
        try:
            wait_ready(run, 300)
            results[f"{label} -> all stopped (s)"] = round(
                stop_with(run, sig, to_group, ports, var_dir), 1
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)
    (output_dir / "make-run-supervision.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
