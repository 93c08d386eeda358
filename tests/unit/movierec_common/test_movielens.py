"""MovieLens CSV loading: malformed rows are reported with file:line, never mis-parsed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from movierec_common import movielens as ml
from movierec_common.movielens import LoadReport, MalformedRowError


def _write(path: Path, lines: list[str], eol: str = "\r\n") -> Path:
    path.write_bytes(eol.join(lines).encode("utf-8") + eol.encode())
    return path


RATINGS_HEADER = "userId,movieId,rating,timestamp"


def test_good_ratings_crlf(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ratings.csv",
        [RATINGS_HEADER, "1,31,2.5,1260759144", "1,1029,3.0,1260759179", "7,1,5,1260759200"],
    )
    r = ml.load_ratings(path)
    assert len(r) == 3
    np.testing.assert_array_equal(r.user_ids, [1, 1, 7])
    np.testing.assert_array_equal(r.movie_ids, [31, 1029, 1])
    np.testing.assert_array_equal(r.ratings, np.array([2.5, 3.0, 5.0], dtype=np.float32))
    np.testing.assert_array_equal(r.timestamps, [1260759144, 1260759179, 1260759200])
    assert r.user_ids.dtype == np.int64 and r.ratings.dtype == np.float32


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("1,31,5.5,1", "outside"),
        ("1,31,0.3,1", "outside"),
        ("1,31,abc,1", "could not convert"),
        ("1,31,2.25,1", "multiple of 0.5"),
        ("1,31,nan,1", "outside"),
        ("x,31,2.5,1", "not an integer"),
        ("1,3.1,2.5,1", "not an integer"),
        ("1,31,2.5", "expected 4 fields"),
        ("1,31,2.5,1,9", "expected 4 fields"),
        ("1,,2.5,1", "empty field"),
        ("1,31,2.5,", "empty field"),
    ],
)
def test_malformed_rating_rows_skipped_with_file_and_line(
    tmp_path: Path, row: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(
        tmp_path / "ratings.csv", [RATINGS_HEADER, "1,1,4.0,1260759100", row, "2,2,3.5,1260759120"]
    )
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        r = ml.load_ratings(path, report=report)
    # the good rows around the bad one survive, the bad one is gone
    np.testing.assert_array_equal(r.movie_ids, [1, 2])
    assert len(report.issues) == 1
    issue = report.issues[0]
    assert (issue.file, issue.line) == ("ratings.csv", 3)
    assert reason in issue.reason
    assert str(issue).startswith("ratings.csv:3: ")
    assert "ratings.csv:3" in caplog.text


@pytest.mark.parametrize("row", ["1,31,5.5,1", "1,31,abc,1", "x,31,2.5,1", "1,31,2.5"])
def test_malformed_rating_rows_raise_on_request(tmp_path: Path, row: str) -> None:
    path = _write(tmp_path / "ratings.csv", [RATINGS_HEADER, "1,1,4.0,1260759100", row])
    with pytest.raises(MalformedRowError, match=r"ratings\.csv:3: "):
        ml.load_ratings(path, on_error="raise")


def test_line_numbers_count_physical_lines_with_multiline_quoted_title(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "movies.csv",
        ["movieId,title,genres", '1,"Two\nLines (1999)",Drama', "bad,Title (2000),Drama"],
        eol="\n",
    )
    report = LoadReport()
    movies = ml.load_movies(path, report=report)
    assert [m.movieId for m in movies] == [1]
    assert report.issues[0].line == 4


@pytest.mark.parametrize(
    "header", ["userId,movieId,rating", "user,movieId,rating,timestamp", "", "movieId,title,genres"]
)
def test_wrong_header_refused_always(tmp_path: Path, header: str) -> None:
    path = _write(tmp_path / "ratings.csv", [header, "1,1,4.0,1260759100"])
    with pytest.raises(MalformedRowError, match=r"ratings\.csv:1: expected header"):
        ml.load_ratings(path)  # even with the default on_error="skip"


def test_empty_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"")
    with pytest.raises(MalformedRowError, match="expected header"):
        ml.load_ratings(path)


def test_movies_quoted_comma_crlf_utf8_and_genres(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "movies.csv",
        [
            "movieId,title,genres",
            "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
            '11,"American President, The (1995)",Comedy|Drama|Romance',
            '2,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",Comedy|Romance',
            "3,Cosmos,(no genres listed)",
            '4,"Babylon 5 (1994-1998)",Sci-Fi',
        ],
    )
    movies = {m.movieId: m for m in ml.load_movies(path)}
    assert movies[1].title == "Toy Story" and movies[1].year == 1995
    assert movies[1].genres == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert movies[11].title == "American President, The" and movies[11].year == 1995
    assert movies[2].title == "Amélie (Fabuleux destin d'Amélie Poulain, Le)"
    assert movies[2].year == 2001
    assert movies[3].year is None and movies[3].genres == []
    assert movies[4].title == "Babylon 5" and movies[4].year == 1994


def test_movies_bad_rows_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "movies.csv",
        ["movieId,title,genres", "x,Heat (1995),Action", "5,Heat (1995)", "6,,Drama", "7,Ok,Drama"],
    )
    report = LoadReport()
    movies = ml.load_movies(path, report=report)
    assert [m.movieId for m in movies] == [7]
    assert [i.line for i in report.issues] == [2, 3, 4]
    with pytest.raises(MalformedRowError, match=r"movies\.csv:2"):
        ml.load_movies(path, on_error="raise")


@pytest.mark.parametrize(
    ("raw", "title", "year"),
    [
        ("Heat (1995)", "Heat", 1995),
        ("  Heat (1995)  ", "Heat", 1995),
        ("Heat (1995) ", "Heat", 1995),
        ("2001: A Space Odyssey (1968)", "2001: A Space Odyssey", 1968),
        ("1984 (1956)", "1984", 1956),
        ("Babylon 5 (1994-1998)", "Babylon 5", 1994),
        ("Stranger Things (2016–)", "Stranger Things", 2016),
        ("Cosmos", "Cosmos", None),
        ("Hostel (Part III)", "Hostel (Part III)", None),
        ("(500) Days of Summer (2009)", "(500) Days of Summer", 2009),
        ("Movie (19955)", "Movie (19955)", None),
    ],
)
def test_parse_title_year(raw: str, title: str, year: int | None) -> None:
    assert ml.parse_title(raw) == (title, year)


def test_links_allow_missing_tmdb_but_not_bad_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "links.csv",
        ["movieId,imdbId,tmdbId", "1,0114709,862", "2,0113497,", "3,tt123,5", ",0113228,15602"],
    )
    report = LoadReport()
    links = ml.load_links(path, report=report)
    assert [(link.movieId, link.imdbId, link.tmdbId) for link in links] == [
        (1, "0114709", 862),
        (2, "0113497", None),
    ]
    assert [i.line for i in report.issues] == [4, 5]


def test_tags_with_quoted_commas(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "tags.csv",
        ["userId,movieId,tag,timestamp", '2,60756,"funny, really",1445714994', "2,x,bad,1"],
    )
    report = LoadReport()
    tags = ml.load_tags(path, report=report)
    assert [(t.userId, t.movieId, t.tag) for t in tags] == [(2, 60756, "funny, really")]
    assert report.issues[0].line == 3


def test_real_ml_latest_small_loads_clean(movielens_dir: Path) -> None:
    report = LoadReport()
    r = ml.load_ratings(movielens_dir / "ratings.csv", report=report)
    movies = ml.load_movies(movielens_dir / "movies.csv", report=report)
    assert report.issues == []
    assert len(r) == 100836
    assert len(movies) == 9742
    assert np.unique(r.user_ids).shape[0] == 610
    assert set(np.unique(r.ratings)) <= {x / 2 for x in range(1, 11)}
