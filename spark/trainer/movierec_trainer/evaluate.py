"""Accuracy (RMSE, MAE) and top-N quality (Precision/Recall/NDCG@10, catalogue coverage).

Top-N protocol (issue 8): for every test user with at least one relevant test rating
(rating ≥ 4), the candidates are all training movies the user has NOT rated in training; the
model's 10 best candidates are compared with the relevant test movies. Users without a relevant
test rating are skipped, because they cannot score anything but zero under any model.
Coverage is the share of the training catalogue that appears in at least one top-10 list, which
is how a model that only re-ranks the popular movies gives itself away.

Everything works in the model's dense index space and is vectorised over chunks of users, so
evaluating 600 users × 9k movies or 100k users × 20k movies stays a handful of matrix products.
Past TOPN_MAX_USERS evaluation users, the top-N metrics are taken over a seeded sample of that
many (the same users for every model scored by one Evaluator): at 25M ratings scoring all
~160k users' lists over 62k movies with the served blend took over 11 minutes of a 2-core
first start, and 10,000 users put NDCG@10's standard error near 0.003.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from movierec_common import als

RELEVANT_MIN = 4.0
TOPN_MAX_USERS = 10_000
ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps an int array of user indices to a (len(users), n_items) float score matrix."""


def rmse(pred: np.ndarray, actual: np.ndarray) -> float:
    d = np.asarray(pred, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def mae(pred: np.ndarray, actual: np.ndarray) -> float:
    d = np.asarray(pred, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.abs(d))) if d.size else float("nan")


@dataclass(frozen=True)
class TopNMetrics:
    precision_at_k: float
    recall_at_k: float
    ndcg_at_k: float
    coverage_at_k: float
    n_users: int
    k: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        k = self.k
        return {
            f"{prefix}precision_at_{k}": self.precision_at_k,
            f"{prefix}recall_at_{k}": self.recall_at_k,
            f"{prefix}ndcg_at_{k}": self.ndcg_at_k,
            f"{prefix}coverage_at_{k}": self.coverage_at_k,
        }

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def _gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray):
    """(local row, column) pairs of the CSR rows `rows`, without a Python loop."""
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    local = np.repeat(np.arange(len(rows)), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return local, indices[np.repeat(starts, lens) + offs]


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((cols, rows))
    return als.row_pointers(rows, n_rows), cols[order].astype(np.int64)


def top_k_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first; ties go to the lower index so the
    result is deterministic."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part.sort(axis=1)  # lower index first among equal scores, then a stable sort on score
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class Evaluator:
    """Holds the train/test split in index space; scores any model given as a ScoreFn."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_user: np.ndarray,
        train_item: np.ndarray,
        test_user: np.ndarray,
        test_item: np.ndarray,
        test_rating: np.ndarray,
        k: int = 10,
        chunk: int = 512,
        max_users: int | None = TOPN_MAX_USERS,
        seed: int = 0,
    ) -> None:
        self.n_users, self.n_items, self.k, self.chunk = n_users, n_items, k, chunk
        self.train_indptr, self.train_indices = _csr(
            np.asarray(train_user, np.int64), np.asarray(train_item, np.int64), n_users
        )
        self.item_counts = np.bincount(np.asarray(train_item, np.int64), minlength=n_items)
        rel = np.asarray(test_rating) >= RELEVANT_MIN
        ru = np.asarray(test_user, np.int64)[rel]
        ri = np.asarray(test_item, np.int64)[rel]
        self.rel_indptr, self.rel_indices = _csr(ru, ri, n_users)
        self.n_relevant = np.diff(self.rel_indptr)
        self.eval_users = np.flatnonzero(self.n_relevant > 0)
        self.n_eligible = len(self.eval_users)
        if max_users is not None and self.n_eligible > max_users:
            rng = np.random.default_rng(seed)
            self.eval_users = np.sort(rng.choice(self.eval_users, max_users, replace=False))
        # Sorted user*n_items+item keys make "is this recommendation relevant" one np.isin.
        self._rel_keys = np.sort(ru * n_items + ri)
        log2 = 1.0 / np.log2(np.arange(2, k + 2))
        self._discount = log2
        self._ideal = np.cumsum(log2)

    def recommend(self, score_fn: ScoreFn, users: np.ndarray | None = None) -> np.ndarray:
        """Top-k unrated-in-train items for `users` (default: the evaluation users)."""
        users = self.eval_users if users is None else np.asarray(users, np.int64)
        out = np.empty((len(users), min(self.k, self.n_items)), dtype=np.int64)
        for s in range(0, len(users), self.chunk):
            block = users[s : s + self.chunk]
            scores = np.array(score_fn(block), dtype=np.float64, copy=True)
            if scores.shape != (len(block), self.n_items):
                raise ValueError(f"score_fn returned {scores.shape}, expected {len(block)}×items")
            local, items = _gather_rows(self.train_indptr, self.train_indices, block)
            scores[local, items] = -np.inf
            out[s : s + len(block)] = top_k_from_scores(scores, self.k)
        return out

    def topn(self, score_fn: ScoreFn) -> TopNMetrics:
        users = self.eval_users
        if len(users) == 0:
            return TopNMetrics(float("nan"), float("nan"), float("nan"), 0.0, 0, self.k)
        recs = self.recommend(score_fn, users)
        hit = self._hits(users, recs)
        n_hits = hit.sum(axis=1)
        n_rel = self.n_relevant[users]
        return TopNMetrics(
            precision_at_k=float(np.mean(n_hits / self.k)),
            recall_at_k=float(np.mean(n_hits / n_rel)),
            ndcg_at_k=float(np.mean(self._ndcg(users, recs, hit))),
            coverage_at_k=float(len(np.unique(recs)) / self.n_items),
            n_users=len(users),
            k=self.k,
        )

    def user_ndcg(self, score_fn: ScoreFn, users: np.ndarray) -> np.ndarray:
        """NDCG@k of each of `users` (evaluation users: at least one relevant test rating),
        shape (len(users),) float64; `topn`'s ndcg_at_k is their mean. Paired per-user values
        let a caller tell a real difference between two models from noise."""
        users = np.asarray(users, np.int64)
        recs = self.recommend(score_fn, users)
        return self._ndcg(users, recs, self._hits(users, recs))

    def _hits(self, users: np.ndarray, recs: np.ndarray) -> np.ndarray:
        return np.isin(users[:, None] * self.n_items + recs, self._rel_keys)

    def _ndcg(self, users: np.ndarray, recs: np.ndarray, hit: np.ndarray) -> np.ndarray:
        dcg = (hit * self._discount[: recs.shape[1]]).sum(axis=1)
        return dcg / self._ideal[np.minimum(self.n_relevant[users], self.k) - 1]

    def popularity_scores(self) -> ScoreFn:
        """The baseline: the most-rated training movies, the same list for everybody."""
        pop = self.item_counts.astype(np.float64)
        return lambda users: np.broadcast_to(pop, (len(users), self.n_items))


def explicit_scores(
    mu: float, user_bias: np.ndarray, item_bias: np.ndarray, P: np.ndarray, Q: np.ndarray
) -> ScoreFn:
    """Predicted star rating μ + b_u + b_i + p_u·q_i (the design's original order)."""
    return lambda users: mu + user_bias[users][:, None] + item_bias[None, :] + P[users] @ Q.T


def factor_scores(X: np.ndarray, Y: np.ndarray) -> ScoreFn:
    """The ranking (implicit) model's preference x_u·y_i."""
    return lambda users: X[users] @ Y.T


def blended_scores(explicit: ScoreFn, item_counts: np.ndarray, weight: float = 0.5) -> ScoreFn:
    """Predicted rating plus weight·log(1 + ratings of the movie): the "add popularity to the
    RMSE model" fix issue 8 measured at ~0.17, kept as a reference point in the bench."""
    logpop = weight * np.log1p(item_counts.astype(np.float64))
    return lambda users: explicit(users) + logpop[None, :]
