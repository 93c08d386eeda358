"""Request and response bodies (they are also the OpenAPI documentation)."""

from __future__ import annotations

from typing import Any, Literal

from movierec_common.ids import StrictId
from pydantic import BaseModel, ConfigDict, Field

Strategy = Literal["personalized", "fold-in", "popular"]
Order = Literal["ranking", "rating", "popularity"]


class BecauseItem(BaseModel):
    movieId: int
    title: str | None = None
    rating: float = Field(description="The user's own rating of this movie, 0.5–5.0.")
    share: float = Field(
        description="This rating's share of the movie's positive score contributions (0–1)."
    )


class RecItem(BaseModel):
    """One movie of a list. A movie added after the model was trained (served from its content
    profile) also carries `"new": true`; other items have no `new` key."""

    model_config = ConfigDict(extra="allow")

    movieId: int
    title: str | None = None
    year: int | None = None
    genres: list[str] = Field(default_factory=list)
    predicted_rating: float | None = Field(
        None, description="Explicit model's star prediction, clipped to 0.5–5.0."
    )
    score: float = Field(
        description="The value the list is ordered by: ranking-model preference, raw predicted "
        "rating, or damped-mean popularity."
    )
    strategy: Strategy
    because: list[BecauseItem] = Field(
        default_factory=list,
        description="Personalised items: up to 3 of the user's rated movies that contributed "
        "most to this item's score in the model that ordered the list (Hu-Koren-Volinsky's "
        "decomposition of x_u·y_i, or of p_u·q_i for `order=rating`); empty for popularity.",
    )


class RecsResponse(BaseModel):
    """A list. With impressions recording on it also has `list_id` (32 hex chars, its impression
    record); inside an A/B experiment `experiment_id` and `arm` ("control" | "candidate")."""

    model_config = ConfigDict(extra="allow")

    userId: int
    strategy: Strategy
    order: Order = Field(description="What `score` is and what the list is sorted by.")
    ranking_model: bool = Field(description="Whether the active model has ranking factors.")
    model_version: str | None
    genre: str | None = None
    n_user_ratings: int | None = Field(
        description="How many movies the user has rated (for a user in the model with "
        "RATED_LOOKUP=recent: the model's data plus ratings since; deletions since the model "
        "are still counted).",
    )
    items: list[RecItem]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    userIds: list[StrictId] = Field(
        min_length=1, description="Up to batch_max_users ids: JSON integers 0..2^53."
    )
    k: int | None = Field(None, ge=1, le=100, description="Default: DEFAULT_K.")
    genre: str | None = Field(None, max_length=64)
    strategy: Literal["ranking", "rating"] = "ranking"


class BatchResponse(BaseModel):
    model_version: str | None
    results: list[RecsResponse]


class SimilarItem(BaseModel):
    """A neighbour; a movie added after training also carries `"new": true`."""

    model_config = ConfigDict(extra="allow")

    movieId: int
    title: str | None = None
    year: int | None = None
    genres: list[str] = Field(default_factory=list)
    similarity: float


class SimilarResponse(BaseModel):
    movieId: int
    new: bool = Field(False, description="The movie itself is new: neighbours by its profile.")
    factors: Literal["explicit", "ranking", "blend", "cooccurrence"]
    min_ratings: int
    n_ratings: int = Field(description="Ratings of this movie in the model's data.")
    genre: str | None = Field(None, description="The genre the neighbours were limited to.")
    state: Literal["ok", "too_few_ratings"] = Field(
        description="`too_few_ratings`: the movie has fewer than `min_ratings` ratings, too few "
        "to be compared; `items` is then empty (a 200, because the movie exists and the "
        "answer is known: no trustworthy neighbours yet)."
    )
    model_version: str
    items: list[SimilarItem]
    list_id: str | None = Field(
        None, description="Id of this list's impression record (32 hex chars)."
    )


class PredictResponse(BaseModel):
    userId: int
    movieId: int
    predicted_rating: float = Field(description="Clipped to 0.5–5.0.")
    raw_prediction: float
    strategy: Literal["personalized", "fold-in", "baseline"]
    user_rating: float | None = Field(None, description="The user's own rating, if any.")
    model_version: str


class ModelInfo(BaseModel):
    strategy: Literal["model", "popular"] = Field(
        description="`popular` while no model is loaded: every list is the popularity list."
    )
    version: str | None
    trained_at: str | None = None
    loaded_at: float | None = None
    load_seconds: float | None = None
    has_ranking: bool = False
    similar_factors: str | None = None
    metrics: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    n_users: int | None = None
    n_items: int | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    reloads_ok: int = 0
    reloads_failed: int = 0
