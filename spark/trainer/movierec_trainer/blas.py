"""One BLAS thread per process that runs the ALS kernel (trainer CLI, worker, Spark tasks).

The kernel's work is many small batched matmuls and solves, where OpenBLAS threads add only
synchronisation; on a busy machine the default thread count made fits 5–7× slower (issue 20:
the explicit model 3.35 s instead of 0.58 s). Spark runs one task per core, so threads inside
a task would oversubscribe the cores. The kernel itself stays NumPy-only, so each process that
owns its threads caps them here with threadpoolctl (environment variables are read only when
the BLAS library loads, which is usually too late).
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

_capped: int | None = None


def cap_blas_threads(threads: int = 1) -> None:
    """Limit every BLAS/OpenMP pool loaded in this process to `threads` (idempotent)."""
    global _capped
    if _capped == threads:
        return
    threadpool_limits(limits=threads)
    _capped = threads
