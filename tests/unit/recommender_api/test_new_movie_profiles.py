"""Content profiles for movies added after training (recommender_api.new_movies), exact on a
hand-made model: the profile is the mean of trained movies' vectors weighted by the square of
(1 − α)·cos(genre TF-IDF) + α·cos(tag TF-IDF) over the nearest neighbours."""

from __future__ import annotations

import math

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
        {"movieId": 10, "title": "A", "genres": ["Animation", "Comedy"], "tags": ["Pixar"]},
        {"movieId": 20, "title": "B", "genres": ["Horror"], "tags": ["gore"]},
        {"movieId": 30, "title": "C", "genres": ["Animation"], "tags": ["pixar", "toys"]},
        {"movieId": 40, "title": "D", "genres": ["Animation", "Comedy"]},  # too few ratings
        {
            "movieId": 99,
            "title": "New",
            "genres": ["Animation", "Comedy"],
            "tags": [" PIXAR", "pixar"],
            "added_at": 1,
        },
    ]
    return model, MovieCatalog.from_docs(docs)


def idf(df: int, n: int = 3) -> float:  # smoothed idf over the 3 eligible trained movies
    return math.log((1 + n) / (1 + df)) + 1


def test_profile_is_the_weighted_mean_of_tag_and_genre_neighbours() -> None:
    model, catalog = model_and_catalog()
    assert catalog.new_ids == (99,) and catalog.meta[99].tags == ("pixar",)
    content = new_movies.build(model, catalog, min_ratings=10)
    assert content is not None and content.ids.tolist() == [99]
    a, c, p, t = idf(2), idf(1), idf(2), idf(1)  # Animation, Comedy, pixar, toys
    alpha = new_movies.DEFAULT_PARAMS.tag_weight
    # Movie 10: same genres, same tag -> 1. Movie 30: Animation only, pixar + toys.
    # Movie 20 shares nothing -> 0; movie 40 has 2 ratings (< 10) -> excluded.
    sim30 = (1 - alpha) * a / math.hypot(a, c) + alpha * p / math.hypot(p, t)
    w = np.array([1.0, 0.0, sim30**2, 0.0])
    w /= w.sum()
    assert content.Q[0] == pytest.approx(w @ model.Q)
    assert content.item_bias[0] == pytest.approx(w @ model.item_bias)
    assert np.linalg.norm(content.sim_unit[0]) == pytest.approx(1.0)


def test_tags_decide_between_movies_of_the_same_genres() -> None:
    """Two trained comedies; the new comedy tagged like the second one leans to the second."""
    trained = [(["Comedy"], ["romance"]), (["Comedy"], ["pixar"]), (["Drama"], [])]
    eligible = np.array([True, True, True])
    params = new_movies.ProfileParams(tag_weight=0.75, neighbours=0, power=2.0)
    W = new_movies.content_weights(trained, eligible, [(["Comedy"], ["pixar"])], params)
    assert W[0] == pytest.approx([0.25**2, 1.0, 0.0] / np.float64(1 + 0.25**2))
    # Without tags the two comedies weigh the same; genres only (α = 0) too.
    untagged = new_movies.content_weights(trained, eligible, [(["Comedy"], [])], params)
    assert untagged[0] == pytest.approx([0.5, 0.5, 0.0])
    genres_only = new_movies.ProfileParams(tag_weight=0.0, neighbours=0, power=2.0)
    W0 = new_movies.content_weights(trained, eligible, [(["Comedy"], ["pixar"])], genres_only)
    assert W0[0] == pytest.approx([0.5, 0.5, 0.0])
    # One neighbour: only the closest; nothing shared with any movie: an all-zero row.
    one = new_movies.ProfileParams(tag_weight=0.75, neighbours=1, power=2.0)
    assert new_movies.content_weights(trained, eligible, [(["Comedy"], ["pixar"])], one)[
        0
    ] == pytest.approx([0.0, 1.0, 0.0])
    none = new_movies.content_weights(trained, eligible, [(["Western"], ["cowboys"])], params)
    assert not none.any()


def test_offer_takes_the_last_slot_only_above_the_threshold() -> None:
    model, catalog = model_and_catalog()
    content = new_movies.build(model, catalog, min_ratings=10)
    assert content is not None
    user = UserVectors(0.0, np.array([2.0, 0.0], np.float32), None, folded_in=False)
    items = [{"movieId": m, "score": 1.0} for m in (10, 30, 20)]
    # q = w10·[1, 0] + w30·[1, 1] = [1, w30], b = 0.1·w10 + 0.3·w30: predicted = 3 + b + 2
    predicted = 3.0 + float(content.item_bias[0]) + 2.0 * float(content.Q[0, 0])
    assert predicted == pytest.approx(5.0 + float(content.item_bias[0])) and predicted > 5.1
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
        {"min_predicted": predicted + 0.01},
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
