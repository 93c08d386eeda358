"""The catalog's Prometheus metrics (movierec_common.request_middleware fills the per-route
ones). Each app has its own registry, so several apps in one test process never collide."""

from __future__ import annotations

import logging

from movierec_common.request_middleware import LATENCY_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

access_log = logging.getLogger("catalog_api.access")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "movierec_catalog_requests",
            "Requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "movierec_catalog_request_seconds",
            "Request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.logins = Counter(
            "movierec_catalog_logins",
            "Login attempts by result",
            ["result"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
