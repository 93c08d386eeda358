"""Turning (model, catalogue, a user's ratings) into a list: the strategy decisions live here.

Pure and synchronous given its inputs, so routes fetch data asynchronously and then call in;
batch calls run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import new_movies, ranking
from .movies import MovieCatalog
from .ranking import ServingModel, UserVectors
from .repository import UserRatings

OrderRequest = Literal["ranking", "rating"]


class NoModelError(Exception):
    """An endpoint that needs factors was called while only popularity is available."""


class UnknownMovieError(Exception):
    pass


@dataclass(frozen=True)
class ResolvedUser:
    vectors: UserVectors | None
    strategy: Literal["personalized", "fold-in", "popular"]


def resolve_user(model: ServingModel | None, user_id: int, rated: UserRatings) -> ResolvedUser:
    """Trained vectors if the user is in the model, else fold-in from their ratings, else none.
    EASE has no user parameters: its parts always come from the user's current ratings (a
    trained user's too, where their stars are known, `rated.user_rated`)."""
    if model is None:
        return ResolvedUser(None, "popular")
    vectors = ranking.trained_user(model, user_id)
    if vectors is not None:
        if model.ease is not None:
            idx, found = model.items.take(rated.movie_ids)
            u = model.users.get(user_id)
            assert u is not None
            vectors = ranking.trained_with_ease(model, u, vectors, idx, rated.ratings[found])
        return ResolvedUser(vectors, "personalized")
    idx, found = model.items.take(rated.movie_ids)
    vectors = ranking.fold_in(model, idx, rated.ratings[found])
    if vectors is None:
        return ResolvedUser(None, "popular")
    return ResolvedUser(vectors, "fold-in")


def _meta(catalog: MovieCatalog, movie_id: int) -> dict[str, Any]:
    m = catalog.meta.get(movie_id)
    if m is None:
        return {"movieId": movie_id, "title": None, "year": None, "genres": []}
    return {"movieId": movie_id, "title": m.title, "year": m.year, "genres": m.genres}


def _base(
    model: ServingModel | None,
    user_id: int,
    strategy: str,
    genre: str | None,
    n_user_ratings: int | None,
) -> dict[str, Any]:
    return {
        "userId": user_id,
        "strategy": strategy,
        "ranking_model": bool(model is not None and model.has_ranking),
        "model_version": model.version if model is not None else None,
        "genre": genre,
        "n_user_ratings": n_user_ratings,
    }


@dataclass(frozen=True)
class NewMovieOffer:
    """Movies added since the model was trained (issue 17): up to `slots` of them, predicted
    at `min_predicted` stars or more, take a personalised list's last positions."""

    content: new_movies.ContentItems
    slots: int
    min_predicted: float


@dataclass(frozen=True)
class Scored:
    """One user's list: the listed movies (item indices, best first) and their order-by
    scores, the predicted stars of every movie, which order was used, and the blend's part
    scales (for the explanation; None unblended)."""

    best: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray
    order: Literal["ranking", "rating"]
    scales: ranking.PartScales | None = None


def _scores(
    model: ServingModel,
    user: UserVectors,
    order: OrderRequest,
    k: int,
    exclude: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> Scored:
    """The k best by the ranking model's order when asked and present, else by the predicted
    stars; never an `exclude`d movie, only `allowed` ones (item indices)."""
    predicted = ranking.predicted_ratings(model, user)
    can_rank = (model.Y is not None and user.x_u is not None) or user.ease_scores is not None
    if order == "ranking" and model.has_ranking and can_rank:
        top = ranking.ranked_top_k(
            model, user, k, predicted=predicted, exclude=exclude, allowed=allowed
        )
        return Scored(top.best, top.scores, predicted, "ranking", top.scales)
    best = ranking.top_k(predicted, k, exclude=exclude, allowed=allowed)
    return Scored(best, predicted[best], predicted, "rating")


def _rated_rows(
    model: ServingModel, user_id: int, resolved: ResolvedUser, rated: UserRatings
) -> tuple[np.ndarray, np.ndarray] | None:
    """(item rows, stars) of the ratings the user's vectors were solved from, if known."""
    if resolved.strategy == "fold-in":
        idx, found = model.items.take(rated.movie_ids)
        return idx, rated.ratings[found]
    u = model.users.get(user_id)
    return None if u is None else ranking.data_ratings(model, u)


def _because(
    model: ServingModel,
    catalog: MovieCatalog,
    user: UserVectors,
    scored: Scored,
    rows: tuple[np.ndarray, np.ndarray] | None,
    w_inv: np.ndarray | None = None,
) -> list[list[dict[str, Any]]]:
    """ "Because you rated …" for every listed movie, from the model that ordered the list
    (`scored`: what `_scores` computed for this user, reused rather than recomputed; `w_inv`
    the precomputed W⁻¹ of a trained user's `rows`, `ranking.trained_w_inv`)."""
    best = scored.best
    if rows is None or best.size == 0:
        return [[] for _ in range(int(best.size))]
    idx, stars = rows
    if scored.order == "ranking" and user.ease_scores is not None:
        parts = ranking.explain_blend(
            model,
            user,
            best,
            idx,
            stars,
            predicted=scored.predicted,
            scales=scored.scales,
            w_inv=w_inv,
        )
    elif scored.order == "ranking":
        parts = ranking.explain_ranking(model, best, idx, stars, w_inv=w_inv)
    else:
        parts = ranking.explain_explicit(model, user, best, idx, stars)
    star_of = dict(zip(idx.tolist(), stars.tolist(), strict=True))
    out = []
    for contribs in parts:
        out.append(
            [
                {
                    "movieId": int(model.items.ids[j]),
                    "title": _meta(catalog, int(model.items.ids[j]))["title"],
                    "rating": round(float(star_of[j]), 1),
                    "share": round(share, 3),
                }
                for j, share in contribs
            ]
        )
    return out


_KNOWN_CACHE: list[tuple[ServingModel, MovieCatalog, np.ndarray | None]] = []


def _in_catalogue(model: ServingModel, catalog: MovieCatalog) -> np.ndarray | None:
    """Model item indices whose movie is in the catalogue, or None when all are (or while the
    catalogue is not loaded yet). A model trained on ratings of a movie that is not in
    `movies` must never recommend it (it has no title and cannot be rated). Cached for the
    current (model, catalogue) pair: both are replaced, never mutated."""
    if _KNOWN_CACHE and _KNOWN_CACHE[0][0] is model and _KNOWN_CACHE[0][1] is catalog:
        return _KNOWN_CACHE[0][2]
    known: np.ndarray | None = None
    if catalog.meta:
        ids = np.fromiter(catalog.meta.keys(), np.int64, len(catalog.meta))
        idx, _ = model.items.take(ids)
        if idx.size < len(model.items.ids):
            known = np.sort(idx)
    _KNOWN_CACHE[:] = [(model, catalog, known)]
    return known


def _allowed(model: ServingModel, catalog: MovieCatalog, genre: str | None) -> np.ndarray | None:
    if genre is None:
        return _in_catalogue(model, catalog)
    # genre_ids come from the catalogue, so they hold known movies only
    return model.items.take(catalog.genre_ids.get(genre, np.empty(0, np.int64)))[0]


def _items(
    model: ServingModel, catalog: MovieCatalog, scored: Scored, strategy: str
) -> list[dict[str, Any]]:
    best = scored.best
    clipped = ranking.clip_rating(scored.predicted[best])
    return [
        {
            **_meta(catalog, int(mid)),
            "predicted_rating": round(float(p), 3),
            "score": float(s),
            "strategy": strategy,
        }
        for mid, p, s in zip(model.items.ids[best], clipped, scored.scores, strict=True)
    ]


def recommend(
    model: ServingModel | None,
    catalog: MovieCatalog,
    user_id: int,
    rated: UserRatings,
    *,
    k: int,
    genre: str | None = None,
    exclude: list[int] | None = None,
    order: OrderRequest = "ranking",
    new: NewMovieOffer | None = None,
) -> dict[str, Any]:
    """One user's list from all of their ratings (fold-in, popular, batch), with `new`
    movies offered in a personalised list's last slots."""
    excluded_ids = rated.movie_ids
    if exclude:
        excluded_ids = np.union1d(excluded_ids, np.asarray(exclude, np.int64))
    resolved = resolve_user(model, user_id, rated)
    base = _base(model, user_id, resolved.strategy, genre, len(rated))
    if resolved.vectors is None:
        items = _popular(model, catalog, k, genre, excluded_ids)
        return {**base, "order": "popularity", "items": items}
    assert model is not None
    excl_idx, _ = model.items.take(excluded_ids)
    allowed = _allowed(model, catalog, genre)
    scored = _scores(model, resolved.vectors, order, k, excl_idx, allowed)
    items = _items(model, catalog, scored, resolved.strategy)
    rows = _rated_rows(model, user_id, resolved, rated)
    # A trained user's reasons come from their ratings in the model's data (`_rated_rows`),
    # whose W⁻¹ may be precomputed; a folded-in user's from their current ratings.
    w_inv = ranking.trained_w_inv(model, user_id) if resolved.strategy == "personalized" else None
    because = _because(model, catalog, resolved.vectors, scored, rows, w_inv)
    for item, reasons in zip(items, because, strict=True):
        item["because"] = reasons
    result = {**base, "order": scored.order, "items": items}
    if new is not None:
        new_movies.offer_in_list(
            result,
            model,
            catalog,
            new.content,
            resolved.vectors,
            rated.movie_ids,
            slots=new.slots,
            min_predicted=new.min_predicted,
            genre=genre,
            exclude=exclude,
        )
    return result


def _popular(
    model: ServingModel | None,
    catalog: MovieCatalog,
    k: int,
    genre: str | None,
    excluded_ids: np.ndarray,
) -> list[dict[str, Any]]:
    """Damped-mean popularity (catalogue), or training counts when the catalogue is empty."""
    from_catalog = catalog.popular_ids.size > 0
    if from_catalog:
        ids = catalog.popular_ids
    elif model is not None:
        ids = model.items.ids[np.argsort(-model.item_counts, kind="stable")]
    else:
        return []
    if genre is not None:
        ids = ids[np.isin(ids, catalog.genre_ids.get(genre, np.empty(0, np.int64)))]
    if excluded_ids.size:
        ids = ids[~np.isin(ids, excluded_ids)]
    out = []
    for mid in ids[:k].tolist():
        i = model.items.get(mid) if model is not None else None
        meta = catalog.meta.get(mid)
        if from_catalog and meta is not None:
            score = float(meta.popularity_score or 0.0)
        else:
            score = float(model.item_counts[i]) if model is not None and i is not None else 0.0
        baseline = None
        if model is not None and i is not None:
            baseline = round(float(ranking.clip_rating(model.mu + model.item_bias[i])), 3)
        out.append(
            {
                **_meta(catalog, mid),
                "predicted_rating": baseline,
                "score": score,
                "strategy": "popular",
                "because": [],
            }
        )
    return out


def predict(model: ServingModel, user_id: int, movie_id: int, rated: UserRatings) -> dict[str, Any]:
    i = model.items.get(movie_id)
    if i is None:
        raise UnknownMovieError(movie_id)
    resolved = resolve_user(model, user_id, rated)
    if resolved.vectors is None:
        raw = model.mu + float(model.item_bias[i])
        strategy = "baseline"
    else:
        v = resolved.vectors
        raw = model.mu + v.b_u + float(model.item_bias[i]) + float(model.Q[i] @ v.p_u)
        if v.ease_correction is not None:
            raw += model.blend.rating * float(v.ease_correction[i])
        strategy = resolved.strategy
    own = rated.ratings[rated.movie_ids == movie_id]
    return {
        "userId": user_id,
        "movieId": movie_id,
        "predicted_rating": round(float(ranking.clip_rating(raw)), 4),
        "raw_prediction": float(raw),
        "strategy": strategy,
        "user_rating": float(own[0]) if own.size and np.isfinite(own[0]) else None,
        "model_version": model.version,
    }


def similar(
    model: ServingModel,
    catalog: MovieCatalog,
    movie_id: int,
    k: int,
    min_ratings: int,
    genre: str | None = None,
) -> dict[str, Any]:
    """Neighbours of a movie; `state` says whether the movie could be compared at all.

    A movie with fewer than `min_ratings` ratings in the model's data (or without factors)
    answers `state: "too_few_ratings"` with no items, instead of confident-looking matches
    computed from one or two ratings. `genre` restricts the neighbours to that genre.
    """
    i = model.items.get(movie_id)
    if i is None:
        raise UnknownMovieError(movie_id)
    base = {
        "movieId": movie_id,
        "factors": model.sim_source,
        "min_ratings": min_ratings,
        "n_ratings": int(model.item_counts[i]),
        "genre": genre,
        "model_version": model.version,
    }
    if not model.sim_ok[i]:
        return {**base, "state": "too_few_ratings", "items": []}
    idx, sims = ranking.similar(model, i, k, allowed=_allowed(model, catalog, genre))
    items = [
        {**_meta(catalog, int(mid)), "similarity": round(float(s), 5)}
        for mid, s in zip(model.items.ids[idx], sims, strict=True)
    ]
    return {**base, "state": "ok", "items": items}
