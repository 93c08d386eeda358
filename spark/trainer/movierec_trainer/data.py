"""Ratings as columnar NumPy arrays, the two holdout protocols, and a data fingerprint.

Everything stays columnar (one array per field) so a 10M-rating set costs ~200 MB, never a
Python object per rating. Both splits drop test rows whose user or movie never appears in the
training part: a model cannot score what it has never seen, and keeping them would measure the
cold-start fallback instead of the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from movierec_common import als
from movierec_common.loader import Dataset, OnError, Ratings, load_dataset


def load_dataset_dir(data_dir: Path, on_error: OnError = "skip") -> Dataset:
    """A MovieLens directory (any layout) read and cleaned by the one loader
    (`movierec_common.loader.load_dataset`): malformed rows reported, one rating per
    (user, movie) with the latest timestamp, ratings of movies missing from the catalogue
    dropped. Without a movies file the catalogue filter is off (logged)."""
    return load_dataset(Path(data_dir), on_error=on_error, require_movies=False)


def load_ratings_dir(data_dir: Path, on_error: OnError = "skip") -> Ratings:
    """The cleaned ratings of `load_dataset_dir`."""
    return load_dataset_dir(data_dir, on_error).ratings


def make_ratings(
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray | None = None,
) -> Ratings:
    n = len(ratings)
    return Ratings(
        user_ids=np.asarray(user_ids, dtype=np.int64),
        movie_ids=np.asarray(movie_ids, dtype=np.int64),
        ratings=np.asarray(ratings, dtype=np.float32),
        timestamps=(
            np.zeros(n, dtype=np.int64)
            if timestamps is None
            else np.asarray(timestamps, dtype=np.int64)
        ),
    )


def subset(r: Ratings, mask_or_index: np.ndarray) -> Ratings:
    return Ratings(
        user_ids=r.user_ids[mask_or_index],
        movie_ids=r.movie_ids[mask_or_index],
        ratings=r.ratings[mask_or_index],
        timestamps=r.timestamps[mask_or_index],
    )


def concat(parts: list[Ratings]) -> Ratings:
    return Ratings(
        user_ids=np.concatenate([p.user_ids for p in parts]),
        movie_ids=np.concatenate([p.movie_ids for p in parts]),
        ratings=np.concatenate([p.ratings for p in parts]),
        timestamps=np.concatenate([p.timestamps for p in parts]),
    )


@dataclass(frozen=True)
class Split:
    train: Ratings
    test: Ratings
    protocol: str
    fraction: float
    seed: int | None
    dropped_test_rows: int

    def describe(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "fraction": self.fraction,
            "seed": self.seed,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "dropped_test_rows": self.dropped_test_rows,
        }


def _drop_unseen(train: Ratings, test: Ratings) -> tuple[Ratings, int]:
    keep = np.isin(test.user_ids, np.unique(train.user_ids)) & np.isin(
        test.movie_ids, np.unique(train.movie_ids)
    )
    return subset(test, keep), int((~keep).sum())


def random_holdout(r: Ratings, fraction: float, seed: int) -> Split:
    """The project's seeded random holdout (the kernel's `als.random_holdout`: exactly
    round(fraction·n) rows drawn by a seeded permutation), so the trainer, the benchmark and
    bench/tune_defaults.py all evaluate on the very same rows."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    _, u = np.unique(r.user_ids, return_inverse=True)
    _, i = np.unique(r.movie_ids, return_inverse=True)
    train_mask, test_mask = als.random_holdout(u.ravel(), i.ravel(), fraction, seed)
    dropped = int((~train_mask).sum() - test_mask.sum())
    return Split(subset(r, train_mask), subset(r, test_mask), "random", fraction, seed, dropped)


def temporal_holdout(r: Ratings, fraction: float) -> Split:
    """Each user's latest `fraction` of ratings goes to test; every user keeps at least one
    training rating, so the split asks "what will they rate next", not "what did they rate".
    Ties in timestamp are broken by movie id, keeping the split deterministic."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    order = np.lexsort((r.movie_ids, r.timestamps, r.user_ids))
    users = r.user_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    pos = np.arange(len(users)) - np.repeat(starts, counts)
    n_test = np.floor(counts * fraction).astype(np.int64)
    n_test = np.minimum(n_test, counts - 1)
    is_test_sorted = pos >= np.repeat(counts - n_test, counts)
    is_test = np.zeros(len(r), dtype=bool)
    is_test[order] = is_test_sorted
    train = subset(r, ~is_test)
    test, dropped = _drop_unseen(train, subset(r, is_test))
    return Split(train, test, "temporal", fraction, None, dropped)


def fingerprint(r: Ratings) -> str:
    """sha256 over the (user, movie, rating) triples in canonical order: the same ratings give
    the same fingerprint whatever order the CSV or the database returned them in."""
    order = np.lexsort((r.movie_ids, r.user_ids))
    h = hashlib.sha256()
    for arr in (r.user_ids[order], r.movie_ids[order], r.ratings[order]):
        h.update(np.ascontiguousarray(arr).tobytes())
    return "sha256:" + h.hexdigest()


def merge_db_over_csv(csv: Ratings, db: Ratings) -> Ratings:
    """CSV ratings plus database ratings, one per (userId, movieId): the loader's rule (latest
    timestamp wins; on equal timestamps the database row, which comes last)."""
    from movierec_common.loader import LoadSummary, clean_ratings

    return clean_ratings([("csv", csv), ("mongodb", db)], LoadSummary())
