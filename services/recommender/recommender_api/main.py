"""create_app(settings): the recommender's FastAPI application and its lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from movierec_common.account_check import AccountCheck
from movierec_common.api_errors import COMMON_ERROR_RESPONSES, install_error_handlers
from movierec_common.callers import CallerResolver
from movierec_common.data_model import IMPRESSIONS, USERS
from movierec_common.docs import install_docs
from movierec_common.limits import BodySizeLimit
from movierec_common.mongo import make_client
from movierec_common.query_params import reject_unknown_query_params
from movierec_common.request_middleware import RequestMiddleware
from movierec_common.web_security import OriginCheck, SecurityHeaders

from .config import RecommenderSettings
from .experiments import ExperimentRunner
from .impressions import ImpressionRecorder
from .metrics import Metrics
from .model_store import ModelStore
from .movies import MovieCache
from .new_movies import ContentProfiles
from .repository import Repository
from .routes import ops, recs
from .state import AppState

log = logging.getLogger(__name__)


def create_app(settings: RecommenderSettings | None = None) -> FastAPI:
    settings = settings or RecommenderSettings()
    settings.check_jwt_secret()  # tokens.InsecureSecret for a published or short secret
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings.mongo_url, settings.mongo_timeout_ms)
        repo = Repository(client[settings.mongo_db])
        store = ModelStore(
            settings.model_dir,
            similar_factors=settings.similar_factors,
            similar_min_ratings=settings.similar_min_ratings,
            user_parts_bytes=int(settings.trained_user_parts_mb * 2**20),
            debounce_ms=settings.reload_debounce_ms,
            poll_seconds=settings.reload_poll_seconds,
            watch=settings.reload_watch,
        )
        store.on_swap.append(metrics.on_model)
        store.on_fail.append(lambda _v, _m: metrics.reloads.labels("refused").inc())
        movies = MovieCache(
            repo, settings.movies_refresh_seconds, settings.movies_full_reload_seconds
        )
        db = client[settings.mongo_db]
        impressions = ImpressionRecorder(
            db[IMPRESSIONS],
            enabled=settings.impressions_enabled,
            queue_size=settings.impressions_queue_size,
            batch_size=settings.impressions_batch_size,
            flush_seconds=settings.impressions_flush_seconds,
            write_timeout=settings.impressions_write_timeout_seconds,
            written=metrics.impressions_written,
            dropped=metrics.impressions_dropped,
        )
        experiments = ExperimentRunner(db, store, settings.experiments_poll_seconds)
        app.state.recs = AppState(
            settings=settings,
            client=client,
            repo=repo,
            store=store,
            movies=movies,
            metrics=metrics,
            impressions=impressions,
            experiments=experiments,
            content=ContentProfiles(settings.similar_min_ratings),
            accounts=AccountCheck(client[settings.mongo_db][USERS], settings.account_cache_seconds),
        )
        app.state.callers = CallerResolver(
            settings.jwt_secret.get_secret_value(),
            [k.get_secret_value() for k in settings.api_keys],
            app.state.recs.accounts,
        )
        # Neither a missing model nor an unreachable database stops start-up: the store serves
        # popularity, the movie cache retries, and /readyz reports what is missing.
        await store.start()
        await movies.start()
        await experiments.start()
        await impressions.start()
        log.info(
            "recommender ready",
            extra={
                "model": store.current.version if store.current else None,
                "movies": len(movies.catalog.meta),
                "model_dir": str(settings.model_dir),
            },
        )
        try:
            yield
        finally:
            await impressions.stop()
            await experiments.stop()
            await movies.stop()
            await store.stop()
            await client.close()

    app = FastAPI(
        title="MovieRec recommender",
        version="1.0",
        description="Personalised top-N, fold-in for new users, similar movies, predictions.",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query_params)],
        docs_url=None,  # movierec_common.docs serves Swagger UI offline
        redoc_url=None,
        # `/api/movies/` is a JSON 404, not a redirect: behind nginx a redirect's Location
        # named the upstream's host and port, and a POST's body does not follow one everywhere.
        redirect_slashes=False,
    )
    install_docs(app)
    install_error_handlers(app)
    app.include_router(recs.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(ops.router, responses=COMMON_ERROR_RESPONSES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST"],
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
        access_log=logging.getLogger("recommender_api.access"),
    )
    return app
