"""Trained users' parts precomputed at load (ranking.TrainedUserParts: EASE's x_u·B and d_u·B,
the explanation's W⁻¹): the served values and reasons are those computed per request, with and
without ratings made since the model, and the memory budget holds the heaviest raters first."""

from __future__ import annotations

import numpy as np
import pytest
from recommender_api import ranking, service
from recommender_api.movies import MovieCatalog
from recommender_api.ranking import build_serving_model
from recommender_api.repository import UserRatings

from tests.unit.recommender_api.test_ease_serving import _toy


def _with_rated_lists(budget_bytes: int, every_other: bool = False):
    """The toy EASE model with the artifact's rated lists (movieIds and stars per user); with
    `every_other`, EASE's weights cut to every other movie it covers (the rest uncovered, as
    in a catalogue larger than EASE's cap)."""
    model, inter, *_, arrays, params = _toy()
    if every_other:
        keep = np.arange(0, np.asarray(arrays["ease_items"]).size, 2)
        arrays = {
            **arrays,
            "ease_B": np.asarray(arrays["ease_B"])[np.ix_(keep, keep)],
            "ease_items": np.asarray(arrays["ease_items"])[keep],
        }
    u, i, r = inter.user_idx, inter.item_idx, inter.rating
    order = np.lexsort((model.items.ids[i], u))
    indptr = np.zeros(inter.n_users + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=inter.n_users), out=indptr[1:])
    arrays = {
        **arrays,
        "rated_indptr": indptr,
        "rated_movie_ids": model.items.ids[i][order].astype(np.int64),
        "rated_stars": r[order].astype(np.float32),
        "rated_since": np.asarray(1_000, np.int64),
    }
    manifest = {"params": params}
    plain = build_serving_model(version="v1", manifest=manifest, arrays=arrays)
    parts = build_serving_model(
        version="v1", manifest=manifest, arrays=arrays, user_parts_bytes=budget_bytes
    )
    return plain, parts, inter


def _current(model, u: int, changes: dict[int, float]) -> UserRatings:
    """User row u's data ratings with `changes` (movieId → stars) applied, sorted by movieId."""
    stars = dict(zip(model.rated_in_data(u).tolist(), model.stars_in_data(u).tolist(), strict=True))
    stars.update(changes)
    ids = np.asarray(sorted(stars), np.int64)
    return UserRatings(ids, np.asarray([stars[m] for m in ids.tolist()], np.float32))


def _served(model, u: int, rated: UserRatings):
    v = service.resolve_user(model, int(model.users.ids[u]), rated).vectors
    assert v is not None and v.ease_scores is not None and v.ease_correction is not None
    return v, ranking.ranking_scores(model, v), ranking.predicted_ratings(model, v)


@pytest.mark.parametrize(
    "change",
    [
        {},  # nothing since the model: the precomputed row as it is
        {"new": 4.5},  # a movie rated since the model (a like)
        {"liked->disliked": 1.0},  # a like turned into a dislike
        {"new": 1.0, "liked->disliked": 0.5},
    ],
)
@pytest.mark.parametrize("every_other", [False, True], ids=["EASE covers all", "every other"])
def test_precomputed_parts_serve_what_the_per_request_product_computes(change, every_other) -> None:
    plain, parts, inter = _with_rated_lists(budget_bytes=10**9, every_other=every_other)
    assert parts.user_parts is not None and parts.user_parts.n_users == inter.n_users
    assert parts.user_parts.ease_scores.shape[1] == plain.ease.items.size
    assert (plain.ease.items.size < plain.n_items) == every_other
    assert plain.user_parts is None
    covered = set(plain.items.ids[plain.ease.items].tolist())
    for u in (3, 17, 29):
        data = dict(
            zip(plain.rated_in_data(u).tolist(), plain.stars_in_data(u).tolist(), strict=True)
        )
        changes: dict[int, float] = {}
        if "new" in change:
            changes[next(m for m in sorted(covered) if m not in data)] = change["new"]
        if "liked->disliked" in change:
            liked = [m for m, s in sorted(data.items()) if s > 2.0 and m in covered]
            changes[liked[0]] = change["liked->disliked"]
        rated = _current(plain, u, changes)
        want_v, want_scores, want_stars = _served(plain, u, rated)
        got_v, got_scores, got_stars = _served(parts, u, rated)
        np.testing.assert_allclose(got_v.ease_scores, want_v.ease_scores, atol=1e-5)
        np.testing.assert_allclose(got_v.ease_correction, want_v.ease_correction, atol=1e-5)
        np.testing.assert_allclose(got_scores, want_scores, atol=1e-4)
        np.testing.assert_allclose(got_stars, want_stars, atol=1e-5)
        if changes:  # the change moved the values: the difference was applied, not ignored
            _, _, before = _served(parts, u, _current(plain, u, {}))
            assert np.abs(got_stars - before).max() > 1e-3


def test_the_precomputed_rows_are_never_written_by_a_request() -> None:
    _, parts, _ = _with_rated_lists(budget_bytes=10**9)
    assert parts.user_parts is not None
    before = parts.user_parts.ease_scores.copy()
    u = 5
    data = dict(zip(parts.rated_in_data(u).tolist(), parts.stars_in_data(u).tolist(), strict=True))
    new = next(m for m in parts.items.ids[parts.ease.items].tolist() if m not in data)
    _served(parts, u, _current(parts, u, {new: 5.0}))
    np.testing.assert_array_equal(parts.user_parts.ease_scores, before)
    with pytest.raises(ValueError):
        parts.user_parts.ease_scores[0, 0] = 1.0


def test_the_budget_holds_the_heaviest_raters_and_the_rest_are_computed_per_request() -> None:
    plain, _, _ = _with_rated_lists(budget_bytes=0)
    k = plain.Y64.shape[1]
    # EASE's two vectors are held over the movies it covers only (0 elsewhere)
    per_user = 2 * plain.ease.items.size * 4 + k * k * 8
    _, parts, _ = _with_rated_lists(budget_bytes=5 * per_user + per_user // 2)
    assert parts.user_parts is not None and parts.user_parts.n_users == 5
    assert parts.user_parts.ease_scores.shape == (5, plain.ease.items.size)
    counts = np.diff(parts.rated_indptr)
    held = np.flatnonzero(parts.user_parts.slot >= 0)
    assert counts[held].min() >= np.sort(counts)[-5]
    others = np.flatnonzero(parts.user_parts.slot < 0)
    for u in (held[0], others[0]):
        rated = _current(plain, int(u), {})
        np.testing.assert_allclose(
            _served(parts, int(u), rated)[1], _served(plain, int(u), rated)[1], atol=1e-4
        )
    # less than one user's rows: nothing precomputed
    _, none, _ = _with_rated_lists(budget_bytes=per_user - 1)
    assert none.user_parts is None


def test_reasons_from_the_precomputed_inverse_are_the_solved_ones() -> None:
    plain, parts, _ = _with_rated_lists(budget_bytes=10**9)
    assert parts.user_parts is not None and parts.user_parts.w_inv is not None
    catalog = MovieCatalog.from_docs([])
    for u in (2, 13, 31):
        user_id = int(plain.users.ids[u])
        w_inv = ranking.trained_w_inv(parts, user_id)
        assert w_inv is not None
        idx, found = plain.items.take(plain.rated_in_data(u))
        stars = plain.stars_in_data(u)[found]
        targets = np.arange(plain.n_items)
        np.testing.assert_allclose(
            ranking.ranking_contributions(parts, targets, idx, stars, w_inv),
            ranking.ranking_contributions(plain, targets, idx, stars),
            rtol=1e-5,
            atol=1e-6,
        )
        rated = _current(plain, u, {})
        for order in ("ranking", "rating"):
            got = service.recommend(parts, catalog, user_id, rated, k=8, order=order)
            want = service.recommend(plain, catalog, user_id, rated, k=8, order=order)
            assert [i["movieId"] for i in got["items"]] == [i["movieId"] for i in want["items"]]
            assert [i["because"] for i in got["items"]] == [i["because"] for i in want["items"]]
            assert any(i["because"] for i in got["items"])  # reasons were given at all
    # a folded-in user (not in the model) never uses a trained user's inverse
    assert ranking.trained_w_inv(parts, 10**9) is None
