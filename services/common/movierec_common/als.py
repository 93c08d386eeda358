"""Alternating least squares in pure NumPy: the one kernel both training engines call.

Explicit model: r̂_ui = μ + b_u + b_i + p_u·q_i. The biases are shrunk means computed once and
then frozen (items first, b_i = Σ(r−μ)/(N_i+λ_b); then users on what the item bias leaves,
b_u = Σ(r−μ−b_i)/(N_u+λ_b)), so ALS only has to explain the residual r − μ − b_u − b_i.

Ranking model: Hu, Koren & Volinsky (2008) implicit ALS on the rated / not-rated matrix with
confidence c_ui = 1 + α·|r′_ui| and preference p_ui = 1 if r′_ui > 0 else 0, where r′ is the
signed signal of `implicit_signal`: a like keeps its star value (a 5-star rating pulls 10× harder
than a 0.5), a rating at or below `ImplicitParams.negative_at` becomes evidence AGAINST the movie
(r′ < 0: preference 0 with extra confidence, the convention of Spark MLlib's implicit ALS), so a
user who rated eight horror films 0.5★ is pushed away from them instead of towards them.

Every iteration solves ITEMS given users, then USERS given items, so the final user factors are
exactly one (exact) user half-step against the final item factors, and folding in a training
user's own ratings reproduces their stored vector (`fold_in_explicit` / `fold_in_implicit`).

The hot path has no Python loop per row. Rows of a CSR block are sorted by rating count and
grouped into buckets of similar length; each bucket is gathered into a zero-padded
(rows, L, k) tensor (bounded by `chunk` padded ratings, so a partition of millions of ratings
never allocates more than a few tens of MB), and the normal equations are built with one batched
matmul and solved with one stacked `np.linalg.solve`. Explicit rows with fewer ratings than the
rank use the equivalent dual form x = Yᵀ(YYᵀ + λ'I)⁻¹r (an L×L solve instead of k×k); with
λ' > 0 both forms are the same ridge solution, and they are much cheaper for the long tail of
rarely rated movies.

The ranking model works in whitened coordinates (`_Whitened`): the shared YᵀY + λI = LLᵀ is
factored once per half-step, and with x = L⁻ᵀξ every row's system becomes I + (its own
ratings' part), with eigenvalues in [1, 1 + α·max|r′|]. Its half-steps take a few conjugate-
gradient steps per row (`cg_steps`, 2 by default) warm-started from the row's current factors
(Takács, Pilászy & Tikk 2011; implicit's CPU `least_squares_cg`, here preconditioned by the
shared part for free), batched over the padded buckets cut into slices that stay in a core's
L2 cache (`CG_SLICE_BYTES`): O(L·k) per row and step instead of O(L·k² + k³), which is what
makes high rank affordable. Its exact solve (`cg_steps` = 0, and always the model's last user
half-step, so fold-in reproduces a trained user's vector) is CG run to machine precision, a
number of steps the eigenvalue bound fixes in advance, or a direct O(min(L,k)²·max(L,k)) solve
where that is cheaper. The explicit model's CG is plain (its λ·n_row shift is per row).

Precision: float64 factors in → float64 arithmetic, the reference the tests compare against.
In float32 (`dtype` of `fit_als`, the trainer's setting) the CG steps and the exact ranking
solve run in float32 (the whitened systems are well conditioned: measured at rank 128 on 5M
ratings, the trained user factors are within 1.3e-6 relative of a float64 exact solve, about
the precision the factors are published in); the exact explicit solve always accumulates in
float64.

One loop, two engines: `fit_als` owns biases, start values, iteration order, divergence checks
and the history; an engine only supplies the half-steps (`HalfSteps`: `LocalHalfSteps` here,
`SparkHalfSteps` in the trainer), built on the public planned solves.

BLAS threads: the work is many small matmuls and solves, where OpenBLAS threads only add
synchronisation. Measured on the 2-core box (ml-latest-small, CPU seconds): explicit fit 0.44
with one thread vs 0.47 with two, ranking fit 0.30 vs 0.83. Callers that own the process (the
trainer, the bench) should cap BLAS at one thread with threadpoolctl; this module stays NumPy-only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

USER_SALT = 0x5EED_0001
ITEM_SALT = 0x5EED_0002
DEFAULT_CHUNK = 1 << 17  # padded ratings gathered at once: 131072 × k=20 × 8 B ≈ 21 MB
# CG sweeps its gathered rows 8 times per half-step (4 matrix-vector products, two passes each),
# so it solves them in slices that stay in a core's L2 cache. Measured at rank 128 on 5M
# ratings (user half-step, float32, 3 plain CG steps): 2.64 s with whole 67 MB buckets, 1.16 s with
# 1 MiB slices, 1.42 s with 0.5 MiB (per-call overhead wins below that).
CG_SLICE_BYTES = 1 << 20
DIRECT_MAX_ROWS = 4  # exact ranking solves of at most this many rows skip the whitening
WHITEN_F32_MAX_COND = 1e4  # cond(YᵀY + λI) above which float32 input is whitened in float64
_MAX_ABS_FACTOR = 1e6  # a ridge solution this large means the system was (near) singular


class TrainingDivergedError(RuntimeError):
    """Training produced NaN/inf or exploding factors; the model must not be published."""


# --------------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interactions:
    """Index-encoded ratings: dense int32 user/item indices and float32 ratings."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return int(self.rating.shape[0])

    def subset(self, mask: np.ndarray) -> Interactions:
        """Rows selected by a boolean mask, in the same index space (same n_users/n_items)."""
        return Interactions(
            self.user_idx[mask], self.item_idx[mask], self.rating[mask], self.n_users, self.n_items
        )


def index_ratings(
    user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray
) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Map raw ids to dense indices; index j stands for user_ids_sorted[j] / item_ids_sorted[j]."""
    users, u_idx = np.unique(np.asarray(user_ids, dtype=np.int64), return_inverse=True)
    items, i_idx = np.unique(np.asarray(movie_ids, dtype=np.int64), return_inverse=True)
    inter = Interactions(
        user_idx=u_idx.astype(np.int32).ravel(),
        item_idx=i_idx.astype(np.int32).ravel(),
        rating=np.asarray(ratings, dtype=np.float32).ravel(),
        n_users=int(users.shape[0]),
        n_items=int(items.shape[0]),
    )
    return inter, users, items


def random_holdout(
    user_idx: np.ndarray, item_idx: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The project's seeded random holdout: (train_mask, test_mask).

    Exactly round(fraction·n) rows are drawn for the test part with a seeded permutation; test
    rows whose user or item has no rating left in the training part are then dropped (they are
    in neither mask), because no model can score them.
    """
    n = int(np.asarray(user_idx).shape[0])
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[: round(fraction * n)]] = True
    train = ~test
    u = np.asarray(user_idx, dtype=np.int64)
    i = np.asarray(item_idx, dtype=np.int64)
    n_u = int(u.max()) + 1 if n else 0
    n_i = int(i.max()) + 1 if n else 0
    seen_u = np.bincount(u[train], minlength=n_u) > 0
    seen_i = np.bincount(i[train], minlength=n_i) > 0
    test &= seen_u[u] & seen_i[i]
    return train, test


def compute_biases(
    inter: Interactions, bias_reg: float = 10.0
) -> tuple[float, np.ndarray, np.ndarray]:
    """Global mean and shrunk biases: item biases first, then user biases on what is left.

    Items first because item means are the better-supported signal on MovieLens (every user has
    ≥ 20 ratings, but most movies have a handful); the user bias then absorbs the user's
    leniency relative to the movies they chose.
    """
    r = inter.rating.astype(np.float64)
    mu = float(r.mean()) if r.size else 0.0
    n_i = np.bincount(inter.item_idx, minlength=inter.n_items).astype(np.float64)
    b_i = np.bincount(inter.item_idx, weights=r - mu, minlength=inter.n_items) / (n_i + bias_reg)
    n_u = np.bincount(inter.user_idx, minlength=inter.n_users).astype(np.float64)
    left = r - mu - b_i[inter.item_idx]
    b_u = np.bincount(inter.user_idx, weights=left, minlength=inter.n_users) / (n_u + bias_reg)
    return mu, b_u, b_i


def implicit_signal(ratings: np.ndarray, negative_at: float | None) -> np.ndarray:
    """Signed ranking-model signal r′ (float64, same shape as `ratings`, stars 0.5-5).

    r′ = r for a rating above `negative_at` (a like, preference 1, confidence 1 + α·r);
    r′ = −(negative_at + 0.5 − r) for a rating at or below it (evidence against: preference 0,
    confidence 1 + α·|r′|, so 0.5★ weighs more than a borderline 2★ when negative_at = 2).
    `negative_at=None` treats every rating as a like (Hu-Koren-Volinsky's plain form).
    """
    r = np.asarray(ratings, dtype=np.float64)
    if negative_at is None:
        return r.copy()
    return np.where(r > negative_at, r, -(float(negative_at) + 0.5 - r))


def stable_argsort_rows(rows: np.ndarray) -> np.ndarray:
    """`np.argsort(rows, kind="stable")` in linear time, for integer row indices in [0, 2³²)
    (shape (n,) → (n,) int64 positions). NumPy sorts 16-bit keys by radix, so one stable pass
    on the low 16 bits and, only when some row is ≥ 2¹⁶, a stable pass on the high 16 bits
    (LSD radix). 25M rows of 62k movies: 1.2 s against 4.6 s for the comparison sort; 20M
    rows of 162k users: 2.5 s with the comparison sort (measured). Shared by the CSR grouping
    of both engines and the recommender's co-rating index. Raises ValueError on a negative row
    or one ≥ 2³²."""
    r = np.asarray(rows)
    if r.size == 0:
        return np.empty(0, dtype=np.int64)
    if r.dtype.itemsize < 4:
        r = r.astype(np.int64)  # `& 0xFFFF` does not fit the narrower integer types
    top = int(r.max())
    if int(r.min()) < 0 or top > 0xFFFFFFFF:
        raise ValueError("stable_argsort_rows: row indices must lie in [0, 2**32)")
    order = np.argsort((r & 0xFFFF).astype(np.uint16), kind="stable")
    if top > 0xFFFF:
        high = (r[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


def row_pointers(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """CSR row pointers of entries whose row indices are `rows` (shape (n,), values in
    [0, n_rows)): (n_rows + 1,) int64, indptr[r + 1] − indptr[r] = entries of row r.
    Raises ValueError on a negative row (np.bincount)."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr


def to_csr(
    row_idx: np.ndarray, col_idx: np.ndarray, values: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group entries by row (stable, so equal input gives equal output): (indptr, indices, data)."""
    row_idx = np.asarray(row_idx)
    order = stable_argsort_rows(row_idx)
    indptr = row_pointers(row_idx, n_rows)
    return indptr, np.asarray(col_idx)[order].astype(np.int32), np.asarray(values)[order]


def init_factors(n: int, rank: int, seed: int, salt: int, scale: float = 0.1) -> np.ndarray:
    """Deterministic N(0, scale²) start; `salt` keeps the user and item streams independent."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(salt)]))
    return rng.standard_normal((n, rank)) * scale


# --------------------------------------------------------------------------------------------
# Batched block solves
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """Rows of one block with the same padded length L, solved together in one batched call."""

    rows: np.ndarray  # (nb,) row ids within the block
    cols: np.ndarray  # (nb, L) column ids; padding is -1, i.e. the appended zero row
    vals: np.ndarray  # (nb, L) float64 values, 0 in padding
    valid: np.ndarray  # (nb, L) bool
    counts: np.ndarray  # (nb,) ratings per row


@dataclass(frozen=True)
class BlockPlan:
    """A CSR block pre-sorted into padded length buckets; reusable across iterations."""

    n_rows: int
    buckets: list[Bucket] = field(repr=False)


def _slices(b: Bucket, row_bytes: int, budget: int) -> list[slice]:
    """Runs of consecutive rows of `b` whose gathered factors, `row_bytes` per padded rating,
    take at most `budget` bytes (at least one row each)."""
    n = b.rows.shape[0]
    per = max(1, budget // max(1, b.cols.shape[1] * row_bytes))
    return [slice(i, i + per) for i in range(0, n, per)]


def _sub(b: Bucket, s: slice) -> Bucket:
    """Rows `s` of bucket `b` (views, nothing is copied)."""
    return Bucket(b.rows[s], b.cols[s], b.vals[s], b.valid[s], b.counts[s])


def _bucket_edges(max_count: int, growth: float = 1.1) -> list[tuple[int, int]]:
    """Length ranges [lo, hi] with hi ≈ growth·lo: padding stays under ~10 % while the number of
    buckets stays small (CG cuts them into cache-sized slices anyway). Measured: growth 2
    padded 40 % more entries than 1.2 and made the ml-latest-small fit ~1.6× slower; at rank 128
    on 5M ratings the ranking fit took 10.5 s with 1.2, 9.85 s with 1.1 and 9.81 s with 1.05;
    ml-latest-small's two shipped models were unchanged (1.03-1.08 s either way)."""
    edges = []
    lo = 1
    while lo <= max_count:
        hi = max(lo, int(lo * growth) - 1)
        edges.append((lo, hi))
        lo = hi + 1
    return edges


def plan_block(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, chunk: int = DEFAULT_CHUNK
) -> BlockPlan:
    """Sort the rows of a CSR block into length buckets of ≤ `chunk` padded entries each.

    Padding columns point at a sentinel zero row appended to the fixed matrix, and padded
    values are 0, so padding adds exact zeros to every sum.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices)
    values = np.asarray(values, dtype=np.float64)
    n_rows = int(indptr.shape[0] - 1)
    counts = np.diff(indptr)
    buckets: list[Bucket] = []
    max_count = int(counts.max()) if n_rows else 0
    for lo, hi in _bucket_edges(max_count):
        rows = np.flatnonzero((counts >= lo) & (counts <= hi))
        if rows.size == 0:
            continue
        length = int(counts[rows].max())
        per_chunk = max(1, chunk // length)
        for s in range(0, rows.size, per_chunk):
            r = rows[s : s + per_chunk]
            offs = np.arange(length)
            valid = offs[None, :] < counts[r][:, None]
            pos = np.minimum(indptr[r][:, None] + offs[None, :], max(indices.shape[0] - 1, 0))
            cols = np.where(valid, indices[pos], -1).astype(np.int32)
            vals = np.where(valid, values[pos], 0.0)
            buckets.append(Bucket(r, cols, vals, valid, counts[r]))
    return BlockPlan(n_rows, buckets)


class _Gather:
    """Each bucket's factor rows (nb, L, k) in `dtype`, zero in padding slots, optionally
    multiplied by `transform` (k, k) on the right.

    A half-step touches every row of `fixed`: copy it once (transformed) with a zero sentinel
    row appended and let column −1 pick that row (np.take is ~3× faster than fancy indexing).
    A plan that touches fewer entries than `fixed` has rows (one user's fold-in while serving)
    would pay more for that copy than for its whole solve, so it gathers from `fixed` directly,
    zeroes the padding and transforms only what it gathered."""

    def __init__(
        self,
        fixed: np.ndarray,
        plan: BlockPlan,
        dtype: type = np.float64,
        transform: np.ndarray | None = None,
    ) -> None:
        f = np.asarray(fixed)
        self.dtype, self.transform = dtype, transform
        if sum(b.cols.size for b in plan.buckets) < f.shape[0]:
            self.fixed, self.ext = f, None
        else:
            n, k = f.shape
            ext = np.empty((n + 1, k), dtype)  # written once: no copy of the copy
            if transform is not None:
                np.matmul(f.astype(dtype, copy=False), transform, out=ext[:n])
            else:
                ext[:n] = f
            ext[n] = 0.0
            self.fixed, self.ext = ext[:n], ext

    def __call__(self, b: Bucket) -> np.ndarray:
        if self.ext is not None:
            return np.take(self.ext, b.cols, axis=0)
        y = np.take(self.fixed, np.where(b.valid, b.cols, 0), axis=0).astype(self.dtype)
        y[~b.valid] = 0.0
        return y if self.transform is None else y @ self.transform


def _solve_spd(a: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Stacked solve of a·x = rhs for (n, m, m) and (n, m); closed form when m == 1."""
    if a.shape[-1] == 1:
        return rhs / a[:, :, 0]
    return np.linalg.solve(a, rhs[..., None])[..., 0]


def _yt_v(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Σ_l y[n, l, :]·v[n, l] for (nb, L, k) and (nb, L): batched matmul is ~3× faster than
    einsum here once L > 2 (measured), einsum wins for the 1-2 rating rows."""
    if y.shape[1] <= 2:
        return np.einsum("nlk,nl->nk", y, v)
    return np.matmul(v[:, None, :], y)[:, 0, :]


def _y_x(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y[n]·x[n] for (nb, L, k) and (nb, k) → (nb, L)."""
    if y.shape[1] <= 2:
        return np.einsum("nlk,nk->nl", y, x)
    return np.matmul(y, x[:, :, None])[:, :, 0]


def _small_outer(y: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """y·vᵀ per row for (nb, L, k) (v defaults to y); einsum beats per-matrix BLAS calls when
    L is tiny."""
    v = y if v is None else v
    if y.shape[1] <= 2:
        return np.einsum("nlk,nmk->nlm", y, v)
    return np.matmul(y, v.transpose(0, 2, 1))


_TINY = {c: float(np.finfo(c).tiny) for c in "fd"}  # smallest normal float32 / float64


def _cg_solve(
    y: np.ndarray,
    w: np.ndarray,
    target: np.ndarray,
    x0: np.ndarray,
    steps: int,
    shift: np.ndarray | float,
    tol: float | None = None,
    track: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A few conjugate-gradient steps on every row's system at once, warm-started from `x0`.

    The system of row n is A_n x = Σ_l target[n,l]·y[n,l] with
    A_n = s_n I + Σ_l w[n,l]·y[n,l]y[n,l]ᵀ, s = `shift` (per row (nb,), or one number). A_n is
    never formed: A_n p costs two passes over the row's gathered y, so a step is O(L·k) per
    row instead of the exact O(L·k² + k³); the first residual Yᵀ(target − w⊙Yx0) − s·x0 is one
    fused pass. Shapes: y (nb, L, k), w / target (nb, L) with 0 in padding, x0 (nb, k);
    computed in y's dtype (the fixed factors' precision). Returns (x (nb, k), y·x (nb, L), left):
    with `track`, y·x is carried along the steps (y·x += step·y·p) so the fit error costs no
    extra pass; without, it is None. With `tol`, `steps` is a cap: the loop stops once every
    row's residual (the recursively updated one) is at most tol·‖x‖ — with A's eigenvalues ≥ 1,
    as in the whitened systems, the error is then at most tol·‖x‖ too in exact arithmetic —
    and `left` (nb,) marks the rows that did not get there; without `tol`, None.

    Method: Takács, Pilászy & Tikk (2011), "Applications of the conjugate gradient method for
    implicit feedback collaborative filtering", RecSys; implicit's CPU `least_squares_cg` does
    the same row by row (there with the shared YᵀY in A; the ranking model passes whitened
    factors instead, see `_Whitened`). A row that has converged (p·Ap = 0, so p = 0) takes
    zero steps: the divisions are floored at the smallest normal number instead of branching.
    """
    tiny = _TINY[y.dtype.char]
    sh = shift[:, None] if isinstance(shift, np.ndarray) else shift
    x = np.array(x0, dtype=y.dtype)
    yx = np.matmul(y, x[:, :, None])[:, :, 0]
    r = np.matmul((target - w * yx)[:, None, :], y)[:, 0, :]
    r -= sh * x
    p = r.copy()
    rs = np.vecdot(r, r)
    tol2 = None if tol is None else tol * tol
    for step_no in range(steps):
        if tol2 is not None and np.all(rs <= tol2 * np.vecdot(x, x) + tiny):
            break
        yp = np.matmul(y, p[:, :, None])[:, :, 0]
        ap = np.matmul((w * yp)[:, None, :], y)[:, 0, :]
        ap += sh * p
        step = rs / np.maximum(np.vecdot(p, ap), tiny)
        x += step[:, None] * p
        if track:
            yx += step[:, None] * yp
        if tol2 is None and step_no == steps - 1:
            break  # the residual and direction of a step never taken are not needed
        r -= step[:, None] * ap
        rs_new = np.vecdot(r, r)
        p *= (rs_new / np.maximum(rs, tiny))[:, None]
        p += r
        rs = rs_new
    left = None if tol2 is None else rs > tol2 * np.vecdot(x, x) + tiny
    return x, (yx if track else None), left


def _work_dtype(fixed: np.ndarray) -> type:
    """CG and the exact ranking solve run in the fixed factors' precision: float32 in → float32
    arithmetic (the memory-bound gathers move half the bytes; ~2× faster at rank 128), anything
    else → float64."""
    return np.float32 if np.asarray(fixed).dtype == np.float32 else np.float64


def _explicit_cg(
    fixed: np.ndarray,
    plan: BlockPlan,
    reg: float,
    reg_scaled: bool,
    x0: np.ndarray | None,
    steps: int,
    fit_error: bool,
) -> tuple[np.ndarray, float, float]:
    dt = _work_dtype(fixed)
    k = np.shape(fixed)[1]
    gather = _Gather(fixed, plan, dt)
    start_all = None if x0 is None else np.asarray(x0, dtype=dt)
    out = np.zeros((plan.n_rows, k), dtype=np.float64)
    sse = sae = 0.0
    for whole in plan.buckets:
        counts = whole.counts
        lam_all = (reg * counts if reg_scaled else np.full(counts.shape, reg)).astype(dt)
        vals_all, valid_all = whole.vals.astype(dt), whole.valid.astype(dt)
        for s in _slices(whole, k * np.dtype(dt).itemsize, CG_SLICE_BYTES):
            b = _sub(whole, s)
            y = gather(b)
            start = np.zeros((b.rows.shape[0], k), dt) if start_all is None else start_all[b.rows]
            x, yx, _ = _cg_solve(
                y, valid_all[s], vals_all[s], start, steps, lam_all[s], track=fit_error
            )
            out[b.rows] = x
            if yx is not None:
                err = (vals_all[s] - yx).astype(np.float64)  # padding: 0 − 0
                sse += float(np.sum(err * err))
                sae += float(np.sum(np.abs(err)))
    return out, sse, sae


class _Whitened:
    """The ranking model's half-step in whitened coordinates.

    With the shared part M = YᵀY + λI = LLᵀ (Cholesky) and W = L⁻ᵀ, substituting x = Wξ turns
    row u's system (M + YᵤᵀDᵤYᵤ)x = Yᵤᵀcᵤ (D = C − I ≥ 0) into (I + GᵤᵀDᵤGᵤ)ξ = Gᵤᵀcᵤ over the
    rows of G = YW: the shared part becomes the identity, and since GᵀG = I − λWᵀW ≼ I over all
    rows, every row's matrix has eigenvalues in [1, 1 + max D]. That is the preconditioner
    M⁻¹ made free: CG needs no p·M product per step and converges at a rate bounded by
    1 + α·max|r′| whatever the spread of YᵀY, and the exact solve needs no per-row k×k product
    of the original factors. `gather` yields G's rows per bucket in `dtype`."""

    def __init__(self, fixed: np.ndarray, base: np.ndarray, plan: BlockPlan, dtype: type) -> None:
        self.chol = np.linalg.cholesky(base)  # raises LinAlgError unless base is SPD
        self.white = np.linalg.inv(self.chol).T
        if dtype == np.float32:
            # x = Wξ multiplies ξ's rounding by up to √cond(M): float32 keeps ~1e-6 only while
            # M is well conditioned (the shipped λ 30: cond ~10²), so a nearly singular M (a
            # tiny λ against rank-deficient factors) is worked in float64 instead.
            eig = np.linalg.eigvalsh(base)
            if not eig[0] > eig[-1] / WHITEN_F32_MAX_COND:
                dtype = np.float64
        self.dtype = dtype
        self.gather = _Gather(fixed, plan, dtype, transform=self.white.astype(dtype))

    def to_white(self, x: np.ndarray) -> np.ndarray:
        """ξ = Lᵀx for rows x (n, k), in the working dtype."""
        return np.asarray(x, dtype=self.dtype) @ self.chol.astype(self.dtype)

    def from_white(self, xi: np.ndarray) -> np.ndarray:
        """x = Wξ for rows ξ (n, k), in the working dtype."""
        return xi @ self.white.T.astype(self.dtype)


_NEVER = 1 << 30  # more CG steps than any direct solve costs


def _exact_steps(kappa: float, tol: float) -> int:
    """CG steps that take the residual of a system with eigenvalues in [1, κ] from ‖x‖ to
    tol·‖x‖ from a zero start: ‖r_m‖ ≤ 2κ·ρᵐ·‖e_0‖ with ρ = (√κ−1)/(√κ+1) (the classic CG
    bound in the A-norm, moved to the residual with λ_min ≥ 1)."""
    if not math.isfinite(kappa):
        return _NEVER  # α or the ratings are not finite: leave it to the direct solve
    root = math.sqrt(max(kappa, 1.0))
    rho = (root - 1.0) / (root + 1.0)
    if rho <= 0.0:
        return 1
    if rho >= 1.0:
        return _NEVER
    return min(_NEVER, math.ceil(math.log(2.0 * kappa / tol) / -math.log(rho)))


def _direct_whitened(
    g: np.ndarray, w: np.ndarray, conf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact solve of (I + GᵤᵀDGᵤ)ξ = Gᵤᵀc for a slice (g (nb, L, k), w = D and conf = c·p
    (nb, L)): the L×L Woodbury form ξ = h − Zᵀ(I + ZZᵀ)⁻¹Zh (Z = √D·Gᵤ) for rows shorter than
    k, the k×k system otherwise; O(min(L,k)²·max(L,k)) per row. Returns (ξ, g·ξ)."""
    length, k = g.shape[1], g.shape[2]
    h = _yt_v(g, conf)
    if length < k:
        root = np.sqrt(w)
        sys_ = _small_outer(g)  # GGᵀ, then ZZᵀ = √w√wᵀ ⊙ GGᵀ
        sys_ *= root[:, :, None]
        sys_ *= root[:, None, :]
        sys_[:, np.arange(length), np.arange(length)] += 1  # padding: 0 row, 1 diagonal
        xi = h - _yt_v(g, root * _solve_spd(sys_, root * _y_x(g, h)))
    else:
        sys_ = np.matmul((g * w[:, :, None]).transpose(0, 2, 1), g)
        sys_[:, np.arange(k), np.arange(k)] += 1
        xi = _solve_spd(sys_, h)
    return xi, _y_x(g, xi)


def _confidence(
    vals: np.ndarray, valid: np.ndarray, alpha: float, dt: type
) -> tuple[np.ndarray, np.ndarray]:
    """(c − 1, c·p) of a bucket's signed signal r′, in `dt`: c = 1 + α·|r′| on observed entries
    and 0 in padding; p = [r′ > 0], so evidence against has c·p = 0."""
    w = (alpha * np.abs(vals)).astype(dt)
    return w, np.where(valid & (vals > 0), 1 + w, 0).astype(dt)


def _implicit_whitened(
    fixed: np.ndarray,
    base: np.ndarray,
    plan: BlockPlan,
    alpha: float,
    x0: np.ndarray | None,
    cg_steps: int,
    fit_error: bool,
) -> tuple[np.ndarray, float, float]:
    """`solve_implicit_planned` in whitened coordinates (`_Whitened`).

    `cg_steps` > 0: that many CG steps per row from `x0`. `cg_steps` = 0, exact: CG from `x0`
    until every row's residual is below 8 machine epsilons of its solution (the accuracy of a
    direct solve), which the eigenvalue bound κ ≤ 1 + max(α·|r′|) of the whitened systems makes
    a known number of steps (`_exact_steps`); rows for which that costs more than the direct
    `_direct_whitened` (2 passes over L·k per step against min(L,k)²·max(L,k) once), and rows
    that still miss the tolerance at the cap, are solved directly. Measured at rank 128 on 5M
    ratings, exact user side in float32: 15.3 s with per-row k×k systems of the original
    factors and 5.2 s with `_direct_whitened` alone (random factors); as the last half-step of
    a 5-iteration fit, CG first: 2.2 s, ~11 steps from the warm start, no row left over."""
    k = np.shape(fixed)[1]
    wh = _Whitened(fixed, base, plan, _work_dtype(fixed))
    dt = wh.dtype
    start_all = None if x0 is None else wh.to_white(x0)
    xi_all = np.zeros((plan.n_rows, k), dtype=dt)
    tol = 8 * float(np.finfo(dt).eps) if cg_steps == 0 else None
    sse = sae = 0.0
    for whole in plan.buckets:
        length = whole.cols.shape[1]
        w_all, conf_all = _confidence(whole.vals, whole.valid, alpha, dt)
        steps = cg_steps
        if tol is not None:
            steps = _exact_steps(1.0 + float(w_all.max(initial=0.0)), tol) + 2
            if 2 * steps >= min(length, k):
                steps = 0  # the direct solve is cheaper for this bucket
        for s in _slices(whole, k * np.dtype(dt).itemsize, CG_SLICE_BYTES):
            b = _sub(whole, s)
            g = wh.gather(b)
            w, conf = w_all[s], conf_all[s]
            if steps == 0:
                xi, gx = _direct_whitened(g, w, conf)
            else:
                start = np.zeros((b.rows.shape[0], k), dt)
                if start_all is not None:
                    start = start_all[b.rows]
                    if tol is not None:
                        start[~(conf > 0).any(axis=1)] = 0  # no like: ξ = 0 exactly
                xi, gx, left = _cg_solve(g, w, conf, start, steps, 1.0, tol, track=fit_error)
                if left is not None and left.any():
                    xl, gl = _direct_whitened(g[left], w[left], conf[left])
                    xi[left] = xl
                    if gx is not None:
                        gx[left] = gl
            xi_all[b.rows] = xi
            if fit_error:
                assert gx is not None
                err = np.where(b.valid, 1.0 - gx, 0.0)  # y·x = y·Wξ = g·ξ
                sse += float(np.sum(err * err))
                sae += float(np.sum(np.abs(err)))
    return wh.from_white(xi_all), sse, sae


def solve_explicit_planned(
    fixed: np.ndarray,
    plan: BlockPlan,
    reg: float,
    reg_scaled: bool,
    *,
    x0: np.ndarray | None = None,
    cg_steps: int = 0,
    fit_error: bool = False,
) -> tuple[np.ndarray, float, float]:
    """Ridge-solve every row of a planned block: x = (YᵀY + λ'I)⁻¹ Yᵀ v (the explicit model).

    Shapes: `fixed` Y (n_fixed, k), any float dtype; returns (x (plan.n_rows, k) float64, sse,
    sae) where, with `fit_error`, sse = Σ(v − y·x)² and sae = Σ|v − y·x| over the block's
    entries (the fresh solution's training error, free from the gathered y), else 0.0.
    λ' = reg·n_row when `reg_scaled` (ALS-WR, Zhou et al. 2008; Spark's convention) else reg.
    Rows without ratings get zeros. `cg_steps` = 0 solves exactly (primal k×k, or the dual
    L×L form for rows shorter than k); `cg_steps` > 0 takes that many conjugate-gradient steps
    from `x0` (plan.n_rows, k) (zeros when None) — see `_cg_solve`.
    Raises numpy.linalg.LinAlgError on a singular system (reg = 0 and too few ratings).
    """
    if cg_steps > 0:
        return _explicit_cg(fixed, plan, reg, reg_scaled, x0, cg_steps, fit_error)
    fixed = np.asarray(fixed)
    k = fixed.shape[1]
    gather = _Gather(fixed, plan)
    out = np.zeros((plan.n_rows, k), dtype=np.float64)
    sse = sae = 0.0
    for b in plan.buckets:
        y = gather(b)
        nb, length = b.cols.shape
        lam = reg * b.counts.astype(np.float64) if reg_scaled else np.full(nb, float(reg))
        if length < k and reg > 0:
            # Dual form: (YYᵀ + λ'I) α = r, x = Yᵀα. Padded slots get a unit diagonal and a
            # zero right-hand side, so their α is exactly 0.
            kk = _small_outer(y)
            diag = np.where(b.valid, lam[:, None], 1.0)
            kk[:, np.arange(length), np.arange(length)] += diag
            alpha = _solve_spd(kk, b.vals)
            x = _yt_v(y, alpha)
        else:
            a = np.matmul(y.transpose(0, 2, 1), y)
            a[:, np.arange(k), np.arange(k)] += lam[:, None]
            rhs = _yt_v(y, b.vals)
            x = _solve_spd(a, rhs)
        out[b.rows] = x
        if fit_error:
            err = b.vals - _y_x(y, x)  # padding: 0 − 0·x = 0
            sse += float(np.sum(err * err))
            sae += float(np.sum(np.abs(err)))
    return out, sse, sae


def solve_explicit_block(
    fixed: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    reg: float,
    reg_scaled: bool = True,
    *,
    plan: BlockPlan | None = None,
    chunk: int = DEFAULT_CHUNK,
    x0: np.ndarray | None = None,
    cg_steps: int = 0,
) -> np.ndarray:
    """`solve_explicit_planned` for a CSR block (indptr (n_rows+1,), indices, values): the
    solved rows (n_rows, k). Pass a `plan_block` plan to skip re-bucketing."""
    plan = plan if plan is not None else plan_block(indptr, indices, values, chunk)
    return solve_explicit_planned(fixed, plan, reg, reg_scaled, x0=x0, cg_steps=cg_steps)[0]


def solve_implicit_planned(
    fixed: np.ndarray,
    gram: np.ndarray,
    plan: BlockPlan,
    alpha: float,
    reg: float,
    *,
    x0: np.ndarray | None = None,
    cg_steps: int = 0,
    fit_error: bool = False,
) -> tuple[np.ndarray, float, float]:
    """Hu-Koren-Volinsky (2008) solve of every row: (YᵀY + Yᵀ(C−I)Y + λI) x = Yᵀ C p.

    Shapes: `fixed` Y (n_fixed, k), `gram` = YᵀY (k, k) over ALL rows of `fixed` (computed once
    per half-step, so no row pays a pass over every item); the plan's values are the signed
    signal r′ of `implicit_signal`, c = 1 + α·|r′|, p = [r′ > 0]. Returns (x (plan.n_rows, k),
    sse, sae) where, with `fit_error`, sse = Σ(1 − y·x)² and sae = Σ|1 − y·x| over the observed
    entries (the ranking model's progress signal), else 0.0. Rows without ratings get zeros.
    x comes in the working dtype: float32 for float32 `fixed` (float64 when YᵀY + λI is too
    ill-conditioned for float32, `_Whitened`), else float64.

    `cg_steps` > 0 takes that many conjugate-gradient steps from `x0` (plan.n_rows, k), the
    rows' current factors (zeros when None), in whitened coordinates (`_Whitened`): O(L·k) per
    row and step (Takács, Pilászy & Tikk 2011; implicit's `least_squares_cg`). `cg_steps` = 0
    solves exactly: whitened CG to machine precision or a direct solve (`_implicit_whitened`),
    and for at most `DIRECT_MAX_ROWS` rows (a fold-in) the rows' own k×k systems in float64.
    Raises numpy.linalg.LinAlgError on a singular system (YᵀY + λI not positive definite).
    """
    fixed = np.asarray(fixed)
    k = fixed.shape[1]
    base = np.asarray(gram, dtype=np.float64) + reg * np.eye(k)
    if cg_steps == 0 and sum(b.rows.size for b in plan.buckets) <= DIRECT_MAX_ROWS:
        # A few rows, such as one user's fold-in while serving: factoring and inverting the
        # shared part costs more than solving the rows' own k×k systems (measured at rank 128,
        # one user: 0.19-3.8 ms for 5-1500 ratings, against 0.7-4.0 ms whitened).
        return _implicit_direct(fixed, base, plan, alpha, fit_error)
    return _implicit_whitened(fixed, base, plan, alpha, x0, cg_steps, fit_error)


def _implicit_direct(
    fixed: np.ndarray, base: np.ndarray, plan: BlockPlan, alpha: float, fit_error: bool
) -> tuple[np.ndarray, float, float]:
    """Exact Hu-Koren-Volinsky solve of each row's k×k system (base + YᵤᵀDᵤYᵤ)x = Yᵤᵀcᵤ,
    accumulated in float64, for plans of a few rows (see `solve_implicit_planned`); the rows
    are returned in the working dtype of `fixed`."""
    gather = _Gather(fixed, plan, np.float64)
    out = np.zeros((plan.n_rows, base.shape[0]), dtype=np.float64)
    sse = sae = 0.0
    for b in plan.buckets:
        y = gather(b)
        w, conf = _confidence(b.vals, b.valid, alpha, np.float64)
        a = base[None, :, :] + np.matmul((y * w[..., None]).transpose(0, 2, 1), y)
        x = _solve_spd(a, _yt_v(y, conf))
        out[b.rows] = x
        if fit_error:
            err = np.where(b.valid, 1.0 - _y_x(y, x), 0.0)
            sse += float(np.sum(err * err))
            sae += float(np.sum(np.abs(err)))
    return out.astype(_work_dtype(fixed), copy=False), sse, sae


def solve_implicit_block(
    fixed: np.ndarray,
    gram: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    ratings: np.ndarray,
    alpha: float,
    reg: float,
    *,
    plan: BlockPlan | None = None,
    chunk: int = DEFAULT_CHUNK,
    x0: np.ndarray | None = None,
    cg_steps: int = 0,
) -> np.ndarray:
    """`solve_implicit_planned` for a CSR block (indptr (n_rows+1,), indices, star ratings):
    the solved rows (n_rows, k). Pass a `plan_block` plan to skip re-bucketing."""
    plan = plan if plan is not None else plan_block(indptr, indices, ratings, chunk)
    return solve_implicit_planned(fixed, gram, plan, alpha, reg, x0=x0, cg_steps=cg_steps)[0]


def naive_solve_explicit(
    fixed: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    reg: float,
    reg_scaled: bool = True,
) -> np.ndarray:
    """Reference: one np.linalg.solve per row in a Python loop (tests only, never hot)."""
    fixed = np.asarray(fixed, dtype=np.float64)
    k = fixed.shape[1]
    out = np.zeros((len(indptr) - 1, k))
    for row in range(len(indptr) - 1):
        s, e = int(indptr[row]), int(indptr[row + 1])
        if e == s:
            continue
        y = fixed[indices[s:e]]
        lam = reg * (e - s) if reg_scaled else reg
        out[row] = np.linalg.solve(y.T @ y + lam * np.eye(k), y.T @ np.asarray(values[s:e], float))
    return out


# --------------------------------------------------------------------------------------------
# Parameters, models, fitting
# --------------------------------------------------------------------------------------------


# The defaults below were chosen by bench/tune_defaults.py on ml-latest-small: seeded 80/20
# holdout (als.random_holdout, seed 42), then a seeded 80/20 validation split carved from the
# TRAIN part only; every candidate fitted on 64 % and scored on the 16 % validation split. The
# test split was used once, after the choice, to report the numbers:
#
#   explicit, validation RMSE (rank 20, 20 iterations, bias λ 10 fixed by contract)
#     λ·n scaled 0.18 init 0.01 → 0.8458   (best; 0.15 → 0.847, 0.2 → 0.8464, 0.1 → 0.860)
#     λ plain    15   init 0.01 → 0.8488   (best plain; plain 0.1 → 1.29, plain 1 → 1.11)
#   ranking, validation NDCG@10 (popularity 0.112), cost budget ≤ ½ the explicit fit's flops,
#   counted as iterations·(nnz·k² + rows·k³) (rank 20 → ≤ 10 iterations, rank 32 → ≤ 2)
#     rank 20 α 1 λ 30, 10 it. → 0.1801   (best within budget; α ∈ {.5,.7,1,1.5,2,5},
#                                          λ ∈ {1..100}, rank ∈ {10,20,32,50}, it. ∈ {3..15})
#     rank 32 α 1 λ 30,  3 it. → 0.1772   (over budget already, and still below rank 20)
#     rank 50 α 1 λ 30,  8 it. → 0.1861   (best overall, ~5× the allowed cost)
#
#   TEST split (fit on the whole 80 % train part):
#     model                      RMSE    MAE     NDCG@10  P@10    R@10    coverage
#     global mean                1.0424  0.8310
#     biases only                0.8681  0.6707
#     explicit plain λ 15        0.8469  0.6521  0.1342   0.1034  0.0715  0.020
#     explicit DEFAULT           0.8451  0.6511  0.0875   0.0669  0.0512  0.057
#     popularity (most rated)                    0.1644   0.1240  0.0985  0.006
#     ranking DEFAULT                            0.2800   0.2074  0.1978  0.050
#
#   low ratings as evidence against (`negative_at`, issue 20 item 7), validation NDCG@10 at
#   α 1, λ 30, 10 iterations, exact solves (same fit/validation split):
#     negative_at   off     1.0     1.5     2.0     2.5     3.0
#     rank 20      0.1801  0.1804  0.1802  0.1796  0.1819  0.1757
#     rank 64      0.1795  0.1843  0.1890  0.1894  0.1880  0.1870
#   Neutral at rank 20 (±0.002 is noise here), +5.5 % at rank 64 where 2.0 is best: 2.0 ships
#   (0.5-2★ count against, 2.5★ and up are likes). Rank 64 / 128 (λ 30, α 1) reach 0.1894 /
#   0.1930 on validation against 0.1796 at rank 20 (issue 20 item 2).
#
# Issue 20 (bench/tune_models.py, same protocol): with the CG half-steps the ranking model's
# default moved to rank 128, 15 iterations (validation NDCG@10 0.1804 at rank 20, 0.1879 at 64,
# 0.1924 at 128/10 it., 0.1952 at 128/15 it., 0.1962 at 200/15 it. for twice the time). The
# served list blends it with EASE and the served stars (movierec_common.ease.BlendParams).
#
# The validation split chose scaled λ·n (Spark's ALS-WR convention): the penalty stays in
# proportion to each row's data term, so a user with 2000 ratings is constrained as much,
# relative to their evidence, as a movie with 3. One plain λ cannot do both: the value that
# tames the long tail of rarely rated movies barely constrains the heavy rows (plain λ 15 is
# 0.002 worse on test; the design's plain 0.1 overfits to 1.29 on validation).


@dataclass(frozen=True)
class ExplicitParams:
    """Explicit model settings: rank k, ridge reg λ (times n_row when `reg_scaled`), shrinkage
    of the frozen biases, iterations, seed and scale of the N(0, init_scale²) start.
    `cg_steps` = 0: every half-step solved exactly; > 0: that many warm-started
    conjugate-gradient steps per row, the last user half-step still exact (fold-in contract)."""

    rank: int = 20
    reg: float = 0.18
    reg_scaled: bool = True
    bias_reg: float = 10.0
    iterations: int = 20
    seed: int = 42
    init_scale: float = 0.01
    cg_steps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ImplicitParams:
    """Ranking model settings: rank k, reg λ, confidence α (c = 1 + α·|r′|), iterations, seed,
    start scale, `cg_steps` as in `ExplicitParams`, and `negative_at` (`implicit_signal`)."""

    rank: int = 128
    reg: float = 30.0
    alpha: float = 1.0
    iterations: int = 15
    seed: int = 42
    init_scale: float = 0.1
    # Whitened CG (`_Whitened`) converges faster per step than implicit's plain CG: 2 steps gave
    # the exact solver's validation NDCG@10 on six ml-latest-small carves (0.1980 for 2 steps,
    # 3 steps and exact alike) and a 5M-rating training error within 0.07 % of 3 steps.
    cg_steps: int = 2
    negative_at: float | None = 2.0  # stars at or below: evidence against (`implicit_signal`)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_EXPLICIT = ExplicitParams()
DEFAULT_IMPLICIT = ImplicitParams()


@dataclass
class ExplicitModel:
    """r̂_ui = mu + user_bias[u] + item_bias[i] + P[u]·Q[i]; P (n_users, k), Q (n_items, k),
    biases in stars; `history` holds one entry per iteration (see `fit_als`)."""

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    history: list[dict]

    def predict(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return predict_explicit(self, user_idx, item_idx)


@dataclass
class ImplicitModel:
    """Ranking scores X[u]·Y[i]; X (n_users, k), Y (n_items, k); `history` as `ExplicitModel`."""

    X: np.ndarray
    Y: np.ndarray
    history: list[dict]


OnIteration = Callable[[dict], None]


def dot_rows(
    a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray, chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """a[rows[j]]·b[cols[j]] for every j → (len(rows),) float64, in chunks to bound memory."""
    out = np.empty(np.asarray(rows).shape[0])
    for s in range(0, out.shape[0], chunk):
        ra = np.take(a, rows[s : s + chunk], axis=0)
        rb = np.take(b, cols[s : s + chunk], axis=0)
        out[s : s + chunk] = np.einsum("ij,ij->i", ra, rb)
    return out


def predict_explicit(
    model: ExplicitModel, user_idx: np.ndarray, item_idx: np.ndarray, chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """μ + b_u + b_i + p_u·q_i for aligned index arrays (stars, unclipped), in chunks."""
    u = np.asarray(user_idx)
    i = np.asarray(item_idx)
    base = model.mu + model.user_bias[u] + model.item_bias[i]
    return base + dot_rows(model.P, model.Q, u, i, chunk)


def _errors(pred: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    if pred.size == 0:
        return float("nan"), float("nan")
    d = pred - actual
    return float(np.sqrt(np.mean(d * d))), float(np.mean(np.abs(d)))


def check_finite_input(inter: Interactions) -> None:
    """Raises TrainingDivergedError when a rating is NaN or infinite."""
    if not np.all(np.isfinite(inter.rating)):
        bad = int(np.count_nonzero(~np.isfinite(inter.rating)))
        raise TrainingDivergedError(f"{bad} rating(s) are NaN or infinite; refusing to train")


def check_factors(name: str, m: np.ndarray, iteration: int) -> None:
    """Raises TrainingDivergedError when `m` holds NaN/inf or a value above 1e6 in magnitude."""
    if not m.size:
        return
    lo, hi = float(m.min()), float(m.max())  # two passes, no temporaries; NaN propagates
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise TrainingDivergedError(
            f"iteration {iteration}: {name} factors contain NaN/inf "
            "(singular normal equations? check reg > 0 and the input ratings)"
        )
    peak = max(-lo, hi)
    if peak > _MAX_ABS_FACTOR:
        raise TrainingDivergedError(
            f"iteration {iteration}: {name} factors exploded (max |value| {peak:.3g}); "
            "the normal equations are (near) singular, increase reg"
        )


# --------------------------------------------------------------------------------------------
# The one ALS loop; engines differ only in how they run a half-step
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplicitStep:
    """One explicit half-step: solve the other side against `fixed` (n_fixed, k), warm-starting
    CG from `current` (n_rows, k) when `cg_steps` > 0."""

    fixed: np.ndarray
    current: np.ndarray
    reg: float
    reg_scaled: bool
    cg_steps: int


@dataclass(frozen=True)
class ImplicitStep:
    """One ranking half-step; `gram` = fixedᵀ·fixed (k, k)."""

    fixed: np.ndarray
    gram: np.ndarray
    current: np.ndarray
    alpha: float
    reg: float
    cg_steps: int


@dataclass
class StepResult:
    """Solved rows of each requested model (n_rows, k) and, when asked, the fresh solution's
    error sums over the side's ratings: explicit Σ(residual − ŷ)², Σ|·|; ranking Σ(1 − ŷ)², Σ|·|."""

    explicit: np.ndarray | None = None
    implicit: np.ndarray | None = None
    explicit_error: tuple[float, float] = (0.0, 0.0)
    implicit_error: tuple[float, float] = (0.0, 0.0)


def solve_planned_step(
    explicit_plan: BlockPlan | None,
    implicit_plan: BlockPlan | None,
    explicit: ExplicitStep | None,
    implicit: ImplicitStep | None,
    errors: bool,
) -> StepResult:
    """One side's half-step over planned blocks: the explicit model's rows (when both `explicit`
    and its plan are given) and the ranking model's rows (likewise), with their error sums when
    `errors`. Every engine's half-step ends here (local: the whole side; Spark: one block
    against the factor rows it was shipped). Raises TrainingDivergedError's cause
    (numpy.linalg.LinAlgError) on a singular system; the caller turns it into the error."""
    out = StepResult()
    if explicit is not None and explicit_plan is not None:
        x, sse, sae = solve_explicit_planned(
            explicit.fixed,
            explicit_plan,
            explicit.reg,
            explicit.reg_scaled,
            x0=explicit.current,
            cg_steps=explicit.cg_steps,
            fit_error=errors,
        )
        out.explicit, out.explicit_error = x, (sse, sae)
    if implicit is not None and implicit_plan is not None:
        x, sse, sae = solve_implicit_planned(
            implicit.fixed,
            implicit.gram,
            implicit_plan,
            implicit.alpha,
            implicit.reg,
            x0=implicit.current,
            cg_steps=implicit.cg_steps,
            fit_error=errors,
        )
        out.implicit, out.implicit_error = x, (sse, sae)
    return out


class HalfSteps(Protocol):
    """What an engine offers `fit_als`: its blocks of the ratings, solved one side at a time.

    `load` receives the values the two models fit (explicit: residuals r − μ − b_u − b_i;
    ranking: star ratings), aligned with the Interactions given to `fit_als`, or None for a
    model not being trained. `solve_items` / `solve_users` run one half-step for every row of
    that side, for each model whose step is not None; they raise LinAlgError or
    TrainingDivergedError on a singular system. `close` releases what `load` built.
    """

    def load(
        self, explicit_values: np.ndarray | None, implicit_values: np.ndarray | None
    ) -> None: ...

    def solve_items(
        self, explicit: ExplicitStep | None, implicit: ImplicitStep | None, errors: bool
    ) -> StepResult: ...

    def solve_users(
        self, explicit: ExplicitStep | None, implicit: ImplicitStep | None, errors: bool
    ) -> StepResult: ...

    def close(self) -> None: ...


class LocalHalfSteps:
    """The local engine: both sides planned once (`plan_block`) and solved in this process."""

    def __init__(self, inter: Interactions, chunk: int = DEFAULT_CHUNK) -> None:
        self.inter = inter
        self.chunk = chunk
        self._plans: dict[tuple[str, str], BlockPlan] = {}

    def load(self, explicit_values: np.ndarray | None, implicit_values: np.ndarray | None) -> None:
        it = self.inter
        for model, values in (("exp", explicit_values), ("imp", implicit_values)):
            if values is None:
                continue
            v = np.asarray(values, dtype=np.float64)
            self._plans[("item", model)] = plan_block(
                *to_csr(it.item_idx, it.user_idx, v, it.n_items), self.chunk
            )
            self._plans[("user", model)] = plan_block(
                *to_csr(it.user_idx, it.item_idx, v, it.n_users), self.chunk
            )

    def _solve(
        self, side: str, e: ExplicitStep | None, i: ImplicitStep | None, errors: bool
    ) -> StepResult:
        return solve_planned_step(
            self._plans.get((side, "exp")), self._plans.get((side, "imp")), e, i, errors
        )

    def solve_items(
        self, explicit: ExplicitStep | None, implicit: ImplicitStep | None, errors: bool
    ) -> StepResult:
        return self._solve("item", explicit, implicit, errors)

    def solve_users(
        self, explicit: ExplicitStep | None, implicit: ImplicitStep | None, errors: bool
    ) -> StepResult:
        return self._solve("user", explicit, implicit, errors)

    def close(self) -> None:
        self._plans.clear()


def _guarded(it: int, side: str, solve: Callable[..., StepResult], *args: Any) -> StepResult:
    """Run one half-step; a numerical failure becomes TrainingDivergedError."""
    try:
        return solve(*args)
    except np.linalg.LinAlgError as exc:
        raise TrainingDivergedError(
            f"iteration {it}: {side} solve failed ({exc}); increase reg"
        ) from exc


def fit_als(
    engine: HalfSteps,
    inter: Interactions,
    explicit: ExplicitParams | None = DEFAULT_EXPLICIT,
    implicit: ImplicitParams | None = None,
    valid: Interactions | None = None,
    on_iteration: Callable[[str, dict], None] | None = None,
    *,
    dtype: type = np.float64,
) -> tuple[ExplicitModel | None, ImplicitModel | None]:
    """The ALS loop of both engines: biases, start values, half-steps, checks and history.

    Trains the requested models together (the same half-step calls carry both), each for its
    own number of iterations. Every iteration solves ITEMS given users, then USERS given items;
    with `cg_steps` > 0 each half-step takes CG steps warm-started from the current factors,
    except the model's LAST user half-step, which is exact, so a trained user's vector is
    exactly the fold-in of their ratings (`fold_in_explicit` / `fold_in_implicit`), to the
    working precision: a float32 fit's ranking vectors agree with a float64 fold-in to ~1e-6.
    `valid` (explicit only) adds valid_rmse/valid_mae to each history entry. After each
    iteration `on_iteration(name, entry)` is called with name "explicit" or "ranking" and
    entry {iteration, of, train_rmse, train_mae, valid_rmse, valid_mae, seconds}; train_*
    is the explicit model's residual error in stars, and for the ranking model 1 − x·y over
    the observed entries. `dtype`: the precision the half-steps see; factors are handed to the
    engine in it and YᵀY is computed from exactly those values. float64 is the reference;
    float32 halves what Spark broadcasts and makes the CG steps and the exact ranking solve run
    in float32 (the exact explicit solve always accumulates in float64).

    Raises TrainingDivergedError on NaN/inf input, a singular system or exploding factors;
    ValueError when neither model is requested.
    """
    if explicit is None and implicit is None:
        raise ValueError("nothing to fit")
    check_finite_input(inter)
    n_train = max(len(inter), 1)
    emodel = imodel = None
    resid = ratings = None
    if explicit is not None:
        mu, b_u, b_i = compute_biases(inter, explicit.bias_reg)
        resid = inter.rating.astype(np.float64) - mu - b_u[inter.user_idx] - b_i[inter.item_idx]
        P = init_factors(
            inter.n_users, explicit.rank, explicit.seed, USER_SALT, explicit.init_scale
        )
        emodel = ExplicitModel(mu, b_u, b_i, P, np.zeros((inter.n_items, explicit.rank)), [])
    if implicit is not None:
        ratings = implicit_signal(inter.rating, implicit.negative_at)
        X = init_factors(
            inter.n_users, implicit.rank, implicit.seed, USER_SALT, implicit.init_scale
        )
        imodel = ImplicitModel(X, np.zeros((inter.n_items, implicit.rank)), [])
    valid_base = valid_r = None
    if emodel is not None and valid is not None and len(valid):
        valid_base = emodel.mu + emodel.user_bias[valid.user_idx] + emodel.item_bias[valid.item_idx]
        valid_r = valid.rating.astype(np.float64)
    e_iters = explicit.iterations if explicit is not None else 0
    i_iters = implicit.iterations if implicit is not None else 0

    def cast(m: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(m, dtype=dtype)

    def e_step(fixed: np.ndarray, current: np.ndarray, exact: bool) -> ExplicitStep:
        steps = 0 if exact else explicit.cg_steps
        return ExplicitStep(cast(fixed), cast(current), explicit.reg, explicit.reg_scaled, steps)

    def i_step(fixed: np.ndarray, current: np.ndarray, exact: bool) -> ImplicitStep:
        f = cast(fixed)
        f64 = f.astype(np.float64)
        steps = 0 if exact else implicit.cg_steps
        return ImplicitStep(f, f64.T @ f64, cast(current), implicit.alpha, implicit.reg, steps)

    engine.load(resid, ratings)
    start = time.perf_counter()
    try:
        for it in range(1, max(e_iters, i_iters) + 1):
            e_on = emodel is not None and it <= e_iters
            i_on = imodel is not None and it <= i_iters
            # Items given users …
            es = e_step(emodel.P, emodel.Q, False) if e_on else None
            is_ = i_step(imodel.X, imodel.Y, False) if i_on else None
            res = _guarded(it, "item", engine.solve_items, es, is_, False)
            if e_on:
                check_factors("item", res.explicit, it)
                emodel.Q = res.explicit
            if i_on:
                check_factors("ranking item", res.implicit, it)
                imodel.Y = res.implicit
            # … then users given items, exactly on the model's last iteration; this step also
            # returns the training error of its fresh solution.
            es = e_step(emodel.Q, emodel.P, it == e_iters) if e_on else None
            is_ = i_step(imodel.Y, imodel.X, it == i_iters) if i_on else None
            res = _guarded(it, "user", engine.solve_users, es, is_, True)
            elapsed = time.perf_counter() - start
            if e_on:
                check_factors("user", res.explicit, it)
                emodel.P = res.explicit
                sse, sae = res.explicit_error
                tr_rmse, tr_mae = math.sqrt(sse / n_train), sae / n_train
                if not math.isfinite(tr_rmse) or tr_rmse > 100.0:
                    raise TrainingDivergedError(f"iteration {it}: train RMSE {tr_rmse} diverged")
                va_rmse = va_mae = None
                if valid_base is not None:
                    pred = valid_base + dot_rows(emodel.P, emodel.Q, valid.user_idx, valid.item_idx)
                    va_rmse, va_mae = _errors(pred, valid_r)
                entry = _entry(it, e_iters, tr_rmse, tr_mae, va_rmse, va_mae, elapsed)
                emodel.history.append(entry)
                if on_iteration is not None:
                    on_iteration("explicit", entry)
            if i_on:
                check_factors("ranking user", res.implicit, it)
                imodel.X = res.implicit
                sse, sae = res.implicit_error
                entry = _entry(
                    it, i_iters, math.sqrt(sse / n_train), sae / n_train, None, None, elapsed
                )
                imodel.history.append(entry)
                if on_iteration is not None:
                    on_iteration("ranking", entry)
    finally:
        engine.close()
    if imodel is not None:  # half-steps in float32 hand back float32 rows
        X, Y = imodel.X.astype(np.float64, copy=False), imodel.Y.astype(np.float64, copy=False)
        imodel.X, imodel.Y = X, Y
    return emodel, imodel


def _entry(it, of, tr_rmse, tr_mae, va_rmse, va_mae, seconds) -> dict:
    return {
        "iteration": it,
        "of": of,
        "train_rmse": tr_rmse,
        "train_mae": tr_mae,
        "valid_rmse": va_rmse,
        "valid_mae": va_mae,
        "seconds": seconds,
    }


def fit_explicit(
    inter: Interactions,
    params: ExplicitParams = DEFAULT_EXPLICIT,
    valid: Interactions | None = None,
    on_iteration: OnIteration | None = None,
    *,
    dtype: type = np.float64,
) -> ExplicitModel:
    """The explicit model on the local engine (`fit_als` with `LocalHalfSteps`): frozen shrunk
    biases, then ALS on the residual. `dtype` as in `fit_als` (float32: the trainer's
    fast setting). Raises TrainingDivergedError (see `fit_als`)."""
    cb = None if on_iteration is None else (lambda _name, entry: on_iteration(entry))
    model, _ = fit_als(LocalHalfSteps(inter), inter, params, None, valid, cb, dtype=dtype)
    assert model is not None
    return model


def fold_in_explicit(
    Q: np.ndarray,
    item_bias: np.ndarray,
    mu: float,
    item_idx: np.ndarray,
    ratings: np.ndarray,
    params: ExplicitParams = DEFAULT_EXPLICIT,
) -> tuple[float, np.ndarray]:
    """(b_u, p_u (k,)) for one user's ratings (stars): exactly the training user half-step
    (float64).

    `item_idx` must not repeat an item (the caller keeps the latest rating per movie).
    """
    idx = np.asarray(item_idx, dtype=np.int64)
    r = np.asarray(ratings, dtype=np.float32).astype(np.float64)
    k = np.asarray(Q).shape[1]
    if idx.size == 0:
        return 0.0, np.zeros(k)
    left = r - mu - item_bias[idx]
    b_u = float(left.sum() / (idx.size + params.bias_reg))
    resid = left - b_u
    indptr = np.array([0, idx.size], dtype=np.int64)
    p = solve_explicit_block(Q, indptr, idx, resid, params.reg, params.reg_scaled)
    return b_u, p[0]


def fit_implicit(
    inter: Interactions,
    params: ImplicitParams = DEFAULT_IMPLICIT,
    on_iteration: OnIteration | None = None,
    *,
    dtype: type = np.float64,
) -> ImplicitModel:
    """The ranking model on the local engine (`fit_als` with `LocalHalfSteps`): confidence
    1 + α·|r′|, preference [r′ > 0] (`implicit_signal`). `dtype` as in `fit_als`. Raises
    TrainingDivergedError."""
    cb = None if on_iteration is None else (lambda _name, entry: on_iteration(entry))
    _, model = fit_als(LocalHalfSteps(inter), inter, None, params, None, cb, dtype=dtype)
    assert model is not None
    return model


def fold_in_implicit(
    Y: np.ndarray,
    item_idx: np.ndarray,
    ratings: np.ndarray,
    params: ImplicitParams = DEFAULT_IMPLICIT,
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """x_u (k,) for one user's ratings: exactly the training user half-step in float64 (a
    float32 fit's vector agrees to ~1e-6; pass `gram` = YᵀY
    to avoid recomputing it per request)."""
    Y = np.asarray(Y, dtype=np.float64)
    gram = Y.T @ Y if gram is None else gram
    idx = np.asarray(item_idx, dtype=np.int64)
    r = implicit_signal(np.asarray(ratings, dtype=np.float32), params.negative_at)
    indptr = np.array([0, idx.size], dtype=np.int64)
    return solve_implicit_block(Y, gram, indptr, idx, r, params.alpha, params.reg)[0]
