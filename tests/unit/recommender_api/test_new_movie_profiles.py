"""Content profiles for movies added after training (recommender_api.new_movies), exact on a
hand-made model: the profile is the Jaccard²-weighted mean of trained movies' vectors."""

from __future__ import annotations

import numpy as np
import pytest
from recommender_api import new_movies
from recommender_api.movies import MovieCatalog
from recommender_api.ranking import UserVectors, build_serving_model


def model_and_catalog():
    Q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    model = build_serving_model(
        version="v1",
        manifest={},
        arrays={
            "P": np.array([[2.0, 0.0]]),
            "Q": Q,
            "user_bias": np.array([0.0]),
            "item_bias": np.array([0.1, 0.2, 0.3, 0.4]),
            "global_mean": np.array(3.0),
            "user_ids": np.array([1]),
            "item_ids": np.array([10, 20, 30, 40]),
            "item_counts": np.array([50, 50, 50, 2]),
        },
        similar_factors="explicit",
        similar_min_ratings=0,
    )
    docs = [
        {"movieId": 10, "title": "A", "genres": ["Animation", "Comedy"]},
        {"movieId": 20, "title": "B", "genres": ["Horror"]},
        {"movieId": 30, "title": "C", "genres": ["Animation"]},
        {"movieId": 40, "title": "D", "genres": ["Animation", "Comedy"]},  # too few ratings
        {"movieId": 99, "title": "New", "genres": ["Animation", "Comedy"], "added_at": 1},
    ]
    return model, MovieCatalog.from_docs(docs)


def test_profile_is_the_weighted_mean_of_genre_neighbours() -> None:
    model, catalog = model_and_catalog()
    assert catalog.new_ids == (99,)
    content = new_movies.build(model, catalog, min_ratings=10)
    assert content is not None and content.ids.tolist() == [99]
    # Jaccard: movie 10 -> 1, movie 30 -> 1/2, movie 20 -> 0, movie 40 excluded (2 ratings).
    w = np.array([1.0, 0.0, 0.25, 0.0])
    w /= w.sum()
    assert content.Q[0] == pytest.approx(w @ model.Q)
    assert content.item_bias[0] == pytest.approx(w @ model.item_bias)
    assert np.linalg.norm(content.sim_unit[0]) == pytest.approx(1.0)


def test_offer_takes_the_last_slot_only_above_the_threshold() -> None:
    model, catalog = model_and_catalog()
    content = new_movies.build(model, catalog, min_ratings=10)
    user = UserVectors(0.0, np.array([2.0, 0.0], np.float32), None, folded_in=False)
    items = [{"movieId": m, "score": 1.0} for m in (10, 30, 20)]
    # q = 0.8·[1, 0] + 0.2·[1, 1] = [1, 0.2], b = 0.14: predicted = 3 + 0.14 + 2 = 5.14
    result = {"strategy": "personalized", "order": "rating", "items": list(items)}
    new_movies.offer_in_list(
        result, model, catalog, content, user, np.empty(0, np.int64),
        slots=1, min_predicted=3.5, genre=None, exclude=None,
    )  # fmt: skip
    assert [it["movieId"] for it in result["items"]] == [10, 30, 99]
    assert result["items"][-1]["new"] is True and result["items"][-1]["title"] == "New"
    # Rated, excluded, below the threshold or outside the genre: the list is unchanged.
    for kwargs in (
        {"rated": np.array([99])},
        {"exclude": [99]},
        {"min_predicted": 5.2},
        {"genre": "Horror"},
    ):
        result = {"strategy": "personalized", "order": "rating", "items": list(items)}
        new_movies.offer_in_list(
            result, model, catalog, content, user, kwargs.get("rated", np.empty(0, np.int64)),
            slots=1, min_predicted=kwargs.get("min_predicted", 3.5),
            genre=kwargs.get("genre"), exclude=kwargs.get("exclude"),
        )  # fmt: skip
        assert [it["movieId"] for it in result["items"]] == [10, 30, 20], kwargs


def test_no_profile_once_the_model_has_the_movie() -> None:
    model, _ = model_and_catalog()
    catalog = MovieCatalog.from_docs(
        [{"movieId": 10, "title": "A", "genres": ["Animation"], "added_at": 1}]
    )
    assert new_movies.build(model, catalog, min_ratings=0) is None
