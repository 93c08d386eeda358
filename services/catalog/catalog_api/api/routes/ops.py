"""Liveness, readiness (database ping) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from movierec_common.api_errors import ApiError
from prometheus_client import CONTENT_TYPE_LATEST

from ...schemas import Health
from ..deps import State

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database answers a ping",
    responses={503: {"description": "database unreachable"}},
)
async def readyz(state: State) -> Health:
    try:
        await state.repos.health.ping()
    except Exception as exc:  # any failure to ping means not ready
        raise ApiError(503, "database_unavailable", "the database is unreachable") from exc
    return Health(status="ready")


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
