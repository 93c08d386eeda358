"""movierec_common.genres: the served blend's genre part, checked against its definition
written out here (ĝ_i = g_i/√|g_i|, p_u = Σ of the rows of the movies rated at or above the
user's mean and above 2 stars, s_ui = ĝ_i·p_u)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from movierec_common import genres

GENRES_OF = {
    10: ["Animation", "Children", "Comedy"],
    20: ["Drama"],
    30: ["Action", "Sci-Fi"],
    40: [],
    50: ["Comedy", "Drama"],
    70: ["Animation", "Children", "Action", "Sci-Fi"],
    80: ["Noir"],  # the only movie with it: relates it to nothing, not a column
    99: ["Western"],  # not among the model's movies: not a column
}
ITEM_IDS = np.array([10, 20, 30, 40, 50, 60, 70, 80])  # 60: not in GENRES_OF at all


def test_indicators_name_the_models_genres_in_sorted_columns() -> None:
    g, names = genres.genre_indicators(ITEM_IDS, GENRES_OF)
    assert names == ("Action", "Animation", "Children", "Comedy", "Drama", "Sci-Fi")
    assert g.dtype == np.uint8 and g.shape == (8, 6)
    assert g[0].tolist() == [0, 1, 1, 1, 0, 0]
    assert g[2].tolist() == [1, 0, 0, 0, 0, 1]
    assert g[3].sum() == 0 and g[5].sum() == 0 and g[7].sum() == 0  # none; unknown; Noir
    assert genres.genre_indicators(ITEM_IDS, {})[1] == ()


def test_at_most_the_most_common_genres_become_columns() -> None:
    """Free-text genres from a catalogue's admins cannot grow the part without bound: the
    MAX_GENRES most common genres are kept (ties by name)."""
    n = genres.MAX_GENRES + 6
    ids = np.arange(1, 3 * n + 1)
    # genre k is carried by 2 + (k % 3) movies, so counts tie in groups
    genres_of: dict[int, list[str]] = {}
    movie = 1
    for k in range(n):
        for _ in range(2 + k % 3):
            genres_of.setdefault(int(movie), []).append(f"g{k:03d}")
            movie = movie % ids.size + 1
    g, names = genres.genre_indicators(ids, genres_of)
    count = {f"g{k:03d}": 2 + k % 3 for k in range(n)}
    want = sorted(sorted(count, key=lambda x: (-count[x], x))[: genres.MAX_GENRES])
    assert list(names) == want and g.shape == (ids.size, genres.MAX_GENRES)
    assert g.sum(axis=0).tolist() == [count[x] for x in names]


def test_rows_are_scaled_by_the_root_of_the_genre_count() -> None:
    g, _ = genres.genre_indicators(ITEM_IDS, GENRES_OF)
    rows = genres.genre_rows(g)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows[0][g[0] == 1], 1 / math.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(rows[1][g[1] == 1], 1.0)
    assert not rows[3].any() and not rows[5].any()


def test_liked_is_at_or_above_the_users_own_mean_and_skips_unknown_stars() -> None:
    assert genres.liked(np.array([1.0, 3.0, 5.0])).tolist() == [False, True, True]
    assert genres.liked(np.array([2.0, np.nan, 4.0])).tolist() == [False, False, True]
    assert genres.liked(np.array([3.5, 3.5])).tolist() == [True, True]
    assert not genres.liked(np.array([np.nan])).any()
    assert genres.liked(np.array([])).size == 0
    # Low ratings are never likes, even at or above a harsh rater's own mean.
    assert genres.liked(np.array([1.0, 2.0, 2.5])).tolist() == [False, False, True]
    assert not genres.liked(np.full(8, 0.5)).any()


def test_a_user_who_hated_every_film_has_no_profile() -> None:
    g, _ = genres.genre_indicators(ITEM_IDS, GENRES_OF)
    rows = genres.genre_rows(g)
    assert not genres.scores(rows, np.array([0, 4]), np.array([0.5, 0.5])).any()


def _by_definition(rows: np.ndarray, idx: np.ndarray, stars: np.ndarray) -> np.ndarray:
    known = ~np.isnan(stars)
    mean = stars[known].mean()
    p = np.zeros(rows.shape[1])
    for j, r in zip(idx, stars, strict=True):
        if r >= mean and r > 2.0:  # NaN compares False: unknown stars are left out
            p += rows[j].astype(np.float64)
    return np.array([float(rows[i] @ p) for i in range(rows.shape[0])])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_batch_and_split_agree_with_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = genres.genre_rows((rng.random((40, 6)) < 0.3).astype(np.uint8))
    indptr = [0]
    indices, stars = [], []
    for _ in range(7):
        n = int(rng.integers(1, 12))
        indices += rng.choice(40, n, replace=False).tolist()
        stars += (rng.integers(1, 11, n) / 2).tolist()
        indptr.append(len(indices))
    indptr_a, idx_a, stars_a = np.array(indptr), np.array(indices), np.array(stars)
    batch = genres.batch_scores(rows, np.arange(7), indptr_a, idx_a, stars_a)
    assert batch.shape == (7, 40) and batch.dtype == np.float32
    for u in range(7):
        lo, hi = indptr[u], indptr[u + 1]
        want = _by_definition(rows, idx_a[lo:hi], stars_a[lo:hi])
        one = genres.scores(rows, idx_a[lo:hi], stars_a[lo:hi])
        np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch[u], want, rtol=1e-5, atol=1e-6)
        # The explanation's split: row i sums to s_ui centred over the movies (the blend
        # standardises the part), disliked movies contribute nothing.
        targets = np.arange(40)
        split = genres.contributions(rows, targets, idx_a[lo:hi], stars_a[lo:hi])
        np.testing.assert_allclose(split.sum(axis=1), want - want.mean(), rtol=1e-5, atol=1e-6)
        held = genres.contributions(
            rows, targets[:5], idx_a[lo:hi], stars_a[lo:hi], rows.astype(float).mean(0)
        )
        np.testing.assert_allclose(held, split[:5], rtol=1e-6, atol=1e-9)
        disliked = ~genres.liked(stars_a[lo:hi])
        assert not split[:, disliked].any()


def test_a_user_who_liked_animation_scores_animation_first() -> None:
    g, _ = genres.genre_indicators(ITEM_IDS, GENRES_OF)
    rows = genres.genre_rows(g)
    # Loved the animated comedy, disliked the action film: animation and comedy lead.
    s = genres.scores(rows, np.array([0, 2]), np.array([5.0, 1.0]))
    assert s[0] > s[4] > 0 and s[2] == 0 and s[1] == 0
