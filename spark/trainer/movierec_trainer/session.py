"""Building the SparkSession the trainer runs in (local[N] or a standalone cluster).

Executors must run the driver's exact Python (same NumPy, same movierec_common kernel), so
`spark.pyspark.python` is pinned to this interpreter; on Docker the image is shared, so the path
is the same on every node. The web UI is off by default because tests and the worker start
sessions next to each other and must never fight over port 4040.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_auth_conf(secret: SecretStr | str | None) -> dict[str, str]:
    """Spark settings for the shared-secret authentication of a standalone cluster: every RPC
    connection (driver <-> master, workers, executors) must prove it knows `secret`
    (spark.authenticate, Spark "Security" docs). Empty when no secret is configured."""
    if secret is None:
        return {}
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not value:
        return {}
    return {"spark.authenticate": "true", "spark.authenticate.secret": value}


# For the standalone master and workers (make run and Compose set it): shared-secret
# authentication on, and no kill button in the web UI (its kill link is an unauthenticated POST
# any web page could send). The secret itself goes in the daemons' environment as
# _SPARK_AUTH_SECRET (Spark's SecurityManager reads it there), never on a command line.
SPARK_DAEMON_JAVA_OPTS = "-Dspark.authenticate=true -Dspark.ui.killEnabled=false"


def build_spark(
    master: str = "local[2]",
    app_name: str = "movierec-trainer",
    *,
    driver_memory: str = "2g",
    executor_memory: str | None = None,
    driver_host: str = "127.0.0.1",
    bind_address: str = "127.0.0.1",
    ui: bool = False,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    from pyspark.sql import SparkSession

    # The JVM launched by pyspark reads these only from the environment, before it starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.driver.memory", driver_memory)
        # Loopback by default; in containers executors live on other hosts and must reach
        # the driver by a routable name (SPARK_DRIVER_HOST) on an open interface.
        .config("spark.driver.host", driver_host)
        .config("spark.driver.bindAddress", bind_address)
        .config("spark.ui.enabled", "true" if ui else "false")
        .config("spark.ui.showConsoleProgress", "false")  # the trainer shows its own progress
        .config("spark.ui.killEnabled", "false")  # the UI's kill link is an unauthenticated POST
        # One task = one core: BLAS threads inside a Python worker would only oversubscribe.
        .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.executorEnv.MKL_NUM_THREADS", "1")
        .config("spark.locality.wait", "0")
        # PySpark's daemon plus one fix: no per-task re-read of the pyspark/py4j/spark-core
        # archives (~115 ms CPU per task on Python 3.11; see movierec_trainer.pyspark_daemon).
        .config("spark.python.daemon.module", "movierec_trainer.pyspark_daemon")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.python.worker.reuse", "true")
        .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
        # One factor matrix of 600k users × rank 20 in float32 is ~50 MB: allow big results.
        .config("spark.driver.maxResultSize", "2g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if executor_memory:
        builder = builder.config("spark.executor.memory", executor_memory)
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
