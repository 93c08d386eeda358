"""The served blend's genre part: a content-based profile of each user over the movies' genres.

Movie i has the genre row ĝ_i = g_i / √|g_i|, where g_i ∈ {0, 1}^G marks its genres (a movie
without genres has a zero row). A user's profile is the sum of the rows of the movies they rated
at or above their own mean rating and above LIKE_FLOOR stars,

    p_u = Σ_{j ∈ R(u), r_uj ≥ r̄_u, r_uj > 2} ĝ_j,

and the part is s_ui = ĝ_i·p_u: how much movie i shares the genres of what the user liked. It is
the user-profile model of content-based recommendation (Pazzani & Billsus, "Content-Based
Recommendation Systems", The Adaptive Web, 2007) over MovieLens' genres, standardised per user
and weighted in the blend like the other parts (`ease.blend_with_scales`). The √|g_i| scaling
sits between a raw count (a movie with six genres matches everything) and cosine (a movie with
one genre matches as strongly as one with six); the "rated at or above their own mean" rule
keeps out a generous rater's disappointments and keeps a harsh rater's favourites. Both were
chosen on 12 validation carves of ml-latest-small's training part (bench/REPORT.md, session
17). The floor is the product's rule that low ratings are not likes (issue 20 item 7): someone
who rated only horror films, all 0.5★, has no profile, so the part does not steer them to more
horror (on the validation carves the floor changes nothing measurable).

The split over the rated movies is exact: s_ui = Σ_j [j liked]·ĝ_j·ĝ_i, which is what
"because you rated …" adds for this part (`contributions`). NumPy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

LIKE_FLOOR = 2.0
"""Stars at or below which a rating is never a like, whatever the user's mean: the ranking
model's and EASE's `negative_at`."""


def genre_indicators(
    item_ids: np.ndarray, genres_of: Mapping[int, Sequence[str]]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(g (n_items, n_genres) uint8 0/1, the genre names in column order, sorted) for the movies
    `item_ids` (n_items,) from `genres_of` (movieId → genre names; a movie missing from it, or
    with none, has a zero row). The names are those the movies of `item_ids` carry."""
    ids = [int(x) for x in np.asarray(item_ids).tolist()]
    names = tuple(sorted({str(g) for m in ids for g in (genres_of.get(m) or ())}))
    col = {g: c for c, g in enumerate(names)}
    g = np.zeros((len(ids), len(names)), dtype=np.uint8)
    for row, m in enumerate(ids):
        for name in genres_of.get(m) or ():
            g[row, col[str(name)]] = 1
    return g, names


def genre_rows(indicators: np.ndarray) -> np.ndarray:
    """ĝ (n_items, n_genres) float32: each movie's 0/1 genre row over √(its number of genres);
    zero rows stay zero."""
    g = np.asarray(indicators, dtype=np.float32)
    n = g.sum(axis=1, keepdims=True)
    return np.divide(g, np.sqrt(n), out=np.zeros_like(g), where=n > 0)


def liked(stars: np.ndarray) -> np.ndarray:
    """Which of one user's ratings (n,) count in their profile: bool (n,), the finite stars at
    or above the mean of the finite ones and above LIKE_FLOOR (all False when none is)."""
    s = np.asarray(stars, dtype=np.float64)
    ok = np.isfinite(s)
    if not ok.any():
        return ok
    return ok & (s >= s[ok].mean()) & (s > LIKE_FLOOR)


def profile(rows: np.ndarray, item_idx: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """p_u (n_genres,) float64 from one user's ratings: item rows (n,) into `rows` (ĝ) and
    their stars (n,); NaN stars (unknown values) are left out."""
    idx = np.asarray(item_idx, dtype=np.int64)[liked(stars)]
    return np.asarray(rows[idx], dtype=np.float64).sum(axis=0)


def scores(rows: np.ndarray, item_idx: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """The part s_u = ĝ·p_u over every movie, (n_items,) float32, from one user's ratings."""
    return rows @ profile(rows, item_idx, stars).astype(np.float32)


def batch_scores(
    rows: np.ndarray,
    users: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    stars: np.ndarray,
) -> np.ndarray:
    """`scores` of many users at once from a user CSR (indptr, item indices, stars):
    (len(users), n_items) float32. The trainer's and the evaluator's form."""
    users = np.asarray(users, dtype=np.int64)
    prof = np.zeros((users.size, rows.shape[1]), dtype=np.float32)
    for r, u in enumerate(users.tolist()):
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        prof[r] = profile(rows, indices[lo:hi], stars[lo:hi])
    return prof @ rows.T


def contributions(
    rows: np.ndarray, targets: np.ndarray, rated_idx: np.ndarray, stars: np.ndarray
) -> np.ndarray:
    """(n_t, n_r) float64 [j liked]·ĝ_j·ĝ_i: the part's exact split over the rated movies j
    (`rated_idx`, `stars`, (n_r,)); row i sums to s_ui."""
    keep = liked(stars).astype(np.float64)
    t = np.asarray(rows[np.asarray(targets, np.int64)], np.float64)
    r = np.asarray(rows[np.asarray(rated_idx, np.int64)], np.float64)
    return (t @ r.T) * keep[None, :]
