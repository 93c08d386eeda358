"""Prometheus metrics: per-route latency histograms and the active model version.

Each app gets its own registry, so several apps in one process (tests) never collide, and the
route label is the path template (`/api/recs/users/{user_id}`), never the raw path, so label
cardinality stays bounded.
"""

from __future__ import annotations

from movierec_common.request_middleware import LATENCY_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .ranking import ServingModel


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "movierec_recs_requests",
            "Requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "movierec_recs_request_seconds",
            "Request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
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

        self.impressions_written = Counter(
            "movierec_recs_impressions_written",
            "Impressions written to MongoDB",
            registry=self.registry,
        )
        self.impressions_dropped = Counter(
            "movierec_recs_impressions_dropped",
            "Impressions dropped: queue_full (database slow) or write_failed",
            ["reason"],
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
