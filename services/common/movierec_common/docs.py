"""Interactive API docs that work offline and behind nginx, and the OpenAPI security schemes.

`install_docs(app)` serves Swagger UI at `/docs` from the JS/CSS shipped in the pinned
`fastapi-offline` package (no CDN), with no inline script, so the page also runs under the
web front's Content-Security-Policy (`script-src 'self'`). nginx publishes the docs under
`/api/docs` (catalog) and `/api/recs/docs` (recommender) and says so in `X-Forwarded-Prefix`;
the page then loads its assets and the schema under that prefix. Create the app with
`docs_url=None, redoc_url=None` first.

`documented_credentials` declares the three ways to authenticate (Bearer JWT, the
`movierec_token` cookie, `X-API-Key`) as OpenAPI security schemes; a route's auth dependency
depends on it, so every operation that takes credentials lists them and Swagger UI shows
Authorize. It never rejects a request itself (the services' own checks do that).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Annotated

import fastapi_offline
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer

from movierec_common.tokens import API_KEY_HEADER, COOKIE_NAME

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
# Only prefixes nginx sets (frontend/nginx.conf): a header value is never echoed unchecked.
_PREFIX_RE = re.compile(r"^(/[a-z]+){1,2}$")

INIT_JS = """\
// Swagger UI start-up, kept out of the HTML so a strict Content-Security-Policy allows it.
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  persistAuthorization: false,
  withCredentials: true,
});
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - docs</title>
<link rel="icon" type="image/png" href="{prefix}/docs/assets/favicon.png">
<link rel="stylesheet" href="{prefix}/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{prefix}{openapi_url}"></div>
<script src="{prefix}/docs/assets/swagger-ui-bundle.js"></script>
<script src="{prefix}/docs/init.js"></script>
</body>
</html>
"""


def forwarded_prefix(request: Request) -> str:
    """The path prefix nginx publishes this API's docs under ("" when reached directly)."""
    prefix = request.headers.get("x-forwarded-prefix", "")
    return prefix if _PREFIX_RE.match(prefix) else ""


def install_docs(app: FastAPI) -> None:
    """Add `/docs`, `/docs/init.js` and `/docs/assets/{name}` (not in the schema) to `app`."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        page = PAGE.format(
            title=html.escape(app.title),
            prefix=forwarded_prefix(request),
            openapi_url=openapi_url,
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/docs/init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(INIT_JS, media_type="text/javascript")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def swagger_asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:
            return Response(status_code=404)
        return FileResponse(
            ASSETS_DIR / name,
            media_type=media,
            headers={"Cache-Control": "public, max-age=86400"},
        )


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="The access_token from POST /api/auth/login: `Authorization: Bearer <jwt>`.",
)
COOKIE = APIKeyCookie(
    name=COOKIE_NAME,
    auto_error=False,
    scheme_name="cookie",
    description="The httpOnly login cookie browsers get from POST /api/auth/login.",
)
API_KEY = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="apiKey",
    description="A key from API_KEYS, for other services (the `service` role).",
)


async def documented_credentials(
    _bearer: Annotated[object, Depends(BEARER)],
    _cookie: Annotated[object, Depends(COOKIE)],
    _key: Annotated[object, Depends(API_KEY)],
) -> None:
    """Declares the security schemes in OpenAPI; accepts everything (checks are elsewhere)."""
    return None
