"""The caller's ratings: PUT/DELETE one, GET the list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from movierec_common.api_errors import ApiError

from ...repositories.ratings import RatingConflict
from ...schemas import MovieStats, MyRatingItem, MyRatingsPage, RatingOut, RatingRequest
from ..deps import CurrentUser, PageParams, State, reject_operator_keys
from .movies import MovieId

router = APIRouter(prefix="/api", tags=["ratings"], dependencies=[Depends(reject_operator_keys)])


@router.put(
    "/movies/{movie_id}/rating",
    response_model=RatingOut,
    summary="Rate a movie (or change your rating); the movie's stats change in the same request",
    responses={404: {"description": "unknown movie"}, 422: {"description": "invalid rating"}},
)
async def put_rating(
    movie_id: MovieId, body: RatingRequest, user: CurrentUser, state: State
) -> RatingOut:
    if not await state.repos.movies.exists(movie_id):
        raise ApiError(404, "movie_not_found", f"no movie with movieId {movie_id}")
    assert user.user_id is not None
    try:
        doc, before, movie = await state.repos.ratings.upsert(user.user_id, movie_id, body.rating)
    except RatingConflict as exc:
        raise ApiError(409, "rating_conflict", "the rating changed concurrently; retry") from exc
    return RatingOut(
        **doc,
        previous=float(before["rating"]) if before else None,
        movie=MovieStats(**movie),
    )


@router.delete(
    "/movies/{movie_id}/rating",
    status_code=204,
    summary="Remove your rating (idempotent: 204 also when there was none)",
)
async def delete_rating(movie_id: MovieId, user: CurrentUser, state: State) -> Response:
    assert user.user_id is not None
    try:
        await state.repos.ratings.delete(user.user_id, movie_id)
    except RatingConflict as exc:
        raise ApiError(409, "rating_conflict", "the rating changed concurrently; retry") from exc
    return Response(status_code=204)


@router.get("/me/ratings", response_model=MyRatingsPage, summary="Your ratings, newest first")
async def my_ratings(user: CurrentUser, state: State, paging: PageParams) -> MyRatingsPage:
    assert user.user_id is not None
    rows, total = await state.repos.ratings.page_for_user(
        user.user_id, paging.skip, paging.page_size
    )
    movies = await state.repos.movies.get_many([r["movieId"] for r in rows]) if rows else {}
    items = []
    for r in rows:
        m = movies.get(r["movieId"], {})
        items.append(
            MyRatingItem(
                movieId=r["movieId"],
                rating=r["rating"],
                timestamp=r["timestamp"],
                title=m.get("title"),
                year=m.get("year"),
                genres=m.get("genres", []),
            )
        )
    return MyRatingsPage(
        items=items,
        total=total,
        page=paging.page,
        page_size=paging.page_size,
        pages=paging.pages(total),
    )
