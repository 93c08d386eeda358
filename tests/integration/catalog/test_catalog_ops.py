"""Operations: health, readiness, metrics per route template, request ids, one error shape,
OpenAPI with examples; and a database outage → 503 JSON → recovery without a restart."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.integration.catalog.conftest import ADMIN_ONLY_PASSWORD
from tests.integration.catalog.support import (
    assert_error,
    make_schema_db,
    start_catalog,
)
from tests.support import MongoServer
from tests.support.api_docs import assert_docs_offline_and_secured


def test_health_ready_and_request_ids(http: httpx.Client):
    r = http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert len(r.headers["x-request-id"]) >= 16
    r = http.get("/readyz", headers={"X-Request-ID": "trace-abc-123"})
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    assert r.headers["x-request-id"] == "trace-abc-123"
    # A hostile request id is replaced, not echoed.
    r = http.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 100})
    assert r.headers["x-request-id"] != "bad id"


def test_metrics_count_by_route_template(http: httpx.Client):
    http.get("/api/movies/1")
    http.get("/api/movies/2")
    http.get("/api/movies/999999999")
    text = http.get("/metrics").text
    assert 'route="/api/movies/{movie_id}",status="200"' in text
    assert 'route="/api/movies/{movie_id}",status="404"' in text
    assert "movierec_catalog_request_seconds_bucket" in text
    assert '/api/movies/1"' not in text  # raw paths never become labels


def test_router_errors_use_the_error_shape(http: httpx.Client):
    assert_error(http.get("/no/such/route"), 404, "not_found")
    assert_error(http.delete("/api/genres"), 405, "method_not_allowed")
    assert_error(
        http.post("/api/auth/login", content=b"{", headers={"Content-Type": "application/json"}),
        422,
        "validation_error",
    )


def test_openapi_documents_routes_with_examples(http: httpx.Client):
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/movies",
        "/api/movies/popular",
        "/api/movies/{movie_id}",
        "/api/genres",
        "/api/movies/{movie_id}/rating",
        "/api/me/ratings",
        "/api/admin/retrain",
        "/api/admin/jobs",
        "/api/admin/jobs/{job_id}",
        "/api/admin/jobs/{job_id}/cancel",
        "/api/admin/models",
        "/api/admin/models/{version}/activate",
        "/api/auth/session",
    ):
        assert path in paths, path
    assert paths["/api/admin/models"]["get"]["security"] == [
        {"bearer": []},
        {"cookie": []},
        {"apiKey": []},
    ]
    schemas = spec["components"]["schemas"]
    assert schemas["RatingRequest"]["properties"]["rating"]["examples"] == [4.5]
    assert "examples" in schemas["RetrainRequest"]
    assert_docs_offline_and_secured(http, spec)


@pytest.mark.slow
def test_database_outage_gives_503_then_recovers(tmp_path, output_dir, movielens_dir):
    """The catalog's own MongoDB is stopped while it runs, then started again on the same port
    and storage: requests get a 503 JSON error meanwhile and succeed afterwards, no restart."""
    mongo = MongoServer(tmp_path / "mongo", log_path=output_dir / "outage-mongo.log").start()
    db = f"outage_{uuid.uuid4().hex[:8]}"
    server = None
    try:
        make_schema_db(mongo.url, db, ADMIN_ONLY_PASSWORD)
        server = start_catalog(mongo.url, db, tmp_path / "models", movielens_dir, output_dir)
        with server.client(timeout=30.0) as c:
            assert c.get("/api/movies").status_code == 200
            mongo.stop()
            start = time.monotonic()
            r = c.get("/api/movies/1")
            assert_error(r, 503, "database_unavailable")
            assert time.monotonic() - start < 15, "a down database must fail fast"
            assert r.headers.get("retry-after")
            assert_error(c.get("/readyz"), 503, "database_unavailable")
            assert_error(
                c.post("/api/auth/login", json={"username": "admin", "password": "x" * 8}), 503
            )
            assert c.get("/healthz").status_code == 200  # the process itself is fine
            # Lists come from the in-process movie cache and keep working (stale-tolerant).
            assert c.get("/api/movies").status_code == 200

            mongo.start()
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                status = c.get("/readyz").status_code
                if status == 200:
                    break
                time.sleep(0.5)
            assert status == 200, "the catalog did not recover by itself"
            assert c.get("/api/movies/1").status_code in (200, 404)
            r = c.post(
                "/api/auth/login", json={"username": "admin", "password": ADMIN_ONLY_PASSWORD}
            )
            assert r.status_code == 200
    finally:
        if server is not None:
            server.stop()
        mongo.stop()
