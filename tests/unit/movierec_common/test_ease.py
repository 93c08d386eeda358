"""EASE kernel (movierec_common.ease): closed form, coverage, fold-in, explanations, blend."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from movierec_common import ease
from movierec_common.als import Interactions


def _random_ratings(seed: int = 0, n_users: int = 40, n_items: int = 25, density: float = 0.3):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    stars = rng.choice(np.arange(1, 11) / 2.0, size=u.size).astype(np.float32)
    return Interactions(u.astype(np.int32), i.astype(np.int32), stars, n_users, n_items)


def _closed_form(inter: Interactions, params: ease.EaseParams) -> tuple[np.ndarray, np.ndarray]:
    """Steck's formula written out directly on the dense like matrix of the covered items."""
    counts = np.bincount(inter.item_idx, minlength=inter.n_items)
    items = np.flatnonzero(counts >= params.min_count)
    x = np.zeros((inter.n_users, inter.n_items))
    likes = inter.rating > (params.negative_at if params.negative_at is not None else -1)
    x[inter.user_idx[likes], inter.item_idx[likes]] = 1.0
    x = x[:, items]
    p = np.linalg.inv(x.T @ x + params.reg * np.eye(items.size))
    b = np.eye(items.size) - p / np.diag(p)[None, :]
    return b, items


@pytest.mark.parametrize("negative_at", [None, 2.0])
def test_fit_matches_the_closed_form_with_zero_diagonal(negative_at: float | None) -> None:
    inter = _random_ratings()
    params = ease.EaseParams(reg=5.0, min_count=3, negative_at=negative_at, user_chunk=7)
    model = ease.fit_ease(inter, params)
    want_b, want_items = _closed_form(inter, params)
    np.testing.assert_array_equal(model.items, want_items)
    np.testing.assert_allclose(model.B, want_b, atol=1e-5)
    assert np.all(np.diagonal(model.B) == 0)
    assert model.B.dtype == np.float32


def test_one_gram_solved_at_several_lambdas_gives_each_lambdas_fit() -> None:
    """A λ search builds XᵀX once (`item_gram`) and solves it per candidate (`solve_ease`):
    each solve is that λ's closed form, and G is left as it was for the next candidate."""
    inter = _random_ratings(seed=5)
    params = ease.EaseParams(reg=5.0, min_count=3, user_chunk=7)
    gram, items = ease.item_gram(inter, params)
    before = gram.copy()
    for reg in (0.5, 5.0, 500.0):
        model = ease.solve_ease(gram, items, replace(params, reg=reg))
        np.testing.assert_array_equal(gram, before)
        want_b, want_items = _closed_form(inter, replace(params, reg=reg))
        np.testing.assert_array_equal(model.items, want_items)
        np.testing.assert_allclose(model.B, want_b, atol=1e-5)
        assert model.params.reg == reg
    with pytest.raises(ValueError, match="reg > 0"):
        ease.solve_ease(gram, items, replace(params, reg=-1.0))


def test_user_chunk_does_not_change_the_model() -> None:
    inter = _random_ratings(seed=3)
    a = ease.fit_ease(inter, ease.EaseParams(reg=3.0, min_count=1, user_chunk=1))
    b = ease.fit_ease(inter, ease.EaseParams(reg=3.0, min_count=1, user_chunk=10_000))
    np.testing.assert_allclose(a.B, b.B, atol=1e-6)


def test_coverage_keeps_the_most_rated_within_max_items() -> None:
    counts = np.array([9, 1, 5, 7, 2, 7, 3])
    params = ease.EaseParams(min_count=2, max_items=3)
    # ≥ 2 ratings: items 0, 2, 3, 4, 5, 6; the 3 most rated: 0 (9), 3 (7), 5 (7)
    np.testing.assert_array_equal(ease.covered_items(counts, params), [0, 3, 5])
    np.testing.assert_array_equal(
        ease.covered_items(counts, replace(params, max_items=100)), [0, 2, 3, 4, 5, 6]
    )


def test_reg_must_be_positive() -> None:
    with pytest.raises(ValueError, match="reg > 0"):
        ease.fit_ease(_random_ratings(), ease.EaseParams(reg=0.0))


def test_nothing_covered_gives_an_empty_model_that_scores_zero() -> None:
    inter = _random_ratings(density=0.05)
    model = ease.fit_ease(inter, ease.EaseParams(min_count=10_000))
    assert model.B.shape == (0, 0) and model.items.size == 0
    scores = ease.score_items(model, np.array([0, 1]), np.array([5.0, 4.0]), inter.n_items)
    assert scores.shape == (inter.n_items,) and not scores.any()


def test_fold_in_is_x_times_b_and_contributions_sum_to_the_score() -> None:
    inter = _random_ratings(seed=5)
    params = ease.EaseParams(reg=4.0, min_count=2, negative_at=2.0, negative_weight=1.0)
    model = ease.fit_ease(inter, params)
    rated = np.array([0, 3, 7, 11, 20])
    stars = np.array([5.0, 1.0, 4.0, 3.5, 0.5])
    scores = ease.score_items(model, rated, stars, inter.n_items)
    x = np.zeros(inter.n_items)
    x[rated] = np.where(stars > 2.0, 1.0, -1.0)
    want = np.zeros(inter.n_items)
    want[model.items] = x[model.items] @ model.B.astype(np.float64)
    np.testing.assert_allclose(scores, want, atol=1e-5)
    assert not scores[np.setdiff1d(np.arange(inter.n_items), model.items)].any()
    for target in model.items[:5]:
        movies, parts = ease.contributions(model, rated, stars, int(target))
        assert set(movies.tolist()) <= set(rated.tolist())
        assert parts.sum() == pytest.approx(float(scores[target]), abs=1e-5)


def test_a_dislike_pushes_its_neighbours_down() -> None:
    inter = _random_ratings(seed=8, n_users=60)
    model = ease.fit_ease(inter, ease.EaseParams(reg=2.0, min_count=1))
    liked = ease.score_items(model, np.array([4]), np.array([5.0]), inter.n_items)
    hated = ease.score_items(model, np.array([4]), np.array([0.5]), inter.n_items)
    np.testing.assert_allclose(hated, -liked, atol=1e-6)
    assert liked.max() > 0


def test_batch_scores_match_the_single_user_forms() -> None:
    inter = _random_ratings(seed=11)
    model = ease.fit_ease(inter, ease.EaseParams(reg=3.0, min_count=2))
    from movierec_common.als import to_csr

    indptr, indices, stars = to_csr(inter.user_idx, inter.item_idx, inter.rating, inter.n_users)
    mu, b_u = 3.5, np.linspace(-0.5, 0.5, inter.n_users)
    b_i = np.linspace(0.3, -0.3, inter.n_items)
    users = np.array([0, 5, 9, 17])
    got, corr = ease.batch_scores(
        model, users, indptr, indices, stars, inter.n_items, (mu, b_u, b_i)
    )
    assert corr is not None
    for row, u in enumerate(users):
        idx, r = indices[indptr[u] : indptr[u + 1]], stars[indptr[u] : indptr[u + 1]]
        np.testing.assert_allclose(
            got[row], ease.score_items(model, idx, r, inter.n_items), atol=1e-5
        )
        want = ease.rating_correction(model, idx, r, mu, float(b_u[u]), b_i, inter.n_items)
        np.testing.assert_allclose(corr[row], want, atol=1e-5)


def test_blend_is_scale_free_and_skips_missing_parts() -> None:
    rng = np.random.default_rng(2)
    a, e, s = rng.random(30), rng.random(30), rng.random(30)
    p = ease.BlendParams(als=0.7, ease=0.3, stars=0.5)
    base = ease.blend_ranking(a, e, s, p)
    np.testing.assert_allclose(ease.blend_ranking(10 * a + 3, e / 7, s * 2 - 1, p), base)
    want = 0.7 * ease.standardize(a) + 0.3 * ease.standardize(e) + 0.5 * ease.standardize(s)
    np.testing.assert_allclose(base, want)
    np.testing.assert_allclose(
        ease.blend_ranking(None, e, s, p), 0.3 * ease.standardize(e) + 0.5 * ease.standardize(s)
    )
    with pytest.raises(ValueError, match="nothing to blend"):
        ease.blend_ranking(None, None, None, p)


def test_the_popularity_part_is_the_same_standardised_log_count_for_every_user() -> None:
    rng = np.random.default_rng(4)
    a, e, s = rng.random((3, 30)), rng.random((3, 30)), rng.random((3, 30))
    counts = rng.integers(0, 500, 30)
    p = ease.BlendParams(als=0.7, ease=0.3, stars=0.5, popularity=0.25)
    base = ease.blend_ranking(a, e, s, replace(p, popularity=0.0))
    got = ease.blend_ranking(a, e, s, p, popularity=ease.popularity_scores(counts))
    want = 0.25 * ease.standardize(np.log1p(counts))
    np.testing.assert_allclose(got - base, np.broadcast_to(want, (3, 30)))
    np.testing.assert_allclose(0.25 * ease.popularity_scores(counts), (got - base)[0])
    # Without the counts (or at weight 0) the part is absent, and it never blends alone.
    np.testing.assert_allclose(ease.blend_ranking(a, e, s, p), base)
    with pytest.raises(ValueError, match="nothing to blend"):
        ease.blend_ranking(None, None, None, p, popularity=ease.popularity_scores(counts))


def test_blend_scales_turn_each_parts_raw_differences_into_blend_differences() -> None:
    rng = np.random.default_rng(3)
    a, e, s, g = (rng.random((2, 40)) for _ in range(4))
    p = ease.BlendParams(als=0.7, ease=0.0, stars=0.5, genre=0.4)
    blended, (sa, se, ss, sg) = ease.blend_with_scales(a, e, s, p, genre=g)
    assert se is None and sa is not None and ss is not None and sg is not None
    np.testing.assert_allclose(blended, ease.blend_ranking(a, e, s, p, genre=g))
    # blended_i − blended_j = Σ_part scale · (raw_i − raw_j), per user (row)
    want = sa * (a - a[:, :1]) + ss * (s - s[:, :1]) + sg * (g - g[:, :1])
    np.testing.assert_allclose(blended - blended[:, :1], want, atol=1e-12)
    np.testing.assert_allclose(sa[:, 0], 0.7 / a.std(axis=1))
    np.testing.assert_allclose(sg[:, 0], 0.4 / g.std(axis=1))
    # Without a genre part (a model without genres) its weight is dropped, not an error.
    assert ease.blend_with_scales(a, e, s, p)[1][3] is None
