"""The one loader (movierec_common.loader): the issue-18 faults with their right values, every
MovieLens layout, the strict mode, deletions as events, and the recommender's catalogue rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts
from movierec_common.loader import (
    LoadSummary,
    MalformedRowError,
    Ratings,
    Tombstones,
    clean_ratings,
    load_dataset,
    read_ratings_file,
)

from tests.support.fault_data import (
    KEPT_SUM,
    MOVIE1_COUNT,
    MOVIE1_SUM,
    N_KEPT,
    T0,
    UNKNOWN_MOVIE,
    write_fault_dataset,
)
from tests.support.layouts import write_csv, write_ml1m, write_ml10m, write_ml100k


def _pair(r: Ratings, user: int, movie: int) -> list[float]:
    mask = (r.user_ids == user) & (r.movie_ids == movie)
    return r.ratings[mask].tolist()


# ------------------------------------------------------------------- fault 1: duplicates


def test_fault1_duplicates_latest_timestamp_wins(tmp_path: Path) -> None:
    ds = load_dataset(write_fault_dataset(tmp_path / "ml", bad_bytes=False))
    r = ds.ratings
    assert len(r) == N_KEPT == 450
    assert _pair(r, 1, 1) == [1.0]
    movie1 = r.movie_ids == 1
    assert int(movie1.sum()) == MOVIE1_COUNT == 9
    assert float(r.ratings[movie1].sum()) == MOVIE1_SUM == 23.5
    pairs = r.user_ids * 10**7 + r.movie_ids
    assert np.unique(pairs).size == len(r)
    counts = ds.summary.to_dict()["files"]["ratings.csv"]
    assert counts == {
        "read": 481,
        "kept": 450,
        "dropped": {"duplicate": 2, "unknown_movie": 29},
    }


def test_fault1_row_order_does_not_matter(tmp_path: Path) -> None:
    """The latest row wins even when it comes first in the file."""
    d = tmp_path / "ml"
    write_fault_dataset(d, bad_bytes=False)
    lines = (d / "ratings.csv").read_bytes().split(b"\r\n")
    body = [x for x in lines[1:] if x]
    (d / "ratings.csv").write_bytes(b"\r\n".join([lines[0], *reversed(body)]) + b"\r\n")
    r = load_dataset(d).ratings
    assert _pair(r, 1, 1) == [1.0] and len(r) == 450


# ------------------------------------------------------------------- fault 2: not UTF-8


def test_fault2_non_utf8_rows_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    ds = load_dataset(write_fault_dataset(tmp_path / "ml"))
    issues = [str(i) for i in ds.summary.issues]
    assert "movies.csv:4: not valid UTF-8" in issues
    assert "ratings.csv:6: not valid UTF-8" in issues
    assert len(ds.ratings) == 450 and _pair(ds.ratings, 1, 1) == [1.0]
    assert sorted(m.movieId for m in ds.movies) == list(range(1, 23))
    assert ds.summary.to_dict()["files"]["movies.csv"] == {
        "read": 23,
        "kept": 22,
        "dropped": {"malformed": 1},
    }


def test_fault2_strict_mode_refuses_with_the_same_message(tmp_path: Path) -> None:
    d = write_fault_dataset(tmp_path / "ml")
    with pytest.raises(MalformedRowError, match=r"^movies\.csv:4: not valid UTF-8$"):
        load_dataset(d, on_error="raise")
    with pytest.raises(MalformedRowError, match=r"^ratings\.csv:6: not valid UTF-8$"):
        read_ratings_file(d / "ratings.csv", on_error="raise")


# ------------------------------------------------------------------- fault 3: unknown movies


def test_fault3_ratings_of_unknown_movies_dropped_and_mean_over_kept(tmp_path: Path) -> None:
    ds = load_dataset(write_fault_dataset(tmp_path / "ml"))
    assert UNKNOWN_MOVIE not in set(ds.ratings.movie_ids.tolist())
    assert ds.summary.dropped["unknown_movie"] == 29
    mean = float(ds.ratings.ratings.astype(np.float64).mean())
    assert f"{mean:.4f}" == "2.8000" and float(ds.ratings.ratings.sum()) == KEPT_SUM


# ------------------------------------------------------------------- fault 5: timestamps


@pytest.mark.parametrize(
    ("ts", "ok"),
    [
        ("1764460800000", False),  # milliseconds
        ("788918399", False),  # 1994-12-31T23:59:59Z
        ("788918400", True),  # 1995-01-01
        (str(int(time.time()) + 3600), True),  # one hour ahead: clock skew is fine
        (str(int(time.time()) + 3 * 86400), False),  # three days ahead
        ("-5", False),
    ],
)
def test_fault5_implausible_timestamps_are_malformed_rows(tmp_path: Path, ts: str, ok: bool):
    p = tmp_path / "ratings.csv"
    p.write_text(f"userId,movieId,rating,timestamp\n1,1,4.0,{T0}\n2,1,4.0,{ts}\n")
    summary = LoadSummary()
    r = read_ratings_file(p, summary=summary)
    assert len(r) == (2 if ok else 1)
    if not ok:
        assert str(summary.issues[0]).startswith("ratings.csv:3: ")
        assert "timestamp" in summary.issues[0].reason
        with pytest.raises(MalformedRowError, match=r"ratings\.csv:3: timestamp"):
            read_ratings_file(p, on_error="raise")


def test_fault5_rated_since_never_after_training_time() -> None:
    from movierec_trainer.pipeline import rated_lists

    future = int(time.time()) + 10**9  # a row that bypassed the loader (e.g. an old snapshot)
    r = Ratings(
        np.array([1, 2], np.int64),
        np.array([1, 1], np.int64),
        np.array([4.0, 4.0], np.float32),
        np.array([T0, future], np.int64),
    )
    before = int(time.time())
    out = rated_lists(r, np.array([1, 2], np.int64))
    assert int(out["rated_since"]) <= before + 1


# ------------------------------------------------------------------- train end to end


def test_train_cli_reports_the_cleaned_counts(tmp_path: Path) -> None:
    d = write_fault_dataset(tmp_path / "ml", ms_row=True)
    out = tmp_path / "models"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "movierec_trainer",
            "train",
            "--data-dir",
            str(d),
            "--engine",
            "local",
            "--rank",
            "2",
            "--iterations",
            "2",
            "--no-ranking",
            "--holdout",
            "0",
            "--output",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n_ratings"] == 450
    load = result["load"]["files"]["ratings.csv"]
    assert load["kept"] == 450
    assert load["dropped"] == {"duplicate": 2, "unknown_movie": 29, "malformed": 2}
    assert "ratings.csv:6: not valid UTF-8" in proc.stderr
    assert "movies.csv:4: not valid UTF-8" in proc.stderr
    assert "load: ratings.csv: read 483, kept 450" in proc.stderr
    model = artifacts.load_model(out)
    assert UNKNOWN_MOVIE not in set(model.item_ids.tolist())
    assert int(model.rated_since) <= int(time.time())


# ------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("name", "writer", "n", "titles"),
    [
        ("ml-100k", write_ml100k, 3, {242: "Kolya", 999: "Misérables, Les"}),
        ("ml-1m", write_ml1m, 2, {3: "Misérables, Les", 1193: "One Flew Over the Cuckoo's Nest"}),
        ("ml-10m", write_ml10m, 2, {186: "Amélie", 185: "Net, The"}),
        ("csv", write_csv, 1, {1: "Toy Story"}),
    ],
)
def test_every_layout_is_read(tmp_path: Path, name, writer, n: int, titles) -> None:
    d = tmp_path / name
    writer(d)
    ds = load_dataset(d, with_tags=True)
    assert ds.layout == name
    assert len(ds.ratings) == n and not ds.summary.issues
    got = {m.movieId: m.title for m in ds.movies}
    assert {k: got[k] for k in titles} == titles
    if name == "ml-100k":
        assert _pair(ds.ratings, 196, 242) == [5.0]  # the later duplicate wins
        genres = {m.movieId: m.genres for m in ds.movies}
        assert genres[377] == ["Animation", "Children"] and genres[302] == []
    if name == "ml-1m":
        genres = {m.movieId: m.genres for m in ds.movies}
        assert genres[661] == ["Animation", "Children", "Musical"]
    if name == "ml-10m":
        assert _pair(ds.ratings, 1, 185) == [4.5] and ds.tags[0].tag == "excellent!"


def test_fast_and_line_by_line_paths_agree(tmp_path: Path) -> None:
    """A clean file takes the vectorised path; one bad row sends it through the line reader,
    which keeps every good row and names the bad line."""
    d = write_fault_dataset(tmp_path / "ok", bad_bytes=False)
    fast = read_ratings_file(d / "ratings.csv")
    bad = tmp_path / "bad.csv"
    body = (d / "ratings.csv").read_bytes()
    bad.write_bytes(body + b"1,2,x,1300000000\r\n")
    summary = LoadSummary()
    slow = read_ratings_file(bad, summary=summary)
    for a, b in zip(
        (fast.user_ids, fast.movie_ids, fast.ratings, fast.timestamps),
        (slow.user_ids, slow.movie_ids, slow.ratings, slow.timestamps),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert [i.line for i in summary.issues] == [len(body.split(b"\r\n"))]


@pytest.mark.parametrize("bad_id", ["²", "620.0", "+5", " 1 2", "٣", "true", "1e3"])
def test_ids_are_plain_ascii_integers_in_files(tmp_path: Path, bad_id: str) -> None:
    p = tmp_path / "ratings.csv"
    p.write_text(f"userId,movieId,rating,timestamp\n{bad_id},1,4.0,{T0}\n1,1,4.0,{T0}\n")
    summary = LoadSummary()
    r = read_ratings_file(p, summary=summary)
    assert r.user_ids.tolist() == [1]
    assert summary.issues[0].line == 2 and "not an integer id" in summary.issues[0].reason


def test_text_fields_are_cleaned_the_same_way(tmp_path: Path) -> None:
    p = tmp_path / "movies.csv"
    p.write_bytes(
        b'movieId,title,genres\n1,"  Cafe\xcc\x81\tSociety \x07 (2016) ",Comedy| Drama \n'
        b"2,\x01\x02,Drama\n"
    )
    summary = LoadSummary()
    from movierec_common.loader import read_movies_file

    movies = read_movies_file(p, summary=summary)
    assert [(m.title, m.year, m.genres) for m in movies] == [
        ("Café Society", 2016, ["Comedy", "Drama"])
    ]
    assert str(summary.issues[0]) == "movies.csv:3: empty title"


# ------------------------------------------------------------------- deletions (issue 19 A2)


def test_a_deletion_beats_older_rows_but_not_a_later_rating() -> None:
    def rows(u, m, r, t) -> Ratings:
        return Ratings(
            np.array(u, np.int64),
            np.array(m, np.int64),
            np.array(r, np.float32),
            np.array(t, np.int64),
        )

    csv = rows([1, 1, 2], [10, 11, 10], [4.0, 3.0, 5.0], [T0, T0, T0])
    db = rows([1], [11], [2.0], [T0 + 500])  # (1, 11) re-rated after its deletion
    tomb = Tombstones(
        np.array([1, 1], np.int64), np.array([10, 11], np.int64), np.array([T0 + 100] * 2)
    )
    summary = LoadSummary()
    file_part = clean_ratings([("ratings.csv", csv)], summary, tombstones=tomb)
    merged = clean_ratings([("ratings.csv", file_part), ("mongodb", db)], summary)
    cols = (merged.user_ids.tolist(), merged.movie_ids.tolist(), merged.ratings.tolist())
    got = sorted(zip(*cols, strict=True))
    assert got == [(1, 11, 2.0), (2, 10, 5.0)]
    assert summary.files["ratings.csv"].dropped["deleted"] == 2
    # A deletion stamped in the same second as the file row still wins.
    same = clean_ratings(
        [("f", rows([1], [10], [4.0], [T0]))],
        LoadSummary(),
        tombstones=Tombstones(np.array([1]), np.array([10]), np.array([T0])),
    )
    assert len(same) == 0
