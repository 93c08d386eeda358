"""ranking.py: id maps, top-k, scoring, fold-in glue and cosine neighbours on small known data."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_common import als
from recommender_api import ranking, service
from recommender_api.movies import MovieCatalog
from recommender_api.ranking import IdIndex
from recommender_api.repository import UserRatings

from tests.support.toy_model import toy_model


def test_id_index_maps_found_ids_and_reports_missing_ones() -> None:
    idx = IdIndex(np.array([40, 10, 30, 20]))
    rows, found = idx.take([30, 99, 10, 5, 40])
    assert found.tolist() == [True, False, True, False, True]
    assert rows.tolist() == [2, 1, 0]
    assert idx.get(20) == 3
    assert idx.get(21) is None
    assert idx.take([])[0].size == 0


@pytest.mark.parametrize(
    "ids",
    [np.array([40, 10, 30, 20, 0]), np.array([5, -3, 10**12, 7])],
    ids=["dense table", "binary search (negative, huge ids)"],
)
def test_id_index_paths_agree_with_a_dict(ids: np.ndarray) -> None:
    idx = IdIndex(ids)
    assert (idx._table is not None) == bool(ids.min() >= 0)
    row_of = {int(v): i for i, v in enumerate(ids)}
    rng = np.random.default_rng(1)
    q = np.concatenate([ids, rng.integers(-50, 60, 200), [-1, 10**13, 41, 10**12 + 1]])
    rows, found = idx.take(q)
    assert found.tolist() == [int(v) in row_of for v in q]
    assert rows.tolist() == [row_of[int(v)] for v in q if int(v) in row_of]
    assert rows.dtype == np.int64


def test_id_index_rejects_duplicates() -> None:
    with pytest.raises(ValueError):
        IdIndex(np.array([1, 2, 2]))


def test_top_k_orders_best_first_and_honours_exclusion_and_allowed() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8], dtype=np.float32)
    assert ranking.top_k(scores, 3).tolist() == [1, 5, 3]
    assert ranking.top_k(scores, 3, exclude=np.array([1, 3])).tolist() == [5, 2, 4]
    assert ranking.top_k(scores, 10, allowed=np.array([0, 2, 4])).tolist() == [2, 4, 0]
    allowed = np.array([0, 2, 4])
    assert ranking.top_k(scores, 2, exclude=np.array([2]), allowed=allowed).tolist() == [4, 0]
    # Everything excluded: empty, never an excluded item padded in.
    assert ranking.top_k(scores, 3, exclude=np.arange(6)).size == 0
    # k larger than the candidates returns all of them, sorted.
    assert ranking.top_k(scores, 100, exclude=np.array([0])).tolist() == [1, 5, 3, 2, 4]


def test_top_k_matches_full_sort_on_random_scores() -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal(5000).astype(np.float32)
    excl = rng.choice(5000, 300, replace=False)
    got = ranking.top_k(scores, 25, exclude=excl)
    masked = scores.copy()
    masked[excl] = -np.inf
    assert got.tolist() == np.argsort(-masked, kind="stable")[:25].tolist()
    assert not set(got.tolist()) & set(excl.tolist())


def test_fold_in_of_a_trained_user_reproduces_both_vectors_and_scores() -> None:
    model, inter, em, im = toy_model()
    assert model.explicit_params.rank == 4 and model.implicit_params.alpha == 2.0
    u = 5
    mask = inter.user_idx == u
    folded = ranking.fold_in(model, inter.item_idx[mask], inter.rating[mask])
    trained = ranking.trained_user(model, int(model.users.ids[u]))
    assert folded is not None and trained is not None and folded.folded_in
    np.testing.assert_allclose(folded.b_u, em.user_bias[u], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(folded.p_u, em.P[u], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(folded.x_u, im.X[u], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        ranking.predicted_ratings(model, folded),
        ranking.predicted_ratings(model, trained),
        atol=1e-4,
    )
    assert ranking.fold_in(model, np.array([], np.int32), np.array([], np.float32)) is None


def test_predicted_ratings_are_the_explicit_formula() -> None:
    model, _, em, _ = toy_model()
    user = ranking.trained_user(model, int(model.users.ids[3]))
    assert user is not None
    want = em.mu + em.user_bias[3] + em.item_bias + em.Q @ em.P[3]
    np.testing.assert_allclose(ranking.predicted_ratings(model, user), want, atol=1e-4)
    np.testing.assert_allclose(ranking.ranking_scores(model, user), model.Y @ model.X[3])
    assert ranking.clip_rating(np.array([-1.0, 3.3, 7.0])).tolist() == pytest.approx(
        [0.5, 3.3, 5.0]
    )


def test_model_without_ranking_factors_has_no_ranking_scores() -> None:
    model, _, _, _ = toy_model(ranking_factors=False)
    assert not model.has_ranking and model.sim_source == "explicit"
    user = ranking.trained_user(model, int(model.users.ids[0]))
    assert user is not None and user.x_u is None
    with pytest.raises(ValueError):
        ranking.ranking_scores(model, user)
    folded = ranking.fold_in(model, np.array([0, 1], np.int32), np.array([4, 5], np.float32))
    assert folded is not None and folded.x_u is None


def test_similar_is_cosine_without_itself_or_rarely_rated_items() -> None:
    model, _inter, _, _ = toy_model(min_ratings=0)
    i = 2
    idx, sims = ranking.similar(model, i, 5)
    assert i not in idx.tolist()
    unit = model.sim_unit
    want = unit @ unit[i]
    want[i] = -np.inf
    assert idx.tolist() == np.argsort(-want, kind="stable")[:5].tolist()
    np.testing.assert_allclose(sims, want[idx], atol=1e-6)
    assert np.all(np.diff(sims) <= 1e-7)

    counts = model.item_counts
    threshold = int(np.median(counts)) + 1
    strict, _, _, _ = toy_model(min_ratings=threshold)
    idx, _ = ranking.similar(strict, i, 20)
    assert idx.size > 0
    assert np.all(counts[idx] >= threshold)


def test_choose_similar_source() -> None:
    assert ranking.choose_similar_source("auto", True) == "blend"
    assert ranking.choose_similar_source("ranking", True) == "ranking"
    assert ranking.choose_similar_source("auto", False) == "explicit"
    assert ranking.choose_similar_source("ranking", False) == "explicit"
    assert ranking.choose_similar_source("explicit", True) == "explicit"


def test_unknown_manifest_params_are_ignored_not_fatal() -> None:
    values = {"rank": 4, "reg": 0.2, "some_future_knob": 3}
    params = ranking._params_from(als.ExplicitParams, values, als.DEFAULT_EXPLICIT)
    assert params.rank == 4 and params.reg == 0.2


def test_whiten_makes_the_gram_matrix_identity() -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((200, 6)) @ np.diag([10, 5, 2, 1, 0.5, 0.1])
    w = ranking.whiten(y)
    np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-8)


def test_blend_similarity_is_the_weighted_mean_of_the_two_cosines() -> None:
    rng = np.random.default_rng(2)
    q, y = rng.standard_normal((50, 4)), rng.standard_normal((50, 3))
    blend = ranking.similarity_vectors("blend", q, y)
    w = ranking.BLEND_EXPLICIT_WEIGHT
    cq = ranking.unit_rows(q) @ ranking.unit_rows(q)[7]
    wy = ranking.unit_rows(ranking.whiten(y))
    want = w * cq + (1 - w) * (wy @ wy[7])
    np.testing.assert_allclose(blend @ blend[7], want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(blend, axis=1), 1.0, atol=1e-5)
    assert ranking.similarity_vectors("blend", q, None).shape == (50, 4)


# --- service.py: which strategy, what gets excluded --------------------------------------


def _catalog_for(model) -> MovieCatalog:
    ids = model.items.ids.tolist()
    docs = [
        {
            "movieId": m,
            "title": f"m{m}",
            "year": 2000,
            "genres": ["Comedy"] if n % 2 == 0 else ["Drama"],
            "rating_count": 100 - n,
            "popularity_score": 5.0 - n * 0.1,
        }
        for n, m in enumerate(ids)
    ]
    return MovieCatalog.from_docs(docs)


def test_service_picks_personalized_fold_in_or_popular() -> None:
    model, inter, _, _ = toy_model()
    catalog = _catalog_for(model)
    known = int(model.users.ids[2])
    mask = inter.user_idx == 2
    rated = UserRatings(model.items.ids[inter.item_idx[mask]], inter.rating[mask])
    out = service.recommend(model, catalog, known, rated, k=3)
    assert out["strategy"] == "personalized" and out["order"] == "ranking"
    assert not {i["movieId"] for i in out["items"]} & set(rated.movie_ids.tolist())
    clone = service.recommend(model, catalog, 10**9, rated, k=3)
    assert clone["strategy"] == "fold-in"
    assert [i["movieId"] for i in clone["items"]] == [i["movieId"] for i in out["items"]]
    only_new = UserRatings(np.array([424242], np.int64), np.array([4.0], np.float32))
    cold = service.recommend(model, catalog, 10**9, only_new, k=3)
    assert cold["strategy"] == "popular" and cold["order"] == "popularity"
    assert [i["movieId"] for i in cold["items"]] == catalog.popular_ids[:3].tolist()
    nothing = service.recommend(None, catalog, known, rated, k=4, genre="Drama")
    assert nothing["strategy"] == "popular" and nothing["model_version"] is None
    assert all(i["genres"] == ["Drama"] for i in nothing["items"])
    assert not {i["movieId"] for i in nothing["items"]} & set(rated.movie_ids.tolist())


def test_service_genre_and_exclude_for_a_personalized_list() -> None:
    model, _, _, _ = toy_model()
    catalog = _catalog_for(model)
    user = int(model.users.ids[0])
    empty = UserRatings(np.empty(0, np.int64), np.empty(0, np.float32))
    full = service.recommend(model, catalog, user, empty, k=12, order="rating")
    ids = [i["movieId"] for i in full["items"]]
    assert full["order"] == "rating" and len(ids) == 12
    cut = service.recommend(model, catalog, user, empty, k=12, exclude=ids[:2], order="rating")
    assert [i["movieId"] for i in cut["items"]] == ids[2:]
    comedy = service.recommend(model, catalog, user, empty, k=12, genre="Comedy")
    assert comedy["items"] and all(i["genres"] == ["Comedy"] for i in comedy["items"])
    for item in full["items"]:
        assert 0.5 <= item["predicted_rating"] <= 5.0


def test_top_k_breaks_ties_by_index_whatever_k() -> None:
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 6, 400).astype(np.float32)  # heavy ties everywhere
    excl = rng.choice(400, 40, replace=False)
    masked = scores.copy()
    masked[excl] = -np.inf
    ref = np.argsort(-masked, kind="stable")
    for k in (1, 5, 37, 64, 200, 360):
        assert ranking.top_k(scores, k, exclude=excl).tolist() == ref[:k].tolist()
    big = ranking.top_k(scores, 100, exclude=excl)
    assert ranking.top_k(scores, 10, exclude=excl).tolist() == big[:10].tolist()
    allowed = np.arange(0, 400, 3)
    ref_allowed = allowed[np.argsort(-scores[allowed], kind="stable")]
    assert ranking.top_k(scores, 20, allowed=allowed).tolist() == ref_allowed[:20].tolist()


# --- low ratings as evidence against, and "because you rated …" -----------------------------


def test_explanations_are_an_exact_split_of_both_scores() -> None:
    model, inter, _, _ = toy_model()
    mask = inter.user_idx == 4
    idx, stars = inter.item_idx[mask].astype(np.int64), inter.rating[mask]
    user = ranking.fold_in(model, idx, stars)
    assert user is not None
    targets = np.arange(model.n_items)
    rank_parts = ranking.ranking_contributions(model, targets, idx, stars)
    np.testing.assert_allclose(rank_parts.sum(axis=1), model.Y64 @ user.x_u, atol=1e-4)
    exp_parts = ranking.explicit_contributions(model, user, targets, idx, stars)
    np.testing.assert_allclose(exp_parts.sum(axis=1), model.Q64 @ user.p_u, atol=1e-4)
    # Evidence against never explains a recommendation.
    low = stars <= model.implicit_params.negative_at
    assert low.any() and np.all(rank_parts[:, low] == 0)
    reasons_all = ranking.explain_ranking(model, targets, idx, stars)
    for reasons, row in zip(reasons_all, rank_parts, strict=True):
        shares = [s for _, s in reasons]
        assert shares == sorted(shares, reverse=True) and all(0 < s <= 1 for s in shares)
        if reasons:
            best = int(np.argmax(row))
            assert reasons[0][0] == int(idx[best])


def test_service_lists_say_because_you_rated() -> None:
    model, inter, _, _ = toy_model()
    catalog = _catalog_for(model)
    mask = inter.user_idx == 2
    rated = UserRatings(model.items.ids[inter.item_idx[mask]], inter.rating[mask])
    for order in ("ranking", "rating"):
        out = service.recommend(model, catalog, 10**9, rated, k=4, order=order)
        assert out["strategy"] == "fold-in"
        for item in out["items"]:
            assert item["because"], item
            for reason in item["because"]:
                assert reason["movieId"] in rated.movie_ids.tolist()
                assert reason["title"] == f"m{reason['movieId']}"
    cold = UserRatings(np.array([424242], np.int64), np.array([4.0], np.float32))
    popular = service.recommend(model, catalog, 10**9, cold, k=3)
    assert popular["items"] and all(i["because"] == [] for i in popular["items"])


def test_a_user_who_only_disliked_starts_from_the_average_user_and_moves_away() -> None:
    model, _, _, _ = toy_model()
    catalog = _catalog_for(model)
    ids = model.items.ids[:3]
    hated = ranking.fold_in(model, np.arange(3), np.full(3, 0.5, np.float32))
    assert hated is not None and np.any(hated.x_u)
    # Relative to the average user, every disliked movie's score goes down.
    avg = model.Y64 @ model.x_mean
    assert np.all(model.Y64[:3] @ hated.x_u < avg[:3])
    hater = service.recommend(
        model, catalog, 10**9, UserRatings(ids, np.full(3, 0.5, np.float32)), k=5
    )
    fan = service.recommend(
        model, catalog, 10**9, UserRatings(ids, np.full(3, 5.0, np.float32)), k=5
    )
    assert hater["order"] == fan["order"] == "ranking"
    assert [i["movieId"] for i in hater["items"]] != [i["movieId"] for i in fan["items"]]
    assert all(i["because"] == [] for i in hater["items"])  # nothing they liked explains it


def test_co_rating_neighbours_are_the_asymmetric_cosine_and_sampled_for_heavy_movies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(9)
    n_users, n_items = 300, 40
    dense = rng.random((n_users, n_items)) < np.linspace(0.02, 0.6, n_items)[None, :]
    item_ids = np.arange(n_items) * 7 + 3
    indptr = np.concatenate([[0], np.cumsum(dense.sum(axis=1))]).astype(np.int64)
    movie_ids = np.concatenate([item_ids[np.flatnonzero(row)] for row in dense])
    co = ranking.CoRated.build(indptr, movie_ids, IdIndex(item_ids))
    counts = dense.sum(axis=0).astype(np.float64)
    for i in (0, 17, 39):
        both = (dense[:, i][:, None] & dense).sum(axis=0).astype(np.float64)
        want = both / (np.sqrt(counts[i]) * counts**ranking.COOC_POWER + ranking.COOC_SHRINK)
        want[both == 0] = -np.inf
        np.testing.assert_allclose(co.similarity(i), want)
        assert np.all(co.similarity(i)[np.isfinite(want)] < 1)
    # A heavy movie is compared through a strided sample of its raters, rescaled: an unbiased
    # estimate, close to the exact value where the co-rating support is large.
    monkeypatch.setattr(ranking, "COOC_MAX_USERS", int(counts[39]) // 2 + 1)
    heavy = co.similarity(39)
    both = (dense[:, 39][:, None] & dense).sum(axis=0)
    exact = both / (np.sqrt(counts[39]) * counts**ranking.COOC_POWER + ranking.COOC_SHRINK)
    big = both >= 80
    assert big.sum() >= 5
    np.testing.assert_allclose(heavy[big], exact[big], rtol=0.35)
    assert not np.allclose(heavy[big], exact[big])  # it did sample


@pytest.mark.parametrize("missing", [False, True])
def test_co_rating_index_in_slices_is_the_one_pass_transpose(
    monkeypatch: pytest.MonkeyPatch, missing: bool
) -> None:
    """The index is built a slice at a time (lookups and the item side); the result is the
    plain construction's, with or without rated movies the model has no row for."""
    rng = np.random.default_rng(4)
    n_users, n_items = 120, 50
    dense = rng.random((n_users, n_items)) < rng.random(n_items)[None, :] * 0.5
    dense[7] = False  # a user with no ratings
    item_ids = np.arange(n_items) * 3 + 1
    indptr = np.concatenate([[0], np.cumsum(dense.sum(axis=1))]).astype(np.int64)
    movie_ids = np.concatenate([item_ids[np.flatnonzero(row)] for row in dense]).astype(np.int32)
    model_ids = item_ids[item_ids % 2 == 1] if missing else item_ids
    index = IdIndex(model_ids)
    monkeypatch.setattr(ranking, "TAKE_SLICE", 37)
    monkeypatch.setattr(ranking, "TRANSPOSE_SLICE", 25)
    co = ranking.CoRated.build(indptr, movie_ids, index)
    rows, found = index.take(movie_ids)
    user_of = np.repeat(np.arange(n_users), np.diff(indptr))[found]
    assert co.complete is not missing
    np.testing.assert_array_equal(co.user_items, rows)
    np.testing.assert_array_equal(co.user_indptr, als.row_pointers(user_of, n_users))
    np.testing.assert_array_equal(co.item_indptr, als.row_pointers(rows, len(index)))
    np.testing.assert_array_equal(co.item_users, user_of[np.argsort(rows, kind="stable")])


def test_star_codes_keep_half_stars_in_one_byte_and_anything_else_as_float() -> None:
    stars = np.array([0.5, 1.0, 3.5, 5.0], np.float32)
    codes = ranking.star_codes(stars)
    assert codes.dtype == np.uint8 and codes.tolist() == [1, 2, 7, 10]
    assert ranking.star_codes(codes) is codes
    for odd in ([3.25, 4.0], [3.0000002, 4.0], [-0.5, 1.0], [200.0]):
        kept = ranking.star_codes(np.array(odd, np.float32))
        assert kept.dtype == np.float32 and kept.tolist() == np.float32(odd).tolist()
    assert ranking.star_codes(np.empty(0, np.float32)).dtype == np.uint8


def test_a_model_serves_the_artifacts_rated_lists_and_stars_in_its_compact_form() -> None:
    """rated_in_data / stars_in_data / data_ratings give the artifact's lists and stars whether
    the model keeps the movieIds (a rated movie outside the model) or reads them back from the
    co-rating index (every rated movie a model item), and the stars as half-star codes."""
    base, _, _, _ = toy_model()
    rng = np.random.default_rng(1)
    n_users = len(base.users)
    counts = rng.integers(0, 6, n_users)
    for extra in (False, True):
        lists = [np.sort(rng.choice(base.items.ids, c, replace=False)) for c in counts]
        if extra:
            lists[3] = np.append(lists[3], 99_999)  # rated, but not a model item
        stars = [rng.integers(1, 11, len(x)) / 2 for x in lists]

        model = ranking.build_serving_model(
            version="v2",
            manifest={"params": {}},
            arrays={
                "P": base.P,
                "Q": base.Q64,
                "user_bias": base.user_bias,
                "item_bias": base.item_bias64,
                "global_mean": np.asarray(base.mu),
                "user_ids": base.users.ids,
                "item_ids": base.items.ids,
                "item_counts": base.item_counts,
                "rated_indptr": np.concatenate([[0], np.cumsum([len(x) for x in lists])]),
                "rated_movie_ids": np.concatenate(lists).astype(np.int32),
                "rated_since": np.asarray(0),
                "rated_stars": np.concatenate(stars).astype(np.float32),
            },
            similar_factors="cooccurrence",
        )
        assert (model.rated_movie_ids is None) is not extra
        assert model.rated_stars is not None and model.rated_stars.dtype == np.uint8
        for u in range(n_users):
            assert model.rated_in_data(u).tolist() == lists[u].tolist()
            got = model.stars_in_data(u)
            assert got is not None and got.dtype == np.float32
            assert got.tolist() == stars[u].tolist()
            rows = ranking.data_ratings(model, u)
            assert rows is not None
            keep = np.isin(lists[u], base.items.ids)
            assert base.items.ids[rows[0]].tolist() == lists[u][keep].tolist()
            assert rows[1].tolist() == stars[u][keep].tolist()


def test_top_contributions_are_the_largest_positive_shares_ties_to_the_lower_index() -> None:
    """Against the definition (sort each row by value, then rated index), on rows with ties,
    rows with fewer positives than asked, all-negative rows, and a 2,700-rating row."""
    rng = np.random.default_rng(7)
    shapes = [(int(rng.integers(0, 12)), int(rng.integers(1, 40))) for _ in range(500)]
    for n_t, n_r in [*shapes, (10, 2700)]:
        top = int(rng.integers(1, 5))
        contrib = rng.normal(size=(n_t, n_r)).round(int(rng.integers(0, 3)))  # ties
        if n_t and rng.random() < 0.2:
            contrib[0] = -1.0
        rated = rng.permutation(10_000)[:n_r]
        got = ranking._top_contributions(contrib, rated, top)
        assert len(got) == n_t
        for row, reasons in zip(contrib, got, strict=True):
            positive = [(-v, j) for j, v in enumerate(row) if v > 0]
            total = sum(v for v in row if v > 0) or 1.0
            want = [(int(rated[j]), -nv / total) for nv, j in sorted(positive)[:top]]
            assert [j for j, _ in reasons] == [j for j, _ in want]
            assert [s for _, s in reasons] == pytest.approx([s for _, s in want], rel=1e-12)


@pytest.mark.parametrize("argmax_up_to", [0, ranking.ARGMAX_TOP_K])
def test_top_k_is_the_first_k_of_a_stable_sort_on_both_paths(
    argmax_up_to: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeated argmax (small k) and argpartition (larger k, or forced here with 0) against the
    definition, with ties, NaN, exclusions and a genre's allowed rows."""
    monkeypatch.setattr(ranking, "ARGMAX_TOP_K", argmax_up_to)
    rng = np.random.default_rng(11)
    for _ in range(1500):
        n, k = int(rng.integers(1, 200)), int(rng.integers(1, 30))
        scores = rng.normal(size=n).round(int(rng.integers(0, 3)))  # ties
        if rng.random() < 0.2:
            scores[rng.integers(0, n, size=3)] = np.nan
        exclude = rng.choice(n, size=int(rng.integers(0, n)), replace=False)
        allowed = np.sort(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
        allowed = allowed if rng.random() < 0.3 else None
        rows = range(n) if allowed is None else allowed.tolist()
        ok = [i for i in rows if i not in set(exclude.tolist()) and np.isfinite(scores[i])]
        want = sorted(ok, key=lambda i: (-np.float32(scores[i]), i))[:k]
        assert ranking.top_k(scores, k, exclude, allowed).tolist() == want
