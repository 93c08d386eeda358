"""Spark fixtures: one local[2] SparkSession for the suite, and a real standalone cluster
(master + one worker from the venv's spark-class) for the tests that need one.

Only one SparkContext can live in a process, so cluster tests talk to the cluster from a child
process (the trainer CLI / worker), which is also how production runs it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import VENV_BIN, ManagedProcess, free_port, wait_port


@pytest.fixture(scope="session")
def spark():
    from movierec_trainer.session import build_spark

    session = build_spark("local[2]", "movierec-tests", driver_memory="1g")
    try:
        yield session
    finally:
        session.stop()


@dataclass
class SparkCluster:
    master_url: str
    ui_url: str
    master: ManagedProcess
    worker: ManagedProcess


def _alive_workers(ui_url: str) -> int:
    try:
        return int(httpx.get(f"{ui_url}/json/", timeout=2.0).json().get("aliveworkers", 0))
    except (httpx.HTTPError, ValueError):
        return 0


MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_env() -> dict[str, str]:
    """spark-class finds SPARK_HOME with whatever `python3` is on PATH; name it explicitly."""
    import pyspark

    return {
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_NO_DAEMONIZE": "1",
        "PYSPARK_PYTHON": sys.executable,
    }


def master_command(port: int, ui_port: int) -> list[str]:
    return [str(VENV_BIN / "spark-class"), MASTER_CLASS, "--host", "127.0.0.1",
            "--port", str(port), "--webui-port", str(ui_port)]  # fmt: skip


def worker_command(master_url: str, ui_port: int) -> list[str]:
    """One core, 2 GB: a standalone worker on loopback, as the tests' clusters use."""
    return [str(VENV_BIN / "spark-class"), WORKER_CLASS, master_url, "--host", "127.0.0.1",
            "--cores", "1", "--memory", "2g", "--webui-port", str(ui_port)]  # fmt: skip


@pytest.fixture(scope="session")
def spark_cluster(output_dir: Path) -> Iterator[SparkCluster]:
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    env = spark_env()
    master = ManagedProcess(
        master_command(port, ui_port),
        env=env,
        log_path=output_dir / "spark-master.log",
    ).start()
    worker: ManagedProcess | None = None
    try:
        wait_port(port, timeout=60, proc=master.proc)
        master_url = f"spark://127.0.0.1:{port}"
        worker = ManagedProcess(
            worker_command(master_url, worker_ui),
            env=env,
            log_path=output_dir / "spark-worker.log",
        ).start()
        ui_url = f"http://127.0.0.1:{ui_port}"
        deadline = time.monotonic() + 60
        while _alive_workers(ui_url) < 1:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError("spark worker exited:\n" + worker.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError("spark worker did not register:\n" + worker.log_tail())
            time.sleep(0.5)
        yield SparkCluster(master_url, ui_url, master, worker)
    finally:
        if worker is not None:
            worker.stop()
        master.stop()
