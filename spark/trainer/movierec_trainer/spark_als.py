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

Precision. The broadcast is float32 by default (half the bytes); the kernel accumulates in
float64 whatever it is given, and the factors still agree with the local float64 engine to
~1e-7 relative (tests/spark/test_spark_als.py checks 1e-6; float64 is one argument away).

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

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from movierec_common import als

from movierec_trainer.spark_watch import ExecutorLostError, block_managers, run_watched

__all__ = ["Block", "ExecutorLostError", "SparkALS", "fit_explicit_spark", "fit_implicit_spark"]

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


def _observed_errors(b: Block, x: np.ndarray, fixed: np.ndarray) -> tuple[float, float]:
    """Σ(1 − x_row·y_col)², Σ|1 − x_row·y_col| over the block's ratings: the ranking model's
    progress signal (the local engine logs the same quantity)."""
    local = np.repeat(np.arange(len(b.rows)), np.diff(b.indptr))
    sse = sae = 0.0
    step = 1 << 18
    for s in range(0, len(local), step):
        d = 1.0 - np.einsum("ij,ij->i", x[local[s : s + step]], fixed[b.indices[s : s + step]])
        sse += float(d @ d)
        sae += float(np.abs(d).sum())
    return sse, sae


def _half_step_task(payload_bc: Any, exp_cfg: tuple | None, imp_cfg: tuple | None, errors: bool):
    """The function every partition runs: the kernel's batched solves for its block."""

    def run(blocks: Iterator[Block]):
        payload = payload_bc.value
        for b in blocks:  # exactly one block per partition; the loop also drains the iterator
            out_e = out_i = err_e = err_i = None
            if exp_cfg is not None and b.explicit is not None:
                reg, reg_scaled = exp_cfg
                out_e, sse, sae = als._explicit_plan_solve(
                    payload["exp"], b.explicit, reg, reg_scaled, errors
                )
                err_e = (sse, sae)
            if imp_cfg is not None and b.implicit is not None:
                alpha, reg = imp_cfg
                fixed, gram = payload["imp"]
                out_i = als.solve_implicit_block(
                    fixed, gram, None, None, None, alpha, reg, plan=b.implicit
                )
                if errors:
                    err_i = _observed_errors(b, out_i, np.asarray(fixed, np.float64))
            yield b.rows, out_e, err_e, out_i, err_i

    return run


def _is_linalg_failure(exc: BaseException) -> bool:
    text = str(exc)
    return "LinAlgError" in text or "Singular matrix" in text


class SparkALS:
    """The persisted blocks of one training set and the fitting loop over them.

    `fit(explicit, implicit)` trains one or both models in the SAME Spark jobs: every
    half-step ships both fixed matrices in one broadcast and each partition solves both
    models for its rows, so adding the ranking model adds algebra but no extra jobs (the
    fixed cost per job is what dominates at 100k ratings).
    """

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
        self._holders: set[str] = set()  # block managers alive when the blocks were stored

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

    def _fixed(self, m: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(m, dtype=self.broadcast_dtype)

    def _implicit_payload(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fixed = self._fixed(m)
        f64 = fixed.astype(np.float64)
        return fixed, f64.T @ f64  # the gram of exactly what the executors will see

    def _run(self, rdd: RDD, payload: dict, exp_cfg, imp_cfg, errors: bool, it: int, name: str):
        bc = self.sc.broadcast(payload)
        try:
            return self._collect_watched(
                rdd, _half_step_task(bc, exp_cfg, imp_cfg, errors), it, name
            )
        except ExecutorLostError:
            raise
        except Exception as exc:
            if _is_linalg_failure(exc):
                raise als.TrainingDivergedError(
                    f"iteration {it}: {name} solve failed on an executor (singular system); "
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

    def fit(
        self,
        explicit: als.ExplicitParams | None = als.DEFAULT_EXPLICIT,
        implicit: als.ImplicitParams | None = None,
        valid: als.Interactions | None = None,
        on_iteration: Callable[[str, dict], None] | None = None,
    ) -> tuple[als.ExplicitModel | None, als.ImplicitModel | None]:
        """Train the requested models; `on_iteration(model_name, entry)` after each iteration
        of each model, with the local engine's history entry format."""
        if explicit is None and implicit is None:
            raise ValueError("nothing to fit")
        inter = self.inter
        als._check_finite_input(inter)
        n_train = max(len(inter), 1)
        resid = None
        emodel = imodel = None
        if explicit is not None:
            mu, b_u, b_i = als.compute_biases(inter, explicit.bias_reg)
            resid = inter.rating.astype(np.float64) - mu - b_u[inter.user_idx] - b_i[inter.item_idx]
            P = als.init_factors(
                inter.n_users, explicit.rank, explicit.seed, als.USER_SALT, explicit.init_scale
            )
            emodel = als.ExplicitModel(
                mu, b_u, b_i, P, np.zeros((inter.n_items, explicit.rank)), []
            )
        if implicit is not None:
            X = als.init_factors(
                inter.n_users, implicit.rank, implicit.seed, als.USER_SALT, implicit.init_scale
            )
            imodel = als.ImplicitModel(X, np.zeros((inter.n_items, implicit.rank)), [])
        ratings = (
            None if implicit is None else als.implicit_signal(inter.rating, implicit.negative_at)
        )
        n = self.num_partitions
        by_item = self._distribute(
            make_blocks(inter.item_idx, inter.user_idx, inter.n_items, n, resid, ratings)
        )
        try:
            by_user = self._distribute(
                make_blocks(inter.user_idx, inter.item_idx, inter.n_users, n, resid, ratings)
            )
        except BaseException:
            by_item.unpersist()  # do not leave the first side's blocks cached on the cluster
            raise
        valid_base = None
        if emodel is not None and valid is not None and len(valid):
            valid_base = emodel.mu + emodel.user_bias[valid.user_idx]
            valid_base = valid_base + emodel.item_bias[valid.item_idx]
            valid_r = valid.rating.astype(np.float64)
        e_iters = explicit.iterations if explicit is not None else 0
        i_iters = implicit.iterations if implicit is not None else 0
        start = time.perf_counter()
        try:
            for it in range(1, max(e_iters, i_iters) + 1):
                e_on = emodel is not None and it <= e_iters
                i_on = imodel is not None and it <= i_iters
                exp_cfg = (explicit.reg, explicit.reg_scaled) if e_on else None
                imp_cfg = (implicit.alpha, implicit.reg) if i_on else None
                # Items given users …
                payload = {
                    "exp": self._fixed(emodel.P) if e_on else None,
                    "imp": self._implicit_payload(imodel.X) if i_on else None,
                }
                parts = self._run(by_item, payload, exp_cfg, imp_cfg, False, it, "item")
                Q = np.zeros_like(emodel.Q) if e_on else None
                Y = np.zeros_like(imodel.Y) if i_on else None
                for rows, xe, _, xi, _ in parts:
                    if e_on:
                        Q[rows] = xe
                    if i_on:
                        Y[rows] = xi
                if e_on:
                    als._check_factors("item", Q, it)
                    emodel.Q = Q
                if i_on:
                    als._check_factors("ranking item", Y, it)
                    imodel.Y = Y
                # … then users given items; the user step also returns the training error.
                payload = {
                    "exp": self._fixed(emodel.Q) if e_on else None,
                    "imp": self._implicit_payload(imodel.Y) if i_on else None,
                }
                parts = self._run(by_user, payload, exp_cfg, imp_cfg, True, it, "user")
                P = np.zeros_like(emodel.P) if e_on else None
                X = np.zeros_like(imodel.X) if i_on else None
                e_err = [0.0, 0.0]
                i_err = [0.0, 0.0]
                for rows, xe, ee, xi, ie in parts:
                    if e_on:
                        P[rows] = xe
                        e_err = [e_err[0] + ee[0], e_err[1] + ee[1]]
                    if i_on:
                        X[rows] = xi
                        i_err = [i_err[0] + ie[0], i_err[1] + ie[1]]
                elapsed = time.perf_counter() - start
                if e_on:
                    als._check_factors("user", P, it)
                    emodel.P = P
                    tr_rmse, tr_mae = math.sqrt(e_err[0] / n_train), e_err[1] / n_train
                    if not math.isfinite(tr_rmse) or tr_rmse > 100.0:
                        raise als.TrainingDivergedError(
                            f"iteration {it}: train RMSE {tr_rmse} diverged"
                        )
                    va_rmse = va_mae = None
                    if valid_base is not None:
                        d = valid_base + als._dot_rows(P, Q, valid.user_idx, valid.item_idx)
                        d = d - valid_r
                        va_rmse, va_mae = float(np.sqrt(np.mean(d * d))), float(np.mean(abs(d)))
                    entry = {
                        "iteration": it,
                        "of": e_iters,
                        "train_rmse": tr_rmse,
                        "train_mae": tr_mae,
                        "valid_rmse": va_rmse,
                        "valid_mae": va_mae,
                        "seconds": elapsed,
                    }
                    emodel.history.append(entry)
                    if on_iteration is not None:
                        on_iteration("explicit", entry)
                if i_on:
                    als._check_factors("ranking user", X, it)
                    imodel.X = X
                    entry = {
                        "iteration": it,
                        "of": i_iters,
                        "train_rmse": math.sqrt(i_err[0] / n_train),
                        "train_mae": i_err[1] / n_train,
                        "valid_rmse": None,
                        "valid_mae": None,
                        "seconds": elapsed,
                    }
                    imodel.history.append(entry)
                    if on_iteration is not None:
                        on_iteration("ranking", entry)
        finally:
            by_item.unpersist()
            by_user.unpersist()
        return emodel, imodel


def fit_explicit_spark(
    sc: SparkContext,
    inter: als.Interactions,
    params: als.ExplicitParams = als.DEFAULT_EXPLICIT,
    valid: als.Interactions | None = None,
    on_iteration: als.OnIteration | None = None,
    *,
    num_partitions: int | None = None,
    broadcast_dtype: type = np.float32,
) -> als.ExplicitModel:
    """Drop-in Spark twin of `als.fit_explicit`."""
    engine = SparkALS(sc, inter, num_partitions=num_partitions, broadcast_dtype=broadcast_dtype)
    cb = None if on_iteration is None else (lambda _name, entry: on_iteration(entry))
    model, _ = engine.fit(params, None, valid, cb)
    assert model is not None
    return model


def fit_implicit_spark(
    sc: SparkContext,
    inter: als.Interactions,
    params: als.ImplicitParams = als.DEFAULT_IMPLICIT,
    on_iteration: als.OnIteration | None = None,
    *,
    num_partitions: int | None = None,
    broadcast_dtype: type = np.float32,
) -> als.ImplicitModel:
    """Drop-in Spark twin of `als.fit_implicit`."""
    engine = SparkALS(sc, inter, num_partitions=num_partitions, broadcast_dtype=broadcast_dtype)
    cb = None if on_iteration is None else (lambda _name, entry: on_iteration(entry))
    _, model = engine.fit(None, params, None, cb)
    assert model is not None
    return model
