"""Who may read what: user tokens (own lists only), admin tokens, API keys, cookies, and every
way a credential can be wrong. All refusals use the one JSON error shape."""

from __future__ import annotations

import time

import httpx
import pytest
from movierec_common.tokens import COOKIE_NAME, issue_token

from tests.integration.recommender.support import API_KEY, JWT_SECRET, RecsServer

pytestmark = pytest.mark.timeout(300)


def _error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"code", "message"} and err["message"]
    if code is not None:
        assert err["code"] == code


def _tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    flipped = ("A" if sig[5] != "A" else "B").join([sig[:5], sig[6:]])
    return ".".join([head, payload, flipped])


ROUTES = [
    ("GET", "/api/recs/users/1", None),
    ("GET", "/api/recs/me", None),
    ("GET", "/api/recs/predict?userId=1&movieId=1", None),
    ("POST", "/api/recs/batch", {"userIds": [1]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_no_credentials_is_401(recs: RecsServer, method: str, path: str, body) -> None:
    r = recs.client.request(method, path, json=body)
    _error(r, 401, "not_authenticated")
    assert r.headers.get("www-authenticate") == "Bearer"


def test_user_reads_only_their_own_lists(recs: RecsServer) -> None:
    me = recs.as_user(1)
    assert recs.client.get("/api/recs/users/1", headers=me).status_code == 200
    mine = recs.client.get("/api/recs/me", headers=me)
    assert mine.status_code == 200 and mine.json()["userId"] == 1
    ok = recs.client.get("/api/recs/predict", params={"userId": 1, "movieId": 1}, headers=me)
    assert ok.status_code == 200
    _error(recs.client.get("/api/recs/users/2", headers=me), 403, "forbidden")
    _error(
        recs.client.get("/api/recs/predict", params={"userId": 2, "movieId": 1}, headers=me),
        403,
        "forbidden",
    )
    _error(recs.client.post("/api/recs/batch", json={"userIds": [1]}, headers=me), 403)


def test_cookie_token_works_like_bearer(recs: RecsServer) -> None:
    with httpx.Client(base_url=recs.base_url, cookies={COOKIE_NAME: recs.token(3)}) as c:
        assert c.get("/api/recs/me").json()["userId"] == 3
        _error(c.get("/api/recs/users/4"), 403)


def test_admin_reads_anyone_and_may_batch(recs: RecsServer) -> None:
    admin = recs.as_user(999_999, role="admin")
    assert recs.client.get("/api/recs/users/2", headers=admin).status_code == 200
    r = recs.client.post("/api/recs/batch", json={"userIds": [1, 2]}, headers=admin)
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_api_key_is_a_service(recs: RecsServer) -> None:
    assert recs.client.get("/api/recs/users/2", headers=recs.service).status_code == 200
    r = recs.client.post("/api/recs/batch", json={"userIds": [2]}, headers=recs.service)
    assert r.status_code == 200
    _error(recs.client.get("/api/recs/me", headers=recs.service), 403)
    _error(
        recs.client.get("/api/recs/users/2", headers={"X-API-Key": API_KEY + "x"}),
        401,
        "invalid_api_key",
    )


def test_bad_tokens_are_401(recs: RecsServer) -> None:
    good = recs.token(1)
    expired = issue_token(JWT_SECRET, 1, "u1", "user", 60, now=time.time() - 3600)
    foreign = issue_token("another-secret-0123456789-0123456789-abcdef", 1, "u1", "user", 600)
    cases = {
        "tampered": (f"Bearer {_tampered(good)}", "invalid_token"),
        "expired": (f"Bearer {expired}", "token_expired"),
        "wrong secret": (f"Bearer {foreign}", "invalid_token"),
        "garbage": ("Bearer not.a.jwt", "invalid_token"),
        "basic scheme": ("Basic dXNlcjpwYXNz", "invalid_token"),
        "bearer without token": ("Bearer", "invalid_token"),
    }
    for name, (header, code) in cases.items():
        r = recs.client.get("/api/recs/users/1", headers={"Authorization": header})
        assert r.status_code == 401, name
        assert r.json()["error"]["code"] == code, name
    with httpx.Client(base_url=recs.base_url, cookies={COOKIE_NAME: _tampered(good)}) as c:
        _error(c.get("/api/recs/me"), 401, "invalid_token")


def test_public_endpoints_need_no_credentials(recs: RecsServer) -> None:
    for path in (
        "/api/recs/similar/1",
        "/api/recs/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    ):
        assert recs.client.get(path).status_code == 200, path
