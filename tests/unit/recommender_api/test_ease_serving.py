"""The recommender's EASE blend (ranking.py, service.py) and the artifact's EASE keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from movierec_common import als, artifacts, ease
from recommender_api import ranking, service
from recommender_api.ranking import build_serving_model
from recommender_api.repository import UserRatings

from tests.support.toy_model import explicit_arrays


def _toy(tmp_path: Path | None = None):
    rng = np.random.default_rng(4)
    n_users, n_items = 40, 15
    users = np.repeat(np.arange(n_users), 7)
    items = rng.integers(0, n_items, users.size)
    keep = np.unique(users * 100 + items, return_index=True)[1]
    users, items = users[keep], items[keep]
    stars = rng.choice(np.arange(1, 11) / 2, users.size).astype(np.float32)
    user_ids, item_ids = np.arange(n_users) * 10 + 3, np.arange(n_items) * 100 + 1
    inter, uids, iids = als.index_ratings(user_ids[users], item_ids[items], stars)
    ep = als.ExplicitParams(rank=4, reg=0.1, iterations=8)
    ip = als.ImplicitParams(rank=4, reg=1.0, alpha=2.0, iterations=8)
    xp = ease.EaseParams(reg=3.0, min_count=2)
    blend = ease.BlendParams(als=0.7, ease=0.3, stars=0.4, rating=2.0)
    em = als.fit_explicit(inter, ep)
    im = als.fit_implicit(inter, ip)
    xm = ease.fit_ease(inter, xp)
    arrays = {
        **explicit_arrays(em, inter, uids, iids),
        "rank_X": im.X,
        "rank_Y": im.Y,
        "ease_B": xm.B,
        "ease_items": xm.items,
        # one or two of four genres per movie, the last movie none
        "item_genres": np.array(
            [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]] * 3, np.uint8
        )
        * (np.arange(n_items) < n_items - 1)[:, None].astype(np.uint8),
    }
    params = {
        "explicit": ep.to_dict(),
        "ranking": ip.to_dict(),
        "ease": xp.to_dict(),
        "blend": blend.to_dict(),
        "genres": ["Action", "Comedy", "Drama", "Horror"],
    }
    model = build_serving_model(version="v1", manifest={"params": params}, arrays=arrays)
    return model, inter, em, im, xm, arrays, params


def _user_ratings(model, inter, u: int) -> UserRatings:
    mask = inter.user_idx == u
    return UserRatings(model.items.ids[inter.item_idx[mask]], inter.rating[mask])


def test_served_order_is_the_blend_of_als_ease_and_the_corrected_stars() -> None:
    model, inter, em, im, xm, arrays, _ = _toy()
    assert model.ease is not None and model.blend.rating == 2.0 and model.has_ranking
    u = 6
    rated = _user_ratings(model, inter, u)
    resolved = service.resolve_user(model, int(model.users.ids[u]), rated)
    assert resolved.strategy == "personalized"
    v = resolved.vectors
    assert v is not None and v.ease_scores is not None
    mask = inter.user_idx == u
    idx, r = inter.item_idx[mask], inter.rating[mask]
    e_scores = ease.score_items(xm, idx, r, inter.n_items)
    corr = ease.rating_correction(
        xm, idx, r, em.mu, float(em.user_bias[u]), em.item_bias, inter.n_items
    )
    stars = em.mu + em.user_bias[u] + em.item_bias + em.Q @ em.P[u] + 2.0 * corr
    np.testing.assert_allclose(ranking.predicted_ratings(model, v), stars, atol=1e-4)
    # The genre part from the definition: the genre rows of the movies rated at or above the
    # user's mean, each movie's row over √(its genre count), summed and dotted with every row.
    rows = np.zeros((inter.n_items, 4))
    for i, row in enumerate(arrays["item_genres"].astype(float)):
        rows[i] = row / np.sqrt(row.sum()) if row.any() else row
    profile = rows[idx[(r >= r.mean()) & (r > 2.0)]].sum(axis=0)
    assert model.blend.genre == 0.3 and v.genre_scores is not None
    np.testing.assert_allclose(v.genre_scores, rows @ profile, atol=1e-5)
    want = ease.blend_ranking(im.Y @ im.X[u], e_scores, stars, model.blend, genre=rows @ profile)
    np.testing.assert_allclose(ranking.ranking_scores(model, v), want, atol=1e-3)
    # ... and the genre part is really in the order
    without = ease.blend_ranking(im.Y @ im.X[u], e_scores, stars, model.blend)
    assert np.abs(want - without).max() > 0.05


def test_fold_in_reproduces_a_trained_users_blended_list_and_stars() -> None:
    model, inter, *_ = _toy()
    u = 11
    rated = _user_ratings(model, inter, u)
    trained = service.resolve_user(model, int(model.users.ids[u]), rated).vectors
    folded = service.resolve_user(model, 999_999, rated)
    assert folded.strategy == "fold-in" and trained is not None and folded.vectors is not None
    np.testing.assert_allclose(
        ranking.ranking_scores(model, folded.vectors),
        ranking.ranking_scores(model, trained),
        atol=2e-3,
    )
    np.testing.assert_allclose(
        ranking.predicted_ratings(model, folded.vectors),
        ranking.predicted_ratings(model, trained),
        atol=2e-3,
    )


def test_unknown_stars_leave_ease_out_and_the_als_order_serves() -> None:
    model, inter, _, im, *_ = _toy()
    u = 2
    rated = _user_ratings(model, inter, u)
    unknown = UserRatings(rated.movie_ids, np.full(len(rated), np.nan, np.float32))
    v = service.resolve_user(model, int(model.users.ids[u]), unknown).vectors
    assert v is not None and v.ease_scores is None
    np.testing.assert_allclose(ranking.ranking_scores(model, v), im.Y @ im.X[u], atol=1e-4)


def test_ease_contributions_sum_to_the_score_and_reasons_are_liked_movies() -> None:
    model, inter, _, _, xm, _, _ = _toy()
    u = 8
    mask = inter.user_idx == u
    idx, r = inter.item_idx[mask].astype(np.int64), inter.rating[mask]
    targets = np.setdiff1d(np.arange(inter.n_items), idx)
    c = ranking.ease_contributions(model, targets, idx, r)
    scores = ease.score_items(xm, idx, r, inter.n_items)
    np.testing.assert_allclose(c.sum(axis=1), scores[targets], atol=1e-5)
    v = service.resolve_user(model, int(model.users.ids[u]), _user_ratings(model, inter, u))
    assert v.vectors is not None
    parts = ranking.explain_blend(model, v.vectors, targets, idx, r)
    # what the recommender passes (the scales and stars it ranked with) gives the same reasons
    _, scales = ranking.blended_scores(model, v.vectors)
    predicted = ranking.predicted_ratings(model, v.vectors)
    assert (
        ranking.explain_blend(model, v.vectors, targets, idx, r, predicted=predicted, scales=scales)
        == parts
    )
    liked = set(idx[r > xm.params.negative_at].tolist())
    assert any(parts)
    for reasons in parts:
        assert {j for j, _ in reasons} <= liked
        shares = [s for _, s in reasons]
        assert shares == sorted(shares, reverse=True) and all(0 < s <= 1 for s in shares)


def test_artifact_round_trip_names_the_ease_model_and_refuses_bad_shapes(tmp_path: Path) -> None:
    *_, arrays, params = _toy()
    version = artifacts.save_model(tmp_path, arrays, {"params": params})
    art = artifacts.load_model(tmp_path, version)
    assert art.manifest["models"] == ["explicit", "ranking", "ease"]
    np.testing.assert_array_equal(art.ease_B, arrays["ease_B"])
    np.testing.assert_array_equal(art.ease_items, arrays["ease_items"])
    bad = dict(arrays, ease_B=arrays["ease_B"][:, :-1])
    with pytest.raises(artifacts.ArtifactError, match="ease_B"):
        artifacts.validate_arrays(bad)
    with pytest.raises(artifacts.ArtifactError, match="both"):
        artifacts.validate_arrays({k: v for k, v in arrays.items() if k != "ease_items"})
    diag = arrays["ease_B"].copy()
    diag[0, 0] = 0.5
    with pytest.raises(artifacts.ArtifactError, match="diagonal"):
        artifacts.validate_arrays(dict(arrays, ease_B=diag))


def test_ease_without_ranking_factors_orders_by_rating_when_no_star_is_known() -> None:
    _, inter, *_, arrays, params = _toy()
    plain = {k: v for k, v in arrays.items() if k not in ("rank_X", "rank_Y")}
    only_ease = build_serving_model(version="v2", manifest={"params": params}, arrays=plain)
    assert only_ease.has_ranking and only_ease.Y is None
    rated = _user_ratings(only_ease, inter, 3)
    unknown = UserRatings(rated.movie_ids, np.full(len(rated), np.nan, np.float32))
    user = service.resolve_user(only_ease, int(only_ease.users.ids[3]), unknown).vectors
    assert user is not None
    n = only_ease.n_items
    scored = service._scores(only_ease, user, "ranking", n)
    assert scored.order == "rating"
    assert scored.best.tolist() == ranking.top_k(scored.predicted, n).tolist()
    assert np.array_equal(scored.scores, scored.predicted[scored.best])
    known = service.resolve_user(only_ease, int(only_ease.users.ids[3]), rated).vectors
    assert known is not None
    scored = service._scores(only_ease, known, "ranking", n)
    assert scored.order == "ranking"
    want = ease.blend_ranking(
        None, known.ease_scores, scored.predicted, only_ease.blend, genre=known.genre_scores
    )
    assert known.genre_scores is not None
    np.testing.assert_allclose(scored.scores, want[scored.best], atol=1e-4)
    assert scored.best.tolist() == np.argsort(-want, kind="stable").tolist()


@pytest.mark.parametrize("n_rated", [2, 14], ids=["gathered rows of B", "all of B"])
def test_both_product_paths_give_the_reference_ease_parts(n_rated: int) -> None:
    """A light rater is scored through the gathered rows of B, one who rated nearly every
    covered movie through all of B; both equal ease.score_items / rating_correction."""
    model, *_, xm, _, _ = _toy()
    assert model.ease is not None and xm.items.size == 15
    rng = np.random.default_rng(n_rated)
    idx = np.sort(rng.choice(15, n_rated, replace=False)).astype(np.int64)
    stars = rng.choice(np.arange(1, 11) / 2, n_rated).astype(np.float32)
    b_u = 0.3
    scores, correction = ranking.ease_vectors(model, idx, stars, b_u)
    assert scores is not None and correction is not None
    np.testing.assert_allclose(scores, ease.score_items(xm, idx, stars, 15), atol=1e-5)
    want = ease.rating_correction(xm, idx, stars, model.mu, b_u, model.item_bias64, 15)
    np.testing.assert_allclose(correction, want, atol=1e-5)
