"""ranking.ranked_top_k: the list from the movies whose Cauchy–Schwarz bound can reach it is the
list of the full computation, on a fitted model big enough for the bound to be used."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest
from movierec_common import als, ease
from recommender_api import ranking
from recommender_api.ranking import ServingModel, build_serving_model

from tests.support.toy_model import explicit_arrays

N_USERS, N_ITEMS = 400, 9000


@cache
def _model() -> tuple[ServingModel, als.Interactions]:
    """Long-tailed synthetic ratings (a few popular movies, most rated once or never) on more
    movies than `BOUND_MIN_ITEMS`, with all three served models fitted and random genres (one
    to three of eight per movie, some movies none) for the genre part."""
    rng = np.random.default_rng(11)
    weight = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.7
    per_user = rng.integers(5, 120, N_USERS)
    users = np.repeat(np.arange(N_USERS), per_user)
    items = rng.choice(N_ITEMS, users.size, p=weight / weight.sum())
    keep = np.unique(users * N_ITEMS + items, return_index=True)[1]
    users, items = users[keep], items[keep]
    stars = rng.choice(np.arange(1, 11) / 2, users.size).astype(np.float32)
    inter, uids, iids = als.index_ratings(users + 1, items + 1, stars)
    ep = als.ExplicitParams(rank=4, reg=0.1, iterations=4)
    ip = als.ImplicitParams(rank=16, reg=1.0, alpha=2.0, iterations=4)
    xp = ease.EaseParams(reg=30.0, min_count=3)
    arrays = {
        **explicit_arrays(als.fit_explicit(inter, ep), inter, uids, iids),
        "rank_X": (im := als.fit_implicit(inter, ip)).X,
        "rank_Y": im.Y,
    }
    xm = ease.fit_ease(inter, xp)
    arrays |= {"ease_B": xm.B, "ease_items": xm.items}
    genres = (rng.random((N_ITEMS, 8)) < 0.2).astype(np.uint8)
    genres[rng.random(N_ITEMS) < 0.05] = 0
    arrays["item_genres"] = genres[iids - 1]
    params = {"explicit": ep.to_dict(), "ranking": ip.to_dict(), "ease": xp.to_dict()}
    model = build_serving_model(version="v", manifest={"params": params}, arrays=arrays)
    assert model.n_items >= ranking.BOUND_MIN_ITEMS and model.ease is not None
    assert model.genre_rows is not None
    return model, inter


def _user(model: ServingModel, inter: als.Interactions, u: int) -> tuple:
    rated = inter.item_idx[inter.user_idx == u]
    vectors = ranking.trained_user(model, int(model.users.ids[u]))
    assert vectors is not None
    vectors = ranking.with_ease(model, vectors, rated, inter.rating[inter.user_idx == u])
    return vectors, rated.astype(np.int64)


def _full(model, vectors, k, exclude=None, allowed=None):
    scores, scales = ranking.blended_scores(model, vectors)
    best = ranking.top_k(scores, k, exclude=exclude, allowed=allowed)
    return best, scores[best], scales


BLENDS = {
    "ALS + EASE + stars": ease.DEFAULT_BLEND,
    "ALS + EASE + stars + popularity": dataclasses.replace(ease.DEFAULT_BLEND, popularity=0.3),
    "ALS + EASE + stars − popularity": dataclasses.replace(ease.DEFAULT_BLEND, popularity=-0.2),
    "ALS + popularity": ease.BlendParams(als=0.8, ease=0.0, stars=0.0, popularity=0.5, genre=0.0),
    "ALS + genres": ease.BlendParams(als=0.8, ease=0.0, stars=0.0, genre=0.6),
    "ALS + EASE + stars, no genre part": dataclasses.replace(ease.DEFAULT_BLEND, genre=0.0),
    "ALS alone": None,
}


@pytest.mark.parametrize("k", [1, 10, 60])
@pytest.mark.parametrize("blend", BLENDS.values(), ids=BLENDS.keys())
def test_the_bounded_list_is_the_full_list(k: int, blend: ease.BlendParams | None) -> None:
    model, inter = _model()
    blended = blend is not None
    model = (
        dataclasses.replace(model, blend=blend)
        if blended
        else dataclasses.replace(model, ease=None)
    )
    for u in range(0, N_USERS, 7):
        vectors, rated = _user(model, inter, u)
        assert (vectors.ease_scores is not None) == blended
        want, want_scores, want_scales = _full(model, vectors, k, exclude=rated)
        got = ranking.ranked_top_k(model, vectors, k, exclude=rated)
        assert got.best.tolist() == want.tolist(), u
        np.testing.assert_allclose(got.scores, want_scores, rtol=1e-5, atol=1e-5)
        if blended:
            assert got.scales is not None and want_scales is not None
            for name in ("als", "ease", "stars", "genre"):
                assert getattr(got.scales, name) == pytest.approx(getattr(want_scales, name))
            assert (want_scales.genre is not None) == (blend.genre != 0)
            if blend.genre:  # the full order's genre part is really there
                without = dataclasses.replace(model, blend=dataclasses.replace(blend, genre=0))
                gap = (
                    ranking.blended_scores(model, vectors)[0]
                    - ranking.blended_scores(without, vectors)[0]
                )
                assert vectors.genre_scores is not None
                want_gap = blend.genre * ease.standardize(vectors.genre_scores.astype(np.float64))
                np.testing.assert_allclose(gap, want_gap, atol=1e-4)
            if blend.popularity:  # the full order's popularity part is really there
                without = dataclasses.replace(model, blend=dataclasses.replace(blend, popularity=0))
                gap = (
                    ranking.blended_scores(model, vectors)[0]
                    - ranking.blended_scores(without, vectors)[0]
                )
                pop = ease.standardize(np.log1p(model.item_counts.astype(np.float64)))
                np.testing.assert_allclose(gap, blend.popularity * pop, atol=1e-4)
        else:
            assert got.scales is None


def test_a_genre_filter_and_caller_exclusions_are_honoured() -> None:
    model, inter = _model()
    rng = np.random.default_rng(5)
    allowed = np.sort(rng.choice(model.n_items, 900, replace=False))
    for u in range(3, N_USERS, 11):
        vectors, rated = _user(model, inter, u)
        exclude = np.union1d(rated, rng.choice(model.n_items, 40, replace=False))
        want = _full(model, vectors, 10, exclude=exclude, allowed=allowed)[0]
        got = ranking.ranked_top_k(model, vectors, 10, exclude=exclude, allowed=allowed)
        assert got.best.tolist() == want.tolist()
        assert set(got.best.tolist()) <= set(allowed.tolist())
        assert not set(got.best.tolist()) & set(exclude.tolist())
    # Fewer allowed movies than asked for: all of them, in order.
    few = allowed[:5]
    vectors, rated = _user(model, inter, 0)
    got = ranking.ranked_top_k(model, vectors, 10, exclude=rated, allowed=few)
    assert got.best.tolist() == _full(model, vectors, 10, exclude=rated, allowed=few)[0].tolist()


def test_the_bound_skips_most_products(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the bound: most movies' x_u·y_i are never computed (counted through the
    rows of Y the exact scores read)."""
    model, inter = _model()
    read: list[int] = []

    class CountingY(np.ndarray):
        def __getitem__(self, idx):  # type: ignore[override]
            if isinstance(idx, np.ndarray):
                read.append(int(idx.size))
            return np.asarray(super().__getitem__(idx))

    counted = dataclasses.replace(model, Y=model.Y.view(CountingY))
    for u in range(0, N_USERS, 5):
        vectors, rated = _user(model, inter, u)
        ranking.ranked_top_k(counted, vectors, 10, exclude=rated)
    per_list = sum(read) / len(range(0, N_USERS, 5))
    assert 10 <= per_list < model.n_items / 4, per_list
