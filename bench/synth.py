"""A seeded synthetic rating set with MovieLens-like long tails, for the 10M-rating benchmark.

Users' activity is log-normal (most users rate a few dozen movies, a few rate thousands) and
movie popularity is Zipf-like, so the blocks the engines solve have the same uneven row lengths
as real data. Ratings come from a rank-8 taste model plus user/movie biases and noise, rounded
to half stars in 0.5–5.0, so a rank-20 ALS has real structure to find. Everything is vectorised:
10M ratings take a few seconds and ~0.5 GB.

    .venv/bin/python bench/synth.py --ratings 10000000 --out var/synth10m   # writes ratings.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def generate(
    n_ratings: int = 10_000_000,
    n_users: int = 120_000,
    n_items: int = 30_000,
    seed: int = 20261128,
    true_rank: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user_ids, movie_ids, ratings float32, timestamps), ids starting at 1, no duplicate
    (user, movie) pairs, exactly n_ratings rows."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(mean=0.0, sigma=1.1, size=n_users)
    activity /= activity.sum()
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = rng.permutation(popularity / popularity.sum())
    # Oversample, then drop repeated (user, movie) pairs and trim to exactly n_ratings.
    draws = int(n_ratings * 1.25) + 1000
    keys = np.empty(0, dtype=np.int64)
    while keys.size < n_ratings:
        u = rng.choice(n_users, size=draws, p=activity)
        i = rng.choice(n_items, size=draws, p=popularity)
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    keys = rng.permutation(keys)[:n_ratings]
    u, i = keys // n_items, keys % n_items
    order = np.argsort(keys[:n_ratings] // n_items, kind="stable")  # grouped by user, like CSV
    u, i = u[order], i[order]

    pu = rng.normal(0, 1 / np.sqrt(true_rank), (n_users, true_rank))
    qi = rng.normal(0, 1 / np.sqrt(true_rank), (n_items, true_rank))
    bu = rng.normal(0, 0.35, n_users)
    bi = rng.normal(0, 0.45, n_items) - 0.6 * (popularity < np.median(popularity))
    r = np.empty(n_ratings, dtype=np.float32)
    step = 1 << 20
    for s in range(0, n_ratings, step):
        us, is_ = u[s : s + step], i[s : s + step]
        raw = 3.5 + bu[us] + bi[is_] + 0.9 * np.einsum("ij,ij->i", pu[us], qi[is_])
        raw += rng.normal(0, 0.75, us.size)
        r[s : s + step] = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
    ts = rng.integers(1_000_000_000, 1_700_000_000, n_ratings)
    return u + 1, i + 1, r, ts


def write_csv(directory: Path, arrays: tuple[np.ndarray, ...]) -> Path:
    """ratings.csv in MovieLens format (used to try the CLI on the synthetic set)."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    u, i, r, t = arrays
    path = directory / "ratings.csv"
    pd.DataFrame({"userId": u, "movieId": i, "rating": r, "timestamp": t}).to_csv(
        path, index=False, float_format="%.1f", lineterminator="\r\n"
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratings", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    arrays = generate(args.ratings, seed=args.seed)
    print(write_csv(args.out, arrays))


if __name__ == "__main__":
    main()
