"""The /api/recs surface against a real uvicorn process, SecantusDB with ml-latest-small, and a
model trained by the kernel on the same data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from movierec_common import als, artifacts
from movierec_common.movielens import load_ratings
from pymongo import MongoClient

from tests.integration.recommender.support import (
    RecsServer,
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
)
from tests.support import free_port

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def csv_ratings(movielens_dir: Path):
    return load_ratings(movielens_dir / "ratings.csv")


def rated_by(csv_ratings, user_id: int) -> set[int]:
    return set(csv_ratings.movie_ids[csv_ratings.user_ids == user_id].tolist())


def _user_rows(art: artifacts.ModelArtifact, user_id: int, ratings):
    """(model rows, stars float64) of `user_id`'s ratings in `ratings`."""
    mine = ratings.user_ids == user_id
    return (
        np.searchsorted(art.item_ids, ratings.movie_ids[mine]),
        ratings.ratings[mine].astype(np.float64),
    )


def _stars(art: artifacts.ModelArtifact, b_u: float, p_u: np.ndarray, rows, stars) -> np.ndarray:
    """μ + b_u + b_i + p_u·q_i, plus with EASE γ·Σ_j B_ji·(r_uj − μ − b_u − b_j) over the rated
    movies EASE covers (γ = the manifest's blend.rating), float64."""
    pred = art.global_mean + b_u + art.item_bias + art.Q @ p_u
    if art.ease_B is not None and art.ease_items is not None:
        gamma = float(art.manifest["params"]["blend"]["rating"])
        d = stars - art.global_mean - b_u - art.item_bias[rows]
        covered = np.isin(rows, art.ease_items)
        pos = np.searchsorted(art.ease_items, rows[covered])
        pred[art.ease_items] += gamma * (d[covered] @ art.ease_B[pos].astype(np.float64))
    return pred


def served_stars(art: artifacts.ModelArtifact, user_id: int, ratings) -> np.ndarray:
    """Independent float64 recomputation of the served stars of a trained user (`_stars` with
    the user's trained b_u, p_u and current ratings)."""
    u = int(np.searchsorted(art.user_ids, user_id))
    return _stars(art, float(art.user_bias[u]), art.P[u], *_user_rows(art, user_id, ratings))


def expected_blend(
    art: artifacts.ModelArtifact, x_u: np.ndarray, b_u: float, p_u: np.ndarray, rows, stars, k
) -> list[int]:
    """Independent float64 recomputation of a served list from the artifact, the user's
    vectors and ratings (model rows, stars): Σ_part w·(s − mean)/std over the movies for the
    parts ALS x_u·y_i, EASE x_u·B (likes 1, ratings ≤ negative_at −negative_weight), the
    served stars, the genre part (the genre rows, each over √(its genre count), of the movies
    rated at or above the user's mean and above 2★, summed and dotted with every movie's row)
    and popularity log(1 + n_i), with the manifest's weights; rated movies excluded."""
    assert art.rank_Y is not None and art.ease_B is not None and art.ease_items is not None
    params = art.manifest["params"]
    blend, ep = params["blend"], params["ease"]
    x = np.where(stars > ep["negative_at"], 1.0, -ep["negative_weight"])
    covered = np.isin(rows, art.ease_items)
    ease_part = np.zeros(art.item_ids.size)
    pos = np.searchsorted(art.ease_items, rows[covered])
    ease_part[art.ease_items] = x[covered] @ art.ease_B[pos].astype(np.float64)
    parts = [
        (blend["als"], art.rank_Y.astype(np.float64) @ x_u),
        (blend["ease"], ease_part),
        (blend["stars"], _stars(art, b_u, p_u, rows, stars)),
        (blend["popularity"], np.log1p(art.item_counts.astype(np.float64))),
    ]
    if art.item_genres is not None:
        g = art.item_genres.astype(np.float64)
        n = g.sum(axis=1, keepdims=True)
        g = np.divide(g, np.sqrt(n), out=np.zeros_like(g), where=n > 0)
        liked = (stars >= stars.mean()) & (stars > 2.0)
        parts.append((blend["genre"], g @ g[rows[liked]].sum(axis=0)))
    score = sum(w * (s - s.mean()) / (s.std() or 1.0) for w, s in parts if w)
    score[rows] = -np.inf
    return art.item_ids[np.argsort(-score, kind="stable")[:k]].tolist()


def expected_served_order(art: artifacts.ModelArtifact, user_id: int, ratings, k: int) -> list[int]:
    """`expected_blend` of a trained user: their trained vectors and current ratings."""
    assert art.rank_X is not None
    u = int(np.searchsorted(art.user_ids, user_id))
    rows, stars = _user_rows(art, user_id, ratings)
    return expected_blend(art, art.rank_X[u], float(art.user_bias[u]), art.P[u], rows, stars, k)


def expected_rating_order(
    model_root: Path, user_id: int, exclude: set[int], k: int, ratings
) -> list[int]:
    """Independent recomputation of the list by served stars (`served_stars`), float64."""
    art = artifacts.load_model(model_root)
    pred = served_stars(art, user_id, ratings)
    mask = np.isin(art.item_ids, list(exclude))
    pred[mask] = -np.inf
    return art.item_ids[np.argsort(-pred, kind="stable")[:k]].tolist()


def insert_ratings(db: SeededDb, user_id: int, pairs: list[tuple[int, float]]) -> None:
    client = MongoClient(db.url)
    try:
        client[db.name].ratings.insert_many(
            [
                {"userId": user_id, "movieId": m, "rating": r, "timestamp": int(time.time())}
                for m, r in pairs
            ]
        )
    finally:
        client.close()


@pytest.mark.parametrize("user", [1, 414, 599])  # 232, 2698 and 2478 ratings
def test_known_user_gets_personalized_ranking_list_without_rated_movies(
    recs: RecsServer, csv_ratings, user: int
) -> None:
    r = recs.client.get(f"/api/recs/users/{user}", params={"k": 10}, headers=recs.service)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "personalized"
    assert body["order"] == "ranking" and body["ranking_model"] is True
    assert body["n_user_ratings"] == len(rated_by(csv_ratings, user))
    items = body["items"]
    assert len(items) == 10
    ids = [it["movieId"] for it in items]
    assert len(set(ids)) == 10
    assert not set(ids) & rated_by(csv_ratings, user)
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    for it in items:
        assert it["title"] and it["genres"] and it["strategy"] == "personalized"
        assert 0.5 <= it["predicted_rating"] <= 5.0


@pytest.mark.parametrize("user", [15, 414])
def test_strategy_rating_reproduces_the_explicit_formula(
    recs: RecsServer, trained: TrainedModel, csv_ratings, user: int
) -> None:
    r = recs.client.get(
        f"/api/recs/users/{user}", params={"k": 20, "strategy": "rating"}, headers=recs.service
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["order"] == "rating"
    got = [it["movieId"] for it in body["items"]]
    want = expected_rating_order(trained.root, user, rated_by(csv_ratings, user), 20, csv_ratings)
    # float32 serving vs float64 reference: allow a swap of near-ties at the tail only.
    assert got[:15] == want[:15]
    assert len(set(got) & set(want)) >= 18


def test_fold_in_of_a_training_user_reproduces_their_list_and_predictions(
    recs: RecsServer, recs_db: SeededDb, csv_ratings
) -> None:
    source, clone = 5, 900_005
    mask = csv_ratings.user_ids == source
    pairs = [
        (int(m), float(x))
        for m, x in zip(csv_ratings.movie_ids[mask], csv_ratings.ratings[mask], strict=True)
    ]
    insert_ratings(recs_db, clone, pairs)
    for order in ("ranking", "rating"):
        a = recs.client.get(
            f"/api/recs/users/{source}", params={"k": 20, "strategy": order}, headers=recs.service
        ).json()
        b = recs.client.get(
            f"/api/recs/users/{clone}", params={"k": 20, "strategy": order}, headers=recs.service
        ).json()
        assert a["strategy"] == "personalized" and b["strategy"] == "fold-in"
        assert b["n_user_ratings"] == len(pairs)
        assert [i["movieId"] for i in b["items"]] == [i["movieId"] for i in a["items"]]
        for x, y in zip(a["items"], b["items"], strict=True):
            assert y["predicted_rating"] == pytest.approx(x["predicted_rating"], abs=2e-3)
            assert y["score"] == pytest.approx(x["score"], rel=1e-3, abs=1e-4)
            assert y["strategy"] == "fold-in"
    pa = recs.client.get(
        "/api/recs/predict", params={"userId": source, "movieId": 1}, headers=recs.service
    ).json()
    pb = recs.client.get(
        "/api/recs/predict", params={"userId": clone, "movieId": 1}, headers=recs.service
    ).json()
    assert pb["strategy"] == "fold-in"
    assert pb["raw_prediction"] == pytest.approx(pa["raw_prediction"], abs=1e-3)


def test_new_user_with_a_few_ratings_is_folded_in(
    recs: RecsServer, recs_db: SeededDb, trained: TrainedModel
) -> None:
    user = 900_100
    pairs = [(1, 5.0), (3114, 5.0), (2355, 4.5), (999_999_999, 3.0)]  # last: not in the model
    insert_ratings(recs_db, user, pairs)
    body = recs.client.get(f"/api/recs/users/{user}", headers=recs.service).json()
    assert body["strategy"] == "fold-in" and len(body["items"]) == 10
    assert body["n_user_ratings"] == 4
    # Independent recomputation: the kernel's fold-in on the published arrays (float64), then
    # the served blend written out (`expected_blend`).
    art = artifacts.load_model(trained.root)
    idx = np.searchsorted(art.item_ids, [1, 3114, 2355])
    stars = np.array([5.0, 5.0, 4.5])
    params = art.manifest["params"]
    x = als.fold_in_implicit(art.rank_Y, idx, stars, als.ImplicitParams(**params["ranking"]))
    b_u, p_u = als.fold_in_explicit(
        art.Q,
        art.item_bias,
        art.global_mean,
        idx,
        stars,
        als.ExplicitParams(**params["explicit"]),
    )
    want = expected_blend(art, x, float(b_u), p_u, idx, stars, 10)
    got = [i["movieId"] for i in body["items"]]
    assert got[:8] == want[:8] and len(set(got) & set(want)) >= 9
    popular = recs.client.get("/api/recs/users/950002", headers=recs.service).json()
    assert got != [i["movieId"] for i in popular["items"]]


def test_ratings_made_after_training_and_exclude_param_are_excluded(
    recs: RecsServer, recs_db: SeededDb, trained: TrainedModel, csv_ratings
) -> None:
    user = 7
    art = artifacts.load_model(trained.root)
    first = recs.client.get(f"/api/recs/users/{user}", headers=recs.service).json()
    top = [i["movieId"] for i in first["items"]]
    want_first = expected_served_order(art, user, csv_ratings, 10)
    assert top[:8] == want_first[:8] and len(set(top) & set(want_first)) >= 9
    insert_ratings(recs_db, user, [(top[0], 4.0), (top[1], 2.0)])
    second = recs.client.get(f"/api/recs/users/{user}", headers=recs.service).json()
    assert second["strategy"] == "personalized"
    ids = [i["movieId"] for i in second["items"]]
    assert top[0] not in ids and top[1] not in ids
    # The same model vectors; EASE's part (no user parameters) already uses the two new
    # ratings, exactly as an independent recomputation from the current ratings says.
    now = type(csv_ratings)(
        user_ids=np.concatenate([csv_ratings.user_ids, [user, user]]),
        movie_ids=np.concatenate([csv_ratings.movie_ids, [top[0], top[1]]]),
        ratings=np.concatenate([csv_ratings.ratings, np.array([4.0, 2.0], np.float32)]),
        timestamps=np.concatenate([csv_ratings.timestamps, [0, 0]]),
    )
    want = expected_served_order(art, user, now, 10)
    assert ids[:8] == want[:8] and len(set(ids) & set(want)) >= 9
    third = recs.client.get(
        f"/api/recs/users/{user}",
        params=[("exclude", f"{ids[0]},{ids[1]}"), ("exclude", str(ids[2]))],
        headers=recs.service,
    ).json()
    assert [i["movieId"] for i in third["items"]][:7] == ids[3:10]


def test_genre_filter_for_personalized_fold_in_and_popular(recs: RecsServer) -> None:
    for user in (1, 900_100, 950_000):
        r = recs.client.get(
            f"/api/recs/users/{user}", params={"genre": "comedy", "k": 15}, headers=recs.service
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["genre"] == "Comedy"
        assert len(body["items"]) == 15
        assert all("Comedy" in i["genres"] for i in body["items"]), body
    bad = recs.client.get("/api/recs/users/1", params={"genre": "Nope"}, headers=recs.service)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_genre"


def test_user_without_ratings_gets_the_damped_mean_popularity_list(
    recs: RecsServer, recs_db: SeededDb
) -> None:
    body = recs.client.get("/api/recs/users/950000", params={"k": 12}, headers=recs.service).json()
    assert body["strategy"] == "popular" and body["order"] == "popularity"
    client = MongoClient(recs_db.url)
    try:
        want = [
            d["movieId"]
            for d in client[recs_db.name]
            .movies.find({}, {"movieId": 1, "popularity_score": 1, "rating_count": 1})
            .sort([("popularity_score", -1), ("rating_count", -1), ("movieId", 1)])
            .limit(12)
        ]
    finally:
        client.close()
    assert [i["movieId"] for i in body["items"]] == want
    assert all(i["strategy"] == "popular" for i in body["items"])


def test_similar_movies_toy_story_lists_toy_story_2(recs: RecsServer, csv_ratings) -> None:
    r = recs.client.get("/api/recs/similar/1", params={"k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [i["movieId"] for i in body["items"]]
    assert 3114 in ids[:3], ids  # issue 20: Toy Story 2 within the top 3 (was #8)
    assert body["factors"] == "cooccurrence" and body["state"] == "ok"
    assert 1 not in ids and len(ids) == 10
    counts = np.bincount(np.searchsorted(np.unique(csv_ratings.movie_ids), csv_ratings.movie_ids))
    uniq = np.unique(csv_ratings.movie_ids)
    for mid in ids:
        assert counts[np.searchsorted(uniq, mid)] >= body["min_ratings"] == 10
    sims = [i["similarity"] for i in body["items"]]
    assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0 for s in sims)
    missing = recs.client.get("/api/recs/similar/999999999")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_movie"


def test_predict_matches_the_formula_and_reports_the_users_rating(
    recs: RecsServer, trained: TrainedModel, csv_ratings
) -> None:
    r = recs.client.get(
        "/api/recs/predict", params={"userId": 1, "movieId": 1}, headers=recs.service
    )
    assert r.status_code == 200, r.text
    body = r.json()
    art = artifacts.load_model(trained.root)
    i = int(np.searchsorted(art.item_ids, 1))
    want = served_stars(art, 1, csv_ratings)[i]
    assert art.ease_B is not None  # the shipped model has the EASE rating term
    assert body["raw_prediction"] == pytest.approx(want, abs=1e-4)
    assert body["predicted_rating"] == pytest.approx(min(5.0, max(0.5, want)), abs=1e-3)
    assert body["strategy"] == "personalized" and body["user_rating"] == 4.0
    cold = recs.client.get(
        "/api/recs/predict", params={"userId": 950001, "movieId": 1}, headers=recs.service
    ).json()
    assert cold["strategy"] == "baseline"
    assert cold["raw_prediction"] == pytest.approx(art.global_mean + art.item_bias[i], abs=1e-4)


def test_batch_returns_one_list_per_user(recs: RecsServer) -> None:
    r = recs.client.post(
        "/api/recs/batch",
        json={"userIds": [1, 2, 950000, 1], "k": 5, "strategy": "rating"},
        headers=recs.service,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["userId"] for x in results] == [1, 2, 950000]
    assert [x["strategy"] for x in results] == ["personalized", "personalized", "popular"]
    single = recs.client.get(
        "/api/recs/users/2", params={"k": 5, "strategy": "rating"}, headers=recs.service
    ).json()
    assert results[1]["items"] == single["items"]
    big = recs.client.post(
        "/api/recs/batch",
        json={"userIds": list(range(1, 1001)), "k": 3},
        headers=recs.service,
        timeout=120,
    )
    assert big.status_code == 200
    assert len(big.json()["results"]) == 1000


def test_model_info_metrics_and_probes(recs: RecsServer, trained: TrainedModel) -> None:
    info = recs.client.get("/api/recs/model").json()
    assert info["strategy"] == "model" and info["version"] == trained.version
    assert info["has_ranking"] is True and info["similar_factors"] == "cooccurrence"
    assert info["trained_at"] and info["load_seconds"] > 0 and info["loaded_at"] > 0
    assert info["n_users"] == 610 and info["n_items"] == 9724
    assert info["last_error"] is None
    assert recs.client.get("/healthz").json() == {"status": "ok"}
    ready = recs.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
    recs.client.get("/api/recs/users/1", headers=recs.service)
    text = recs.client.get("/metrics").text
    assert f'movierec_recs_model_info{{has_ranking="true",version="{trained.version}"}} 1.0' in text
    assert 'route="/api/recs/users/{user_id}"' in text
    assert "movierec_recs_request_seconds_bucket" in text


def test_model_without_ranking_factors_orders_by_rating_and_says_so(
    recs_db: SeededDb,
    trained_explicit_only: TrainedModel,
    tmp_path: Path,
    start_recs_server: StartServer,
) -> None:
    install_version(trained_explicit_only.root, trained_explicit_only.version, tmp_path)
    server = start_recs_server(recs_db, tmp_path, DEFAULT_K="7")
    body = server.client.get("/api/recs/users/1", headers=server.service).json()
    assert body["strategy"] == "personalized" and len(body["items"]) == 7
    assert body["ranking_model"] is False and body["order"] == "rating"
    preds = [i["score"] for i in body["items"]]
    assert preds == sorted(preds, reverse=True)
    info = server.client.get("/api/recs/model").json()
    # Similar movies come from who rated what (the artifact's rated lists), not from factors.
    assert info["has_ranking"] is False and info["similar_factors"] == "cooccurrence"
    sim = server.client.get("/api/recs/similar/1").json()
    assert sim["factors"] == "cooccurrence" and len(sim["items"]) == 7
    assert 1 not in [i["movieId"] for i in sim["items"]]
    server.proc.stop()


def test_without_a_model_popularity_is_served_until_one_is_published(
    recs_db: SeededDb, trained: TrainedModel, tmp_path: Path, start_recs_server: StartServer
) -> None:
    server = start_recs_server(recs_db, tmp_path / "empty")
    info = server.client.get("/api/recs/model").json()
    assert info["strategy"] == "popular" and info["version"] is None
    assert server.client.get("/readyz").status_code == 200
    body = server.client.get("/api/recs/users/1", headers=server.service).json()
    assert body["strategy"] == "popular" and body["model_version"] is None
    assert len(body["items"]) == 10 and all(i["predicted_rating"] is None for i in body["items"])
    assert server.client.get("/api/recs/similar/1").status_code == 503
    assert (
        server.client.get(
            "/api/recs/predict", params={"userId": 1, "movieId": 1}, headers=server.service
        ).json()["error"]["code"]
        == "no_model"
    )
    install_version(trained.root, trained.version, tmp_path / "empty")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if server.client.get("/api/recs/model").json()["version"] == trained.version:
            break
        time.sleep(0.05)
    body = server.client.get("/api/recs/users/1", headers=server.service).json()
    assert body["strategy"] == "personalized" and body["model_version"] == trained.version
    server.proc.stop()


def test_database_outage_is_a_503_and_model_only_routes_keep_serving(
    trained: TrainedModel, tmp_path: Path, start_recs_server: StartServer
) -> None:
    dead = SeededDb(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", "nothing")
    install_version(trained.root, trained.version, tmp_path)
    server = start_recs_server(dead, tmp_path, MONGO_TIMEOUT_MS="300")
    r = server.client.get("/api/recs/users/1", headers=server.service)
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
    ready = server.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["details"]["database"] is False
    sim = server.client.get("/api/recs/similar/1")
    assert sim.status_code == 200 and 3114 in [i["movieId"] for i in sim.json()["items"]]
    assert sim.json()["items"][0]["title"] is None  # no catalogue yet: ids without titles
    server.proc.stop()


def test_rated_lookup_modes_give_the_same_lists(
    recs: RecsServer,
    recs_db: SeededDb,
    trained: TrainedModel,
    csv_ratings,
    tmp_path: Path,
    start_recs_server: StartServer,
) -> None:
    """`recent` (the model's rated lists + ratings since its data) against `all` (every rating
    read from MongoDB), including ratings of unseen and already-rated movies made after
    training, and an artifact without rated lists (read the `all` way whatever the setting)."""
    art = artifacts.load_model(trained.root, trained.version)
    assert art.has_rated and art.rated_since is not None
    assert art.rated_since < 1_600_000_000  # the CSV's newest rating (2018) less the slack
    assert rated_by_model(art, 19) == rated_by(csv_ratings, 19)  # the data's own list
    install_version(trained.root, trained.version, tmp_path / "all")
    every = start_recs_server(recs_db, tmp_path / "all", RATED_LOOKUP="all")
    no_lists = tmp_path / "no-lists"
    arrays = {
        k: getattr(art, k)
        for k in (
            *artifacts.REQUIRED_KEYS,
            *artifacts.RANKING_KEYS,
            *artifacts.EASE_KEYS,
            artifacts.GENRES_KEY,
        )
        if getattr(art, k) is not None
    }
    arrays["global_mean"] = np.asarray(art.global_mean)
    plain = artifacts.save_model(no_lists, arrays, {"params": art.manifest["params"]})
    old = start_recs_server(recs_db, no_lists)
    assert old.client.get("/api/recs/model").json()["version"] == plain

    first = recs.client.get("/api/recs/users/19", params={"k": 20}, headers=recs.service).json()
    top = [i["movieId"] for i in first["items"]]
    already = sorted(rated_by_model(art, 19))[:1]
    insert_ratings(recs_db, 19, [(top[0], 4.5), (top[3], 1.0)])
    client = MongoClient(recs_db.url)
    client[recs_db.name].ratings.update_one(
        {"userId": 19, "movieId": already[0]}, {"$set": {"rating": 0.5, "timestamp": 2**31 - 1}}
    )
    client.close()
    for user, params in [
        (1, {}),
        (19, {"k": 20}),
        (414, {"k": 30}),
        (599, {"strategy": "rating", "k": 25}),
        (68, {"genre": "Drama"}),
    ]:
        bodies = [
            server.client.get(f"/api/recs/users/{user}", params=params, headers=server.service)
            for server in (recs, every, old)
        ]
        a, b, c = (r.json() for r in bodies)
        assert a["strategy"] == b["strategy"] == c["strategy"] == "personalized"
        assert a["items"] == b["items"], user
        # The same list from an artifact without rated lists; it has no rated stars either, so
        # a trained user's items carry no "because you rated" there (explained where known).
        # Its EASE parts are computed whole per request, where the lists' servers add the
        # ratings since the model to their precomputed parts (ranking.TrainedEaseParts): the
        # scores agree to float32 rounding, everything else exactly.
        assert same_items([{**i, "because": []} for i in a["items"]], c["items"]), user
        assert a["n_user_ratings"] == b["n_user_ratings"] == c["n_user_ratings"] > 0, user
        if user == 19:
            ids = [i["movieId"] for i in a["items"]]
            assert top[0] not in ids and top[3] not in ids
            assert a["n_user_ratings"] == first["n_user_ratings"] + 2
    batch = recs.client.post(
        "/api/recs/batch", json={"userIds": [19, 414], "k": 15}, headers=recs.service
    ).json()["results"]
    for res in batch:
        single = every.client.get(
            f"/api/recs/users/{res['userId']}", params={"k": 15}, headers=every.service
        ).json()
        assert res["items"] == single["items"]
    every.proc.stop()
    old.proc.stop()


def same_items(xs: list[dict], ys: list[dict]) -> bool:
    """The same movies in the same order with the same fields; `score` to 1e-6 relative."""
    if len(xs) != len(ys):
        return False
    for x, y in zip(xs, ys, strict=True):
        if {**x, "score": 0} != {**y, "score": 0}:
            return False
        if x["score"] != pytest.approx(y["score"], rel=1e-6):
            return False
    return True


def rated_by_model(art: artifacts.ModelArtifact, user_id: int) -> set[int]:
    assert art.rated_indptr is not None and art.rated_movie_ids is not None
    u = int(np.searchsorted(art.user_ids, user_id))
    return set(art.rated_movie_ids[art.rated_indptr[u] : art.rated_indptr[u + 1]].tolist())


HORROR = [1258, 1219, 2710, 1997, 1994, 5679, 1333, 8957]  # Shining, Psycho, Blair Witch, …


def test_low_ratings_are_not_likes_hater_and_fan_get_different_lists(
    recs: RecsServer, recs_db: SeededDb, trained: TrainedModel
) -> None:
    """Issue 20 item 7: exactly the pair of new users from the report, eight horror films
    rated 0.5★ by one and 5★ by the other."""
    hater, fan = 900_701, 900_702
    insert_ratings(recs_db, hater, [(m, 0.5) for m in HORROR])
    insert_ratings(recs_db, fan, [(m, 5.0) for m in HORROR])
    lists = {}
    for user in (hater, fan):
        r = recs.client.get(f"/api/recs/users/{user}", params={"k": 20}, headers=recs.service)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "fold-in" and len(body["items"]) == 20
        lists[user] = body
    hate_ids = [i["movieId"] for i in lists[hater]["items"]]
    fan_ids = [i["movieId"] for i in lists[fan]["items"]]
    assert hate_ids != fan_ids
    # The fan is steered to the films' closest neighbours: horror dominates their list …
    horror_in = {u: sum("Horror" in i["genres"] for i in b["items"]) for u, b in lists.items()}
    assert horror_in[fan] >= 8, horror_in
    # … the hater is not: none of the fan's top 10 and (almost) no horror at all.
    assert not set(hate_ids) & set(fan_ids[:10])
    assert horror_in[hater] <= 2, horror_in
    assert lists[fan]["order"] == lists[hater]["order"] == "ranking"
    # The fan's items are explained by the films they loved; the hater's by nothing they loved.
    assert all(i["because"] == [] for i in lists[hater]["items"])
    for item in lists[fan]["items"]:
        assert item["because"] and {b["movieId"] for b in item["because"]} <= set(HORROR)
        assert all(b["rating"] == 5.0 for b in item["because"])


PIXAR = [1, 2355, 3114, 4886, 6377]  # Toy Story, A Bug's Life, Toy Story 2, Monsters, Nemo


def test_a_pixar_fan_is_served_animation_through_the_genre_part(
    recs: RecsServer, recs_db: SeededDb, trained: TrainedModel
) -> None:
    """Issue 20 item 6: a new user who rated five Pixar films 5★ got Lord of the Rings, Star
    Wars, The Matrix and Shawshank with only Shrek from animation. The trainer now publishes
    the movies' genres with the model and the served blend has a genre part (the genres of
    what the user liked): the list leads with animation, explained by the Pixar films."""
    art = artifacts.load_model(trained.root, trained.version)
    assert art.item_genres is not None and art.item_genres.shape[0] == art.item_ids.size
    names = art.manifest["params"]["genres"]
    assert "Animation" in names and len(names) == art.item_genres.shape[1]
    assert art.manifest["params"]["blend"]["genre"] > 0
    toy_story = int(np.searchsorted(art.item_ids, 1))
    row = dict(zip(names, art.item_genres[toy_story].tolist(), strict=True))
    assert {g for g, on in row.items() if on} == {
        "Adventure", "Animation", "Children", "Comedy", "Fantasy"
    }  # fmt: skip
    fan = 900_703
    insert_ratings(recs_db, fan, [(m, 5.0) for m in PIXAR])
    r = recs.client.get(f"/api/recs/users/{fan}", params={"k": 10}, headers=recs.service)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    animated = [i for i in items if "Animation" in i["genres"]]
    assert len(animated) >= 5 and "Animation" in items[0]["genres"], [i["title"] for i in items]
    for item in animated:
        assert item["because"] and {b["movieId"] for b in item["because"]} <= set(PIXAR)


def test_every_personalised_item_says_because_you_rated(
    recs: RecsServer, csv_ratings, trained: TrainedModel
) -> None:
    """Issue 20 item 6: a known user's list (rated stars from the artifact, no extra reads)
    and the same for the explicit order; the reasons are movies the user rated."""
    user = 414
    own = rated_by(csv_ratings, user)
    for order in ("ranking", "rating"):
        r = recs.client.get(
            f"/api/recs/users/{user}", params={"k": 10, "strategy": order}, headers=recs.service
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "personalized" and body["order"] == order
        # A ranking score x_u·y_i > 0 is a sum of the rated movies' parts, so some part is
        # positive; a predicted rating can come from the biases alone, so most (not all) are.
        explained = sum(bool(i["because"]) for i in body["items"])
        assert explained == 10 if order == "ranking" else explained >= 7, body["items"]
        for item in body["items"]:
            reasons = item["because"]
            assert len(reasons) <= 3, item
            assert {b["movieId"] for b in reasons} <= own
            shares = [b["share"] for b in reasons]
            assert shares == sorted(shares, reverse=True) and all(0 < s <= 1 for s in shares)
            assert all(b["title"] and 0.5 <= b["rating"] <= 5.0 for b in reasons)
    popular = recs.client.get("/api/recs/users/950003", headers=recs.service).json()
    assert popular["strategy"] == "popular"
    assert all(i["because"] == [] for i in popular["items"])


def test_similar_applies_genre_and_answers_too_few_ratings(recs: RecsServer, csv_ratings) -> None:
    """Issue 20 item 6: `?genre=` is applied, never ignored; a movie rated fewer than
    SIMILAR_MIN_RATINGS times says so instead of listing confident-looking matches."""
    r = recs.client.get("/api/recs/similar/1", params={"k": 10, "genre": "drama"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "ok" and body["genre"] == "Drama" and len(body["items"]) == 10
    assert all("Drama" in i["genres"] for i in body["items"])
    unfiltered = recs.client.get("/api/recs/similar/1", params={"k": 10}).json()
    assert unfiltered["genre"] is None and unfiltered["state"] == "ok"
    assert [i["movieId"] for i in body["items"]] != [i["movieId"] for i in unfiltered["items"]]
    bad = recs.client.get("/api/recs/similar/1", params={"genre": "Nope"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_genre"
    ids, counts = np.unique(csv_ratings.movie_ids, return_counts=True)
    for movie_id in (int(ids[counts == 1][0]), int(ids[counts == 9][0])):
        r = recs.client.get(f"/api/recs/similar/{movie_id}")
        assert r.status_code == 200, r.text
        rare = r.json()
        assert rare["state"] == "too_few_ratings" and rare["items"] == []
        assert rare["n_ratings"] < rare["min_ratings"] == 10
    enough = int(ids[counts == 10][0])
    assert recs.client.get(f"/api/recs/similar/{enough}").json()["state"] == "ok"
