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
chosen on 12 validation carves of ml-latest-small's training part (`bench/tune_genres.py`;
bench/REPORT.md, "A genre part in the blend"). The floor is the product's rule that low
ratings are not likes (issue 20 item 7): someone who rated only horror films, all 0.5★, has no
profile, so the part does not steer them to more horror (on the validation carves the floor
changes nothing measurable).

The split over the rated movies is exact: s_ui − mean_i'(s_ui') = Σ_j [j liked]·ĝ_j·(ĝ_i − ḡ)
with ḡ the mean genre row, which is what "because you rated …" adds for this part
(`contributions`): the part enters the blend centred, and s_ui itself is never negative (its
mean is ~2 standard deviations on ml-latest-small), so splitting it uncentred would credit a
liked movie's genres even for a movie whose genre part lowered its score. NumPy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

LIKE_FLOOR = 2.0
"""Stars at or below which a rating is never a like, whatever the user's mean: the same 2★ as
the ranking model's and EASE's default `negative_at`."""


MAX_GENRES = 64
"""At most this many genres (columns), the most common: a catalogue's admins may type any
genre, and the part costs O(n_items·n_genres) per list (MovieLens has 20)."""
MIN_GENRE_MOVIES = 2
"""A genre only one of the model's movies carries relates it to no other movie: left out."""


def genre_indicators(
    item_ids: np.ndarray, genres_of: Mapping[int, Sequence[str]]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(g (n_items, n_genres) uint8 0/1, the genre names in column order, sorted) for the movies
    `item_ids` (n_items,) from `genres_of` (movieId → genre names; a movie missing from it, or
    with none, has a zero row). The columns are the genres at least MIN_GENRE_MOVIES of these
    movies carry, the MAX_GENRES most common of them (ties by name)."""
    ids = [int(x) for x in np.asarray(item_ids).tolist()]
    count: dict[str, int] = {}
    for m in ids:
        for name in set(map(str, genres_of.get(m) or ())):
            count[name] = count.get(name, 0) + 1
    common = sorted(
        (n for n in count if count[n] >= MIN_GENRE_MOVIES), key=lambda n: (-count[n], n)
    )
    names = tuple(sorted(common[:MAX_GENRES]))
    col = {g: c for c, g in enumerate(names)}
    g = np.zeros((len(ids), len(names)), dtype=np.uint8)
    for row, m in enumerate(ids):
        for name in genres_of.get(m) or ():
            c = col.get(str(name))
            if c is not None:
                g[row, c] = 1
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


def mean_row(rows: np.ndarray) -> np.ndarray:
    """ḡ (n_genres,) float64: the mean of the genre rows over every movie."""
    return np.asarray(rows, np.float64).mean(axis=0)


def contributions(
    rows: np.ndarray,
    targets: np.ndarray,
    rated_idx: np.ndarray,
    stars: np.ndarray,
    centre: np.ndarray | None = None,
) -> np.ndarray:
    """(n_t, n_r) float64 [j liked]·ĝ_j·(ĝ_i − ḡ): the centred part's exact split over the
    rated movies j (`rated_idx`, `stars`, (n_r,)); row i sums to s_ui − mean over the movies
    of s_u·. `centre` is ḡ (`mean_row(rows)`) when the caller holds it."""
    keep = liked(stars).astype(np.float64)
    ref = mean_row(rows) if centre is None else np.asarray(centre, np.float64)
    t = np.asarray(rows[np.asarray(targets, np.int64)], np.float64) - ref[None, :]
    r = np.asarray(rows[np.asarray(rated_idx, np.int64)], np.float64)
    return (t @ r.T) * keep[None, :]
