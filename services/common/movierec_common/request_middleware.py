"""Request ids, per-route metrics and access logs for both APIs, in one pure-ASGI middleware.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: no extra task per request on the hot
recommendation path. The route label is the path template (`/api/movies/{movie_id}`), never
the raw path, so label cardinality stays bounded; unmatched requests are labelled "unmatched".
An incoming X-Request-ID is kept only if it is short and plain (letters, digits, `._:-`), so a
caller cannot smuggle arbitrary text into every log line; otherwise a fresh id is minted.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec_common.logs import request_id_var

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # whole string: fullmatch
_QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})


class RequestMiddleware:
    """`requests` is labelled (method, route, status), `latency` (method, route).

    With `access_log`, one line per request: `GET /api/movies 200 3.2ms` (plain logs), and the
    same as fields `method`, `path`, `route`, `status`, `ms` plus `request_id` (JSON logs).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        requests: Counter,
        latency: Histogram,
        access_log: logging.Logger | None = None,
    ) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.requests.labels(method, template, str(status)).inc()
            self.latency.labels(method, template).observe(elapsed)
            if self.access_log is not None:
                path = scope.get("path", "")
                ms = round(elapsed * 1000, 2)
                # Probes (health, readiness, metrics) only at DEBUG: a poller would drown the rest.
                level = logging.DEBUG if template in _QUIET_ROUTES else logging.INFO
                self.access_log.log(
                    level,
                    "%s %s %d %.1fms",
                    method,
                    path,
                    status,
                    ms,
                    extra={
                        "method": method,
                        "path": path,
                        "route": template,
                        "status": status,
                        "ms": ms,
                    },
                )
            request_id_var.reset(token)
