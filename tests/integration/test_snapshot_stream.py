"""The retrain snapshot's MongoDB read, streamed into columns (movierec_trainer.snapshot)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import bson
import numpy as np
import pymongo
import pytest
from movierec_trainer import retrain, snapshot
from movierec_trainer.config import TrainerSettings
from movierec_trainer.snapshot import _Columns, expected_ratings, read_db_ratings
from pymongo import monitoring

USER_MOVIE = [("userId", pymongo.ASCENDING), ("movieId", pymongo.ASCENDING)]
#: A userId of every kind the collection validator refuses: each must be read once, as malformed.
#: (Not an embedded document: snapshot._OTHER_TYPE_BRACKETS says why that one is not read.)
ODD_USER_IDS: list[Any] = [
    -3,
    2.5,
    1e30,
    float("inf"),
    float("-inf"),
    float("nan"),
    "x",
    None,
    [7, 300],  # an array has an index key per element: read once, not twice
    True,
    dt.datetime(2020, 1, 2),
    bson.ObjectId(),
    b"xx",
]


class RangeSizes(monitoring.CommandListener):
    """Rows each `find` returned, over its first batch and its getMores (matched by cursor id):
    `sizes()` in the order the finds ran."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self._cursor_find: dict[int, int] = {}  # cursor id → index into rows
        self._more: dict[int, int] = {}  # getMore request id → its cursor id

    def clear(self) -> None:
        self.rows.clear()
        self._cursor_find.clear()
        self._more.clear()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "getMore":
            self._more[event.request_id] = int(event.command["getMore"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if event.command_name in ("find", "getMore") else None
        if cursor is None:
            return
        if event.command_name == "find":
            self.rows.append(len(cursor.get("firstBatch", [])))
            if cursor.get("id"):
                self._cursor_find[int(cursor["id"])] = len(self.rows) - 1
        else:
            find = self._cursor_find[self._more.pop(event.request_id)]
            self.rows[find] += len(cursor.get("nextBatch", []))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("indexed", [True, False], ids=["by-user-ranges", "one-cursor"])
def test_db_ratings_stream_into_columns_in_chunks(
    mongo_url: str, db_name: str, indexed: bool
) -> None:
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        if indexed:
            db["ratings"].create_index(USER_MOVIE, name="user_movie")
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
        got = read_db_ratings(db, batch_size=100, range_rows=150)  # 26 chunks
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


def test_user_ranges_read_every_row_once_in_bounded_ranges(mongo_url: str, db_name: str) -> None:
    """The range read returns exactly what one cursor returns, whatever the userIds are: dense,
    sparse with gaps up to 2^62, beyond int64 or of another scalar type; and over dense ids each
    range stays near its target size (what bounds the embedded server's stall)."""
    sizes = RangeSizes()
    client = pymongo.MongoClient(
        mongo_url, serverSelectionTimeoutMS=10_000, event_listeners=[sizes]
    )
    try:
        coll = client[db_name]["ratings"]
        rng = np.random.default_rng(11)
        dense = [
            {"userId": u, "movieId": int(m), "rating": 3.0, "timestamp": 1_600_000_000 + u}
            for u in range(0, 600)
            for m in rng.choice(5000, int(rng.integers(1, 40)), replace=False)
        ]
        coll.insert_many(dense)
        coll.create_index(USER_MOVIE, name="user_movie")
        sizes.clear()
        dense_read = read_db_ratings(client[db_name], batch_size=64, range_rows=200)
        assert len(dense_read) == len(dense)
        per_find = list(sizes.rows)
        assert sum(per_find) == len(dense)  # the listener saw every row, getMores included
        assert len(per_find) > len(dense) / 400, per_find  # many ranges, not one cursor
        assert max(per_find) <= 3 * 200, per_find
        # Sparse and odd ids: the same rows, once each, as the one-cursor read of the same data.
        odd = [
            {"userId": u, "movieId": 1, "rating": 4.0, "timestamp": 1_600_000_000}
            for u in (10**6, 10**6 + 1, 2**40, 2**62, 2**63 - 1)
        ] + [
            {"userId": u, "movieId": 2, "rating": 4.0, "timestamp": 1_600_000_000}
            for u in ODD_USER_IDS
        ]
        odd.append({"movieId": 2, "rating": 4.0, "timestamp": 0})  # no userId at all
        coll.insert_many(odd)
        coll.create_index(USER_MOVIE, name="user_movie")
        ranged = read_db_ratings(client[db_name], batch_size=64, range_rows=200)
        coll.drop_indexes()
        whole = read_db_ratings(client[db_name], batch_size=64)
        assert len(ranged) == len(whole) == len(dense) + len(odd)

        def rows(r: Any) -> list[tuple]:
            cols = (r.user_ids, r.movie_ids, r.timestamps)
            return sorted(zip(*(c.tolist() for c in cols), strict=True))

        assert rows(ranged) == rows(whole)
        # Refused as malformed: every odd id but -3 (an int, refused later by valid_rows) and
        # the row with no userId at all.
        assert int((ranged.user_ids == -1).sum()) == len(ODD_USER_IDS) - 1 + 1
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


class Cancelled(Exception):
    pass


def _dense_ratings(coll: Any, n_users: int = 300, per_user: int = 10) -> int:
    coll.insert_many(
        [
            {"userId": u, "movieId": m, "rating": 3.5, "timestamp": 1_600_000_000 + m}
            for u in range(1, n_users + 1)
            for m in range(1, per_user + 1)
        ]
    )
    coll.create_index(USER_MOVIE, name="user_movie")
    return n_users * per_user


def test_a_paced_read_pauses_reports_progress_and_stops_on_a_cancel(
    mongo_url: str, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        n = _dense_ratings(db["ratings"])
        pauses: list[float] = []
        real_sleep = snapshot._pause
        monkeypatch.setattr(snapshot, "_pause", lambda s: (pauses.append(s), real_sleep(s)))
        seen: list[int] = []
        paced = snapshot.ReadPacing(pause_ratio=0.5, on_range=seen.append)
        got = read_db_ratings(db, range_rows=200, pacing=paced)
        assert len(got) == n and seen[-1] == n and seen == sorted(seen) and len(seen) > n / 400
        assert len(pauses) == len(seen) and all(p > 0 for p in pauses)  # after every range
        pauses.clear()
        unpaced = read_db_ratings(db, range_rows=200)
        assert len(unpaced) == n and pauses == []  # pause_ratio 0: no sleeping

        def cancel_at_third(total: int) -> None:
            seen.append(total)
            if len(seen) == 3:
                raise Cancelled

        seen.clear()
        with pytest.raises(Cancelled):
            read_db_ratings(
                db, range_rows=200, pacing=snapshot.ReadPacing(on_range=cancel_at_third)
            )
        assert len(seen) == 3 and seen[-1] < n
    finally:
        client.close()


def test_a_retrain_reports_the_read_and_a_cancel_stops_it_before_training(
    mongo_url: str, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        _dense_ratings(db["ratings"])
        monkeypatch.setattr(retrain, "SNAPSHOT_REPORT_SECONDS", 0.0)
        lines: list[str] = []
        steps: list[dict] = []
        phases: list[str] = []

        def step(fields: dict) -> None:
            steps.append(fields)
            if fields["progress.read"] > 0:
                raise Cancelled

        settings = TrainerSettings(
            work_dir=tmp_path / "work", model_dir=tmp_path / "models", snapshot_pause_ratio=0.2
        )
        with pytest.raises(Cancelled):
            retrain.run_retrain(
                db,
                settings,
                {"db_only": True},
                name="job-x",
                model_dir=tmp_path / "models",
                spark=None,
                reporter=retrain.Reporter(phase=phases.append, log=lines.append, step=step),
            )
        assert phases == ["snapshot"]  # stopped inside the read: no training phase began
        assert any("ratings read from MongoDB" in line for line in lines)
        assert steps[-1]["progress.read"] > 0 and "progress.expected" in steps[-1]
        assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    finally:
        client.close()


@pytest.mark.parametrize(
    "user_ids",
    [
        list(range(1, 21)) + list(range(10**6, 10**6 + 400)),  # a gap, then a dense run
        list(range(10**9, 10**9 + 400)),  # ids that start high: a gap from 0
    ],
    ids=["gap", "offset"],
)
def test_the_last_models_users_cut_the_ranges_a_gap_would_merge(
    mongo_url: str, db_name: str, user_ids: list[int]
) -> None:
    """Empty ranges double the walk's width, so the first range past a gap can swallow a
    whole dense run. With the last model's users and counts (`range_cuts`) no range crosses a
    cut, and the rows read are the same."""
    sizes = RangeSizes()
    client = pymongo.MongoClient(
        mongo_url, serverSelectionTimeoutMS=10_000, event_listeners=[sizes]
    )
    try:
        db = client[db_name]
        db["ratings"].insert_many(
            [
                {"userId": u, "movieId": m, "rating": 4.0, "timestamp": 1_600_000_000}
                for u in user_ids
                for m in range(1, 6)
            ]
        )
        db["ratings"].create_index(USER_MOVIE, name="user_movie")

        def largest_range(**kw: Any) -> tuple[int, Any]:
            sizes.clear()
            got = read_db_ratings(db, range_rows=50, **kw)
            assert sum(sizes.rows) == len(got)  # every row seen by the listener
            return max(sizes.rows), got

        walked, plain = largest_range()
        assert walked > 10 * 50  # the fault: one range holds many targets' worth
        counts = np.full(len(user_ids), 5, np.int64)
        known = (np.array(user_ids, np.int64), counts)
        bounded, cut = largest_range(known_users=known)
        assert bounded <= 3 * 50, bounded
        assert sorted(cut.user_ids.tolist()) == sorted(plain.user_ids.tolist())
        assert len(cut) == 5 * len(user_ids)
    finally:
        client.close()


def test_range_cuts_split_the_known_ratings_into_target_sized_runs() -> None:
    users = np.array([1, 2, 3, 4, 5, 6], np.int64)
    assert snapshot.range_cuts(users, np.full(6, 3), 5).tolist() == [3, 5, 6]
    assert snapshot.range_cuts(users[:3], np.full(3, 10), 5).tolist() == [2, 3]
    assert snapshot.range_cuts(users[:1], np.array([10]), 5).size == 0
    assert snapshot.range_cuts(users[:0], users[:0], 5).size == 0


def test_the_catalogue_read_gives_each_movies_genres(mongo_url: str, db_name: str) -> None:
    """The retrain's one pass over `movies` gives the catalogue's ids (the ratings filter) and
    each movie's genres (the blend's genre part); a missing, malformed or empty `genres` field
    is no genre, not an error."""
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        assert snapshot.read_db_catalogue(db) == (None, {})  # empty collection: no filter
        db["movies"].insert_many(
            [
                {"movieId": 3, "title": "A", "genres": ["Animation", "Comedy"]},
                {"movieId": 1, "title": "B", "genres": []},
                {"movieId": 2, "title": "C"},
                {"movieId": 5, "title": "D", "genres": "Drama"},  # not a list
                {"movieId": 4, "title": "E", "genres": ["Drama", 7, ""]},
            ]
        )
        ids, genres_of = snapshot.read_db_catalogue(db)
        assert ids is not None and ids.tolist() == [1, 2, 3, 4, 5]
        assert genres_of == {3: ("Animation", "Comedy"), 4: ("Drama",)}
    finally:
        client.drop_database(db_name)
        client.close()
