"""Issue 19 E: the standalone cluster, started as make run and Compose start it (shared-secret
authentication on, UI kill button off), refuses applications that do not know the secret and
ignores the UI's kill POST.

A private master + worker (the session cluster of conftest has no authentication); drivers run
in child processes, as the trainer does.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from movierec_trainer.session import SPARK_DAEMON_JAVA_OPTS

from tests.spark.conftest import _alive_workers, master_command, spark_env, worker_command
from tests.support import ManagedProcess, free_port, wait_port

DRIVER = """
import sys, time
from pathlib import Path
from movierec_trainer.session import application_known_to_master, build_spark, spark_auth_conf
master, name, secret, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
spark = build_spark(master, name, driver_memory="512m", executor_memory="512m",
                    extra_conf=spark_auth_conf(secret or None))
assert spark.range(100).count() == 100
# The trainer's recovery check asks the master over the same authenticated RPC.
(out / "known").write_text(str(application_known_to_master(spark.sparkContext)))
(out / "app_id").write_text(spark.sparkContext.applicationId)
for _ in range(100):  # until the test has tried to kill the application from the UI
    if (out / "go").exists():
        break
    time.sleep(0.2)
assert spark.range(50).count() == 50
(out / "alive").write_text("yes")
spark.stop()
"""


def _apps(ui_url: str) -> list[dict]:
    state = httpx.get(f"{ui_url}/json/", timeout=5).json()
    return state.get("activeapps", []) + state.get("completedapps", [])


@pytest.fixture(scope="module")
def auth_cluster(output_dir: Path):
    secret = secrets.token_hex(32)
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    env = {**spark_env(), "SPARK_DAEMON_JAVA_OPTS": SPARK_DAEMON_JAVA_OPTS}
    env["_SPARK_AUTH_SECRET"] = secret
    master = ManagedProcess(
        master_command(port, ui_port), env=env, log_path=output_dir / "spark-auth-master.log"
    ).start()
    worker: ManagedProcess | None = None
    try:
        wait_port(port, timeout=120, proc=master.proc)
        url = f"spark://127.0.0.1:{port}"
        ui = f"http://127.0.0.1:{ui_port}"
        worker = ManagedProcess(
            worker_command(url, worker_ui), env=env, log_path=output_dir / "spark-auth-worker.log"
        ).start()
        deadline = time.monotonic() + 120
        while _alive_workers(ui) < 1:
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, "worker did not register:\n" + worker.log_tail()
            time.sleep(0.5)
        yield url, ui, secret
    finally:
        if worker is not None:
            worker.stop()
        master.stop()


def _driver(url: str, name: str, secret: str, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "driver.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, url, name, secret, str(out)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_an_application_without_the_secret_cannot_register(auth_cluster, tmp_path: Path):
    url, ui, _ = auth_cluster
    for name, secret in (("intruder-none", ""), ("intruder-wrong", secrets.token_hex(32))):
        out = tmp_path / name
        proc = _driver(url, name, secret, out)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass  # still retrying the registration: refused all the same
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert not (out / "app_id").exists(), (out / "driver.log").read_text()[-3000:]
        assert name not in {a.get("name") for a in _apps(ui)}


def test_the_application_with_the_secret_runs_and_the_ui_cannot_kill_it(
    auth_cluster, tmp_path: Path
):
    url, ui, secret = auth_cluster
    out = tmp_path / "trainer"
    proc = _driver(url, "movierec-authorised", secret, out)
    try:
        deadline = time.monotonic() + 240
        while not (out / "app_id").exists():
            assert proc.poll() is None, (out / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (out / "driver.log").read_text()[-3000:]
            time.sleep(0.5)
        app_id = (out / "app_id").read_text()
        assert app_id in {a.get("id") for a in _apps(ui)}
        assert (out / "known").read_text() == "True"  # the recovery check works under auth
        # The UI's kill link (an unauthenticated POST any page could send) is switched off.
        r = httpx.post(
            f"{ui}/app/kill/", data={"id": app_id, "terminate": "true"}, follow_redirects=False
        )
        time.sleep(3)
        (out / "go").write_text("go")
        assert proc.wait(timeout=180) == 0, (r.status_code, (out / "driver.log").read_text())
        assert (out / "alive").read_text() == "yes"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
