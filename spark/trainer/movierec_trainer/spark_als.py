"""The Spark engine: the kernel's ALS, distributed with RDD operators.

Layout. For each side (by movie, then by user) the driver cuts the ratings into
`num_partitions` shares of contiguous rows with about equal rating counts (`share_ratings`: a
bincount and a radix sort by share, linear time) and ships each share's ratings as a
broadcast. The executor that stores a share groups it into the partition's ONE block
(`Share.block` = `make_blocks` on that share): its global row ids, the sorted global ids of the
columns it reads (`needed`, found with a bincount) and the kernel's `BlockPlan`s (rows bucketed
by length, values padded, column ids renumbered into `needed`) for the explicit and/or the
ranking model — a handful of NumPy arrays per partition, never a Python object per rating. So
the sorts and the planning run on every core at once; on the driver they were ~7 s per side at
25M ratings (a comparison sort and two `np.unique`s) and still ~1.3 s once linear.

Blocks stay in the Python workers. Each share travels as a broadcast, not inside its task (a
task's own serialized size is capped by spark.rpc.message.maxSize, 128 MiB by default, and at
25M ratings on 2 partitions a share is ~160 MB), in a job of one single-partition RDD per share
(`_one_task_each`: PySpark hands every task of an RDD every broadcast its function names). The
task writes its block's arrays once into a directory on its host
(`block_root()`/<fit token>/<side>-<partition>) and keeps them memory-mapped in the Python
worker process. A half-step never reads a block from the JVM: its job carries one small payload
per block, and the task finds the block already mapped in its process (or maps it from the
host's directory; the page cache is shared by every Python worker of the host). A task on a
host without the block's directory (another container of a multi-host cluster, or files
removed) answers "missing" and the driver solves just those blocks in a second job that builds
them again from their shares' broadcasts (the driver keeps them until the fit ends) and also
writes them to that host for the next half-step.

Half-step payloads: each block gets only the factor rows it reads (`fixed[needed]`, as Spark
MLlib ships each block only the factors it needs) and its own rows of the current factors (the
CG warm start); YᵀY for the ranking model (k×k). A payload travels inside its task, or as a
broadcast when its arrays exceed `INLINE_PAYLOAD_BYTES` (the same cap). The task returns its
rows' solutions and, for the user half-step, the block's training error (the kernel computes
it from the rows it already gathered), so the per-iteration train RMSE costs no extra pass.
Both models can train in the SAME jobs (`SparkALS.fit(explicit, implicit)`). The loop itself
(biases, start values, checks, history) is the kernel's `als.fit_als`; this module only
supplies `SparkHalfSteps`, whose tasks call the kernel's public planned solves (and cap BLAS at
one thread per task with threadpoolctl).

Precision. The payload is float32 by default (half the bytes); the exact explicit solves
accumulate in float64 whatever they are given, the ranking model's CG steps and exact solves
run in the payload's precision (on whitened, well-conditioned systems), and the factors agree
with the local float64 engine to ~1e-6 relative (tests/spark/test_spark_als.py checks 1e-6;
float64 is one argument away). Renumbering the columns changes no arithmetic: a
block gathers the same factor rows in the same order.

Why the driver cuts the shares: the trainer already holds the ratings as columnar arrays (it
needs them for evaluation), and cutting them is linear NumPy work, whereas a Spark groupBy would
turn every rating into a Python object on the way back. What Spark distributes is the blocking
and the O(nnz·k²) algebra, which is what grows.

Biases are computed once on the driver with the kernel's `compute_biases` (three `bincount`s,
milliseconds even at 10M) and frozen, exactly as in the local engine. Iteration order, the
initial factors and the divergence checks are the local engine's, so for the same seed the two
engines give the same factors to rounding.

Fixed cost. Each Spark job costs ~0.3 s here before any algebra (ARCHITECTURE.md), and a fit is
2·iterations jobs, so the partition count should match the cores (default: the context's
defaultParallelism) — `bench/bench_train.py` measures 2 vs 8.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from movierec_common import als

from movierec_trainer.spark_watch import ExecutorLostError, block_managers, is_local, run_watched

__all__ = [
    "Block",
    "ExecutorLostError",
    "Resident",
    "SparkALS",
    "SparkHalfSteps",
    "block_root",
    "load_resident",
    "save_resident",
]

if TYPE_CHECKING:
    from pyspark import RDD, Broadcast, SparkContext

# A directory of a fit whose trainer died is removed by the next fit on that host once older.
STALE_BLOCK_DIR_SECONDS = 6 * 3600.0


@dataclass(frozen=True)
class Resident:
    """What a half-step needs of one block, kept in the Python workers: its global rows, the
    sorted global ids of the columns it reads (`needed`; the plans' column ids index into it)
    and the solve plans."""

    rows: np.ndarray  # global row ids, int64, contiguous
    needed: np.ndarray  # global column ids the block reads, sorted, int64
    explicit: als.BlockPlan | None  # values = residuals r − μ − b_u − b_i
    implicit: als.BlockPlan | None  # values = signed signal r′ (als.implicit_signal)


@dataclass(frozen=True)
class Block:
    """One partition's share of the ratings matrix: a contiguous range of rows, as a local CSR
    (`indices`: global column ids), the columns it reads and the kernel's reusable solve plans
    (column ids renumbered into `needed`) for the explicit and/or the ranking model."""

    rows: np.ndarray  # global row ids, int64
    indptr: np.ndarray  # local CSR over the block's rows
    indices: np.ndarray  # global column ids
    needed: np.ndarray  # sorted unique global column ids (np.unique(indices))
    explicit: als.BlockPlan | None
    implicit: als.BlockPlan | None

    def resident(self) -> Resident:
        return Resident(self.rows, self.needed, self.explicit, self.implicit)


def split_rows(indptr: np.ndarray, n_parts: int) -> list[tuple[int, int]]:
    """Contiguous row ranges with about equal numbers of ratings (the solve cost ~ nnz·k²)."""
    n_rows = len(indptr) - 1
    n_parts = max(1, min(n_parts, max(n_rows, 1)))
    nnz = int(indptr[-1])
    cuts = np.searchsorted(indptr, np.linspace(0, nnz, n_parts + 1)[1:-1], side="left")
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < n_rows}), n_rows]
    return [(bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)]


def distinct_columns(indices: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(indices, return_inverse=True)` for column ids in [0, n_cols), in linear time:
    (needed (m,) int64 sorted distinct ids, local (n,) int32 position of each entry's id in
    `needed`). A bincount and a lookup table instead of a sort: 10M entries in 0.05 s against
    2.2 s (measured at 25M ratings, where the two sorts per side were most of the blocking)."""
    idx = np.asarray(indices)
    needed = np.flatnonzero(np.bincount(idx, minlength=n_cols))
    lookup = np.zeros(max(n_cols, 1), dtype=np.int32)
    lookup[needed] = np.arange(needed.size, dtype=np.int32)
    return needed.astype(np.int64), lookup[idx]


def make_blocks(
    row_idx: np.ndarray,
    col_idx: np.ndarray,
    n_rows: int,
    n_parts: int,
    explicit_values: np.ndarray | None,
    implicit_values: np.ndarray | None,
    n_cols: int | None = None,
) -> list[Block]:
    """Cut the ratings, grouped by row, into `n_parts` blocks of contiguous rows (see
    `split_rows`); `n_cols` bounds the column ids (default: their max + 1)."""
    if n_cols is None:
        n_cols = int(np.max(col_idx)) + 1 if len(col_idx) else 0
    order = als.stable_argsort_rows(row_idx)  # the grouping to_csr does, shared by both
    indptr = als.row_pointers(row_idx, n_rows)
    indices = np.asarray(col_idx)[order].astype(np.int32)
    ev = None if explicit_values is None else np.asarray(explicit_values, np.float64)[order]
    iv = None if implicit_values is None else np.asarray(implicit_values, np.float64)[order]
    blocks = []
    for lo, hi in split_rows(indptr, n_parts):
        s, e = int(indptr[lo]), int(indptr[hi])
        ptr, idx = indptr[lo : hi + 1] - s, indices[s:e]
        needed, local = distinct_columns(idx, n_cols)
        blocks.append(
            Block(
                rows=np.arange(lo, hi, dtype=np.int64),
                indptr=ptr,
                indices=idx,
                needed=needed.astype(np.int64),
                explicit=None if ev is None else als.plan_block(ptr, local, ev[s:e]),
                implicit=None if iv is None else als.plan_block(ptr, local, iv[s:e]),
            )
        )
    return blocks


@dataclass(frozen=True)
class Share:
    """One partition's ratings as the driver ships them, before blocking: rows [lo, hi) of the
    matrix, each rating's row (minus `lo`, int32), column (int32) and values (float64) in
    their input order. `block()` groups them into the partition's `Block` where it runs (on
    an executor), so the sorts and the planning are spread over the cluster's cores instead of
    running one after the other on the driver."""

    lo: int
    hi: int
    n_cols: int
    rows: np.ndarray
    cols: np.ndarray
    explicit: np.ndarray | None
    implicit: np.ndarray | None

    def block(self) -> Block:
        b = make_blocks(
            self.rows, self.cols, self.hi - self.lo, 1, self.explicit, self.implicit, self.n_cols
        )[0]
        return replace(b, rows=b.rows + self.lo)


def share_ratings(
    row_idx: np.ndarray,
    col_idx: np.ndarray,
    n_rows: int,
    n_cols: int,
    n_parts: int,
    explicit_values: np.ndarray | None,
    implicit_values: np.ndarray | None,
) -> list[Share]:
    """Cut the ratings into `n_parts` shares of contiguous rows with about equal rating counts
    (`split_rows`), in linear time: a bincount, and a stable radix sort by share. `Share.block`
    of each gives exactly the blocks `make_blocks` would (tests/spark/test_spark_als.py)."""
    rows = np.asarray(row_idx)
    indptr = als.row_pointers(rows, n_rows)
    ranges = split_rows(indptr, n_parts)
    his = np.array([hi for _, hi in ranges[:-1]], dtype=np.int64)
    order = als.stable_argsort_rows(np.searchsorted(his, rows, side="right"))
    shares = []
    for lo, hi in ranges:
        sel = order[int(indptr[lo]) : int(indptr[hi])]
        shares.append(
            Share(
                lo=lo,
                hi=hi,
                n_cols=n_cols,
                rows=(rows[sel] - lo).astype(np.int32),
                cols=np.asarray(col_idx)[sel].astype(np.int32),
                explicit=None
                if explicit_values is None
                else np.asarray(explicit_values, np.float64)[sel],
                implicit=None
                if implicit_values is None
                else np.asarray(implicit_values, np.float64)[sel],
            )
        )
    return shares


# ---------------------------------------------------------------- blocks kept in the workers

_PLAN_ARRAYS = (("rows", np.int64), ("cols", np.int32), ("vals", np.float64), ("counts", np.int64))
_RESIDENT: dict[tuple[str, str, int], Resident] = {}  # this Python process's mapped blocks


def block_root() -> Path:
    """Where a host keeps its Python-worker-resident blocks: $TMPDIR/movierec-als-blocks."""
    return Path(tempfile.gettempdir()) / "movierec-als-blocks"


def _block_dir(token: str, side: str, part: int) -> Path:
    return block_root() / token / f"{side}-{part}"


def _flatten(plan: als.BlockPlan) -> dict[str, np.ndarray]:
    b = plan.buckets
    out = {"n_rows": np.array([plan.n_rows], np.int64)}
    out["shapes"] = np.array([x.cols.shape for x in b], np.int64).reshape(-1, 2)
    for name, dt in _PLAN_ARRAYS:
        parts = [np.asarray(getattr(x, name), dt).reshape(-1) for x in b]
        out[name] = np.concatenate(parts) if parts else np.zeros(0, dt)
    return out


def _unflatten(a: dict[str, np.ndarray]) -> als.BlockPlan:
    buckets = []
    r = e = 0
    for nb, length in np.asarray(a["shapes"]).tolist():
        cols = a["cols"][e : e + nb * length].reshape(nb, length)
        buckets.append(
            als.Bucket(
                a["rows"][r : r + nb],
                cols,
                a["vals"][e : e + nb * length].reshape(nb, length),
                cols >= 0,  # padding columns are -1 (the sentinel zero row)
                a["counts"][r : r + nb],
            )
        )
        r, e = r + nb, e + nb * length
    return als.BlockPlan(int(a["n_rows"][0]), buckets)


def save_resident(block: Resident, directory: Path) -> None:
    """Write `block` as .npy files into `directory`, atomically (a temporary sibling renamed
    into place; when another worker won the race, its identical copy is kept)."""
    arrays = {"rows": block.rows, "needed": block.needed}
    for name, plan in (("explicit", block.explicit), ("implicit", block.implicit)):
        if plan is not None:
            arrays.update({f"{name}.{k}": v for k, v in _flatten(plan).items()})
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(value), allow_pickle=False)
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / "rows.npy").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _map(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # an empty array cannot be memory-mapped
        return np.load(path, allow_pickle=False)


def load_resident(directory: Path) -> Resident | None:
    """The block `save_resident` wrote into `directory`, memory-mapped; None when absent."""
    if not (directory / "rows.npy").exists():
        return None
    files = {p.name[: -len(".npy")]: p for p in directory.glob("*.npy")}
    plans: dict[str, als.BlockPlan | None] = {}
    for name in ("explicit", "implicit"):
        keys = [k for k in files if k.startswith(name + ".")]
        plans[name] = (
            _unflatten({k.split(".", 1)[1]: _map(files[k]) for k in keys}) if keys else None
        )
    return Resident(
        _map(files["rows"]), _map(files["needed"]), plans["explicit"], plans["implicit"]
    )


def _remember(token: str, side: str, part: int, block: Resident) -> None:
    for key in [k for k in _RESIDENT if k[0] != token]:  # one fit at a time per worker
        del _RESIDENT[key]
    _RESIDENT[(token, side, part)] = block


# A payload above this many bytes of arrays is shipped as a broadcast rather than inside its
# task: Spark refuses a task whose serialized size exceeds spark.rpc.message.maxSize (128 MiB
# by default), e.g. 162k users' rank-128 factors in float32 are 83 MB.
INLINE_PAYLOAD_BYTES = 32 << 20


def _payload_bytes(payload: dict) -> int:
    """Bytes of the factor arrays in one half-step payload."""
    return sum(
        step.fixed.nbytes + step.current.nbytes
        for step in (payload["exp"], payload["imp"])
        if step is not None
    )


def _resident(token: str, side: str, part: int) -> Resident | None:
    block = _RESIDENT.get((token, side, part))
    if block is None:
        block = load_resident(_block_dir(token, side, part))
        if block is not None:
            _remember(token, side, part, block)
    return block


def _sweep_stale(keep: str) -> None:
    """Remove block directories of fits whose trainer died (older than STALE_BLOCK_DIR_SECONDS)."""
    with contextlib.suppress(OSError):
        for d in block_root().iterdir():
            if d.name != keep and time.time() - d.stat().st_mtime > STALE_BLOCK_DIR_SECONDS:
                shutil.rmtree(d, ignore_errors=True)


def _keep(token: str, side: str, part: int, block: Resident) -> Resident:
    """Write `block` to this host's directory (unless another worker did) and keep it mapped
    in this process; returns what is kept. An unwritable temporary directory: this process
    keeps the block in memory."""
    directory = _block_dir(token, side, part)
    mapped = None
    try:
        if not (directory / "rows.npy").exists():
            save_resident(block, directory)
        mapped = load_resident(directory)
    except OSError:
        pass
    kept = mapped if mapped is not None else block
    _remember(token, side, part, kept)
    return kept


def _store_task(token: str, side: str, share: Broadcast) -> Callable[[Iterator[int]], Iterable]:
    """The partition given builds its block from its ratings (the broadcast `share`), writes
    it to its host's directory and keeps it mapped; yields (side, part, the block's `needed`)."""

    def run(parts: Iterator[int]) -> Iterable:
        _sweep_stale(token)
        for part in parts:
            block = share.value.block().resident()
            _keep(token, side, part, block)
            yield side, part, block.needed

    return run


def _solve(block: Resident, payload: dict, errors: bool) -> als.StepResult:
    """The kernel's public planned solves for one block, against the factors it was shipped:
    payload {"exp": ExplicitStep | None, "imp": ImplicitStep | None} with `fixed` = the rows
    `block.needed` of the fixed side and `current` = the block's own rows (the warm start)."""
    from movierec_trainer.blas import cap_blas_threads

    cap_blas_threads()
    return als.solve_planned_step(
        block.explicit, block.implicit, payload["exp"], payload["imp"], errors
    )


Item = tuple[int, dict | None]  # (partition, its payload, or None when shipped as a broadcast)


def _half_step_task(
    token: str, side: str, errors: bool, shipped: Broadcast | None
) -> Callable[[Iterator[Item]], Iterable]:
    """The half-step of the partition given: (part, result), or (part, None) when this host
    does not have the block (the driver then solves it in a fallback job). A payload that is
    None was shipped as the broadcast `shipped` (a broadcast must travel in the task's closure,
    not in its data, for the worker to load it)."""

    def run(items: Iterator[Item]) -> Iterable:
        for part, payload in items:
            block = _resident(token, side, part)
            if block is None:
                yield part, None
                continue
            yield part, _solve(block, shipped.value if payload is None else payload, errors)

    return run


def _fallback_task(
    token: str, side: str, errors: bool, share: Broadcast, shipped: Broadcast | None
) -> Callable[[Iterator[Item]], Iterable]:
    """The half-step of a block no host had: built again from its ratings' broadcast `share`
    (the driver keeps it until close()), kept in this worker and written to its host for the
    next half-step."""

    def run(items: Iterator[Item]) -> Iterable:
        for part, payload in items:
            # This host may have the block after all (the first task ran on another host).
            b = _resident(token, side, part) or _keep(
                token, side, part, share.value.block().resident()
            )
            yield part, _solve(b, shipped.value if payload is None else payload, errors)

    return run


def _one_task_each(sc: SparkContext, tasks: list[tuple[Callable, Any]]) -> RDD:
    """One job of one task per (function, item): a union of single-partition RDDs, so each
    task's closure, and the broadcasts it names, reach only that task. (PySpark hands every
    task of an RDD all the broadcasts its function names: with one RDD over all the blocks,
    each executor fetched every block, twice its own bytes on 2 partitions at 25M ratings.)"""
    return sc.union([sc.parallelize([item], 1).mapPartitions(fn) for fn, item in tasks])


def forget(token: str) -> None:
    """Drop this process's mapped blocks of fit `token` and remove this host's directory."""
    for key in [k for k in _RESIDENT if k[0] == token]:
        del _RESIDENT[key]
    shutil.rmtree(block_root() / token, ignore_errors=True)


def _cleanup_task(token: str) -> Callable[[Iterator], Iterable]:
    def run(_: Iterator) -> Iterable:
        forget(token)  # a module function: the worker's own _RESIDENT, not a pickled copy
        return []

    return run


def _is_linalg_failure(exc: BaseException) -> bool:
    text = str(exc)
    return "LinAlgError" in text or "Singular matrix" in text


class SparkHalfSteps:
    """The Spark engine's half-steps (`als.HalfSteps`): the blocks of each side kept in the
    Python workers (see the module docstring); a half-step ships each block the fixed factors
    it reads and its own current rows, solves, and collects the block's rows."""

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
        self.token = uuid.uuid4().hex
        self._holders: set[str] = set()  # block managers alive when the blocks were stored
        self._blocks: dict[str, list] = {}  # side -> the blocks' broadcasts, kept until close()
        self._layout: dict[str, list[tuple[np.ndarray, int, int]]] = {}  # needed, lo, hi
        self._iteration = 0
        self._failed = False
        self.stats = {"tasks": 0, "fallback": 0, "shipped_rows": 0}

    def _block_managers(self) -> set[str]:
        """host:port of every live block manager (the driver's included; it never goes)."""
        return block_managers(self.sc)

    def _watched(self, action: Callable[[], list], it: int, name: str) -> list:
        """Run `action` (a Spark job), abandoned as soon as an executor that held the
        blocks in its workers is gone (or none has been registered for the grace period). Why:
        when the only worker dies, Spark does not fail the job, it waits for resources forever
        (the retrain stayed `running`, its lease renewed by the heartbeat); a fit that lost
        a host's blocks is failed and retried whole rather than patched."""
        return run_watched(
            self.sc,
            action,
            f"iteration {it} ({name} half-step)",
            watch=self._holders,
            lost_detail=" with the training blocks they held",
        )

    def load(self, explicit_values: np.ndarray | None, implicit_values: np.ndarray | None) -> None:
        """Upload both sides' blocks in ONE job. One block per partition, built on the executor
        that stores it (`Share.block`) from its ratings, which travel as a broadcast (the block
        manager sends it in pieces), not inside the task: Spark refuses a task larger than
        spark.rpc.message.maxSize. Nothing is persisted: a block is needed again only when no
        host keeps it (the fallback), and is then rebuilt from its share's broadcast, which
        the driver keeps until close(); the executors' copies are dropped once each block is
        in its worker."""
        inter, n = self.inter, self.num_partitions
        ranges: dict[str, list[tuple[int, int]]] = {}
        try:
            for side, rows, cols, n_rows, n_cols in (
                ("item", inter.item_idx, inter.user_idx, inter.n_items, inter.n_users),
                ("user", inter.user_idx, inter.item_idx, inter.n_users, inter.n_items),
            ):
                shares = share_ratings(
                    rows, cols, n_rows, n_cols, n, explicit_values, implicit_values
                )
                ranges[side] = [(s.lo, s.hi) for s in shares]
                self._blocks[side] = shipped = []
                while shares:  # from here each share lives in its broadcast only (the
                    # driver's pieces of it, ~16-24 bytes per rating, stay until close())
                    shipped.append(self.sc.broadcast(shares.pop(0)))
            tasks = [
                (_store_task(self.token, side, bc), p)
                for side, shipped in self._blocks.items()
                for p, bc in enumerate(shipped)
            ]
            # Materialise now (and keep each block in its worker), so iteration 1 does not pay
            # for the upload; watched, because a worker lost here (or never there) would
            # otherwise leave the job waiting forever.
            stored = run_watched(
                self.sc,
                lambda: _one_task_each(self.sc, tasks).collect(),
                "distributing the training blocks",
            )
        except BaseException:
            self._failed = True
            self.close()  # do not leave blocks or broadcasts of a failed upload on the cluster
            raise
        finally:
            for bc in (bc for shipped in self._blocks.values() for bc in shipped):
                with contextlib.suppress(Exception):
                    bc.unpersist()
        needed = {(side, part): cols for side, part, cols in stored}
        for side, parts in ranges.items():
            self._layout[side] = [(needed[side, p], lo, hi) for p, (lo, hi) in enumerate(parts)]
        self._holders |= self._block_managers()

    def _ship(self, m: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(m, dtype=self.broadcast_dtype)

    def _payloads(
        self, side: str, e: als.ExplicitStep | None, i: als.ImplicitStep | None
    ) -> list[dict]:
        """Per block: the fixed factors it reads and its own current rows, nothing else."""
        out = []
        for needed, lo, hi in self._layout[side]:
            self.stats["shipped_rows"] += len(needed)
            out.append(
                {
                    "exp": None
                    if e is None
                    else replace(
                        e, fixed=self._ship(e.fixed[needed]), current=self._ship(e.current[lo:hi])
                    ),
                    "imp": None
                    if i is None
                    else replace(
                        i, fixed=self._ship(i.fixed[needed]), current=self._ship(i.current[lo:hi])
                    ),
                }
            )
        return out

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
        payloads = self._payloads(side, e, i)
        n = len(payloads)
        big: dict[int, Broadcast] = {}  # destroyed in `finally`, even if a later one fails
        try:
            for p, payload in enumerate(payloads):
                if _payload_bytes(payload) > INLINE_PAYLOAD_BYTES:
                    big[p] = self.sc.broadcast(payload)
            items = [(p, None if p in big else payload) for p, payload in enumerate(payloads)]
            tasks = [
                (_half_step_task(self.token, side, errors, big.get(p)), item)
                for p, item in enumerate(items)
            ]
            parts = dict(self._watched(lambda: _one_task_each(self.sc, tasks).collect(), it, side))
            missing = sorted(p for p, res in parts.items() if res is None)
            self.stats["tasks"] += n
            if missing:
                self.stats["fallback"] += len(missing)
                blocks = self._blocks[side]
                fb = [
                    (_fallback_task(self.token, side, errors, blocks[p], big.get(p)), items[p])
                    for p in missing
                ]
                parts.update(self._watched(lambda: _one_task_each(self.sc, fb).collect(), it, side))
        except ExecutorLostError:
            self._failed = True
            raise
        except Exception as exc:
            if _is_linalg_failure(exc):  # the executors are fine: close() still cleans up
                raise als.TrainingDivergedError(
                    f"iteration {it}: {side} solve failed on an executor (singular system); "
                    "increase reg"
                ) from exc
            self._failed = True
            if "ExecutorLostFailure" in str(exc):
                # The blocks kept in its Python workers die with the executor.
                raise ExecutorLostError(
                    f"iteration {it}: a Spark executor was lost and the training blocks it "
                    "held with it; the job failed and can simply be retried"
                ) from exc
            raise
        finally:
            for bc in big.values():
                with contextlib.suppress(Exception):
                    bc.destroy()
        out = als.StepResult()
        if e is not None:
            out.explicit = np.zeros_like(e.current, dtype=np.float64)
        if i is not None:
            out.implicit = np.zeros_like(i.current, dtype=np.float64)
        e_err = [0.0, 0.0]
        i_err = [0.0, 0.0]
        for p, part in parts.items():
            _, lo, hi = self._layout[side][p]
            if e is not None:
                out.explicit[lo:hi] = part.explicit
                e_err = [e_err[0] + part.explicit_error[0], e_err[1] + part.explicit_error[1]]
            if i is not None:
                out.implicit[lo:hi] = part.implicit
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
        """Release the uploaded blocks and the workers' copies: this host's directory at once;
        on a cluster also one small job that removes them where executors run (skipped after
        a failure, when the executors may be gone; the next fit there sweeps stale ones)."""
        for bc in (bc for side in self._blocks.values() for bc in side):
            with contextlib.suppress(Exception):
                bc.destroy()
        self._blocks.clear()
        if not is_local(self.sc) and not self._failed and self._holders:
            with contextlib.suppress(Exception):
                n = max(2, 2 * self.sc.defaultParallelism)
                cleanup = _cleanup_task(self.token)
                run_watched(
                    self.sc,
                    lambda: self.sc.parallelize(range(n), n).mapPartitions(cleanup).collect(),
                    "removing the training blocks",
                )
        forget(self.token)


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
