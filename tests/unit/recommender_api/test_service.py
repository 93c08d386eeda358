"""recommender_api.service: what the routes return, on a small model fitted with the real
kernel (tests/support/toy_model.py)."""

from __future__ import annotations

import numpy as np
from recommender_api import service
from recommender_api.movies import MovieCatalog
from recommender_api.repository import UserRatings

from tests.support.toy_model import toy_model


def test_recommender_never_returns_a_movie_missing_from_the_catalogue() -> None:
    model, _, _, _ = toy_model()
    user = int(model.users.ids[0])
    empty = UserRatings(np.empty(0, np.int64), np.empty(0, np.float32))
    everything = service.recommend(model, MovieCatalog(), user, empty, k=12, order="rating")
    best = everything["items"][0]["movieId"]
    docs = [
        {"movieId": int(m), "title": f"m{m}", "genres": ["Drama"], "popularity_score": 3.0}
        for m in model.items.ids.tolist()
        if int(m) != best
    ]
    catalog = MovieCatalog.from_docs(docs)
    for order in ("rating", "ranking"):
        out = service.recommend(model, catalog, user, empty, k=12, order=order)
        ids = [i["movieId"] for i in out["items"]]
        assert best not in ids and len(ids) == 11
        assert all(i["title"] is not None for i in out["items"])
    sim = service.similar(model, catalog, int(model.items.ids[1]), 12, 0)
    assert best not in [i["movieId"] for i in sim["items"]]
