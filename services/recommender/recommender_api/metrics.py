"""Prometheus metrics: per-route latency histograms and the active model version.

Each app gets its own registry, so several apps in one process (tests) never collide, and the
route label is the path template (`/api/recs/users/{user_id}`), never the raw path, so label
cardinality stays bounded.
"""

from __future__ import annotations

import time
import uuid

from movierec_common.logs import request_id_var
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .ranking import ServingModel

_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "movierec_recs_request_seconds",
            "Request latency by route template",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "movierec_recs_model_info",
            "1 for the active model version",
            ["version", "has_ranking"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "movierec_recs_model_loaded_timestamp_seconds",
            "When the active model was loaded (0 = none, popularity only)",
            registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "movierec_recs_model_load_seconds",
            "How long loading the active model took",
            registry=self.registry,
        )
        self.reloads = Counter(
            "movierec_recs_model_reloads",
            "Model reload attempts by result",
            ["result"],
            registry=self.registry,
        )
        self.strategy = Counter(
            "movierec_recs_lists",
            "Lists served by strategy",
            ["strategy"],
            registry=self.registry,
        )

    def on_model(self, model: ServingModel) -> None:
        self.model_info.clear()
        self.model_info.labels(model.version, str(model.has_ranking).lower()).set(1)
        self.model_loaded.set(model.loaded_at)
        self.model_load_seconds.set(model.load_seconds)
        self.reloads.labels("ok").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task hop): times the request and sets a request id."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid or uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
            request_id_var.reset(token)
