"""Movie list/search/filter/sort/pagination, detail, popular, genres; query-string injection."""

from __future__ import annotations

import httpx
import pytest
from movierec_common.data_model import fold
from pymongo import MongoClient

from tests.integration.catalog.conftest import unique_name
from tests.integration.catalog.support import assert_error, bearer, register
from tests.support.movielens_db import MovieLensDB


@pytest.fixture(scope="module")
def mdb(movielens_db: MovieLensDB):
    client = MongoClient(movielens_db.url)
    yield client[movielens_db.db]
    client.close()


def test_title_search_whole_words_and_prefix(http: httpx.Client):
    r = http.get("/api/movies", params={"q": "toy sto", "sort": "year"})
    assert r.status_code == 200
    titles = [m["title"] for m in r.json()["items"]]
    assert titles[:3] == ["Toy Story", "Toy Story 2", "Toy Story 3"]
    # Case and accents do not matter; punctuation is ignored.
    r = http.get("/api/movies", params={"q": "AMELIE"})
    assert any("Amélie" in m["title"] for m in r.json()["items"])
    # Regex metacharacters are literal text, not a pattern.
    r = http.get("/api/movies", params={"q": ".*"})
    assert r.status_code == 200 and r.json()["total"] == 0
    r = http.get("/api/movies", params={"q": "zzqqxxnotatitle"})
    assert r.json()["total"] == 0 and r.json()["items"] == []


def test_genre_and_year_filters(http: httpx.Client, mdb):
    r = http.get(
        "/api/movies",
        params={"genre": "Animation", "year_min": 1990, "year_max": 1999, "page_size": 100},
    )
    body = r.json()
    expected = mdb.movies.count_documents(
        {"genres": "Animation", "year": {"$gte": 1990, "$lte": 1999}}
    )
    assert body["total"] == expected > 0
    for m in body["items"]:
        assert "Animation" in m["genres"] and 1990 <= m["year"] <= 1999
    # One spelling only, the documented one: year_from/year_to are refused, not ignored, and the
    # error names the parameters that do exist.
    r = http.get("/api/movies", params={"year_from": 2000, "year_to": 1990})
    assert_error(r, 422, "unknown_parameter")
    msg = r.json()["error"]["message"]
    assert "year_from, year_to" in msg and "year_min" in msg and "year_max" in msg
    r = http.get("/api/movies", params={"year_min": 2000, "year_max": 1990})
    assert_error(r, 422)
    assert "year_min must not be greater than year_max" in r.json()["error"]["message"]


def test_rating_sort_is_damped_not_plain_average(http: httpx.Client, mdb):
    # ml-latest-small has many movies whose only rating is a 5.
    single_five = mdb.movies.count_documents({"rating_count": 1, "rating_sum": 5.0})
    assert single_five > 0
    top = http.get("/api/movies", params={"sort": "rating", "page_size": 50}).json()["items"]
    assert all(m["rating_count"] >= 10 for m in top[:10]), [m["title"] for m in top[:10]]
    scores = [m["popularity_score"] for m in top]
    assert scores == sorted(scores, reverse=True)
    plain_top = mdb.movies.find_one(sort=[("avg_rating", -1), ("rating_count", 1)])
    assert plain_top["rating_count"] == 1  # what a plain sort would have put first
    assert top[0]["movieId"] != plain_top["movieId"]


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("title", "title", False),
        ("year", "year", False),
        ("year_desc", "year", True),
        ("count", "rating_count", True),
        ("popularity", "popularity_score", True),
    ],
)
def test_sorts(http: httpx.Client, sort: str, key: str, reverse: bool):
    items = http.get(
        "/api/movies", params={"sort": sort, "page_size": 100, "genre": "Western"}
    ).json()["items"]
    values = [m[key] for m in items if m[key] is not None]
    assert len(values) > 20
    if key == "title":  # case- and accent-insensitive, like the search
        values = [fold(v) for v in values]
    assert values == sorted(values, reverse=reverse)


def test_order_flips_direction(http: httpx.Client):
    asc = http.get("/api/movies", params={"sort": "title", "page_size": 5}).json()["items"]
    desc = http.get(
        "/api/movies", params={"sort": "title", "order": "desc", "page_size": 5}
    ).json()["items"]
    assert asc[0]["title"] < desc[0]["title"]


def test_pagination_edges(http: httpx.Client, mdb):
    total = mdb.movies.count_documents({"genres": "Film-Noir"})
    size = 7
    pages = -(-total // size)
    seen = []
    for page in range(1, pages + 1):
        body = http.get(
            "/api/movies",
            params={"genre": "Film-Noir", "sort": "title", "page": page, "page_size": size},
        ).json()
        assert body["total"] == total and body["pages"] == pages
        seen += [m["movieId"] for m in body["items"]]
    assert len(seen) == total == len(set(seen))  # no gaps, no repeats
    last = http.get(
        "/api/movies", params={"genre": "Film-Noir", "page": pages, "page_size": size}
    ).json()
    assert len(last["items"]) == total - (pages - 1) * size
    beyond = http.get(
        "/api/movies", params={"genre": "Film-Noir", "page": pages + 1, "page_size": size}
    ).json()
    assert beyond["items"] == [] and beyond["total"] == total
    assert_error(http.get("/api/movies", params={"page": 0}), 422, "validation_error")
    assert_error(http.get("/api/movies", params={"page": -1}), 422)
    assert_error(http.get("/api/movies", params={"page_size": 0}), 422)
    assert_error(http.get("/api/movies", params={"page_size": 100000}), 422)
    assert_error(http.get("/api/movies", params={"page": "abc"}), 422)
    assert http.get("/api/movies", params={"page_size": 100}).json()["page_size"] == 100


def test_query_string_injection_refused(http: httpx.Client):
    for path in (
        "/api/movies?genre[$ne]=x",
        "/api/movies?$where=1",
        "/api/movies?q[$regex]=.*",
        "/api/movies/popular?genre[$gt]=",
    ):
        assert_error(http.get(path), 422, "validation_error")
    # Operator-looking *values* are plain strings: validated or matched literally.
    assert_error(http.get("/api/movies", params={"genre": '{"$gt": ""}'}), 422)
    assert_error(http.get("/api/movies", params={"sort": "$natural"}), 422)
    r = http.get("/api/movies", params={"q": '{"$gt": ""}'})
    # Searched as the words in it ("gt"), never as a query: not the whole catalog.
    words = http.get("/api/movies", params={"q": "gt"}).json()["total"]
    assert r.status_code == 200 and r.json()["total"] == words < 50
    assert_error(http.get("/api/movies/%7B%22$gt%22:%22%22%7D"), 422)
    assert_error(http.get("/api/movies", params={"year_min": '{"$gt": 0}'}), 422)


def test_movie_detail_and_own_rating(http: httpx.Client):
    r = http.get("/api/movies/6")
    assert r.status_code == 200
    heat = r.json()
    assert heat["title"] == "Heat" and heat["year"] == 1995
    assert heat["imdbId"] == "0113277" and heat["tmdbId"] == 949
    assert heat["genres"] == ["Action", "Crime", "Thriller"]
    assert heat["my_rating"] is None
    assert heat["avg_rating"] == pytest.approx(heat["rating_sum"] / heat["rating_count"])
    token = register(http, unique_name())
    http.put("/api/movies/6/rating", json={"rating": 3.5}, headers=bearer(token))
    mine = http.get("/api/movies/6", headers=bearer(token)).json()["my_rating"]
    assert mine["rating"] == 3.5 and mine["timestamp"] > 0
    assert_error(http.get("/api/movies/99999999"), 404, "movie_not_found")
    assert_error(http.get("/api/movies/0"), 422)
    assert_error(http.get("/api/movies/abc"), 422)


def test_popular_overall_and_per_genre(http: httpx.Client):
    body = http.get("/api/movies/popular", params={"limit": 10}).json()
    items = body["items"]
    assert len(items) == 10
    assert items[0]["title"] == "Shawshank Redemption, The"
    m, c = body["prior_weight"], body["global_mean"]
    for it in items:
        assert it["popularity_score"] == pytest.approx(
            (it["rating_sum"] + m * c) / (it["rating_count"] + m)
        )
    scores = [it["popularity_score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    horror = http.get("/api/movies/popular", params={"genre": "Horror", "limit": 5}).json()
    assert len(horror["items"]) == 5
    assert all("Horror" in it["genres"] for it in horror["items"])
    assert_error(http.get("/api/movies/popular", params={"limit": 1000}), 422)


def test_genres(http: httpx.Client, mdb):
    items = http.get("/api/genres").json()["items"]
    names = [g["genre"] for g in items]
    assert "Drama" in names and "(no genres listed)" not in names
    drama = next(g for g in items if g["genre"] == "Drama")
    assert drama["count"] == mdb.movies.count_documents({"genres": "Drama"})


def test_every_operation_refuses_unknown_query_parameters(http: httpx.Client):
    from tests.support.query_params import assert_unknown_params_refused

    assert assert_unknown_params_refused(http) >= 15


def test_genre_filters_match_the_catalogue_case_insensitively_and_refuse_unknown_ones(
    http: httpx.Client,
):
    """As the recommender does: `action` is Action, `Nope` a 422 naming the known genres
    (it answered an empty page, indistinguishable from a real empty result)."""
    for path in ("/api/movies", "/api/movies/popular"):
        exact = http.get(path, params={"genre": "Action"}).json()
        folded = http.get(path, params={"genre": "aCTION"}).json()
        assert folded == exact and exact["items"], path
        r = http.get(path, params={"genre": "Nope"})
        assert r.status_code == 422, (path, r.text)
        err = r.json()["error"]
        assert err["code"] == "unknown_genre" and "Action" in err["details"]["known"], err
    assert http.get("/api/movies/popular", params={"genre": "aCTION"}).json()["genre"] == "Action"


def test_every_operation_refuses_a_repeated_one_value_parameter(http: httpx.Client):
    """`?genre=Action&genre=Horror` answered for Horror alone (a tester's find): refused now."""
    from tests.support.query_params import assert_repeated_params_refused

    assert assert_repeated_params_refused(http) >= 10
    r = http.get("/api/movies", params=[("genre", "Action"), ("genre", "Horror")])
    assert r.status_code == 422 and r.json()["error"]["code"] == "repeated_parameter", r.text
