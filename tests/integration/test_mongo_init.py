"""mongo-init against a real SecantusDB, on a database of this module's own (the shared
`movielens_db` receives other suites' ratings, so it cannot be compared with the CSV): counts
and stats match the CSV, a second run changes nothing, and an interrupted import is finished
exactly by the next run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from movierec_common.movie_changes import CHANGE_STAMP
from movierec_common.movielens import load_movies, load_ratings
from pymongo import MongoClient
from pymongo.errors import WriteError

from tests.support.movielens_db import MovieLensDB, create_movielens_db, run_init


@pytest.fixture(scope="module")
def movielens_db(mongo_url: str, movielens_dir: Path, output_dir: Path):
    """Overrides the shared fixture for this module: a private, freshly initialised database."""
    db = create_movielens_db(mongo_url, movielens_dir, output_dir)
    yield db
    client = MongoClient(mongo_url)
    client.drop_database(db.db)
    client.close()


@pytest.fixture(scope="module")
def sync_db(movielens_db: MovieLensDB):
    client = MongoClient(movielens_db.url, tz_aware=True)
    yield client[movielens_db.db]
    client.close()


def _snapshot(db) -> dict:
    movies = {
        d["movieId"]: (d["rating_count"], d["rating_sum"], d["popularity_score"])
        for d in db.movies.find({}, {"_id": 0})
    }
    return {
        "movies": db.movies.count_documents({}),
        "ratings": db.ratings.count_documents({}),
        "users": db.users.count_documents({}),
        "admins": db.users.count_documents({"role": "admin"}),
        "counter": db.counters.find_one({"_id": "userId"})["seq"],
        "stats": movies,
    }


def test_counts_and_stats_match_the_csv(sync_db, movielens_dir: Path, movielens_db: MovieLensDB):
    ratings = load_ratings(movielens_dir / "ratings.csv")
    movies = load_movies(movielens_dir / "movies.csv")
    assert sync_db.movies.count_documents({}) == len(movies)
    # every movie write stamps the movie, the import too (movierec_common.movie_changes)
    assert sync_db.movies.count_documents({CHANGE_STAMP: {"$exists": False}}) == 0
    assert sync_db.ratings.count_documents({}) == len(ratings)
    n_users = len(np.unique(ratings.user_ids))
    assert sync_db.users.count_documents({"demo": True}) == n_users
    assert sync_db.users.count_documents({"role": "admin"}) == 1
    indexes = sync_db.ratings.index_information()
    assert indexes["user_movie"]["unique"] and indexes["user_movie"]["key"] == [
        ("userId", 1),
        ("movieId", 1),
    ]
    # Built after the import: reads that would otherwise scan the whole collection.
    assert indexes["user_time"]["key"] == [("userId", 1), ("timestamp", 1)]
    assert indexes["timestamp"]["key"] == [("timestamp", 1)]
    assert indexes["movieId"]["key"] == [("movieId", 1)]

    # Every movie's stats equal a recount from the CSV.
    mids, inv = np.unique(ratings.movie_ids, return_inverse=True)
    counts = np.bincount(inv)
    sums = np.bincount(inv, weights=ratings.ratings.astype(np.float64))
    expected = {int(m): (int(n), float(s)) for m, n, s in zip(mids, counts, sums, strict=True)}
    c = float(sums.sum() / counts.sum())
    meta = sync_db.meta.find_one({"_id": "ratings_stats"})
    assert meta["global_mean"] == pytest.approx(c)
    w = movielens_db.prior_weight
    for doc in sync_db.movies.find({}, {"_id": 0, "title_tokens": 0}):
        n, s = expected.get(doc["movieId"], (0, 0.0))
        assert (doc["rating_count"], doc["rating_sum"]) == (n, s), doc
        assert doc["popularity_score"] == pytest.approx((s + w * c) / (n + w))
        if n:
            assert doc["avg_rating"] == pytest.approx(s / n)
        else:
            assert doc["avg_rating"] is None


def test_titles_links_and_genres_parsed(sync_db):
    heat = sync_db.movies.find_one({"movieId": 6})
    assert heat["title"] == "Heat" and heat["year"] == 1995
    assert heat["genres"] == ["Action", "Crime", "Thriller"]
    assert heat["imdbId"] == "0113277" and heat["tmdbId"] == 949
    assert set(heat["title_tokens"]) == {"heat"}
    # "(no genres listed)" becomes an empty list, not a genre.
    assert sync_db.movies.count_documents({"genres": "(no genres listed)"}) == 0
    assert sync_db.movies.count_documents({"genres": []}) > 0


def test_tags_from_tags_csv_on_the_movies(sync_db, movielens_dir: Path):
    """Each movie's distinct normalised tags, most users first (the content profile's input)."""
    from movierec_common.loader import read_tags_file
    from movierec_common.movie_tags import movie_tags

    assert sync_db.movies.find_one({"movieId": 1})["tags"] == ["pixar", "fun"]  # 2 users, 1
    expected = movie_tags(read_tags_file(movielens_dir / "tags.csv"))
    assert len(expected) > 1000
    stored = {d["movieId"]: d["tags"] for d in sync_db.movies.find({}, {"movieId": 1, "tags": 1})}
    assert {m: t for m, t in stored.items() if t} == expected
    assert sync_db.meta.find_one({"_id": "movielens_tags"})["movies"] == len(expected)


def test_rerun_backfills_tags_of_a_database_imported_without_them(
    sync_db, movielens_db, movielens_dir, output_dir
):
    """A database imported before movies carried tags (no tags, no marker) gets them on the
    next init; an admin-added movie keeps its own."""
    with_tags = {
        d["movieId"]: d["tags"] for d in sync_db.movies.find({"tags.0": {"$exists": True}})
    }
    sync_db.movies.update_many({}, {"$unset": {"tags": ""}})
    sync_db.meta.delete_one({"_id": "movielens_tags"})
    sync_db.movies.update_one({"movieId": 1}, {"$set": {"added_at": 1, "tags": ["mine"]}})
    try:
        run_init(movielens_db.url, movielens_db.db, movielens_dir, output_dir / "init-tags.log")
        after = {
            d["movieId"]: d["tags"] for d in sync_db.movies.find({"tags.0": {"$exists": True}})
        }
        assert after == {**with_tags, 1: ["mine"]}
    finally:
        sync_db.movies.update_one(
            {"movieId": 1}, {"$set": {"tags": with_tags[1]}, "$unset": {"added_at": ""}}
        )
        sync_db.movies.update_many({"tags": {"$exists": False}}, {"$set": {"tags": []}})


def test_accounts_hashed_with_argon2id_and_ids_above_movielens(sync_db, movielens_db):
    admin = sync_db.users.find_one({"username_key": "admin"})
    assert admin["password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(admin["password_hash"], movielens_db.admin_password)
    assert admin["userId"] > 610
    demo = sync_db.users.find_one({"username": "ml1"})
    assert demo["userId"] == 1 and demo["role"] == "user"
    assert PasswordHasher().verify(demo["password_hash"], movielens_db.demo_password)
    assert sync_db.counters.find_one({"_id": "userId"})["seq"] >= admin["userId"]


def test_validators_refuse_bad_documents(sync_db):
    with pytest.raises(WriteError):
        sync_db.ratings.insert_one({"userId": 1, "movieId": 1, "rating": 9.0, "timestamp": 0})
    with pytest.raises(WriteError):
        sync_db.users.insert_one(
            {
                "userId": 99999,
                "username": "x",
                "username_key": "x",
                "password_hash": "plain",
                "role": "user",
                "created_at": None,
            }
        )


def test_second_run_changes_nothing(sync_db, movielens_db, movielens_dir, output_dir):
    before = _snapshot(sync_db)
    run_init(movielens_db.url, movielens_db.db, movielens_dir, output_dir / "init-rerun.log")
    after = _snapshot(sync_db)
    assert after == before


def test_rerun_after_partial_import_reconciles_exactly(
    sync_db, movielens_db, movielens_dir, output_dir
):
    """A crash mid-import (marker missing, part of the ratings in, stats not written) is
    finished by the next run, with exact stats. Runs last: it damages the module's database."""
    full = _snapshot(sync_db)
    sync_db.meta.delete_one({"_id": "movielens_import"})
    sync_db.ratings.delete_many({"userId": {"$lte": 300}})
    sync_db.movies.update_many({}, {"$set": {"rating_count": 0, "rating_sum": 0.0}})
    run_init(movielens_db.url, movielens_db.db, movielens_dir, output_dir / "init-partial.log")
    again = _snapshot(sync_db)
    assert again["ratings"] == full["ratings"]
    for mid, (n, s, pop) in full["stats"].items():
        assert again["stats"][mid][:2] == (n, s)
        assert again["stats"][mid][2] == pytest.approx(pop)
