"""Ratings: validation, body injection, stats in the same request, my ratings paging, and
exact stats under 50 concurrent clients over real HTTP."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest
from pymongo import MongoClient

from tests.integration.catalog.conftest import unique_name
from tests.integration.catalog.support import assert_error, bearer, register
from tests.support.movielens_db import MovieLensDB


@pytest.fixture(scope="module")
def mdb(movielens_db: MovieLensDB):
    client = MongoClient(movielens_db.url)
    yield client[movielens_db.db]
    client.close()


def _recount(mdb, movie_ids: list[int] | None = None) -> dict[int, tuple[int, float]]:
    match = [{"$match": {"movieId": {"$in": movie_ids}}}] if movie_ids else []
    rows = mdb.ratings.aggregate(
        [*match, {"$group": {"_id": "$movieId", "n": {"$sum": 1}, "s": {"$sum": "$rating"}}}]
    )
    return {int(r["_id"]): (int(r["n"]), float(r["s"])) for r in rows}


def _stats(mdb, movie_ids: list[int]) -> dict[int, tuple[int, float]]:
    return {
        d["movieId"]: (d["rating_count"], d["rating_sum"])
        for d in mdb.movies.find({"movieId": {"$in": movie_ids}})
    }


def test_rating_bodies_validated(catalog, http: httpx.Client):
    token = register(http, unique_name())
    bad = [
        {"rating": 7},
        {"rating": 0},
        {"rating": 0.3},
        {"rating": 4.25},
        {"rating": 3.0000000000000004},  # within pydantic's multiple_of tolerance
        {"rating": 4.50000000001},
        {"rating": 5.000000000000001},
        {"rating": "4"},
        {"rating": True},
        {"rating": None},
        {"rating": {"$gt": ""}},
        {"rating": {"$where": "sleep(1000)"}},
        {"rating": [4]},
        {"rating": 4, "userId": 1},
        {},
    ]
    for body in bad:
        err = assert_error(
            http.put("/api/movies/1/rating", json=body, headers=bearer(token)),
            422,
            "validation_error",
        )
        assert err["details"], body
    for raw, named in ((b'{"rating": NaN}', "finite"), (b'{"rating": Infinity}', "finite")):
        err = assert_error(
            http.put(
                "/api/movies/1/rating",
                content=raw,
                headers={**bearer(token), "Content-Type": "application/json"},
            ),
            422,
            "validation_error",
        )
        assert named in json.dumps(err["details"]), err
    r = http.put(
        "/api/movies/1/rating",
        content=b"not json",
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert_error(r, 422)
    assert_error(
        http.put("/api/movies/99999999/rating", json={"rating": 4}, headers=bearer(token)),
        404,
        "movie_not_found",
    )
    with catalog.client() as anonymous:
        assert_error(anonymous.put("/api/movies/1/rating", json={"rating": 4}), 401)


def test_login_body_injection_refused(http: httpx.Client):
    for body in (
        {"username": {"$gt": ""}, "password": {"$gt": ""}},
        {"username": "admin", "password": {"$ne": None}},
        {"username": {"$where": "1"}, "password": "x"},
        {"username": ["admin"], "password": "x"},
    ):
        assert_error(http.post("/api/auth/login", json=body), 422, "validation_error")


def test_put_rerate_delete_changes_stats_exactly(http: httpx.Client, mdb):
    token = register(http, unique_name())
    mid = 1
    before = _stats(mdb, [mid])[mid]
    r = http.put(f"/api/movies/{mid}/rating", json={"rating": 4.5}, headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous"] is None and body["rating"] == 4.5
    assert (body["movie"]["rating_count"], body["movie"]["rating_sum"]) == (
        before[0] + 1,
        before[1] + 4.5,
    )
    r = http.put(f"/api/movies/{mid}/rating", json={"rating": 2}, headers=bearer(token))
    assert r.json()["previous"] == 4.5
    assert (r.json()["movie"]["rating_count"], r.json()["movie"]["rating_sum"]) == (
        before[0] + 1,
        before[1] + 2.0,
    )
    movie = mdb.movies.find_one({"movieId": mid})
    assert movie["avg_rating"] == pytest.approx(movie["rating_sum"] / movie["rating_count"])
    assert http.delete(f"/api/movies/{mid}/rating", headers=bearer(token)).status_code == 204
    assert _stats(mdb, [mid])[mid] == before
    # Deleting again is a no-op (idempotent), stats unchanged.
    assert http.delete(f"/api/movies/{mid}/rating", headers=bearer(token)).status_code == 204
    assert _stats(mdb, [mid])[mid] == before


def test_my_ratings_pages_newest_first(http: httpx.Client):
    token = register(http, unique_name())
    movie_ids = [2, 3, 5, 7, 11]
    for mid in movie_ids:
        assert (
            http.put(
                f"/api/movies/{mid}/rating", json={"rating": 3}, headers=bearer(token)
            ).status_code
            == 200
        )
    first = http.get("/api/me/ratings", params={"page_size": 2}, headers=bearer(token)).json()
    assert first["total"] == 5 and first["pages"] == 3 and len(first["items"]) == 2
    seen = []
    for page in (1, 2, 3):
        body = http.get(
            "/api/me/ratings", params={"page": page, "page_size": 2}, headers=bearer(token)
        ).json()
        seen += body["items"]
    assert sorted(i["movieId"] for i in seen) == movie_ids
    stamps = [i["timestamp"] for i in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert all(i["title"] for i in seen)
    http.cookies.clear()
    assert_error(http.get("/api/me/ratings"), 401)
    assert_error(http.get("/api/me/ratings", params={"page": 0}, headers=bearer(token)), 422)


async def _client_session(base: str, token: str, movies: list[int], rounds: int, seed: int):
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, headers=bearer(token), timeout=60) as c:
        for _ in range(rounds):
            mid = rng.choice(movies)
            if rng.random() < 0.15:
                r = await c.delete(f"/api/movies/{mid}/rating")
                assert r.status_code == 204, r.text
            else:
                value = rng.randint(1, 10) / 2
                r = await c.put(f"/api/movies/{mid}/rating", json={"rating": value})
                assert r.status_code == 200, r.text


def test_fifty_concurrent_clients_keep_stats_exact(catalog, http: httpx.Client, mdb):
    movies = [1, 2, 6, 10, 32]  # popular movies that already have MovieLens ratings
    tokens = [register(http, unique_name("conc")) for _ in range(50)]

    async def run() -> None:
        await asyncio.gather(
            *(
                _client_session(catalog.base_url, t, movies, rounds=12, seed=i)
                for i, t in enumerate(tokens)
            )
        )

    asyncio.run(run())
    recount = _recount(mdb, movies)
    stats = _stats(mdb, movies)
    assert stats == recount
    for mid in movies:
        doc = mdb.movies.find_one({"movieId": mid})
        assert doc["avg_rating"] == pytest.approx(doc["rating_sum"] / doc["rating_count"])
    # And the whole catalog still agrees with a full recount.
    everything = _recount(mdb)
    for doc in mdb.movies.find({}, {"movieId": 1, "rating_count": 1, "rating_sum": 1}):
        assert (doc["rating_count"], doc["rating_sum"]) == everything.get(doc["movieId"], (0, 0.0))
