"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): NumPy only.

A linear item-to-item model with a closed form: on the binary user × movie matrix X (1 = the
user liked the movie), G = XᵀX + λI, P = G⁻¹ and

    B = I − P·diagMat(1/diag(P))      (so B_jj = 0: a movie never recommends itself)

and a user's scores are s_u = x_u·B. Fold-in is that product, and the contribution of a rated
movie j to the score of i is x_uj·B_ji, which is what "because you rated …" shows.

Likes and dislikes: a rating above `negative_at` stars is a like (x = 1); one at or below it is
not a like (left out of G), and at scoring time it counts `-negative_weight`, so a movie that
resembles what the user hated is pushed down instead of up (issue 20 item 7).

Where it stops: G and P are dense m × m float64 for the m movies it covers, and inverting costs
O(m³). EASE therefore covers only movies with at least `min_count` ratings, and at most the
`max_items` most rated of them (default 6000: G is 288 MB float64, and inverting it peaks at about
four such matrices, ~1.2 GB, for ~13 s on one core). Every other movie is ranked by the ALS ranking
model alone (the served score is a blend of the two, `blend_scores`); on a catalogue whose head is
larger than `max_items` EASE covers the head and ALS the rest.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass

import numpy as np

from movierec_common.als import Interactions


@dataclass(frozen=True)
class EaseParams:
    """λ (`reg`, added to the diagonal of XᵀX), coverage (`min_count`, `max_items`), and the
    like/dislike split (`negative_at` stars, None = every rating is a like; `negative_weight`,
    what a dislike counts at scoring time). `user_chunk`: users per dense block while XᵀX is
    accumulated (bounds memory at user_chunk × m float32)."""

    reg: float = 800.0
    min_count: int = 5
    max_items: int = 6000
    negative_at: float | None = 2.0
    negative_weight: float = 1.0
    user_chunk: int = 2048

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_EASE = EaseParams()


@dataclass
class EaseModel:
    """B (m, m) float32 with a zero diagonal; `items` (m,) int64: the model item index of each
    row/column of B (ascending); `params`; `seconds` the fit time."""

    B: np.ndarray
    items: np.ndarray
    params: EaseParams
    seconds: float = 0.0


def covered_items(item_counts: np.ndarray, params: EaseParams) -> np.ndarray:
    """Ascending item indices EASE covers: ≥ `min_count` ratings, the `max_items` most rated
    (ties to the lower index)."""
    counts = np.asarray(item_counts, dtype=np.int64)
    ok = np.flatnonzero(counts >= max(params.min_count, 1))
    if ok.size > params.max_items:
        order = np.argsort(-counts[ok], kind="stable")[: params.max_items]
        ok = ok[order]
    return np.sort(ok).astype(np.int64)


def like_signal(ratings: np.ndarray, params: EaseParams) -> np.ndarray:
    """x per rating (float32): 1 for a like, −negative_weight for a rating at or below
    `negative_at` (every rating is a like when `negative_at` is None)."""
    r = np.asarray(ratings, dtype=np.float64)
    if params.negative_at is None:
        return np.ones(r.shape, dtype=np.float32)
    return np.where(r > params.negative_at, 1.0, -params.negative_weight).astype(np.float32)


def item_gram(
    inter: Interactions, params: EaseParams = DEFAULT_EASE
) -> tuple[np.ndarray, np.ndarray]:
    """(G = XᵀX (m, m) float64, items (m,) int64): the co-occurrence of the likes of `inter`
    over the movies EASE covers (`covered_items`; X the users × covered movies 0/1 matrix of
    likes), accumulated `params.user_chunk` users at a time. G does not depend on λ, so a λ
    search builds it once and solves it per candidate (`solve_ease`)."""
    counts = np.bincount(inter.item_idx, minlength=inter.n_items)
    items = covered_items(counts, params)
    m = int(items.size)
    col = np.full(inter.n_items, -1, dtype=np.int64)
    col[items] = np.arange(m)
    x = like_signal(inter.rating, params)
    keep = (col[inter.item_idx] >= 0) & (x > 0)
    u = inter.user_idx[keep].astype(np.int64)
    c = col[inter.item_idx[keep]]
    order = np.argsort(u, kind="stable")
    u, c = u[order], c[order]
    g = np.zeros((m, m), dtype=np.float64)
    if m == 0:
        return g, items
    bounds = np.searchsorted(u, np.arange(0, inter.n_users + params.user_chunk, params.user_chunk))
    for s, e in itertools.pairwise(bounds):
        if e <= s:
            continue
        rows = u[s:e] - u[s]
        dense = np.zeros((int(rows[-1]) + 1, m), dtype=np.float32)
        dense[rows, c[s:e]] = 1.0
        g += (dense.T @ dense).astype(np.float64)
    return g, items


def solve_ease(gram: np.ndarray, items: np.ndarray, params: EaseParams) -> EaseModel:
    """EASE's closed form from `item_gram`'s G (m, m) float64: P = (G + λI)⁻¹,
    B = I − P·diag(1/diag P) with a zero diagonal (Steck 2019, "Embarrassingly Shallow
    Autoencoders for Sparse Data", eq. 8). λ is added to G's diagonal in place and the diagonal
    restored afterwards (also on error), so a λ search reuses G without a copy; P is scaled
    into B in place. Peak memory beyond G: NumPy's inversion, ~3.2·8·m² bytes (~0.9 GB at
    m = 6,000). Raises ValueError when reg ≤ 0 and numpy.linalg.LinAlgError if the inversion
    fails."""
    if params.reg <= 0:
        raise ValueError(f"EASE needs reg > 0, got {params.reg}")
    t0 = time.perf_counter()
    m = int(items.size)
    if m == 0:
        return EaseModel(np.zeros((0, 0), np.float32), items, params, time.perf_counter() - t0)
    diag = np.diag_indices(m)
    saved = gram[diag].copy()
    gram[diag] += params.reg
    try:
        p = np.linalg.inv(gram)
    finally:
        gram[diag] = saved
    p /= (-np.diag(p))[None, :]
    p[diag] = 0.0
    return EaseModel(p.astype(np.float32), items, params, time.perf_counter() - t0)


def fit_ease(inter: Interactions, params: EaseParams = DEFAULT_EASE) -> EaseModel:
    """The closed form on the likes of `inter` (items outside `covered_items` ignored):
    `item_gram` then `solve_ease`.

    Returns an EaseModel with B of shape (m, m), m = len(covered items) (m = 0 gives an empty
    model); `seconds` covers both. Raises ValueError when reg ≤ 0 (G may be singular) and
    numpy.linalg.LinAlgError if the inversion fails anyway.
    """
    if params.reg <= 0:
        raise ValueError(f"EASE needs reg > 0, got {params.reg}")
    t0 = time.perf_counter()
    gram, items = item_gram(inter, params)
    model = solve_ease(gram, items, params)
    del gram
    model.seconds = time.perf_counter() - t0
    return model


def covered_positions(model: EaseModel, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in `model.items` (n,), covered (n,) bool) of model item indices `idx` (n,):
    row/column j of B for each covered one; an uncovered one's position is meaningless."""
    pos = np.searchsorted(model.items, idx)
    pos = np.minimum(pos, max(model.items.size - 1, 0))
    hit = (model.items[pos] == idx) if model.items.size else np.zeros(idx.shape, bool)
    return pos, hit


def user_vector(
    model: EaseModel, item_idx: np.ndarray, ratings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(positions in B (n,), x values (n,) float32) of one user's ratings that EASE covers.

    `item_idx` are model item indices (no repeats), `ratings` their stars."""
    idx = np.asarray(item_idx, dtype=np.int64)
    pos, hit = covered_positions(model, idx)
    x = like_signal(np.asarray(ratings)[hit], model.params)
    return pos[hit], x


def score_items(
    model: EaseModel, item_idx: np.ndarray, ratings: np.ndarray, n_items: int
) -> np.ndarray:
    """Fold-in: x_u·B for one user's ratings, as (n_items,) float32 over the model's item
    index (0 for movies EASE does not cover)."""
    pos, x = user_vector(model, item_idx, ratings)
    out = np.zeros(n_items, dtype=np.float32)
    if pos.size:
        out[model.items] = x @ model.B[pos]
    return out


def contributions(
    model: EaseModel, item_idx: np.ndarray, ratings: np.ndarray, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """Why EASE scores `target` (a model item index): (rated item indices, x_uj·B_j,target)
    for the user's covered ratings; they sum to the target's score. Empty when EASE does not
    cover the target."""
    idx = np.asarray(item_idx, dtype=np.int64)
    t = np.searchsorted(model.items, target)
    if t >= model.items.size or model.items[t] != target:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    pos, x = user_vector(model, idx, ratings)
    return model.items[pos], (x * model.B[pos, t]).astype(np.float32)


def _centred_and_spread(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s − mean, std) along the last axis (float64, std keepdims, population std); a zero std
    is returned as 1, so rows with zero spread stay centred rather than divided by zero. The
    centred copy is the caller's to scale in place; the sum of squares is one dot product per
    row (`ndarray.std` makes three more passes over n_items and two temporaries: 3× slower
    per served list at 51k movies)."""
    c = np.asarray(s, dtype=np.float64) - np.mean(s, axis=-1, keepdims=True, dtype=np.float64)
    if c.ndim == 1:
        sumsq = np.array([np.dot(c, c)])
    else:
        sumsq = np.einsum("...i,...i->...", c, c)[..., None]
    sd = np.sqrt(sumsq / max(c.shape[-1], 1))
    return c, np.where(sd > 0, sd, 1.0)


def standardize(scores: np.ndarray) -> np.ndarray:
    """(s − mean)/std along the last axis (float64; rows with zero spread stay centred)."""
    c, sd = _centred_and_spread(scores)
    c /= sd
    return c


# --------------------------------------------------------------------------------------------
# The served blend: ranking and predicted stars
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlendParams:
    """How the served list and the served stars use EASE. The defaults were chosen on
    ml-latest-small (validation carved from the training part, bench/tune_models.py); the
    trainer chooses the weights again on every data set it tunes on (movierec_trainer.tune).

    Ranking order: als·z(x_u·y_i) + ease·z(x_u·B) + stars·z(r̂_ui) + genre·z(ĝ_i·p_u)
    + popularity·z(log(1 + n_i)), each z standardised per user over the model's items
    (`blend_ranking`); ĝ_i·p_u is the genre part (`movierec_common.genres`: how much movie i
    shares the genres of the movies the user rated at or above their mean); n_i is the movie's
    number of training ratings, the same for every user (where which movies a person rates
    carries little of their taste, the prior that a movie gets rated at all is most of the
    signal: on synthetic-1m the validation choice weighs it 0.2).

    Stars: r̂_ui = μ + b_u + b_i + p_u·q_i + rating·(d_u·B)_i with d_uj = r_uj − μ − b_u − b_j
    over the user's covered ratings (`rating_correction`): EASE's item-to-item weights applied
    to what the biases leave, a neighbourhood term in the spirit of Koren's (2008) integrated
    model. The trainer caps `rating` at twice its fit on the training residuals
    (movierec_trainer.pipeline) unless it chose it on validation."""

    als: float = 0.8
    ease: float = 0.2
    stars: float = 0.4
    rating: float = 4.5
    popularity: float = 0.0
    genre: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_BLEND = BlendParams()


def blend_ranking(
    als_scores: np.ndarray | None,
    ease_scores: np.ndarray | None,
    stars: np.ndarray | None,
    params: BlendParams = DEFAULT_BLEND,
    *,
    popularity: np.ndarray | None = None,
    genre: np.ndarray | None = None,
) -> np.ndarray:
    """The served order's score (…, n_items) float64 from whichever parts exist (None = that
    model is absent, its weight dropped); standardised along the last axis. `popularity`
    (n_items,) is the popularity part as `popularity_scores` gives it; `genre` (…, n_items)
    the raw genre part (`genres.scores`), None when the model has no genres."""
    return blend_with_scales(
        als_scores, ease_scores, stars, params, popularity=popularity, genre=genre
    )[0]


def blend_with_scales(
    als_scores: np.ndarray | None,
    ease_scores: np.ndarray | None,
    stars: np.ndarray | None,
    params: BlendParams = DEFAULT_BLEND,
    *,
    popularity: np.ndarray | None = None,
    genre: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray | None, ...]]:
    """`blend_ranking` and, per personal part (ALS, EASE, stars, genre), the factor w/σ (…, 1)
    its raw scores enter the blend with (None where the part is absent or weighted 0): an exact
    split of a part's raw score, times that factor, is its split of the blended score (the
    serving explanation uses them rather than recomputing each part and its spread). The
    popularity part (`popularity`, `popularity_scores` of the model's rating counts, weighted
    `params.popularity`) is added to every row and has no split over a user's ratings.
    Raises ValueError when no personal part is left."""
    out: np.ndarray | None = None
    scales: list[np.ndarray | None] = []
    parts = (
        (params.als, als_scores),
        (params.ease, ease_scores),
        (params.stars, stars),
        (params.genre, genre),
    )
    for w, s in parts:
        if s is None or w == 0:
            scales.append(None)
            continue
        part, sd = _centred_and_spread(s)
        scale = w / sd
        part *= scale
        if out is None:
            out = part
        else:
            out += part
        scales.append(scale)
    if out is None:
        raise ValueError("nothing to blend")
    if popularity is not None and params.popularity != 0:
        out += params.popularity * popularity
    return out, tuple(scales)


def popularity_scores(item_counts: np.ndarray) -> np.ndarray:
    """z(log(1 + n_i)) over the movies, (n_items,) float64 from their training rating counts:
    the blend's popularity part before its weight (`BlendParams.popularity`), the same for
    every user, so computed once per model rather than per list."""
    return standardize(np.log1p(np.asarray(item_counts, dtype=np.float64)))


def residual_signal(
    model: EaseModel,
    item_idx: np.ndarray,
    ratings: np.ndarray,
    mu: float,
    b_u: float,
    item_bias: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions in B, d = r − μ − b_u − b_j) of one user's covered ratings (float64)."""
    idx = np.asarray(item_idx, dtype=np.int64)
    pos, hit = covered_positions(model, idx)
    r = np.asarray(ratings, dtype=np.float64)[hit]
    d = r - mu - b_u - np.asarray(item_bias, dtype=np.float64)[idx[hit]]
    return pos[hit], d


def rating_correction(
    model: EaseModel,
    item_idx: np.ndarray,
    ratings: np.ndarray,
    mu: float,
    b_u: float,
    item_bias: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """(d_u·B) over the model's items (n_items,) float32, 0 where EASE does not cover; multiply
    by `BlendParams.rating` and add to the explicit prediction."""
    pos, d = residual_signal(model, item_idx, ratings, mu, b_u, item_bias)
    out = np.zeros(n_items, dtype=np.float32)
    if pos.size:
        out[model.items] = d.astype(np.float32) @ model.B[pos]
    return out


def batch_scores(
    model: EaseModel,
    users: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    ratings: np.ndarray,
    n_items: int,
    baseline: tuple[float, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores of many users at once from a user CSR (indptr, item indices, stars): x_u·B
    (len(users), n_items) float32 and, given baseline = (μ, user_bias, item_bias), the rating
    correction d_u·B of the same shape (else None). The evaluator's and the bench's form."""
    users = np.asarray(users, dtype=np.int64)
    m = model.items.size
    col = np.full(n_items, -1, dtype=np.int64)
    col[model.items] = np.arange(m)
    starts, ends = indptr[users], indptr[users + 1]
    lens = ends - starts
    local = np.repeat(np.arange(users.size), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    flat = np.repeat(starts, lens) + offs
    items = np.asarray(indices)[flat].astype(np.int64)
    stars = np.asarray(ratings, dtype=np.float64)[flat]
    c = col[items]
    ok = c >= 0
    x = np.zeros((users.size, m), dtype=np.float32)
    x[local[ok], c[ok]] = like_signal(stars[ok], model.params)
    scores = np.zeros((users.size, n_items), dtype=np.float32)
    scores[:, model.items] = x @ model.B
    if baseline is None:
        return scores, None
    mu, b_u, b_i = baseline
    d = np.zeros((users.size, m), dtype=np.float32)
    d[local[ok], c[ok]] = stars[ok] - mu - b_u[users[local[ok]]] - b_i[items[ok]]
    corr = np.zeros((users.size, n_items), dtype=np.float32)
    corr[:, model.items] = d @ model.B
    return scores, corr
