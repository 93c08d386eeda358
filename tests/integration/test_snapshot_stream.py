"""The retrain snapshot's MongoDB read, streamed into columns (movierec_trainer.snapshot)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pymongo
from movierec_trainer.snapshot import _Columns, expected_ratings, read_db_ratings


def test_db_ratings_stream_into_columns_in_chunks(mongo_url: str, db_name: str) -> None:
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        rng = np.random.default_rng(4)
        n = 2537
        users = rng.integers(1, 400, n)
        movies = rng.integers(1, 900, n)
        stars = rng.integers(1, 11, n) / 2
        docs = [
            {
                "userId": int(u),
                "movieId": int(m),
                "rating": float(r),
                "timestamp": 1_600_000_000 + i,
            }
            for i, (u, m, r) in enumerate(zip(users, movies, stars, strict=True))
        ]
        docs[7]["timestamp"] = dt.datetime(2020, 1, 2, tzinfo=dt.UTC)  # a BSON date
        docs[11] = {"userId": "x", "movieId": 3, "rating": 4.0, "timestamp": 0}  # malformed
        docs[13]["userId"] = 1e30  # a double beyond int64: malformed, not a crash
        db["ratings"].insert_many(docs)
        got = read_db_ratings(db, batch_size=100)  # 26 chunks
        assert len(got) == n
        order = np.lexsort((got.timestamps, got.movie_ids, got.user_ids))
        want_u = np.array([d["userId"] if isinstance(d["userId"], int) else -1 for d in docs])
        want_u[13] = -1
        assert sorted(got.user_ids.tolist()) == sorted(want_u.tolist())
        assert got.timestamps.dtype == np.int64 and got.ratings.dtype == np.float32
        assert int(dt.datetime(2020, 1, 2, tzinfo=dt.UTC).timestamp()) in got.timestamps
        bad = got.user_ids[order] == -1
        assert int(bad.sum()) == 2 and np.isnan(got.ratings[order][bad]).all()
        assert np.isclose(np.nansum(got.ratings), sum(d["rating"] for d in docs) - 4.0 - stars[13])
    finally:
        client.close()


def test_columns_grow_past_an_underestimated_count() -> None:
    cols = _Columns(1)
    for start in range(0, 1000, 300):
        k = min(300, 1000 - start)
        ids = list(range(start, start + k))
        cols.append([ids, ids, [0.5] * k, ids])
    r = cols.ratings()
    assert len(r) == 1000 and r.user_ids.tolist() == list(range(1000))


def test_the_read_is_sized_from_the_movies_rating_counts(mongo_url: str, db_name: str) -> None:
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        assert expected_ratings(db) == 0  # no movies yet
        db["movies"].insert_many(
            [
                {"movieId": 1, "rating_count": 120},
                {"movieId": 2, "rating_count": 0},
                {"movieId": 3},  # a movie the catalog has not counted yet
                {"movieId": 4, "rating_count": 7},
            ]
        )
        assert expected_ratings(db) == 127
        db["ratings"].insert_many(
            [{"userId": u, "movieId": 1, "rating": 3.0, "timestamp": u} for u in range(300)]
        )
        # An underestimate (the counts lag a burst of writes) only grows the columns.
        got = read_db_ratings(db, batch_size=64, expected=expected_ratings(db))
        assert sorted(got.user_ids.tolist()) == list(range(300))
    finally:
        client.close()
