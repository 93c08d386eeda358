"""Recommender settings, read once at start-up and passed down."""

from __future__ import annotations

from typing import Literal

from movierec_common.movie_changes import FULL_RELOAD_SECONDS
from movierec_common.settings import CommonSettings
from pydantic import Field


class RecommenderSettings(CommonSettings):
    recommender_host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    recommender_port: int = Field(8002, ge=1, le=65535, description="Port uvicorn binds to.")
    default_k: int = Field(10, ge=1, le=100, description="List length when k= is not given.")
    batch_max_users: int = Field(1000, ge=1, description="Most userIds in one POST /batch.")
    max_exclude: int = Field(500, ge=0, description="Most movieIds in one exclude= list.")
    similar_min_ratings: int = Field(
        10,
        ge=0,
        description="Movies with fewer training ratings have untrustworthy vectors and are never "
        "offered as similar movies.",
    )
    similar_factors: Literal["auto", "explicit", "ranking", "blend", "cooccurrence"] = Field(
        "auto",
        description="Neighbours: auto = cooccurrence when the artifact carries rated lists, else "
        "blend when it has ranking factors, else explicit (measured in bench/bench_recs.py).",
    )
    trained_user_parts_mb: float = Field(
        64.0,
        ge=0,
        description="Memory per loaded model version (MB) for what trained users' lists need "
        "from their ratings in the model's data, computed once at load for the users with the "
        "most ratings first: EASE's x_u·B and d_u·B (ratings since the model are applied as a "
        "difference) and the explanation's W⁻¹ (k² float64). At rank 128: 2 × (movies EASE "
        "covers) float32 + 128 KB per user; 64 MB holds ml-latest-small's 427 heaviest raters "
        "of 610, at 62k movies the 374 heaviest. 0 = computed on every request.",
    )
    rated_lookup: Literal["recent", "all"] = Field(
        "recent",
        description="How a trained user's rated movies are found for exclusion: `recent` takes "
        "the movies they rated in the model's data from the artifact and reads from MongoDB "
        "only their ratings since the model's data (bench/REPORT.md: ~0.5 ms instead of 54-69 ms "
        "for the heaviest rater on SecantusDB); `all` reads every rating of theirs, which "
        "also forgets a movie at once when its rating is deleted. Artifacts without rated lists "
        "are always read the `all` way.",
    )
    reload_debounce_ms: int = Field(300, ge=10, description="watchfiles grouping window.")
    reload_watch: bool = Field(
        True,
        description="Use file-system events (inotify); turn off on volumes that do not deliver "
        "them (NFS), the periodic check then does the work.",
    )
    reload_poll_seconds: float = Field(
        5.0, gt=0, description="Fallback check of CURRENT when file events are missed."
    )
    movies_refresh_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the movies changed since the last look (new movies, new stats) "
        "are read (an indexed query on their change stamp, movierec_common.movie_changes).",
    )
    movies_full_reload_seconds: float = Field(
        FULL_RELOAD_SECONDS,
        gt=0,
        description="How often all movie metadata is re-read, a safety net for documents "
        "changed without the change stamp.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins.")
    # --- impressions and A/B experiments (issue 17) ---
    impressions_enabled: bool = Field(
        True, description="Record every returned list in `impressions` (off: nothing written)."
    )
    impressions_queue_size: int = Field(
        10000, ge=1, description="Impressions waiting to be written; beyond this they are dropped."
    )
    impressions_batch_size: int = Field(
        500, ge=1, description="Most lists per write (one document in `impressions`)."
    )
    impressions_flush_seconds: float = Field(
        0.1,
        gt=0,
        description="Longest wait to fill a batch before writing what there is (one document "
        "per batch). Short, so each write is small: the embedded database answers no other query "
        "while it writes (~0.8 ms for 20 lists in one document; 4.6-5.0 ms as 20 documents).",
    )
    impressions_write_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="A batch whose write takes longer is dropped (and counted). Off the request "
        "path, so it only bounds how long the writer waits; at 1 s the embedded database on an "
        "overloaded 2-core machine (load average 16) dropped 62 % of batches (bench/REPORT.md).",
    )
    new_movie_slots: int = Field(
        1,
        ge=0,
        le=10,
        description="Last positions of a personalised list offered to movies added since the "
        "model was trained (content profile, new_movies.py); 0 turns this off.",
    )
    new_movie_min_predicted: float = Field(
        3.5,
        ge=0.5,
        le=5.0,
        description="A new movie takes a slot only if the user's predicted rating reaches this.",
    )
    experiments_poll_seconds: float = Field(
        5.0, gt=0, description="How often the running A/B experiment is re-read from MongoDB."
    )
    account_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long an account's role and token version are cached per token check "
        "(the longest a demotion, logout or password change takes to reach this service).",
    )
