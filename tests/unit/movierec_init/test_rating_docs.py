"""The import's lazily built rating documents (movierec_init.importer.RatingDocs)."""

from __future__ import annotations

import numpy as np
from movierec_common.loader import Ratings
from movierec_init.importer import RatingDocs


def _ratings(n: int) -> Ratings:
    rng = np.random.default_rng(1)
    return Ratings(
        rng.integers(1, 1000, n).astype(np.int64),
        rng.integers(1, 500, n).astype(np.int64),
        (rng.integers(1, 11, n) / 2).astype(np.float32),
        rng.integers(10**9, 2 * 10**9, n).astype(np.int64),
    )


def test_batches_are_the_documents_of_their_rows_with_plain_python_types() -> None:
    r = _ratings(5003)
    docs = RatingDocs(r)
    assert len(docs) == 5003
    batches = [docs[s : s + 2000] for s in range(0, len(docs), 2000)]
    assert [len(b) for b in batches] == [2000, 2000, 1003]
    flat = [d for b in batches for d in b]
    for i in (0, 1999, 2000, 5002):
        assert flat[i] == {
            "userId": int(r.user_ids[i]),
            "movieId": int(r.movie_ids[i]),
            "rating": float(r.ratings[i]),
            "timestamp": int(r.timestamps[i]),
        }
    assert all(type(v) in (int, float) for v in flat[7].values())  # BSON-encodable, no NumPy
    assert docs[-1] == flat[-1] and docs[3] == flat[3]


def test_an_empty_set_has_no_documents() -> None:
    docs = RatingDocs(_ratings(0))
    assert len(docs) == 0 and docs[0:2000] == []
