"""The trainer fits EASE beside ALS, scores the served blend, and ships it as artifact arrays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from movierec_common import als, artifacts, ease
from movierec_trainer import data as tdata
from movierec_trainer import pipeline


@pytest.fixture(scope="module")
def ratings():
    rng = np.random.default_rng(7)
    n_users, n_items = 120, 60
    taste = rng.standard_normal((n_users, 3))
    kind = rng.standard_normal((n_items, 3))
    affinity = taste @ kind.T + rng.standard_normal((n_users, n_items)) * 0.5
    seen = rng.random((n_users, n_items)) < 0.25 + 0.1 * (affinity > 0)
    u, i = np.nonzero(seen)
    stars = np.clip(np.round((3.0 + affinity[u, i]) * 2) / 2, 0.5, 5.0)
    return tdata.make_ratings(u + 1, i * 10 + 1, stars.astype(np.float32))


CFG = pipeline.TrainConfig(
    explicit=als.ExplicitParams(rank=4, iterations=5),
    ranking=als.ImplicitParams(rank=8, iterations=5, reg=5.0),
    ease=ease.EaseParams(reg=20.0, min_count=3),
)


def test_fit_evaluate_and_artifact_carry_the_ease_model(ratings, tmp_path) -> None:
    outcome = pipeline.train_job(ratings, CFG)
    m = outcome.metrics
    assert m["served_ranking"] == "ranking+ease"
    # γ = 4.5 was chosen on ml-latest-small; here (120 users, λ 20) it is capped by the training
    # fit, so the term can only cost a little, never what the uncapped weight cost (1.06 vs 0.88)
    assert m["rmse"] <= m["explicit_only_rmse"] + 0.01
    assert m["ndcg_at_10"] > m["popularity_ndcg_at_10"]
    assert "ranking_only_ndcg_at_10" in m and m["ease_seconds"] >= 0
    arrays = outcome.arrays
    b, items = arrays["ease_B"], arrays["ease_items"]
    assert b.dtype == np.float32 and b.shape == (items.size, items.size) > (0, 0)
    assert outcome.manifest["params"]["ease"]["reg"] == 20.0
    shipped = outcome.manifest["params"]["blend"]
    assert 0 < shipped["rating"] < ease.DEFAULT_BLEND.rating  # capped, and the cap is published
    assert {**shipped, "rating": ease.DEFAULT_BLEND.rating} == ease.DEFAULT_BLEND.to_dict()
    version = artifacts.save_model(tmp_path, arrays, outcome.manifest)
    art = artifacts.load_model(tmp_path, version)
    assert art.manifest["models"] == ["explicit", "ranking", "ease"]


def test_served_scores_are_the_blend_of_the_parts(ratings) -> None:
    split = tdata.random_holdout(ratings, 0.2, 42)
    fit = pipeline.fit_models(split.train, CFG)
    assert fit.ease is not None and fit.ranking is not None
    users = np.array([0, 3, 9])
    got = pipeline.served_scores(fit)(users)
    indptr, indices, stars = als.to_csr(
        fit.inter.user_idx, fit.inter.item_idx, fit.inter.rating, fit.inter.n_users
    )
    e = fit.explicit
    for row, u in enumerate(users):
        idx, r = indices[indptr[u] : indptr[u + 1]], stars[indptr[u] : indptr[u + 1]]
        corr = ease.rating_correction(
            fit.ease, idx, r, e.mu, float(e.user_bias[u]), e.item_bias, fit.inter.n_items
        )
        rated = e.mu + e.user_bias[u] + e.item_bias + e.Q @ e.P[u] + fit.blend.rating * corr
        want = ease.blend_ranking(
            fit.ranking.Y @ fit.ranking.X[u],
            ease.score_items(fit.ease, idx, r, fit.inter.n_items),
            rated,
            fit.blend,
        )
        np.testing.assert_allclose(got[row], want, atol=1e-4)


def test_no_ranking_means_explicit_only_and_no_ease(ratings) -> None:
    fit = pipeline.fit_models(ratings, replace(CFG, ranking=None))
    assert fit.ranking is None and fit.ease is None
    assert "ease_B" not in pipeline.model_arrays(fit)
    fit = pipeline.fit_models(ratings, replace(CFG, ease=None))
    assert fit.ease is None and fit.ranking is not None
