"""Register / login / cookie / Bearer / API key flows, bad and expired tokens, rate limits."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
from movierec_common.tokens import COOKIE_NAME, issue_token

from tests.integration.catalog.conftest import unique_name
from tests.integration.catalog.support import (
    API_KEY,
    JWT_SECRET,
    assert_error,
    bearer,
    register,
    start_catalog,
)
from tests.support.movielens_db import MovieLensDB


def test_register_sets_cookie_and_returns_a_usable_token(http: httpx.Client):
    name = unique_name()
    r = http.post("/api/auth/register", json={"username": name, "password": "password-123"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["username"] == name and body["user"]["role"] == "user"
    assert body["user"]["userId"] > 610  # above every MovieLens userId
    set_cookie = r.headers["set-cookie"].lower()
    assert f"{COOKIE_NAME}=" in set_cookie and "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    me = http.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == name


def test_cookie_flow_login_me_logout(catalog):
    name = unique_name()
    with catalog.client() as c:
        register(c, name)
    with catalog.client() as browser:  # a fresh cookie jar, like a browser
        assert_error(browser.get("/api/auth/me"), 401, "not_authenticated")
        anon = browser.get("/api/auth/session")  # what the web UI asks on every page load
        assert anon.status_code == 200 and anon.json() == {"authenticated": False, "user": None}
        r = browser.post("/api/auth/login", json={"username": name, "password": "password-123"})
        assert r.status_code == 200
        assert browser.cookies.get(COOKIE_NAME) == r.json()["access_token"]
        me = browser.get("/api/auth/me")
        assert me.status_code == 200 and me.json()["username"] == name
        session = browser.get("/api/auth/session").json()
        assert session["authenticated"] is True and session["user"] == me.json()
        out = browser.post("/api/auth/logout")
        assert out.status_code == 204
        assert browser.cookies.get(COOKIE_NAME) is None
        assert_error(browser.get("/api/auth/me"), 401)
        assert browser.get("/api/auth/session").json()["authenticated"] is False
    # A forged or expired credential is simply "not logged in" here (200), a 401 on /me.
    bad = catalog.client(headers={"Authorization": "Bearer not-a-token"})
    with bad:
        assert bad.get("/api/auth/session").json() == {"authenticated": False, "user": None}


def test_login_is_case_insensitive_on_username(http: httpx.Client):
    name = unique_name("Mixed")
    register(http, name)
    r = http.post("/api/auth/login", json={"username": name.upper(), "password": "password-123"})
    assert r.status_code == 200
    assert r.json()["user"]["username"] == name


def test_new_user_ids_are_distinct_and_above_movielens(http: httpx.Client):
    ids = []
    for _ in range(3):
        r = http.post(
            "/api/auth/register", json={"username": unique_name(), "password": "password-123"}
        )
        ids.append(r.json()["user"]["userId"])
    assert len(set(ids)) == 3 and min(ids) > 610


def test_wrong_password_and_unknown_user_look_the_same(http: httpx.Client):
    name = unique_name()
    register(http, name)
    wrong = http.post("/api/auth/login", json={"username": name, "password": "wrong-password"})
    unknown = http.post(
        "/api/auth/login", json={"username": unique_name("nobody"), "password": "wrong-password"}
    )
    e1, e2 = assert_error(wrong, 401), assert_error(unknown, 401)
    assert e1 == e2  # same code and message: nothing reveals whether the username exists
    assert COOKIE_NAME not in wrong.headers.get("set-cookie", "")


def test_demo_and_admin_accounts_from_init_log_in(http: httpx.Client, movielens_db: MovieLensDB):
    r = http.post(
        "/api/auth/login", json={"username": "ml1", "password": movielens_db.demo_password}
    )
    assert r.status_code == 200 and r.json()["user"] == {
        "userId": 1,
        "username": "ml1",
        "role": "user",
    }
    r = http.post(
        "/api/auth/login",
        json={"username": movielens_db.admin_username, "password": movielens_db.admin_password},
    )
    assert r.status_code == 200 and r.json()["user"]["role"] == "admin"


def test_register_validation(http: httpx.Client):
    cases = [
        {"username": "ab", "password": "password-123"},  # too short
        {"username": "x" * 33, "password": "password-123"},  # too long
        {"username": "bad name!", "password": "password-123"},  # characters
        {"username": unique_name(), "password": "short"},  # password < 8
        {"username": "ml42", "password": "password-123"},  # reserved demo name
        {"username": "admin\n", "password": "password-123"},  # whole string, not a prefix
        {"username": unique_name() + "\n", "password": "password-123"},
        {"username": "ml42\n", "password": "password-123"},
        {"username": "ml٤٢", "password": "password-123"},  # non-ASCII digits
        {"username": unique_name(), "password": "password-123", "role": "admin"},  # extra field
        {"username": ["a", "b"], "password": "password-123"},
        {"username": unique_name(), "password": 12345678},
    ]
    for body in cases:
        err = assert_error(http.post("/api/auth/register", json=body), 422, "validation_error")
        assert err["details"], body
    name = unique_name()
    register(http, name)
    assert_error(
        http.post("/api/auth/register", json={"username": name.upper(), "password": "password-1"}),
        409,
        "username_taken",
    )


def test_expired_token_is_refused(catalog):
    old = issue_token(JWT_SECRET, 1, "ml1", "user", ttl_seconds=60, now=time.time() - 3600)
    with catalog.client() as http:
        assert_error(http.get("/api/auth/me", headers=bearer(old)), 401, "token_expired")
    # An expired cookie is refused on private routes, and ignored on public pages.
    with catalog.client(cookies={COOKIE_NAME: old}) as browser:
        assert_error(browser.get("/api/auth/me"), 401, "token_expired")
        movie = browser.get("/api/movies/1")
        assert movie.status_code == 200 and movie.json()["my_rating"] is None


def test_tampered_tokens_are_refused(http: httpx.Client):
    good = issue_token(JWT_SECRET, 1, "ml1", "user", ttl_seconds=600)
    header, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{header}.{forged_payload}.{sig}"
    assert_error(http.get("/api/auth/me", headers=bearer(forged)), 401, "invalid_token")
    flipped = good[:-2] + ("AA" if good[-2:] != "AA" else "BB")
    assert_error(http.get("/api/auth/me", headers=bearer(flipped)), 401, "invalid_token")
    other_key = jwt.encode({**claims, "role": "admin"}, "another-secret-" * 4, algorithm="HS256")
    assert_error(http.get("/api/admin/jobs", headers=bearer(other_key)), 401, "invalid_token")
    none_alg = jwt.encode({**claims, "role": "admin"}, None, algorithm="none")
    assert_error(http.get("/api/admin/jobs", headers=bearer(none_alg)), 401, "invalid_token")
    assert_error(http.get("/api/auth/me", headers={"Authorization": "Basic abc"}), 401)


def test_api_key_acts_as_service(http: httpx.Client):
    me = http.get("/api/auth/me", headers={"X-API-Key": API_KEY})
    assert me.status_code == 200 and me.json()["role"] == "service"
    assert_error(http.get("/api/auth/me", headers={"X-API-Key": "wrong"}), 401, "invalid_api_key")
    # A service has no user account, so it cannot rate.
    assert_error(
        http.put("/api/movies/1/rating", json={"rating": 4}, headers={"X-API-Key": API_KEY}), 403
    )


def test_login_rate_limited_per_username(http: httpx.Client):
    name = unique_name()
    register(http, name)
    for _ in range(5):
        assert_error(
            http.post("/api/auth/login", json={"username": name, "password": "nope-nope"}), 401
        )
    r = http.post("/api/auth/login", json={"username": name, "password": "password-123"})
    err = assert_error(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) >= 1
    assert "username" not in err["message"]
    # Another account from the same client is not blocked by that username's failures.
    other = unique_name()
    register(http, other)
    ok = http.post("/api/auth/login", json={"username": other, "password": "password-123"})
    assert ok.status_code == 200


def test_login_rate_limited_per_client_address(
    movielens_db: MovieLensDB, movielens_dir, output_dir, tmp_path
):
    """A separate process with a low per-client limit, so the shared catalog stays usable."""
    server = start_catalog(
        movielens_db.url,
        movielens_db.db,
        tmp_path,
        movielens_dir,
        output_dir,
        LOGIN_MAX_FAILURES_PER_CLIENT="3",
        TRUST_FORWARDED_FOR="true",  # as behind nginx (compose and make run set it)
    )
    try:
        with server.client() as c:
            statuses = [
                c.post(
                    "/api/auth/login", json={"username": unique_name("spray"), "password": "x" * 8}
                ).status_code
                for _ in range(4)
            ]
            assert statuses == [401, 401, 401, 429]
            # Even the right password is refused from this address until the window passes.
            r = c.post(
                "/api/auth/login",
                json={"username": "ml1", "password": movielens_db.demo_password},
            )
            assert_error(r, 429, "too_many_attempts")

            # Behind our nginx (a trusted loopback peer), X-Real-IP names the client: another
            # address is not blocked, and the blocked one stays blocked whatever it claims.
            def attempt(real_ip: str) -> int:
                return c.post(
                    "/api/auth/login",
                    json={"username": unique_name("ip"), "password": "x" * 8},
                    headers={"X-Real-IP": real_ip},
                ).status_code

            assert [attempt("203.0.113.7") for _ in range(4)] == [401, 401, 401, 429]
            assert attempt("203.0.113.8") == 401
    finally:
        server.stop()
