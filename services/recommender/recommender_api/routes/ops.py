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
    """Ready when MongoDB answers and there is something to serve (a model or popularity)."""
    db_ok = True
    try:
        await asyncio.wait_for(state.repo.ping(), timeout=2.0)
    except Exception:
        db_ok = False
    model = state.store.current
    has_popularity = state.movies.catalog.popular_ids.size > 0
    checks = {
        "database": db_ok,
        "model": model.version if model else None,
        "popularity": has_popularity,
    }
    if db_ok and (model is not None or has_popularity):
        return OrjsonResponse({"status": "ready", "checks": checks})
    return error_response(503, "not_ready", "not ready to serve", checks)


@router.get("/metrics", response_class=PlainTextResponse)  # Prometheus text, not JSON
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
