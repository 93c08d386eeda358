"""The /api/recs surface. Routes stay thin: parse, authorise, fetch, then call service.py.

Each handler reads `store.current` exactly once and passes that object down, so a request
that overlaps a hot reload is answered entirely by the model it started with.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from movierec_common.api_errors import ApiError, OrjsonResponse
from movierec_common.ids import MAX_ID, IdParam, parse_id

from .. import new_movies, service
from ..deps import (
    CurrentCaller,
    OptionalCaller,
    State,
    peek_caller,
    require_privileged,
    require_read,
)
from ..ranking import ServingModel
from ..rated import many_user_rated, user_rated
from ..repository import UserRatings
from ..schemas import (
    BatchRequest,
    BatchResponse,
    ModelInfo,
    PredictResponse,
    RecsResponse,
    SimilarResponse,
)
from ..state import AppState

router = APIRouter(prefix="/api/recs", tags=["recommendations"])

# Ids are plain ASCII integers 0..2^53 everywhere (movierec_common.ids): `620.0`, `²`, `-1`,
# `true` and `1\n` are a 422 naming the value.
UserId = Annotated[IdParam, Path(ge=0, le=MAX_ID, description="MovieLens / catalog user id")]
MovieIdPath = Annotated[IdParam, Path(ge=0, le=MAX_ID)]
K = Annotated[
    int | None, Query(ge=1, le=100, description="List length, 1–100 (default: DEFAULT_K)")
]
Genre = Annotated[str | None, Query(max_length=64, description="Only movies of this genre")]
Exclude = Annotated[
    list[str],
    Query(description="movieIds to leave out: repeated (exclude=1&exclude=2) or comma-separated"),
]
OrderParam = Annotated[
    Literal["ranking", "rating"],
    Query(
        description="`ranking` (default): ranking-model order, predicted stars shown beside; "
        "`rating`: ordered by predicted rating"
    ),
]


def _parse_exclude(state: AppState, raw: list[str]) -> list[int]:
    out: list[int] = []
    for part in raw:
        for token in part.split(","):
            token = token.strip()
            if not token:
                continue
            try:
                out.append(parse_id(token, "movieId"))
            except ValueError as exc:
                raise ApiError(422, "validation_error", f"exclude: {exc}") from None
    if len(out) > state.settings.max_exclude:
        raise ApiError(
            422, "validation_error", f"exclude: at most {state.settings.max_exclude} movieIds"
        )
    return out


def _resolve_genre(state: AppState, genre: str | None) -> str | None:
    if genre is None or not genre.strip():
        return None
    catalog = state.movies.catalog
    canonical = catalog.resolve_genre(genre)
    if canonical is None:
        raise ApiError(
            422,
            "unknown_genre",
            f"unknown genre {genre[:64]!r}",
            {"known": sorted(catalog.genre_ids)},
        )
    return canonical


def _new_movie_offer(state: AppState, model: ServingModel | None) -> service.NewMovieOffer | None:
    """What `service.recommend` may offer of the movies added since `model` (issue 17)."""
    slots = state.settings.new_movie_slots
    content = state.content.get(model, state.movies.catalog) if slots else None
    if content is None:
        return None
    return service.NewMovieOffer(content, slots, state.settings.new_movie_min_predicted)


async def _user_list(
    state: AppState,
    user_id: int,
    k: int | None,
    genre: str | None,
    exclude: list[str],
    strategy: Literal["ranking", "rating"],
) -> OrjsonResponse:
    k = k or state.settings.default_k
    canonical = _resolve_genre(state, genre)
    excluded = _parse_exclude(state, exclude)
    assignment = state.experiments.assign(user_id)
    model = assignment.model
    rated = await user_rated(state.repo, model, user_id, state.settings.rated_lookup)
    result = service.recommend(
        model,
        state.movies.catalog,
        user_id,
        rated,
        k=k,
        genre=canonical,
        exclude=excluded,
        order=strategy,
        new=_new_movie_offer(state, model),
    )
    state.metrics.strategy.labels(result["strategy"]).inc()
    state.impressions.record_result(
        result,
        kind="user",
        user_id=user_id,
        experiment_id=assignment.experiment_id,
        arm=assignment.arm,
    )
    # Built from plain Python values by service.py; serialised directly (the response_model
    # still documents it) to keep pydantic re-validation off the hot path.
    return OrjsonResponse(result)


@router.get("/me", response_model=RecsResponse)
async def my_recs(
    caller: CurrentCaller,
    state: State,
    k: K = None,
    genre: Genre = None,
    exclude: Exclude = [],  # noqa: B006 - FastAPI copies query defaults
    strategy: OrderParam = "ranking",
) -> OrjsonResponse:
    """The caller's own list (token or cookie of a user or admin)."""
    if caller.user_id is None:
        raise ApiError(403, "forbidden", "API keys have no list of their own; use /users/{id}")
    return await _user_list(state, caller.user_id, k, genre, exclude, strategy)


@router.get("/users/{user_id}", response_model=RecsResponse)
async def user_recs(
    user_id: UserId,
    caller: CurrentCaller,
    state: State,
    k: K = None,
    genre: Genre = None,
    exclude: Exclude = [],  # noqa: B006
    strategy: OrderParam = "ranking",
) -> OrjsonResponse:
    """personalized (in the model), fold-in (rated since, not in the model) or popular."""
    require_read(caller, user_id)
    return await _user_list(state, user_id, k, genre, exclude, strategy)


@router.post("/batch", response_model=BatchResponse)
async def batch_recs(body: BatchRequest, caller: CurrentCaller, state: State) -> dict:
    """Lists for many users in one call (admin or service credentials)."""
    require_privileged(caller)
    limit = state.settings.batch_max_users
    if len(body.userIds) > limit:
        raise ApiError(422, "validation_error", f"userIds: at most {limit} per call")
    canonical = _resolve_genre(state, body.genre)
    user_ids = list(dict.fromkeys(body.userIds))
    catalog = state.movies.catalog
    # Users of an A/B experiment are served by their arm's model: one rated-lookup per model.
    assigned = {u: state.experiments.assign(u) for u in user_ids}
    by_model: dict[int, list[int]] = {}
    for u, a in assigned.items():
        by_model.setdefault(id(a.model), []).append(u)
    rated: dict = {}
    for group in by_model.values():
        model_of_group = assigned[group[0]].model
        lookup = state.settings.rated_lookup
        rated |= await many_user_rated(state.repo, model_of_group, group, lookup)

    def _one(u: int) -> dict:
        result = service.recommend(
            assigned[u].model,
            catalog,
            u,
            rated[u],
            k=body.k or state.settings.default_k,
            genre=canonical,
            order=body.strategy,
            new=_new_movie_offer(state, assigned[u].model),
        )
        return result

    def _run() -> list[dict]:
        return [_one(u) for u in user_ids]

    results = await asyncio.to_thread(_run) if len(user_ids) > 20 else _run()
    for u, result in zip(user_ids, results, strict=True):
        a = assigned[u]
        state.impressions.record_result(
            result, kind="batch", user_id=u, experiment_id=a.experiment_id, arm=a.arm
        )
    model = state.store.current
    return {"model_version": model.version if model else None, "results": results}


@router.get("/similar/{movie_id}", response_model=SimilarResponse)
async def similar_movies(
    movie_id: MovieIdPath,
    state: State,
    caller: OptionalCaller,
    k: K = None,
    genre: Genre = None,
) -> OrjsonResponse:
    """Cosine neighbours in factor space; public, it reveals nothing about any user.

    `state: "too_few_ratings"` (200, empty `items`) for a movie rated fewer than
    SIMILAR_MIN_RATINGS times; an unknown `genre` is a 422 `unknown_genre`. A movie added after
    training is compared through its content profile (`new: true`)."""
    model = state.store.current
    if model is None:
        raise ApiError(503, "no_model", "no model is loaded yet")
    canonical = _resolve_genre(state, genre)
    catalog = state.movies.catalog
    content = state.content.get(model, catalog)
    try:
        result = service.similar(
            model,
            catalog,
            movie_id,
            k or state.settings.default_k,
            state.settings.similar_min_ratings,
            canonical,
        )
        new_movies.offer_in_similar(result, model, catalog, content, movie_id, canonical)
    except service.UnknownMovieError:
        if await state.movies.refresh_for_unknown(movie_id):  # added since the last refresh?
            catalog = state.movies.catalog
            content = state.content.get(model, catalog)
        result = new_movies.similar_to_new(
            model, catalog, content, movie_id, k or state.settings.default_k
        )
        if result is None:
            raise ApiError(404, "unknown_movie", f"movie {movie_id} is not in the model") from None
    user_id = caller.user_id if caller is not None else None
    state.impressions.record_result(
        result, kind="similar", user_id=user_id, source_movie_id=movie_id
    )
    return OrjsonResponse(result)


@router.get("/predict", response_model=PredictResponse)
async def predict(
    caller: CurrentCaller,
    state: State,
    userId: Annotated[IdParam, Query(ge=0, le=MAX_ID)],
    movieId: Annotated[IdParam, Query(ge=0, le=MAX_ID)],
) -> dict:
    require_read(caller, userId)
    model = state.store.current
    if model is None:
        raise ApiError(503, "no_model", "no model is loaded yet")
    if model.items.get(movieId) is None:
        raise ApiError(404, "unknown_movie", f"movie {movieId} is not in the model")
    if model.users.get(userId) is not None and model.ease is not None:
        # EASE's part of the stars comes from the user's current ratings (as in their list).
        rated = await user_rated(state.repo, model, userId, state.settings.rated_lookup)
    elif model.users.get(userId) is not None:
        # A trained user's vectors are in the model: only their own rating of this movie is read.
        own = await state.repo.user_rating(userId, movieId)
        rated = UserRatings(
            np.asarray([] if own is None else [movieId], np.int64),
            np.asarray([] if own is None else [own], np.float32),
        )
    else:
        rated = await state.repo.user_ratings(userId)
    return service.predict(model, userId, movieId, rated)


_PATH_RE = re.compile(r"(?<![\w.])(?:/|[A-Za-z]:\\)[^\s'\",;:)]+")


def _without_paths(value: Any) -> Any:
    """The value with every file-system path replaced by "<path>" (for non-admin callers)."""
    if isinstance(value, str):
        return _PATH_RE.sub("<path>", value)
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    return value


@router.get("/model", response_model=ModelInfo)
async def model_info(state: State, request: Request) -> dict:
    """What is being served: version, training time, metrics, load time, last reload error.

    File-system paths (data directory, snapshot, the file a reload refused) are shown to admins
    and services only; anyone else sees "<path>" in their place."""
    store = state.store
    model = store.current
    info: dict = {
        "strategy": "model" if model else "popular",
        "version": None,
        "last_error": store.last_error,
        "last_error_at": store.last_error_at,
        "reloads_ok": store.reloads_ok,
        "reloads_failed": store.reloads_failed,
    }
    if model is not None:
        m = model.manifest
        info |= {
            "version": model.version,
            "trained_at": m.get("created_at"),
            "loaded_at": model.loaded_at,
            "load_seconds": model.load_seconds,
            "has_ranking": model.has_ranking,
            "similar_factors": model.sim_source,
            "metrics": m.get("metrics"),
            "params": m.get("params"),
            "data": m.get("data"),
            "n_users": len(model.users),
            "n_items": model.n_items,
        }
    caller = await peek_caller(request)
    if caller is None or not caller.is_privileged:
        info = _without_paths(info)
    return info
