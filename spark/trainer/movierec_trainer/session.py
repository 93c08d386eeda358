"""Building the sessions the trainer runs in: the SparkSession (local[N] or a standalone
cluster), kept usable across jobs by `SparkKeeper`, and the MongoDB client.

Executors must run the driver's exact Python (same NumPy, same movierec_common kernel), so
`spark.pyspark.python` is pinned to this interpreter; on Docker the image is shared, so the path
is the same on every node. The web UI is off by default because tests and the worker start
sessions next to each other and must never fight over port 4040.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from movierec_common.mongo import JOURNALED
from pydantic import SecretStr
from pymongo import MongoClient

from movierec_trainer.config import TrainerSettings

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


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
    """A SparkSession on `master` ("local[N]" or "spark://host:port") with the trainer's
    settings (see the module docstring); `extra_conf` is applied last. Returns pyspark's active
    session if one is running already (getOrCreate). Raises what pyspark raises when the JVM
    cannot start (e.g. no Java)."""
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


def make_spark(settings: TrainerSettings, master: str | None = None) -> SparkSession:
    """The trainer's SparkSession (settings' master unless `master` is given), with the
    executor-loss grace period every watched Spark action reads (spark_watch) and the cluster's
    shared secret when one is configured."""
    from movierec_trainer.spark_watch import CONF_NO_EXECUTOR_TIMEOUT

    return build_spark(
        master or settings.spark_master,
        "movierec-trainer",
        driver_memory=settings.spark_driver_memory,
        executor_memory=settings.spark_executor_memory,
        driver_host=settings.spark_driver_host,
        bind_address=settings.spark_driver_bind_address,
        # Every watched Spark action of a job reads the grace period from the context.
        extra_conf={
            CONF_NO_EXECUTOR_TIMEOUT: str(settings.spark_no_executor_timeout_seconds),
            **spark_auth_conf(settings.spark_auth_secret),
        },
    )


def spark_context_alive(spark: SparkSession) -> bool:
    """False when the session's SparkContext was stopped, on either side of py4j."""
    try:
        jsc = spark.sparkContext._jsc
        return jsc is not None and not jsc.sc().isStopped()
    except Exception:  # py4j gateway gone, or the context half torn down
        return False


def master_addresses(master: str) -> list[tuple[str, int]]:
    """(host, port) of each standalone master in a `spark://h1:p1[,h2:p2]` URL; [] otherwise."""
    if not master.startswith("spark://"):
        return []
    out = []
    for part in master[len("spark://") :].split(","):
        host, _, port = part.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host, int(port)))
    return out


def application_known_to_master(sc: SparkContext, timeout_seconds: float = 10.0) -> bool | None:
    """Whether the standalone master lists this application (`sc.applicationId`) as active.

    Asks the master what its web UI shows (Spark's RequestMasterState message over the driver's
    own, authenticated, RPC environment; each call bounded by `timeout_seconds`). True or False
    from the first master that answers and is ALIVE; None when none does (down, unreachable, a
    standby) or when this Spark version has no such message: the caller then cannot tell.
    """
    jvm = sc._jvm
    try:
        rpc = jvm.org.apache.spark.SparkEnv.get().rpcEnv()
        find = jvm.java.lang.Class.forName
        request = (
            find("org.apache.spark.deploy.DeployMessages$RequestMasterState$")
            .getField("MODULE$")
            .get(None)
        )
        tag = jvm.scala.reflect.ClassTag.apply(
            find("org.apache.spark.deploy.DeployMessages$MasterStateResponse")
        )
        duration = jvm.scala.concurrent.duration.FiniteDuration(
            max(1, int(timeout_seconds * 1000)), jvm.java.util.concurrent.TimeUnit.MILLISECONDS
        )
        timeout = jvm.org.apache.spark.rpc.RpcTimeout(duration, "movierec.masterCheckTimeout")
        app_id = sc.applicationId
    except Exception as exc:  # py4j gone, or Spark's internals differ from 4.0's
        log.debug("cannot ask the master about the application: %s", exc)
        return None
    for host, port in master_addresses(str(sc.master)):
        try:
            ref = timeout.awaitResult(
                rpc.asyncSetupEndpointRefByURI(f"spark://Master@{host}:{port}")
            )
            state = ref.askSync(request, timeout, tag)
            if str(state.status()) != "ALIVE":
                continue
            return any(str(app.id()) == app_id for app in state.activeApps())
        except Exception as exc:  # this master is down or unreachable: try the next one
            log.debug("master %s:%d did not answer: %s", host, port, exc)
    return None


def unusable_reason(spark: SparkSession) -> str | None:
    """Why a session that already ran a job cannot run the next one, or None if it can.

    * Its SparkContext is stopped: the application was killed (the master UI's kill, the
      master's REST API), which stops the context; every later action fails at once.
    * On a standalone cluster, the master no longer lists the application: after a restart of
      the master (no recovery mode) the new master does not know it and kills its executors
      when the workers re-register, while the driver keeps a live context, only logs
      "Disconnected from Spark cluster! Waiting for reconnection..." and waits for ever (every
      job would fail after spark_watch's no-executor timeout). A new application registers
      with the master that runs now.

    When no master answers, the session is kept: a new one could not register either, and the
    job fails clearly through spark_watch. Local mode (`local[N]`) has nothing to lose.
    """
    if not spark_context_alive(spark):
        return "its SparkContext is stopped (the application was killed)"
    from movierec_trainer.spark_watch import is_local

    sc = spark.sparkContext
    if is_local(sc) or application_known_to_master(sc) is not False:
        return None
    return (
        f"the master at {sc.master} no longer knows application {sc.applicationId} (the master "
        "was restarted; its executors are gone)"
    )


class SparkKeeper:
    """The worker's long-lived SparkSession: built on first use, checked before every job
    (`unusable_reason`) and replaced, with a warning naming why, when it can no longer run
    one, so that a killed application or a restarted master never needs an operator to restart
    the trainer (issue 19 C). Not thread-safe: the worker runs one job at a time."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self._spark: SparkSession | None = None

    def get(self) -> SparkSession:
        """A session able to run a job: the current one, or a new one. Raises what
        make_spark raises (the JVM cannot start)."""
        if self._spark is not None:
            reason = unusable_reason(self._spark)
            if reason is not None:
                log.warning("the Spark session cannot run a job: %s; building a new one", reason)
                self.close()  # clears pyspark's active context so that a new one can start
        if self._spark is None:
            self._spark = make_spark(self.settings)
        return self._spark

    def close(self) -> None:
        """Stop the session if there is one (errors ignored: it may be half gone)."""
        if self._spark is not None:
            with contextlib.suppress(Exception):
                self._spark.stop()
            self._spark = None


def mongo(settings: TrainerSettings) -> MongoClient:
    """A synchronous MongoClient with the configured timeouts (tz-aware datetimes) and journaled
    writes (job state survives a database crash like every other write)."""
    return MongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        tz_aware=True,
        appname="movierec-trainer",
        **JOURNALED,
    )
