"""Two pure-ASGI middlewares both APIs install: security headers, and an Origin check for
cookie-authenticated state-changing requests (cross-site request forgery).

SecurityHeaders: nginx sets the full set for everything it serves, but an API reached directly
(a published port, a misrouted proxy) must not be framable or MIME-sniffed either. Every
response gets `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
`Content-Security-Policy: frame-ancestors 'none'` (unless the route set its own CSP) and
`Referrer-Policy: strict-origin-when-cross-origin`; responses that carry a token (paths under
`no_store_prefixes`, or any response setting a cookie) get `Cache-Control: no-store`. nginx
hides the apps' copies of the first four so a browser never sees them twice.

OriginCheck: SameSite=Lax keeps the cookie off cross-site POSTs, but not off same-site ones
(another port or sub-domain of the same host is "same site"). So a POST/PUT/PATCH/DELETE that
carries the login cookie and no other credential (no Authorization, no X-API-Key: those cannot
be attached by another origin's page) must come from an allowed origin: the request's own
(Host, or X-Forwarded-Host set by our nginx) or one of CORS_ORIGINS. The Origin header is used,
else the Referer's origin; when a browser sends neither the request passes (non-browser
clients; every current browser sends Origin on these methods). Refused requests get 403
`origin_refused` before any route runs (OWASP CSRF cheat sheet, "Verifying origin with standard
headers").
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec_common.tokens import API_KEY_HEADER, COOKIE_NAME

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
)
FRAME_CSP = (b"content-security-policy", b"frame-ancestors 'none'")


def _carries_credentials(scope: Scope) -> bool:
    """Whether the request sends a token, an API key or the session cookie: its answer may
    depend on who asked."""
    for name, value in scope.get("headers", ()):
        if name in (b"authorization", b"x-api-key"):
            return True
        if name == b"cookie" and f"{COOKIE_NAME}=".encode() in value:
            return True
    return False


class SecurityHeaders:
    def __init__(self, app: ASGIApp, no_store_prefixes: tuple[str, ...] = ("/api/auth/",)):
        self.app = app
        self.no_store_prefixes = no_store_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store_path = scope.get("path", "").startswith(self.no_store_prefixes)
        credentialed = _carries_credentials(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in BASE_HEADERS if h[0] not in present)
                if FRAME_CSP[0] not in present:
                    headers.append(FRAME_CSP)
                if b"cache-control" not in present:
                    if no_store_path or b"set-cookie" in present:
                        headers.append((b"cache-control", b"no-store"))
                    elif credentialed:
                        # A caller's own list, ratings or my_rating: never kept by a shared
                        # cache or served to the next person on the machine.
                        headers.append((b"cache-control", b"private, no-store"))
                headers.append((b"vary", b"Authorization, Cookie, X-API-Key"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _origin_of(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port] lower-cased, default port dropped), or None when unparsable."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host.lower() if port in (None, default) else f"{host.lower()}:{port}"
    if ":" in host:  # IPv6 literal
        netloc = f"[{host.lower()}]" if port in (None, default) else f"[{host.lower()}]:{port}"
    return parts.scheme.lower(), netloc


def _host_netloc(value: str, scheme: str) -> str:
    parsed = _origin_of(f"{scheme}://{value.strip()}")
    return parsed[1] if parsed else value.strip().lower()


class OriginCheck:
    def __init__(self, app: ASGIApp, allowed_origins: list[str] | tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = {o for o in (_origin_of(x) for x in allowed_origins) if o is not None}

    def _refused(self, scope: Scope) -> str | None:
        """Why the request is refused, or None when it may go on."""
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name, value)
        cookie = headers.get(b"cookie", b"").decode("latin-1")
        if f"{COOKIE_NAME}=" not in cookie:
            return None
        if b"authorization" in headers or API_KEY_HEADER.lower().encode() in headers:
            return None  # the route authenticates with that, not with the cookie
        raw = headers.get(b"origin", b"").decode("latin-1")
        if not raw or raw == "null":
            referer = headers.get(b"referer", b"").decode("latin-1")
            if not referer:
                return None if not raw else "Origin: null"
            raw = referer
        origin = _origin_of(raw)
        if origin is None:
            return "unparsable Origin/Referer"
        if origin in self.allowed:
            return None
        scheme = origin[0]
        # Behind our nginx, X-Forwarded-Host is the Host the browser sent (with its port);
        # Host then lacks the port, so it alone would also match another port of the host.
        host = headers.get(b"x-forwarded-host") or headers.get(b"host")
        if host and origin[1] == _host_netloc(host.decode("latin-1"), scheme):
            return None
        return f"origin {origin[0]}://{origin[1]} is not allowed"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        reason = self._refused(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(
            {
                "error": {
                    "code": "origin_refused",
                    "message": "a cookie-authenticated change must come from this site's own "
                    "pages (send the token as a Bearer header from elsewhere)",
                    "details": {"reason": reason},
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
