"""Request body size limit for both APIs, enforced in the app itself.

nginx already refuses bodies over 1 MiB, but an API reached directly (a proxy misconfigured,
a caller on the internal network) would otherwise buffer and parse a body of any size before
validation notices. Every MovieRec request body is small (the largest, a batch of 1000 user
ids, is ~20 KB), so anything above MAX_BODY_BYTES is refused with 413 before it is read: at
once when Content-Length says so, or as soon as a chunked body crosses the limit.
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024


def _message(limit: int) -> str:
    return f"the request body is too large (limit {limit} bytes)"


class BodySizeLimit:
    """Pure-ASGI middleware: 413 in the common error shape for bodies over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes or declared < 0:
                    await self._refuse(send, 413 if declared > 0 else 400)
                    return
                break
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read; the app's HTTPException handler
                    # turns it into the common JSON error shape.
                    raise HTTPException(413, _message(self.max_bytes))
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send, status: int) -> None:
        code, text = (
            ("payload_too_large", _message(self.max_bytes))
            if status == 413
            else ("bad_request", "invalid Content-Length")
        )
        body = orjson.dumps({"error": {"code": code, "message": text}})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
