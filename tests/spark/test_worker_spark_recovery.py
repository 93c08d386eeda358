"""The trainer recovers by itself when its Spark application dies under it (issue 19 C).

A private standalone cluster (master + one worker), a real SecantusDB, the trainer worker as its
own process. After a first job succeeds (the trainer's application is registered with the
master), the application is killed from outside — with the master UI's kill (the button an
operator presses; enabled explicitly on this private master) or by restarting the master — and
the same trainer process must run a later job to success without anyone restarting it.

* UI kill: the context is stopped; before the fix every later job failed within seconds
  (`'NoneType' object has no attribute 'blockManager'`) until the trainer was restarted by hand.
* Master restart (SIGKILL, then a new master on the same port; the Spark worker re-registers by
  itself, as under a supervisor): the new master does not know the application and kills its
  executor, the driver's context stays alive with no executors, and before the fix every later
  job failed after spark_watch's no-executor timeout. The worker asks the master whether it still
  knows the application before each job, so the very next job must succeed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from movierec_common import artifacts

from tests.spark.conftest import _alive_workers, master_command, spark_env, worker_command
from tests.spark.test_worker import FAST, Env, new_job
from tests.spark.test_worker_spark_faults import EXECUTOR_CLASS, PrivateCluster
from tests.support import ManagedProcess, free_port, wait_port

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(1500)]


def start_master(cluster: PrivateCluster, log: str) -> None:
    cluster.master = ManagedProcess(
        master_command(cluster.port, cluster.ui_port),
        # The UI kill is what an operator (or an attacker) used; make sure it is on here.
        env={**spark_env(), "SPARK_MASTER_OPTS": "-Dspark.ui.killEnabled=true"},
        log_path=cluster.logs / log,
    ).start()
    wait_port(cluster.port, timeout=240, proc=cluster.master.proc)


def start_worker(cluster: PrivateCluster, timeout: float = 240.0) -> ManagedProcess:
    """A worker registered with the master (a loaded 2-core machine can take minutes)."""
    worker = ManagedProcess(
        worker_command(cluster.url, free_port()),
        env=spark_env(),
        log_path=cluster.logs / f"recovery-spark-worker-{len(cluster.workers) + 1}.log",
    ).start()
    cluster.workers.append(worker)
    wait(lambda: _alive_workers(cluster.ui_url) >= 1, timeout, "the Spark worker to register")
    return worker


def active_apps(cluster: PrivateCluster) -> list[dict]:
    return httpx.get(f"{cluster.ui_url}/json/", timeout=5).json().get("activeapps", [])


def executor_pids(cluster: PrivateCluster) -> list[int]:
    """The executor JVMs the private cluster's workers launched (found by command line)."""
    pids = []
    for w in cluster.workers:
        if w.proc is None or w.proc.poll() is not None:
            continue
        for p in psutil.Process(w.proc.pid).children(recursive=True):
            try:
                if EXECUTOR_CLASS in " ".join(p.cmdline()):
                    pids.append(p.pid)
            except psutil.Error:
                continue
    return pids


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("how", ["ui_kill", "master_restart"])
def test_trainer_builds_a_new_session_after_its_spark_application_died(
    tmp_path: Path, mongo_url: str, db_name: str, output_dir: Path, how: str
) -> None:
    cluster = PrivateCluster(output_dir)
    e = Env(tmp_path, mongo_url, db_name, cluster.url)
    try:
        start_master(cluster, f"recovery-master-{how}.log")
        start_worker(cluster)
        trainer = e.start_worker(f"spark-recovery-{how}")
        first = new_job(FAST)
        e.db.jobs.insert_one(first)
        doc = e.wait_job(first["_id"], {"succeeded", "failed", "rejected"}, timeout=600)
        assert doc["status"] == "succeeded", (doc, trainer.log_tail())
        apps = active_apps(cluster)
        assert len(apps) == 1, apps  # the trainer's long-lived application

        t0 = time.monotonic()
        if how == "ui_kill":
            r = httpx.post(
                f"{cluster.ui_url}/app/kill/",
                data={"id": apps[0]["id"], "terminate": "true"},
                timeout=10,
                follow_redirects=False,
            )
            assert r.status_code in (200, 302, 303), r.text
            wait(lambda: not active_apps(cluster), 60, "the application to be killed")
        else:
            assert cluster.master is not None
            old_executors = executor_pids(cluster)
            assert old_executors, "the first job's executor is not running"
            cluster.master.stop(signal.SIGKILL)
            start_master(cluster, f"recovery-master-{how}-2.log")
            wait(lambda: _alive_workers(cluster.ui_url) >= 1, 240, "the worker to re-register")
            # The new master does not know the application: it has the worker kill its executor.
            wait(
                lambda: not set(old_executors) & set(executor_pids(cluster)),
                120,
                "the restarted master to end the unknown application's executor",
            )
            assert not active_apps(cluster)  # the driver is alive but the master forgot it
        time.sleep(2.0)  # the trainer is idle, its context dead (or cut off from the cluster)

        second = new_job(FAST)
        e.db.jobs.insert_one(second)
        doc = e.wait_job(second["_id"], {"succeeded", "failed", "rejected"}, timeout=600)
        recovered_s = round(time.monotonic() - t0, 1)
        assert doc["status"] == "succeeded", (doc, trainer.log_tail(80))
        assert doc["attempts"] == 1
        log_text = trainer.log_path.read_text(errors="replace") if trainer.log_path else ""
        reason = "stopped" if how == "ui_kill" else "no longer knows application"
        assert "the Spark session cannot run a job" in log_text and reason in log_text, log_text
        assert len(active_apps(cluster)) == 1  # the new application only; the old one is gone
        assert artifacts.current_version(e.model_dir) == doc["model_version"]
        assert trainer.proc is not None and trainer.proc.poll() is None  # no restart
        assert len(e.workers) == 1
        (output_dir / f"spark-recovery-{how}.json").write_text(
            json.dumps({"fault": how, "kill_to_next_job_succeeded_s": recovered_s})
        )
    finally:
        e.close()
        cluster.stop()
