"""Run one Spark action so that a dead cluster fails it instead of hanging it.

Why: on a standalone cluster whose only worker died, Spark does not fail a running job, and a
job submitted while no executor is registered is not failed either — both wait for resources
forever. In the trainer worker that means a retrain stuck `running` (its heartbeat keeps the
lease alive) and every later retrain refused. So every Spark action of a job runs under its own
job group in a thread while the caller polls the status tracker; when an executor it depends on
disappears, or when no executor has been registered for a grace period, the group is cancelled
and `ExecutorLostError` raised with a reason a person can act on.

Local mode (`local[N]`) has only the driver's block manager, which never goes away: the watch
runs the action directly there (no thread, no false alarms).

The grace period is TrainerSettings.spark_no_executor_timeout_seconds; the worker passes it
down inside the SparkConf (`CONF_NO_EXECUTOR_TIMEOUT`) so that every Spark call site of a job
(snapshot read, block distribution, ALS half-steps) sees the same value without threading it
through the pipeline's signatures.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pyspark import SparkContext

T = TypeVar("T")

CONF_NO_EXECUTOR_TIMEOUT = "spark.movierec.noExecutorTimeoutSeconds"
DEFAULT_NO_EXECUTOR_TIMEOUT = 60.0
POLL_SECONDS = 0.5
CANCEL_JOIN_SECONDS = 30.0

_GROUPS = itertools.count(1)


class ExecutorLostError(RuntimeError):
    """The Spark executors a job needs are gone (worker died or was killed) or never came."""


def is_local(sc: SparkContext) -> bool:
    return str(sc.master).startswith("local")


def block_managers(sc: SparkContext) -> set[str]:
    """host:port of every live block manager, the driver's included (it never goes).

    An executor the scheduler knows before its block manager registered is listed with port 0
    and reappears a moment later with its real port: it is left out, else its "disappearance"
    would be a false alarm (and it holds no blocks yet)."""
    infos = sc._jsc.sc().statusTracker().getExecutorInfos()
    return {f"{i.host()}:{i.port()}" for i in infos if i.port() > 0}


def driver_block_manager(sc: SparkContext) -> str:
    return sc._jvm.org.apache.spark.SparkEnv.get().blockManager().blockManagerId().hostPort()


def executors(sc: SparkContext) -> set[str]:
    """host:port of the live executors' block managers (the driver's excluded)."""
    return block_managers(sc) - {driver_block_manager(sc)}


def no_executor_timeout(sc: SparkContext) -> float:
    """The grace period the worker put into the SparkConf (the default elsewhere)."""
    raw = sc.getConf().get(CONF_NO_EXECUTOR_TIMEOUT, None)
    return DEFAULT_NO_EXECUTOR_TIMEOUT if raw is None else float(raw)


def run_watched(
    sc: SparkContext,
    action: Callable[[], T],
    what: str,
    *,
    watch: Collection[str] | None = None,
    lost_detail: str = "",
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
) -> T:
    """`action()` (any Spark action(s)) under a fresh job group, abandoned when

    (a) a block manager in `watch` — by default every executor alive when it started — is gone:
        the group is cancelled and ExecutorLostError names the lost executors; or
    (b) no executor has been registered for `timeout` seconds (default: the SparkConf's
        CONF_NO_EXECUTOR_TIMEOUT): the group is cancelled and ExecutorLostError says so.

    `what` starts the error message (e.g. "iteration 3 (user half-step)"); `lost_detail` is
    appended to the lost-executor reason. Errors of the action itself are re-raised as they are.
    A no-op wrapper in local mode.
    """
    if is_local(sc):
        return action()
    from pyspark import InheritableThread

    grace = no_executor_timeout(sc) if timeout is None else float(timeout)
    driver = driver_block_manager(sc)
    watched = set(executors(sc) if watch is None else watch) - {driver}
    group = f"movierec-{next(_GROUPS)}-{time.monotonic_ns()}"
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            sc.setJobGroup(group, what, True)
            out["value"] = action()
        except BaseException as exc:  # re-raised in the calling thread
            out["error"] = exc

    t = InheritableThread(target=run, name=f"spark-watch-{group}", daemon=True)
    t.start()
    lost: set[str] = set()
    starved = False
    last_seen = time.monotonic()
    while t.is_alive():
        t.join(poll)
        if not t.is_alive():
            break
        live = block_managers(sc) - {driver}
        lost = watched - live
        if live:
            last_seen = time.monotonic()
        starved = not live and time.monotonic() - last_seen >= grace
        if lost or starved:
            sc.cancelJobGroup(group)
            t.join(CANCEL_JOIN_SECONDS)
            break
    if "value" in out:  # possibly just in time despite a loss: the next action will see it
        return out["value"]
    if not (lost or starved):
        raise out["error"]
    if lost:
        raise ExecutorLostError(
            f"{what}: Spark executor(s) at {', '.join(sorted(lost))} lost (worker died or was "
            f"killed){lost_detail}; the job failed and can simply be retried"
        )
    raise ExecutorLostError(
        f"{what}: no Spark executor registered for {grace:g} s (is a Spark worker running and "
        f"registered with {sc.master}?); the job failed and can simply be retried"
    )
