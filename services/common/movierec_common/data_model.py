"""The MongoDB data model, written once: mongo-init, both APIs and the trainer import it here.

- Collection names, the meta document ids (the retrain slot included) and the rating scale.
- Title tokens: SecantusDB (the embedded server) has no text indexes, so title search runs on
  an indexed array of lower-cased, accent-free word tokens (`title_tokens`); whole words match
  with `$all`, the last word typed matches as an anchored prefix regex. This behaves the same on
  a real mongod.
- Popularity: the damped mean (rating_sum + m·C)/(rating_count + m), which keeps a movie with a
  single 5-star rating from outranking one with hundreds of 4.5s.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TypeVar

import numpy as np

MOVIES = "movies"
RATINGS = "ratings"
USERS = "users"
JOBS = "jobs"
COUNTERS = "counters"
META = "meta"
# {userId, movieId, deleted_at (Unix s)}: a user's rating deletions, so that merging a MovieLens
# file over the database (retrain, a re-import) never brings a deleted rating back.
RATING_DELETIONS = "rating_deletions"
# Online evaluation (issue 17): the recommender's impressions (read by time for the admin's
# metrics) and A/B experiments (each replica polls for the running one).
IMPRESSIONS = "impressions"
EXPERIMENTS = "experiments"

RATINGS_STATS_ID = "ratings_stats"  # {_id, global_mean, prior_weight, n_ratings}
IMPORT_MARKER_ID = "movielens_import"  # {_id, fingerprint, counts, finished_at}
LATE_INDEXES_ID = "late_indexes"  # {_id, built: [names of read-only indexes built whole]}
TAGS_MARKER_ID = "movielens_tags"  # {_id, fingerprint of the tags file, movies, finished_at}
USER_ID_COUNTER = "userId"  # counters doc {_id: "userId", seq: <last id handed out>}

RETRAIN_SLOT_ID = "retrain_slot"  # meta doc {_id, job_id, updated_at}: one active job at a time

RATING_MIN, RATING_MAX, RATING_STEP = 0.5, 5.0, 0.5  # MovieLens stars: 0.5–5.0 in half steps

ROLE_USER = "user"
ROLE_ADMIN = "admin"

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)

_Stars = TypeVar("_Stars", float, np.ndarray)


def on_rating_scale(stars: _Stars) -> bool | np.ndarray:
    """Whether `stars` (a float, or element-wise for an array) is on the rating scale:
    RATING_MIN..RATING_MAX in steps of RATING_STEP. NaN and ±inf are not."""
    steps = np.divide(stars, RATING_STEP)
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(stars)
            & (stars >= RATING_MIN)
            & (stars <= RATING_MAX)
            & (steps == np.round(steps))
        )
    return bool(ok) if np.ndim(ok) == 0 else ok


def genre_key(name: str) -> str:
    """How both APIs match a genre a client names to the catalogue's spelling: trimmed and
    case-insensitive (`genre=action` is Action)."""
    return name.strip().lower()


def fold(text: str) -> str:
    """Lower-case and strip accents, so 'Amélie' is found by typing 'amelie'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(fold(text))


def title_tokens(title: str) -> list[str]:
    """Distinct tokens in first-seen order (a multikey index needs no duplicates)."""
    return list(dict.fromkeys(tokenize(title)))


def damped_mean(rating_sum: float, rating_count: int, prior_mean: float, weight: float) -> float:
    return (rating_sum + weight * prior_mean) / (rating_count + weight)


def movie_stats(rating_sum: float, rating_count: int, prior_mean: float, weight: float) -> dict:
    """The four stats fields of a movie document, from its exact sum and count."""
    return {
        "rating_count": int(rating_count),
        "rating_sum": float(rating_sum),
        "avg_rating": (float(rating_sum) / rating_count) if rating_count else None,
        "popularity_score": damped_mean(rating_sum, rating_count, prior_mean, weight),
    }
