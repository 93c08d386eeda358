"""POST /api/admin/movies: add a movie between retrains (issue 17).

It is searchable and browsable in this process at once (the movie cache applies the write),
other catalog replicas within MOVIES_REFRESH_SECONDS; recommenders pick it up at their next
movie refresh and serve it through a content profile until a retrain gives it factors.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from movierec_common.api_errors import ApiError

from ...schemas import Movie, NewMovie
from ..deps import Admin, State, reject_operator_keys

router = APIRouter(
    prefix="/api/admin", tags=["admin"], dependencies=[Depends(reject_operator_keys)]
)


@router.post(
    "/movies",
    status_code=201,
    response_model=Movie,
    summary="Add a movie (title, year, genres from the catalogue's genres, optional links/tags)",
    responses={422: {"description": "bad field, or a genre the catalogue does not know"}},
)
async def add_movie(body: NewMovie, admin: Admin, state: State) -> Movie:
    cache = state.repos.movies.cache
    known = {g["genre"] for g in cache.genres()}
    unknown = [g for g in body.genres if g not in known]
    if known and unknown:
        raise ApiError(
            422,
            "unknown_genre",
            f"unknown genre(s): {', '.join(unknown)[:200]}",
            {"unknown": unknown, "known": sorted(known)},
        )
    doc = await state.repos.admin_movies.add(
        title=body.title,
        year=body.year,
        genres=body.genres,
        imdb_id=body.imdbId,
        tmdb_id=body.tmdbId,
        tags=body.tags,
        global_mean=await state.repos.movies.global_mean(),
        added_by=admin.username or admin.role,
    )
    cache.apply(doc)
    return Movie(**{k: v for k, v in doc.items() if k in Movie.model_fields} | {"new": True})
