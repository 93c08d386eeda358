"""Movie list/search, popular, detail, genres."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from movierec_common.api_errors import ApiError
from movierec_common.ids import IdParam

from ...schemas import GenresResponse, MovieDetail, MoviePage, PopularResponse
from ..deps import OptionalCaller, PageParams, State, reject_operator_keys

router = APIRouter(prefix="/api", tags=["movies"], dependencies=[Depends(reject_operator_keys)])

GENRE_PATTERN = r"^[A-Za-z0-9 ()'&/-]{1,40}$"
SortKey = Literal["", "popularity", "rating", "count", "title", "year", "year_desc"]
MovieId = Annotated[IdParam, Path(ge=1, le=2**31 - 1, description="MovieLens movieId")]


@router.get(
    "/movies",
    response_model=MoviePage,
    summary="List, search, filter and sort movies",
    description=(
        "Sorts: `popularity` and `rating` order by the damped mean "
        "(rating_sum + m·C)/(rating_count + m), so a movie with one 5★ rating is not first; "
        "`count` by number of ratings; `title`; `year` (oldest first); `year_desc`. "
        "`order` flips a sort's default direction. Without `sort`, a search is ordered by "
        "popularity. `year_min`/`year_max` bound the release year (inclusive); a query "
        "parameter this operation does not list is refused with 422 `unknown_parameter`."
    ),
)
async def list_movies(
    state: State,
    paging: PageParams,
    q: Annotated[str | None, Query(max_length=100, examples=["toy story"])] = None,
    genre: Annotated[str | None, Query(pattern=GENRE_PATTERN, examples=["Comedy"])] = None,
    year_min: Annotated[int | None, Query(ge=1800, le=2100)] = None,
    year_max: Annotated[int | None, Query(ge=1800, le=2100)] = None,
    sort: SortKey = "",
    order: Literal["asc", "desc"] | None = None,
) -> MoviePage:
    lo, hi = year_min, year_max
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(422, "validation_error", "year_min must not be greater than year_max")
    genre = await _known_genre(state, genre)
    key = sort or "popularity"
    if key == "year_desc":
        key, order = "year", "desc"
    items, total = await state.repos.movies.search(
        q=q.strip() if q else None,
        genre=genre,
        year_min=lo,
        year_max=hi,
        sort=key,
        order=order,
        skip=paging.skip,
        limit=paging.page_size,
    )
    return MoviePage(
        items=items,
        total=total,
        page=paging.page,
        page_size=paging.page_size,
        pages=paging.pages(total),
    )


@router.get(
    "/movies/popular",
    response_model=PopularResponse,
    summary="Most popular movies by damped mean, optionally per genre",
)
async def popular(
    state: State,
    genre: Annotated[str | None, Query(pattern=GENRE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    min_count: Annotated[int, Query(ge=0, le=100_000)] = 1,
) -> PopularResponse:
    genre = await _known_genre(state, genre)
    items = await state.repos.movies.popular(genre, limit, min_count)
    return PopularResponse(
        items=items,
        genre=genre,
        prior_weight=state.repos.movies.prior_weight,
        global_mean=await state.repos.movies.global_mean(),
    )


async def _known_genre(state: State, genre: str | None) -> str | None:
    """The catalogue's spelling of `genre` (`MoviesRepo.resolve_genre`), None for none. Raises
    ApiError(422, "unknown_genre") naming the known genres: an unknown one used to answer an
    empty page that looked like a real result."""
    if genre is None:
        return None
    canonical = await state.repos.movies.resolve_genre(genre)
    if canonical is not None:
        return canonical
    known = [g["genre"] for g in await state.repos.movies.genres()]
    if not known:
        return genre  # an empty catalogue: every filter is an empty page
    raise ApiError(422, "unknown_genre", f"unknown genre {genre[:64]!r}", {"known": known})


@router.get("/genres", response_model=GenresResponse, summary="Genres with movie counts")
async def genres(state: State) -> GenresResponse:
    return GenresResponse(items=await state.repos.movies.genres())


@router.get(
    "/movies/{movie_id}",
    response_model=MovieDetail,
    summary="One movie, with the caller's own rating when logged in",
    responses={404: {"description": "unknown movie"}},
)
async def movie_detail(movie_id: MovieId, state: State, caller: OptionalCaller) -> MovieDetail:
    movie = await state.repos.movies.get(movie_id)
    if movie is None:
        raise ApiError(404, "movie_not_found", f"no movie with movieId {movie_id}")
    mine = None
    if caller is not None and caller.user_id is not None:
        mine = await state.repos.ratings.get(caller.user_id, movie_id)
    return MovieDetail(**movie, my_rating=mine)
