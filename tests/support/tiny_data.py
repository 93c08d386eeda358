"""Small MovieLens-format CSVs with a known structure, for end-to-end trainer runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_movielens(
    directory: Path, n_users: int = 60, n_movies: int = 80, seed: int = 0, bad_rows: int = 0
) -> int:
    """Write ratings.csv (CRLF, like the real files) from a rank-2 taste model with two user
    groups; returns the number of valid rating rows. `bad_rows` malformed lines are appended."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    group = np.arange(n_users) % 2
    lines = ["userId,movieId,rating,timestamp"]
    n = 0
    for u in range(n_users):
        liked = np.arange(n_movies) % 2 == group[u]
        # Users mostly watch (and like) their group's movies, as on MovieLens.
        p = np.where(liked, 6.0, 1.0)
        for m in rng.choice(n_movies, size=rng.integers(12, 30), replace=False, p=p / p.sum()):
            base = 4.5 if liked[m] else 2.0
            r = float(np.clip(np.round((base + rng.normal(0, 0.5)) * 2) / 2, 0.5, 5.0))
            lines.append(f"{u + 1},{m + 1},{r},{1_000_000_000 + u * 100 + int(m)}")
            n += 1
    lines += ["7,x,4.0,1000000000"] * bad_rows
    (directory / "ratings.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    movies = ["movieId,title,genres"] + [
        f'{m + 1},"Movie {m + 1}, The ({1990 + m % 30})",Drama' for m in range(n_movies)
    ]
    (directory / "movies.csv").write_bytes(("\r\n".join(movies) + "\r\n").encode())
    return n
