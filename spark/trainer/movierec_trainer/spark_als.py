"""The Spark engine: the kernel's ALS, distributed with RDD operators.

Layout. Ratings are grouped twice on the driver (by user and by movie) and cut into
`num_partitions` contiguous row ranges of about equal rating counts. Each partition holds
exactly ONE block: its global row ids, a local CSR (indptr, column indices) and the kernel's
`BlockPlan`s (rows bucketed by length, values padded) for the explicit and/or the ranking model
— a handful of NumPy arrays per partition, never a Python object per rating. The two block RDDs
are `persist(MEMORY_AND_DISK)`-ed once and reused by every half-step.

Half-step. Broadcast the fixed factor matrix (plus YᵀY for the ranking model), `mapPartitions`
the kernel's batched solves over the blocks, `collect` the solved rows into the driver's matrix,
then unpersist the broadcast. The user half-step also returns the block's training error (the
kernel computes it from the rows it already gathered), so the per-iteration train RMSE costs no
extra pass. Both models can train in the SAME jobs (`SparkALS.fit(explicit, implicit)`).
The loop itself (biases, start values, checks, history) is the kernel's `als.fit_als`; this
module only supplies `SparkHalfSteps`, whose tasks call the kernel's public planned solves
(and cap BLAS at one thread per task with threadpoolctl).

Precision. The broadcast is float32 by default (half the bytes); the exact solves accumulate in
float64 whatever they are given, CG steps run in the broadcast's precision, and the factors
still agree with the local float64 engine to ~1e-7 relative (tests/spark/test_spark_als.py
checks 1e-6; float64 is one argument away).

Why blocks are built on the driver: the trainer already holds the ratings as columnar arrays
(it needs them for evaluation), and a vectorised NumPy sort of 10M ratings takes about a second,
whereas a Spark groupBy would turn every rating into a Python object on the way back. What
Spark distributes is the O(nnz·k²) algebra, which is what grows.

Biases are computed once on the driver with the kernel's `compute_biases` (three `bincount`s,
milliseconds even at 10M) and frozen, exactly as in the local engine. Iteration order, the
initial factors and the divergence checks are the local engine's, so for the same seed the two
engines give the same factors to rounding.

Fixed cost. Each Spark job costs ~0.3 s here before any algebra (ARCHITECTURE.md), and a fit is
2·iterations jobs, so the partition count should match the cores (default: the context's
defaultParallelism) — `bench/bench_train.py` measures 2 vs 8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from movierec_common import als

from movierec_trainer.spark_watch import ExecutorLostError, block_managers, run_watched

__all__ = ["Block", "ExecutorLostError", "SparkALS", "SparkHalfSteps"]

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext


@dataclass(frozen=True)
class Block:
    """One partition's share of the ratings matrix: a contiguous range of rows, as a local CSR,
    with the kernel's reusable solve plans for the explicit and/or the ranking model."""

    rows: np.ndarray  # global row ids, int64
    indptr: np.ndarray  # local CSR over the block's rows
    indices: np.ndarray  # global column ids
    explicit: als.BlockPlan | None  # values = residuals r − μ − b_u − b_i
    implicit: als.BlockPlan | None  # values = signed signal r′ (als.implicit_signal)


def split_rows(indptr: np.ndarray, n_parts: int) -> list[tuple[int, int]]:
    """Contiguous row ranges with about equal numbers of ratings (the solve cost ~ nnz·k²)."""
    n_rows = len(indptr) - 1
    n_parts = max(1, min(n_parts, max(n_rows, 1)))
    nnz = int(indptr[-1])
    cuts = np.searchsorted(indptr, np.linspace(0, nnz, n_parts + 1)[1:-1], side="left")
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < n_rows}), n_rows]
    return [(bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)]


def make_blocks(
    row_idx: np.ndarray,
    col_idx: np.ndarray,
    n_rows: int,
    n_parts: int,
    explicit_values: np.ndarray | None,
    implicit_values: np.ndarray | None,
) -> list[Block]:
    order = np.argsort(row_idx, kind="stable")  # the grouping to_csr does, shared by both
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_idx, minlength=n_rows), out=indptr[1:])
    indices = np.asarray(col_idx)[order].astype(np.int32)
    ev = None if explicit_values is None else np.asarray(explicit_values, np.float64)[order]
    iv = None if implicit_values is None else np.asarray(implicit_values, np.float64)[order]
    blocks = []
    for lo, hi in split_rows(indptr, n_parts):
        s, e = int(indptr[lo]), int(indptr[hi])
        ptr, idx = indptr[lo : hi + 1] - s, indices[s:e]
        blocks.append(
            Block(
                rows=np.arange(lo, hi, dtype=np.int64),
                indptr=ptr,
                indices=idx,
                explicit=None if ev is None else als.plan_block(ptr, idx, ev[s:e]),
                implicit=None if iv is None else als.plan_block(ptr, idx, iv[s:e]),
            )
        )
    return blocks


def _half_step_task(payload_bc: Any, errors: bool):
    """The function every partition runs: the kernel's public planned solves for its block.

    The broadcast payload is {"exp": ExplicitStep | None, "imp": ImplicitStep | None}; their
    `current` matrices are whole-side, so each block warm-starts from its own rows."""

    def run(blocks: Iterator[Block]):
        from movierec_trainer.blas import cap_blas_threads

        cap_blas_threads()
        payload = payload_bc.value
        e: als.ExplicitStep | None = payload["exp"]
        i: als.ImplicitStep | None = payload["imp"]
        for b in blocks:  # exactly one block per partition; the loop also drains the iterator
            out = als.StepResult()
            if e is not None and b.explicit is not None:
                x, sse, sae = als.solve_explicit_planned(
                    e.fixed,
                    b.explicit,
                    e.reg,
                    e.reg_scaled,
                    x0=np.asarray(e.current)[b.rows],
                    cg_steps=e.cg_steps,
                    fit_error=errors,
                )
                out.explicit, out.explicit_error = x, (sse, sae)
            if i is not None and b.implicit is not None:
                x, sse, sae = als.solve_implicit_planned(
                    i.fixed,
                    i.gram,
                    b.implicit,
                    i.alpha,
                    i.reg,
                    x0=np.asarray(i.current)[b.rows],
                    cg_steps=i.cg_steps,
                    fit_error=errors,
                )
                out.implicit, out.implicit_error = x, (sse, sae)
            yield b.rows, out

    return run


def _is_linalg_failure(exc: BaseException) -> bool:
    text = str(exc)
    return "LinAlgError" in text or "Singular matrix" in text


class SparkHalfSteps:
    """The Spark engine's half-steps (`als.HalfSteps`): the blocks of each side persisted on
    the executors; a half-step broadcasts the fixed side, `mapPartitions` the kernel's planned
    solves over the blocks and collects the solved rows into the driver's matrix."""

    def __init__(
        self,
        sc: SparkContext,
        inter: als.Interactions,
        num_partitions: int,
        broadcast_dtype: type = np.float32,
    ) -> None:
        self.sc = sc
        self.inter = inter
        self.num_partitions = num_partitions
        self.broadcast_dtype = broadcast_dtype
        self._holders: set[str] = set()  # block managers alive when the blocks were stored
        self._sides: dict[str, RDD] = {}
        self._iteration = 0

    def _block_managers(self) -> set[str]:
        """host:port of every live block manager (the driver's included; it never goes)."""
        return block_managers(self.sc)

    def _collect_watched(self, rdd: RDD, fn: Callable, it: int, name: str) -> list:
        """`rdd.mapPartitions(fn).collect()`, abandoned as soon as an executor that held the
        checkpointed blocks is gone (or none has been registered for the grace period). Why:
        when the only worker dies, Spark does not fail the job, it waits for resources forever
        (the retrain stayed `running`, its lease renewed by the heartbeat); and the blocks could
        not be recomputed anyway."""
        return run_watched(
            self.sc,
            lambda: rdd.mapPartitions(fn).collect(),
            f"iteration {it} ({name} half-step)",
            watch=self._holders,
            lost_detail=" with the training blocks they held",
        )

    def _distribute(self, blocks: list[Block]) -> RDD:
        from pyspark import StorageLevel

        # parallelize cuts the list into len(blocks) slices: exactly one block per partition.
        # A parallelized partition carries its data inside every task that reads it, cache or
        # not, so after the first materialisation the lineage is cut (localCheckpoint keeps the
        # blocks in the block manager, MEMORY_AND_DISK): later tasks ship a reference only.
        rdd = self.sc.parallelize(blocks, len(blocks)).persist(StorageLevel.MEMORY_AND_DISK)
        rdd.localCheckpoint()
        # Materialise now, so iteration 1 does not pay for the upload; watched, because a
        # worker lost here (or never there) would otherwise leave the count waiting forever.
        try:
            run_watched(self.sc, rdd.count, "distributing the training blocks")
        except BaseException:
            rdd.unpersist()
            raise
        self._holders |= self._block_managers()
        return rdd

    def load(self, explicit_values: np.ndarray | None, implicit_values: np.ndarray | None) -> None:
        inter, n = self.inter, self.num_partitions
        self._sides["item"] = self._distribute(
            make_blocks(
                inter.item_idx, inter.user_idx, inter.n_items, n, explicit_values, implicit_values
            )
        )
        try:
            self._sides["user"] = self._distribute(
                make_blocks(
                    inter.user_idx,
                    inter.item_idx,
                    inter.n_users,
                    n,
                    explicit_values,
                    implicit_values,
                )
            )
        except BaseException:
            self.close()  # do not leave the first side's blocks cached on the cluster
            raise

    def _ship(self, m: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(m, dtype=self.broadcast_dtype)

    def _solve(
        self,
        side: str,
        e: als.ExplicitStep | None,
        i: als.ImplicitStep | None,
        errors: bool,
    ) -> als.StepResult:
        if side == "item":
            self._iteration += 1
        it = self._iteration
        payload = {
            "exp": None
            if e is None
            else replace(e, fixed=self._ship(e.fixed), current=self._ship(e.current)),
            "imp": None
            if i is None
            else replace(i, fixed=self._ship(i.fixed), current=self._ship(i.current)),
        }
        bc = self.sc.broadcast(payload)
        try:
            parts = self._collect_watched(self._sides[side], _half_step_task(bc, errors), it, side)
        except ExecutorLostError:
            raise
        except Exception as exc:
            if _is_linalg_failure(exc):
                raise als.TrainingDivergedError(
                    f"iteration {it}: {side} solve failed on an executor (singular system); "
                    "increase reg"
                ) from exc
            if "Checkpoint block" in str(exc) or "ExecutorLostFailure" in str(exc):
                # The blocks are locally checkpointed: they die with their executor.
                raise ExecutorLostError(
                    f"iteration {it}: a Spark executor was lost and the training blocks it "
                    "held with it; the job failed and can simply be retried"
                ) from exc
            raise
        finally:
            bc.unpersist()
        out = als.StepResult()
        if e is not None:
            out.explicit = np.zeros_like(e.current, dtype=np.float64)
        if i is not None:
            out.implicit = np.zeros_like(i.current, dtype=np.float64)
        e_err = [0.0, 0.0]
        i_err = [0.0, 0.0]
        for rows, part in parts:
            if e is not None:
                out.explicit[rows] = part.explicit
                e_err = [e_err[0] + part.explicit_error[0], e_err[1] + part.explicit_error[1]]
            if i is not None:
                out.implicit[rows] = part.implicit
                i_err = [i_err[0] + part.implicit_error[0], i_err[1] + part.implicit_error[1]]
        out.explicit_error, out.implicit_error = tuple(e_err), tuple(i_err)
        return out

    def solve_items(
        self, explicit: als.ExplicitStep | None, implicit: als.ImplicitStep | None, errors: bool
    ) -> als.StepResult:
        return self._solve("item", explicit, implicit, errors)

    def solve_users(
        self, explicit: als.ExplicitStep | None, implicit: als.ImplicitStep | None, errors: bool
    ) -> als.StepResult:
        return self._solve("user", explicit, implicit, errors)

    def close(self) -> None:
        for rdd in self._sides.values():
            rdd.unpersist()
        self._sides.clear()


class SparkALS:
    """One training set on a SparkContext: `fit` runs the kernel's ALS loop (`als.fit_als`)
    with `SparkHalfSteps`, both models in the SAME Spark jobs when both are requested (every
    half-step ships both fixed matrices in one broadcast and each partition solves both models
    for its rows, so adding the ranking model adds algebra but no extra jobs — the fixed cost
    per job is what dominates at 100k ratings)."""

    def __init__(
        self,
        sc: SparkContext,
        inter: als.Interactions,
        *,
        num_partitions: int | None = None,
        broadcast_dtype: type = np.float32,
    ) -> None:
        self.sc = sc
        self.inter = inter
        self.num_partitions = int(num_partitions or sc.defaultParallelism)
        self.broadcast_dtype = broadcast_dtype

    def fit(
        self,
        explicit: als.ExplicitParams | None = als.DEFAULT_EXPLICIT,
        implicit: als.ImplicitParams | None = None,
        valid: als.Interactions | None = None,
        on_iteration: Callable[[str, dict], None] | None = None,
    ) -> tuple[als.ExplicitModel | None, als.ImplicitModel | None]:
        """Train the requested models; `on_iteration(model_name, entry)` after each iteration
        of each model, with the local engine's history entry format. Raises
        TrainingDivergedError (see `als.fit_als`) and ExecutorLostError."""
        engine = SparkHalfSteps(self.sc, self.inter, self.num_partitions, self.broadcast_dtype)
        return als.fit_als(
            engine,
            self.inter,
            explicit,
            implicit,
            valid,
            on_iteration,
            dtype=self.broadcast_dtype,
        )
