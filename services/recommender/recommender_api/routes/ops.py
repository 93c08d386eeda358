"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from movierec_common.api_errors import OrjsonResponse, error_response
from starlette.responses import PlainTextResponse, Response

from ..deps import State

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> Response:
    """Ready when MongoDB answers and there is something to serve (a model or popularity).

    When CURRENT names a version other than the served one (refused, e.g. its folder was not
    complete, and retried with back-off), the answer stays 200 — the old model still serves —
    but `status` is `degraded` and `checks` name both versions and the last error."""
    db_ok = True
    try:
        await asyncio.wait_for(state.repo.ping(), timeout=2.0)
    except Exception:
        db_ok = False
    model = state.store.current
    has_popularity = state.movies.catalog.popular_ids.size > 0
    store = state.store
    checks = {
        "database": db_ok,
        "model": model.version if model else None,
        "current": store.wanted,
        "model_is_current": not store.out_of_date,
        "last_error": store.last_error if store.out_of_date else None,
        "popularity": has_popularity,
    }
    if db_ok and (model is not None or has_popularity):
        status = "degraded" if store.out_of_date else "ready"
        return OrjsonResponse({"status": status, "checks": checks})
    return error_response(503, "not_ready", "not ready to serve", checks)


@router.get("/metrics", response_class=PlainTextResponse)  # Prometheus text, not JSON
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
