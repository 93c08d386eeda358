"""Catalog settings: CommonSettings plus what only the catalog needs, read once at start-up."""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Literal

from movierec_common.jobs import SLOT_STALE_SECONDS
from movierec_common.settings import CommonSettings
from pydantic import Field, field_validator

HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*$")


class CatalogSettings(CommonSettings):
    catalog_host: str = Field("127.0.0.1", description="Bind address.")
    catalog_port: int = Field(8001, ge=1, le=65535, description="Bind port.")
    popularity_prior_weight: float = Field(
        20.0, ge=0, description="m in the damped mean (rating_sum + m·C)/(rating_count + m)."
    )
    # Login rate limits: failed attempts in a sliding window, kept in process memory, so they
    # are per replica (N replicas allow up to N times as many tries).
    login_window_seconds: float = Field(300.0, gt=0)
    login_max_failures_per_username: int = Field(
        5,
        ge=1,
        description="Failed logins for one account from one client before that client gets 429 "
        "for that account (other clients are not locked out; see LOGIN_SLOWDOWN_*).",
    )
    login_max_failures_per_client: int = Field(30, ge=1)
    login_slowdown_after: int = Field(
        5,
        ge=0,
        description="Failed logins for one account (all clients together) after which every "
        "attempt at it waits before its password is checked.",
    )
    login_slowdown_max_seconds: float = Field(
        3.0, ge=0, le=60, description="Longest such wait (0.25 s, doubling per failure)."
    )
    signup_window_seconds: float = Field(3600.0, gt=0, description="Sign-up limit window.")
    signup_max_per_client: int = Field(
        20, ge=1, description="Registrations one client may make in the window (then 429)."
    )
    password_hash_concurrency: int = Field(
        2, ge=1, le=64, description="argon2 hashes/verifications running at once (CPU bound)."
    )
    signup_hash_concurrency: int = Field(
        1, ge=1, le=64, description="Of those, how many may be sign-ups."
    )
    account_cache_seconds: float = Field(
        0.0,
        ge=0,
        le=60,
        description="How long an account's role and token version are cached per token check "
        "(0: read on every request, so a demotion made in the database applies at once).",
    )
    trust_forwarded_for: bool = Field(
        False,
        description="Take the client address from X-Real-IP/X-Forwarded-For (only behind nginx).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description=(
            "With TRUST_FORWARDED_FOR, only these peers (our nginx) may name the client: IP "
            "networks, or host names (e.g. the Compose service `nginx`) resolved at start-up "
            "and every minute. From any other peer the headers are ignored."
        ),
    )
    cookie_secure: bool = Field(False, description="Set Secure on the login cookie (HTTPS only).")
    cors_origins: list[str] = Field(default_factory=list)
    startup_attempts: int = Field(30, ge=1, description="Pings before start-up gives up.")
    startup_delay_seconds: float = Field(1.0, gt=0)
    mongo_max_pool_size: int = Field(
        20,
        ge=1,
        le=500,
        description=(
            "Connections per process. Bounded so a burst of requests reuses connections instead "
            "of opening dozens at once (new connections are what time out on a loaded server)."
        ),
    )
    mongo_min_pool_size: int = Field(4, ge=0, le=500, description="Connections kept warm.")
    movies_refresh_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How often the in-process movie list picks up other replicas' new ratings.",
    )
    retrain_slot_stale_seconds: float = Field(
        SLOT_STALE_SECONDS,
        gt=0,
        description="A slot naming a job not inserted this long ago may be retaken.",
    )
    stats_pending_stale_seconds: float = Field(
        60.0,
        gt=0,
        description="A movie's pending rating change this old belongs to a dead request: the "
        "movie is recounted (a live request gives up its write after half of it).",
    )
    stats_dead_grace_seconds: float = Field(
        2.0, ge=0, description="Wait after a failed request before recounting its movie."
    )
    stats_reconcile_seconds: float = Field(
        30.0, gt=0, description="Period of the pass that recounts movies with stale changes."
    )
    hit_window_days: float = Field(
        7.0,
        gt=0,
        le=90,
        description="Online metrics: a rating within this many days of a movie being shown to "
        "that user counts as a hit for the list that showed it.",
    )
    online_metrics_engine: Literal["auto", "database", "python"] = Field(
        "auto",
        description="Where online metrics are computed: `database` (one MongoDB aggregation, "
        "only the summary crosses the wire), `python` (read the impressions and ratings, count "
        "in the catalog), `auto` = database on MongoDB, python on SecantusDB (whose "
        "aggregation stages run about 7x slower than reading and counting in Python).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ip_network(entry, strict=False)
            except ValueError:
                if not HOSTNAME_RE.match(entry):
                    raise ValueError(
                        f"{entry!r} is neither an IP network nor a host name"
                    ) from None
        return v
