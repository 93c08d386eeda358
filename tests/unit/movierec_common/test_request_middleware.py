"""One access line per request with method, path, status and duration, in both log formats
(movierec_common.request_middleware + movierec_common.logs), for a real ASGI app over HTTP."""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pytest
from fastapi import FastAPI
from movierec_common.logs import JsonFormatter
from movierec_common.request_middleware import RequestMiddleware
from prometheus_client import CollectorRegistry, Counter, Histogram


def make_app(logger: logging.Logger) -> FastAPI:
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/api/things/{thing_id}")
    async def thing(thing_id: int) -> dict:
        return {"id": thing_id}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    app.add_middleware(
        RequestMiddleware,
        requests=Counter("r", "r", ["method", "route", "status"], registry=registry),
        latency=Histogram("l", "l", ["method", "route"], registry=registry),
        access_log=logger,
    )
    return app


@pytest.mark.parametrize("json_format", [False, True])
async def test_one_line_per_request_with_method_path_status_duration(json_format: bool) -> None:
    logger = logging.getLogger(f"test.access.{json_format}")
    logger.setLevel(logging.INFO)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        JsonFormatter() if json_format else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    logger.handlers[:] = [handler]
    logger.propagate = False
    transport = httpx.ASGITransport(app=make_app(logger))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/things/7")).status_code == 200
        assert (await client.get("/api/things/x")).status_code == 422
        assert (await client.get("/nope")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200  # a probe: DEBUG only
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    expected = [("/api/things/7", 200), ("/api/things/x", 422), ("/nope", 404)]
    for line, (path, status) in zip(lines, expected, strict=True):
        if json_format:
            rec = json.loads(line)
            assert rec["method"] == "GET" and rec["path"] == path and rec["status"] == status
            assert isinstance(rec["ms"], float) and rec["ms"] >= 0
            assert rec["request_id"]
            assert rec["msg"].startswith(f"GET {path} {status} ")
        else:
            assert re.fullmatch(rf"INFO test\.access\.False: GET {path} {status} \d+\.\dms", line)
