"""Request and response bodies. Requests are strict: a dict where a scalar is expected (for
example a MongoDB operator like {"$gt": ""}) is a 422, never reaches a query, and unknown
fields are refused."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from movierec_common.artifacts import VERSION_PATTERN
from movierec_common.data_model import RATING_MAX, RATING_MIN, RATING_STEP, on_rating_scale
from movierec_common.password_policy import MAX_LENGTH, password_problem
from movierec_common.training_params import RetrainParams
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
)

# Whole-string rules (always `fullmatch`: with `match`, `$` also matches before a trailing
# newline, and "admin\n" passed as "admin"). ASCII digits only ([0-9], not \d).
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")
# ml<digits> names belong to the MovieLens demo logins mongo-init creates.
RESERVED_RE = re.compile(r"ml[0-9]+", re.IGNORECASE)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Credentials(Strict):
    username: StrictStr = Field(min_length=1, max_length=64, examples=["alice"])
    password: StrictStr = Field(min_length=1, max_length=1024, examples=["correct horse battery"])


class RegisterRequest(Strict):
    username: StrictStr = Field(
        examples=["alice"], description="3–32 characters: letters, digits, '_', '.', '-'."
    )
    password: StrictStr = Field(
        min_length=8,
        max_length=MAX_LENGTH,
        examples=["correct horse battery"],
        description="8–1024 characters; not a common password, not the username "
        "(NIST SP 800-63B, movierec_common.password_policy).",
    )

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        if not USERNAME_RE.fullmatch(v):
            raise ValueError("must be 3–32 characters of letters, digits, '_', '.' or '-'")
        if RESERVED_RE.fullmatch(v):
            raise ValueError("names like ml<number> are reserved for the MovieLens demo logins")
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: str, info: ValidationInfo) -> str:
        problem = password_problem(v, info.data.get("username"))
        if problem:
            raise ValueError(problem)
        return v


class PasswordChange(Strict):
    current_password: StrictStr = Field(min_length=1, max_length=MAX_LENGTH)
    new_password: StrictStr = Field(
        min_length=1,
        max_length=MAX_LENGTH,
        description="Same rules as at sign-up (movierec_common.password_policy).",
    )


class UserOut(BaseModel):
    userId: int
    username: str
    role: str


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut


class MeResponse(BaseModel):
    userId: int | None
    username: str | None
    role: str


class SessionResponse(BaseModel):
    """GET /api/auth/session: always 200, so a page can ask without an error for anonymity."""

    authenticated: bool
    user: MeResponse | None = None


def _exactly_on_the_scale(v: float) -> float:
    """pydantic's `multiple_of` allows a float tolerance (3.0000000000000004 passes it); a
    stored star must be exactly on the scale, as every reader of the ratings assumes."""
    if not on_rating_scale(v):
        raise ValueError(
            f"rating must be {RATING_MIN:g}–{RATING_MAX:g} in steps of exactly {RATING_STEP:g}"
        )
    return v


Rating = Annotated[
    float,
    Field(
        ge=RATING_MIN,
        le=RATING_MAX,
        multiple_of=RATING_STEP,
        examples=[4.5],
        description="0.5–5.0, steps of 0.5",
    ),
    AfterValidator(_exactly_on_the_scale),
]


class RatingRequest(Strict):
    rating: Rating

    @field_validator("rating", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("rating must be a number")
        return float(v)


class MovieStats(BaseModel):
    rating_count: int
    rating_sum: float
    avg_rating: float | None
    popularity_score: float | None


class Movie(MovieStats):
    movieId: int
    title: str
    year: int | None = None
    genres: list[str]
    imdbId: str | None = None
    tmdbId: int | None = None
    new: bool = Field(
        False,
        description="Added by an admin and not yet learned by the active model (served from "
        "its content profile until a retrain).",
    )


class MyRating(BaseModel):
    rating: float
    timestamp: int


class MovieDetail(Movie):
    my_rating: MyRating | None = Field(None, description="The caller's own rating, if any.")


class Page(BaseModel):
    total: int
    page: int
    page_size: int
    pages: int


class MoviePage(Page):
    items: list[Movie]


class PopularResponse(BaseModel):
    items: list[Movie]
    genre: str | None
    prior_weight: float
    global_mean: float


class Genre(BaseModel):
    genre: str
    count: int


class GenresResponse(BaseModel):
    items: list[Genre]


class RatingOut(BaseModel):
    userId: int
    movieId: int
    rating: float
    timestamp: int
    previous: float | None
    movie: MovieStats


class MyRatingItem(BaseModel):
    movieId: int
    rating: float
    timestamp: int
    title: str | None = None
    year: int | None = None
    genres: list[str] = []


class MyRatingsPage(Page):
    items: list[MyRatingItem]


class RetrainRequest(RetrainParams):
    """Parameters of a retrain; every field optional (the trainer's defaults apply). The model
    and its bounds are movierec_common.training_params, shared with the trainer."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"iterations": 20}, {"db_only": True, "rank": 30}]},
    )


class Job(BaseModel):
    id: str
    status: str
    trigger: str | None = None
    params: dict[str, Any] = {}
    requested_by: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: dict[str, Any] | None = None
    phases: dict[str, Any] | None = None
    log_tail: list[str] = []
    model_version: str | None = None
    metrics: dict[str, Any] | None = None
    load: dict[str, Any] | None = Field(
        None, description="The loader's summary of the job's data: rows read, kept, dropped."
    )
    error: Any = None
    attempts: int | None = None
    cancel_requested: bool = False
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


class JobPage(Page):
    items: list[Job]


class ModelsResponse(BaseModel):
    items: list[dict[str, Any]]
    current: str | None


class ActivateResponse(BaseModel):
    version: str
    active: bool = True
    previous: str | None = None


class Health(BaseModel):
    status: str


# --- online evaluation and A/B experiments (issue 17) ---


class ExperimentStart(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    candidate: str = Field(
        pattern=VERSION_PATTERN,
        description="A published model version to test against CURRENT (the control).",
    )
    split: float = Field(
        0.5, gt=0, lt=1, description="Share of users served by the candidate (0 < split < 1)."
    )


class ExperimentEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    winner: Literal["control", "candidate"] | None = Field(
        None,
        description="`candidate`: it becomes CURRENT (verified activation); `control` or none: "
        "CURRENT stays; either way the experiment ends.",
    )


class NewMovie(BaseModel):
    """A movie added by an admin between retrains."""

    model_config = ConfigDict(extra="forbid")

    title: StrictStr = Field(min_length=1, max_length=300, examples=["Paddington 3 (2025)"])
    year: int | None = Field(None, ge=1870, le=2100)
    genres: list[StrictStr] = Field(
        min_length=1, max_length=10, description="Genre names as the catalogue spells them."
    )
    imdbId: StrictStr | None = Field(None, pattern=r"^[0-9]{1,10}$", description="IMDb digits.")
    tmdbId: int | None = Field(None, ge=1, le=2**31 - 1)
    tags: list[StrictStr] = Field(
        default_factory=list,
        max_length=20,
        description="Free-text tags (like MovieLens tags.csv), used by the content profile.",
    )

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        v = v.strip()
        if not v or any(ord(c) < 32 for c in v):
            raise ValueError("title must be non-blank printable text")
        return v

    @field_validator("genres", "tags")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        out = []
        for g in v:
            g = g.strip()
            if not g or len(g) > 64 or any(ord(c) < 32 for c in g):
                raise ValueError("each entry must be 1-64 printable characters")
            if g not in out:
                out.append(g)
        return out
