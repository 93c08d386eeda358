"""PySpark's worker daemon, minus a 115 ms tax on every task (set by session.build_spark via
`spark.python.daemon.module`).

PySpark's worker calls `importlib.invalidate_caches()` before every task (worker_util.
setup_spark_files). On Python 3.11 that makes every `zipimporter` on sys.path re-read its
archive's directory, and a Spark worker's sys.path holds pyspark.zip, the py4j zip and the
spark-core jar: measured here at ~115 ms of CPU per task (cProfile: zipimport._read_directory),
i.e. ~0.25 s per 2-task job, before any work. The trainer runs 2 jobs per ALS iteration, so
that alone was most of a 100k-rating fit.

Those archives are part of the installed Spark and never change while a worker lives, so their
importers keep their directory listing; every other finder (the directories where Spark puts
a job's added files) is still invalidated as before. The patch lives in the daemon process and
is inherited by every worker it forks; nothing else about PySpark's daemon changes.
"""

from __future__ import annotations

import zipimport


def _keep_listing(self: zipimport.zipimporter) -> None:  # the archives are immutable here
    return None


zipimport.zipimporter.invalidate_caches = _keep_listing  # type: ignore[method-assign]

if __name__ == "__main__":
    from pyspark.daemon import manager

    manager()
