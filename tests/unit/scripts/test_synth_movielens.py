"""The synthetic MovieLens-shaped generator (bench/synth_movielens.py) at a small size: the files
have MovieLens's columns and quirks, the tables agree with each other, and a seed is a seed."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from scripts.synth_movielens import GENRES, NO_GENRES, SynthSpec, main, write

SPEC = SynthSpec(n_ratings=20_000, n_users=300, n_movies=2_000, seed=7)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write(SPEC, out)
    return out


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_files_have_movielens_columns(synth_dir: Path) -> None:
    heads = {p.name: p.read_text(encoding="utf-8").splitlines()[0] for p in synth_dir.glob("*.csv")}
    assert heads == {
        "ratings.csv": "userId,movieId,rating,timestamp",
        "movies.csv": "movieId,title,genres",
        "links.csv": "movieId,imdbId,tmdbId",
        "tags.csv": "userId,movieId,tag,timestamp",
    }
    assert "synthetic" in (synth_dir / "README.txt").read_text(encoding="utf-8")


def test_ratings_are_distinct_half_stars_sorted_and_long_tailed(synth_dir: Path) -> None:
    rows = read(synth_dir / "ratings.csv")
    assert len(rows) == SPEC.n_ratings
    pairs = [(int(r["userId"]), int(r["movieId"])) for r in rows]
    assert len(set(pairs)) == len(pairs), "duplicate (user, movie) pairs"
    assert pairs == sorted(pairs), "rows must be sorted by userId, then movieId"
    values = np.array([float(r["rating"]) for r in rows])
    assert set(np.unique(values)) <= {x / 2 for x in range(1, 11)}
    assert 3.0 < values.mean() < 4.0
    ts = np.array([int(r["timestamp"]) for r in rows])
    assert ts.min() >= 820_454_400 and ts.max() <= 1_700_000_000
    users = np.array([p[0] for p in pairs])
    assert users.min() >= 1 and users.max() <= SPEC.n_users
    per_user = np.bincount(users)[1:]
    per_movie = np.unique([p[1] for p in pairs], return_counts=True)[1]
    # Long tails: the busiest user and movie far above the median ones.
    assert per_user.max() > 5 * np.median(per_user[per_user > 0])
    assert per_movie.max() > 10 * np.median(per_movie)


def test_tables_agree(synth_dir: Path) -> None:
    movies = read(synth_dir / "movies.csv")
    movie_ids = [int(m["movieId"]) for m in movies]
    assert len(movie_ids) == SPEC.n_movies == len(set(movie_ids))
    assert max(movie_ids) > SPEC.n_movies, "movieIds are sparse, as in MovieLens"
    rated = {(int(r["userId"]), int(r["movieId"])) for r in read(synth_dir / "ratings.csv")}
    assert {m for _, m in rated} <= set(movie_ids)
    tags = read(synth_dir / "tags.csv")
    assert 0.02 * SPEC.n_ratings < len(tags) < 0.06 * SPEC.n_ratings
    assert all((int(t["userId"]), int(t["movieId"])) in rated for t in tags)
    assert all(t["tag"].strip() for t in tags)
    links = read(synth_dir / "links.csv")
    assert [int(x["movieId"]) for x in links] == movie_ids
    assert all(len(x["imdbId"]) == 7 and x["imdbId"].isdigit() for x in links)


def test_movies_have_years_genres_and_quirks(synth_dir: Path) -> None:
    movies = read(synth_dir / "movies.csv")
    allowed = set(GENRES)
    for m in movies:
        assert m["title"].endswith(")") and 1900 <= int(m["title"][-5:-1]) <= 2019, m["title"]
        if m["genres"] != NO_GENRES:
            gs = m["genres"].split("|")
            assert 1 <= len(gs) <= 4 and set(gs) <= allowed, m["genres"]
    titles = [m["title"] for m in movies]
    assert any("," in t for t in titles), "some titles need CSV quoting"
    assert any(not t.isascii() for t in titles), "some titles are not ASCII"


def test_seed_is_reproducible(tmp_path: Path) -> None:
    def digest(out: Path) -> str:
        main(
            [
                "--ratings",
                "3000",
                "--users",
                "50",
                "--movies",
                "400",
                "--seed",
                "3",
                "--out",
                str(out),
            ]
        )
        return hashlib.sha256(
            b"".join(p.read_bytes() for p in sorted(out.glob("*.csv")))
        ).hexdigest()

    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_impossible_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        SynthSpec(n_ratings=1000, n_users=10, n_movies=10)
    with pytest.raises(ValueError, match="positive"):
        SynthSpec(n_ratings=0)


def test_the_loader_reads_every_row(synth_dir: Path) -> None:
    """What the generator writes is clean MovieLens: the one loader keeps every row."""
    from movierec_common.loader import load_dataset

    data = load_dataset(synth_dir, on_error="strict", with_tags=True)
    for name, counts in data.summary.files.items():
        assert counts.read == counts.kept and not counts.dropped, (name, counts)
    assert data.summary.files["ratings.csv"].kept == SPEC.n_ratings
    assert data.summary.files["tags.csv"].kept > 0


def test_make_data_generates_a_synthetic_preset(tmp_path: Path) -> None:
    from scripts import fetch_data

    dest = tmp_path / "synthetic-100k"
    assert fetch_data.main(["--dataset", "synthetic-100k", "--dest", str(dest)]) == 0
    first = (dest / "ratings.csv").stat().st_mtime_ns
    assert fetch_data.main(["--dataset", "synthetic-100k", "--dest", str(dest)]) == 0
    assert (dest / "ratings.csv").stat().st_mtime_ns == first, "a second run regenerated"
    assert sum(1 for _ in (dest / "ratings.csv").open()) == 100_836 + 1
