"""Shared check of an API's /docs: offline Swagger UI and the OpenAPI security schemes."""

from __future__ import annotations

import httpx


def assert_docs_offline_and_secured(http: httpx.Client, spec: dict) -> None:
    """Swagger UI from the package's own assets (no CDN, no inline script), the prefix nginx
    sends honoured and a forged one ignored; Bearer, cookie and API key declared."""
    page = http.get("/docs")
    assert page.status_code == 200 and "<script>" not in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert 'src="/docs/assets/swagger-ui-bundle.js"' in page.text
    assert 'data-openapi-url="/openapi.json"' in page.text
    behind = http.get("/docs", headers={"X-Forwarded-Prefix": "/api"}).text
    assert 'src="/api/docs/assets/swagger-ui-bundle.js"' in behind
    assert 'data-openapi-url="/api/openapi.json"' in behind
    forged = http.get("/docs", headers={"X-Forwarded-Prefix": '"><script>alert(1)</script>'}).text
    assert "alert(1)" not in forged and 'data-openapi-url="/openapi.json"' in forged
    for name, media in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        r = http.get(f"/docs/assets/{name}")
        assert (
            r.status_code == 200 and media in r.headers["content-type"] and len(r.content) > 10_000
        )
    assert "SwaggerUIBundle(" in http.get("/docs/init.js").text
    assert http.get("/docs/assets/..%2Fcore.py").status_code == 404
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["cookie"]["in"] == "cookie" and schemes["cookie"]["name"] == "movierec_token"
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
