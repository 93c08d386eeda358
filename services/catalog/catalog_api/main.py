"""create_app(settings): the catalog FastAPI application.

One AsyncMongoClient per process, opened in the lifespan after waiting for the database (with
retries and a clear message) and closed on shutdown. While MongoDB is unreachable, requests
that need it fail fast (server selection timeout) with a 503 in the common error shape; the
driver reconnects by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from movierec_common.account_check import AccountCheck
from movierec_common.api_errors import (
    COMMON_ERROR_RESPONSES,
    OrjsonResponse,
    install_error_handlers,
)
from movierec_common.callers import CallerResolver
from movierec_common.data_model import USERS
from movierec_common.docs import install_docs
from movierec_common.limits import BodySizeLimit
from movierec_common.mongo import make_client, wait_for_mongo
from movierec_common.query_params import reject_unknown_query_params
from movierec_common.request_middleware import RequestMiddleware
from movierec_common.web_security import OriginCheck, SecurityHeaders

from .api.deps import AppState
from .api.routes import admin, admin_movies, auth, experiments, movies, ops, ratings
from .core.config import CatalogSettings
from .core.proxies import TrustedProxies
from .core.security import LoginLimiter, Passwords, SlidingWindowLimiter, TokenService
from .metrics import Metrics, access_log
from .repositories import make_repos

log = logging.getLogger(__name__)

DESCRIPTION = """
Accounts and login, the movie catalog, ratings, popularity, and the admin routes for
retraining and model versions.

**Auth**: `POST /api/auth/login` sets an httpOnly cookie `movierec_token` (browsers) and returns
the same JWT as `access_token` (programs: `Authorization: Bearer <jwt>`). Services send
`X-API-Key`. **Errors** always look like
`{"error": {"code": "snake_case", "message": "…", "details": …}}`.
"""


def pooled_url(url: str, max_pool: int, min_pool: int) -> str:
    """Add pool bounds to the connection string unless the operator already set them there
    (movierec_common.mongo.make_client takes the URL and timeouts only)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    lower = {k.lower() for k in query}
    if "maxpoolsize" not in lower:
        query["maxPoolSize"] = str(max_pool)
    if "minpoolsize" not in lower:
        query["minPoolSize"] = str(min(min_pool, max_pool))
    return urlunsplit(parts._replace(query=urlencode(query)))


def create_app(settings: CatalogSettings) -> FastAPI:
    """Raises tokens.InsecureSecret for a published or short JWT_SECRET (see settings)."""
    settings.check_jwt_secret()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = pooled_url(
            settings.mongo_url, settings.mongo_max_pool_size, settings.mongo_min_pool_size
        )
        client = make_client(url, settings.mongo_timeout_ms, appname="movierec-catalog")
        try:
            await wait_for_mongo(
                client, attempts=settings.startup_attempts, delay=settings.startup_delay_seconds
            )
            repos = make_repos(
                client,
                settings.mongo_db,
                settings.popularity_prior_weight,
                settings.retrain_slot_stale_seconds,
                settings.movies_refresh_seconds,
                settings.stats_pending_stale_seconds,
                settings.stats_dead_grace_seconds,
                settings.model_dir,
            )
            await repos.movies.ensure_stats_index()
            await repos.movies.cache.full_load(await repos.movies.global_mean())
            stop = asyncio.Event()
            refresher = asyncio.create_task(repos.movies.cache.run(stop))
            # Movies left with a pending rating change by a crash are recounted: now (for
            # changes already stale) and every period (issue 19 B).
            reconciler = asyncio.create_task(
                repos.stats.run(stop, settings.stats_reconcile_seconds)
            )
            app.state.catalog = AppState(
                settings=settings,
                repos=repos,
                passwords=Passwords(
                    hash_concurrency=settings.password_hash_concurrency,
                    signup_concurrency=settings.signup_hash_concurrency,
                ),
                tokens=TokenService(
                    settings.jwt_secret.get_secret_value(), settings.jwt_ttl_seconds
                ),
                limiter=LoginLimiter(
                    settings.login_window_seconds,
                    settings.login_max_failures_per_username,
                    settings.login_max_failures_per_client,
                    settings.login_slowdown_after,
                    settings.login_slowdown_max_seconds,
                ),
                signups=SlidingWindowLimiter(
                    settings.signup_window_seconds, settings.signup_max_per_client
                ),
                metrics=metrics,
                trusted_proxies=TrustedProxies(settings.trusted_proxies),
                accounts=AccountCheck(
                    client[settings.mongo_db][USERS], settings.account_cache_seconds
                ),
            )
            app.state.callers = CallerResolver(
                settings.jwt_secret.get_secret_value(),
                [k.get_secret_value() for k in settings.api_keys],
                app.state.catalog.accounts,
            )
            log.info("catalog ready", extra={"db": settings.mongo_db})
            try:
                yield
            finally:
                stop.set()
                await refresher
                await reconciler
        finally:
            app.state.catalog = None
            app.state.callers = None
            await client.close()

    app = FastAPI(
        title="MovieRec catalog API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        dependencies=[Depends(reject_unknown_query_params)],
        docs_url=None,  # movierec_common.docs serves Swagger UI offline
        redoc_url=None,
        # `/api/movies/` is a JSON 404, not a redirect: behind nginx a redirect's Location
        # named the upstream's host and port, and a POST's body does not follow one everywhere.
        redirect_slashes=False,
    )
    install_docs(app)
    app.state.catalog = None
    install_error_handlers(app)
    for module in (ops, auth, movies, ratings, admin, experiments, admin_movies):
        app.include_router(module.router, responses=COMMON_ERROR_RESPONSES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
        )
    # Cookie-authenticated changes only from our own pages or CORS_ORIGINS (403 otherwise).
    app.add_middleware(OriginCheck, allowed_origins=settings.cors_origins)
    app.add_middleware(BodySizeLimit)  # before parsing: 413 for oversized bodies
    app.add_middleware(SecurityHeaders)  # on every response, errors included
    app.add_middleware(
        RequestMiddleware,
        requests=metrics.requests,
        latency=metrics.latency,
        access_log=access_log,
    )
    return app
