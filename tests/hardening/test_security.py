"""Security checks on the whole stack, through nginx as a browser or program would call it.

The per-service suites test their own auth code against a single server; these tests check
the deployed shape: both APIs behind nginx with one shared JWT secret, CORS, the proxy's
limits and headers, and what ends up in the services' logs.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid

import httpx
import jwt
import pytest
from movierec_common.tokens import COOKIE_NAME, issue_token

from tests.hardening.conftest import ALLOWED_ORIGIN, API_KEY, HStack

pytestmark = pytest.mark.timeout(300)

# One private route per API; each answers 200 with a valid user token.
PRIVATE = [("catalog", "/api/auth/me"), ("recommender", "/api/recs/me")]


def assert_error(r: httpx.Response, status: int | tuple[int, ...], code: str | None = None):
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"] and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    return err


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def bad_tokens(secret: str, user_id: int, username: str) -> dict[str, str]:
    good = issue_token(secret, user_id, username, "user", ttl_seconds=600)
    header, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    now = int(time.time())
    return {
        "expired": issue_token(secret, user_id, username, "user", 60, now=now - 3600),
        "tampered_role": f"{header}.{_b64({**claims, 'role': 'admin'})}.{sig}",
        "tampered_sub": f"{header}.{_b64({**claims, 'sub': '1'})}.{sig}",
        "flipped_signature": f"{header}.{payload}.{sig[:-3]}{'B' if sig[-3:] == 'AAA' else 'A'}AA",
        "alg_none": jwt.encode({**claims, "role": "admin"}, None, algorithm="none"),
        "alg_none_unsigned_header": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "wrong_key": jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256"),
        "hs512_same_key": jwt.encode(claims, secret, algorithm="HS512"),
        "service_role_claim": jwt.encode({**claims, "role": "service"}, secret, algorithm="HS256"),
        "no_exp": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256"
        ),
        "wrong_issuer": jwt.encode({**claims, "iss": "evil"}, secret, algorithm="HS256"),
        "garbage": "not.a.jwt",
    }


@pytest.fixture(scope="module")
def user(hstack: HStack) -> tuple[str, str, int]:
    return hstack.register("sec")


@pytest.fixture(scope="module")
def web(hstack: HStack):
    with httpx.Client(base_url=hstack.base_url, timeout=30) as client:
        yield client


def test_valid_token_works_on_both_apis_as_bearer_and_cookie(web: httpx.Client, user) -> None:
    """The control for the refusals below: the same routes accept a good credential."""
    token, _, user_id = user
    for _, path in PRIVATE:
        r = web.get(path, headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["userId"] == user_id
        with httpx.Client(base_url=str(web.base_url), cookies={COOKIE_NAME: token}) as browser:
            assert browser.get(path).status_code == 200


@pytest.mark.parametrize("api,path", PRIVATE, ids=[a for a, _ in PRIVATE])
def test_bad_tokens_are_refused_by_both_apis(hstack: HStack, web: httpx.Client, user, api, path):
    _, _, user_id = user
    for kind, token in bad_tokens(hstack.jwt_secret, user_id, "x").items():
        err = assert_error(web.get(path, headers=bearer(token)), 401)
        expected = "token_expired" if kind == "expired" else "invalid_token"
        assert err["code"] == expected, (kind, err)
        # The same token in the browser cookie is refused the same way on private routes.
        with httpx.Client(base_url=hstack.base_url, cookies={COOKIE_NAME: token}) as browser:
            assert_error(browser.get(path), 401)
    assert_error(web.get(path, headers={"Authorization": "Basic YWRtaW46YWRtaW4="}), 401)
    assert_error(web.get(path, headers={"X-API-Key": "guessed-key"}), 401, "invalid_api_key")


def test_forged_admin_tokens_never_reach_admin_routes(hstack: HStack, web: httpx.Client, user):
    _, _, user_id = user
    tokens = bad_tokens(hstack.jwt_secret, user_id, "x")
    for kind in ("tampered_role", "alg_none", "alg_none_unsigned_header", "wrong_key"):
        assert_error(web.get("/api/admin/jobs", headers=bearer(tokens[kind])), 401)
        assert_error(
            web.post("/api/recs/batch", json={"userIds": [1]}, headers=bearer(tokens[kind])), 401
        )


def test_role_escalation_is_refused(hstack: HStack, web: httpx.Client, user, admin_token):
    token, _, user_id = user
    me = bearer(token)
    for method, path, body in [
        ("GET", "/api/admin/jobs", None),
        ("GET", "/api/admin/models", None),
        ("POST", "/api/admin/retrain", {}),
        ("POST", f"/api/admin/models/{hstack.version}/activate", None),
        ("GET", "/api/admin/jobs/0123456789abcdef01234567", None),
        ("POST", "/api/recs/batch", {"userIds": [1, 2]}),
    ]:
        assert_error(web.request(method, path, json=body, headers=me), 403, "forbidden")
    # The control: an admin may do what the user may not.
    assert web.get("/api/admin/jobs", headers=bearer(admin_token)).status_code == 200
    assert web.post(
        "/api/recs/batch", json={"userIds": [1]}, headers=bearer(admin_token)
    ).is_success

    # User A reading user B (a MovieLens user with a trained vector, and another new account).
    other_token, _, other_id = hstack.register("secb")
    for victim in (1, other_id):
        assert_error(web.get(f"/api/recs/users/{victim}", headers=me), 403, "forbidden")
        assert_error(
            web.get("/api/recs/predict", params={"userId": victim, "movieId": 1}, headers=me), 403
        )
    assert web.get(f"/api/recs/users/{user_id}", headers=me).status_code == 200
    assert web.get(f"/api/recs/users/{other_id}", headers=bearer(other_token)).status_code == 200
    # A role cannot be chosen at sign-up, and a service key has no user to act as.
    name = f"esc{uuid.uuid4().hex[:10]}"
    assert_error(
        web.post(
            "/api/auth/register",
            json={"username": name, "password": "long-enough-pw", "role": "admin"},
        ),
        422,
    )
    assert_error(web.get("/api/recs/me", headers={"X-API-Key": API_KEY}), 403)
    assert_error(
        web.put("/api/movies/1/rating", json={"rating": 4}, headers={"X-API-Key": API_KEY}), 403
    )


def test_brute_force_login_is_throttled(hstack: HStack, web: httpx.Client) -> None:
    password = secrets.token_urlsafe(16)
    name = f"brute{uuid.uuid4().hex[:10]}"
    reg = web.post("/api/auth/register", json={"username": name, "password": password})
    assert reg.status_code == 201, reg.text
    for i in range(5):
        r = web.post("/api/auth/login", json={"username": name, "password": f"guess-{i}"})
        assert_error(r, 401, "invalid_credentials")
    blocked = web.post("/api/auth/login", json={"username": name, "password": "guess-5"})
    err = assert_error(blocked, 429)
    assert int(blocked.headers["retry-after"]) >= 1, (err, blocked.headers)
    # While locked, even the right password is refused: guessing cannot continue.
    right = web.post("/api/auth/login", json={"username": name.upper(), "password": password})
    assert_error(right, 429)
    # Another account is not affected by this one's lockout.
    tok, _, _ = hstack.register("bystander")
    assert web.get("/api/auth/me", headers=bearer(tok)).status_code == 200


INJECTION_BODIES = [
    ("POST", "/api/auth/login", {"username": {"$ne": ""}, "password": {"$ne": ""}}),
    ("POST", "/api/auth/login", {"username": "admin", "password": {"$gt": ""}}),
    ("POST", "/api/auth/login", {"username": {"$regex": "^adm"}, "password": "x"}),
    ("POST", "/api/auth/login", {"username": "admin", "password": "x", "$where": "1"}),
    ("POST", "/api/auth/register", {"username": {"$gt": ""}, "password": "long-enough-pw"}),
    ("PUT", "/api/movies/1/rating", {"rating": {"$gt": 0}}),
    ("PUT", "/api/movies/1/rating", {"rating": 4, "userId": 1}),
    ("PUT", "/api/movies/1/rating", {"$set": {"rating": 5}}),
    ("POST", "/api/admin/retrain", {"csv_path": {"$ne": None}}),
    ("POST", "/api/recs/batch", {"userIds": [{"$gt": 0}]}),
    ("POST", "/api/recs/batch", {"userIds": {"$ne": []}}),
]


@pytest.mark.parametrize("method,path,body", INJECTION_BODIES)
def test_nosql_operator_injection_in_bodies_is_422(web, user, admin_token, method, path, body):
    token = admin_token if "admin" in path or "batch" in path else user[0]
    assert_error(web.request(method, path, json=body, headers=bearer(token)), 422)


def test_nosql_operator_injection_in_query_strings(web: httpx.Client, user) -> None:
    for qs in (
        "genre[$ne]=Drama",
        "q[$regex]=.*",
        "$where=1",
        "sort[$gt]=",
        "page[$gt]=0",
    ):
        assert_error(web.get(f"/api/movies?{qs}"), 422)
    assert_error(web.get("/api/movies/popular?genre[$ne]=x"), 422)
    assert_error(web.get("/api/me/ratings?page[$gt]=0", headers=bearer(user[0])), 422)
    # Operators and regex syntax as *values* are literal text, never a query.
    everything = web.get("/api/movies", params={"page_size": 1}).json()["total"]
    assert everything > 9000
    for q in ('{"$gt": ""}', ".*", "^", "(", "[a-z", "\\", "$ne", "a|b", "%00", "'; return true"):
        r = web.get("/api/movies", params={"q": q, "page_size": 1})
        assert r.status_code in (200, 422), (q, r.status_code, r.text[:300])
        if r.status_code == 200:
            assert r.json()["total"] < everything, q
    for genre in ("Drama|Comedy", ".*"):
        r = web.get("/api/movies", params={"genre": genre})
        assert r.status_code == 422 or r.json()["total"] == 0, (genre, r.text[:300])
    # The recommender does not query with caller-chosen fields; odd parameters are harmless.
    r = web.get("/api/recs/me", params={"exclude": "1,$ne"}, headers=bearer(user[0]))
    assert_error(r, 422)
    r = web.get("/api/recs/me", params={"genre": {"$ne": ""}.__repr__()}, headers=bearer(user[0]))
    assert_error(r, 422, "unknown_genre")


def test_oversized_bodies_are_413_at_nginx_and_in_the_apps(hstack: HStack, user) -> None:
    big = b'{"username": "' + b"a" * (2 * 1024 * 1024) + b'", "password": "x"}'
    headers = {"Content-Type": "application/json"}
    # Through nginx: client_max_body_size answers with the JSON error shape.
    r = httpx.post(f"{hstack.base_url}/api/auth/login", content=big, headers=headers, timeout=30)
    assert_error(r, 413, "payload_too_large")
    r = httpx.post(
        f"{hstack.base_url}/api/recs/batch",
        content=b'{"userIds": [' + b"1," * 700_000 + b"1]}",
        headers={**headers, **bearer(user[0])},
        timeout=30,
    )
    assert_error(r, 413, "payload_too_large")
    # Straight to each app (a misconfigured proxy, or a caller on the internal network): the
    # app refuses a large body itself instead of buffering and parsing it.
    for url, path in (
        (hstack.catalog_url, "/api/auth/login"),
        (hstack.catalog_url, "/api/auth/register"),
        (hstack.recs_url, "/api/recs/batch"),
    ):
        r = httpx.post(f"{url}{path}", content=big, headers=headers, timeout=30)
        assert_error(r, 413, "payload_too_large")

        def chunks():
            for _ in range(64):
                yield b"a" * 32768  # 2 MiB in chunks, no Content-Length

        r = httpx.post(f"{url}{path}", content=chunks(), headers=headers, timeout=30)
        assert_error(r, 413, "payload_too_large")
    # A normal-sized body still works directly.
    ok = httpx.post(
        f"{hstack.recs_url}/api/recs/batch",
        json={"userIds": list(range(1, 200))},
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text[:300]


def test_oversized_query_strings_are_refused_cleanly(hstack: HStack, user) -> None:
    # A long but header-sized value: the apps' own validation (422).
    r = httpx.get(f"{hstack.base_url}/api/movies", params={"q": "x" * 5000}, timeout=30)
    assert_error(r, 422)
    r = httpx.get(
        f"{hstack.base_url}/api/recs/me",
        params={"exclude": ",".join(str(i) for i in range(1, 601))},
        headers=bearer(user[0]),
        timeout=30,
    )
    assert_error(r, 422)
    # Longer than any header buffer: nginx answers 414 in the JSON error shape, and the apps
    # reached directly refuse it too (never a 5xx or a hang).
    huge = "q=" + "y" * 60_000  # httpx refuses URLs over 64 KiB
    assert_error(httpx.get(f"{hstack.base_url}/api/movies?{huge}", timeout=30), 414, "uri_too_long")
    for url in (hstack.catalog_url, hstack.recs_url):
        r = httpx.get(f"{url}/api/movies?{huge}", timeout=30)
        assert 400 <= r.status_code < 500, (url, r.status_code)
    # Headers (or a cookie) beyond nginx's buffers: a 400 in the same JSON shape.
    r = httpx.get(f"{hstack.base_url}/api/movies", headers={"X-Big": "z" * 20_000}, timeout=30)
    assert_error(r, 400, "headers_too_large")
    r = httpx.get(
        f"{hstack.base_url}/api/movies", cookies={"movierec_token": "c" * 20_000}, timeout=30
    )
    assert_error(r, 400, "headers_too_large")
    assert httpx.get(f"{hstack.base_url}/api/movies", timeout=30).status_code == 200


def test_nginx_own_errors_are_json_too(hstack: HStack) -> None:
    """A malformed request or a method a static page does not take: nginx's answer keeps the
    APIs' JSON error shape (it was nginx's HTML page), and an API's own 405 passes through."""
    for method, path in (("POST", "/"), ("DELETE", "/index.html"), ("PUT", "/assets/app.css")):
        r = httpx.request(method, f"{hstack.base_url}{path}", timeout=30)
        assert_error(r, 405, "method_not_allowed")
    r = httpx.get(f"{hstack.base_url}/api/movies/%00", timeout=30)
    assert_error(r, 400, "bad_request")
    r = httpx.request("TRACE", f"{hstack.base_url}/api/auth/login", timeout=30)
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith(
        "application/json"
    ), (r.status_code, r.headers, r.text[:200])
    r = httpx.delete(f"{hstack.base_url}/api/movies", timeout=30)  # the catalog's own 405
    assert r.status_code == 405 and r.json()["error"], r.text
    # A trailing slash is a JSON 404 from the API, never a redirect to another host or port.
    for method, path in (
        ("GET", "/api/movies/?q=matrix"),
        ("POST", "/api/auth/login/"),
        ("GET", "/api/recs/similar/1/"),
    ):
        r = httpx.request(method, f"{hstack.base_url}{path}", json={}, timeout=30)
        assert_error(r, 404)
        assert "location" not in r.headers, r.headers


@pytest.mark.parametrize(
    "path,method",
    [("/api/movies", "GET"), ("/api/movies/1/rating", "PUT"), ("/api/recs/me", "GET")],
)
def test_cors_only_for_the_configured_origin(web: httpx.Client, path: str, method: str) -> None:
    def preflight(origin: str) -> httpx.Response:
        return web.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )

    ok = preflight(ALLOWED_ORIGIN)
    if method == "PUT" and path.startswith("/api/recs"):
        pytest.skip("the recommender has no PUT routes")
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert method in ok.headers["access-control-allow-methods"]
    for foreign in ("http://evil.example", "null", f"{ALLOWED_ORIGIN}.evil.example"):
        r = preflight(foreign)
        assert r.status_code >= 400, (foreign, r.status_code)
        assert "access-control-allow-origin" not in r.headers, foreign
        simple = web.get("/api/movies", headers={"Origin": foreign})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers, foreign
    simple = web.get("/api/movies", headers={"Origin": ALLOWED_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin",
}


def test_nginx_security_headers_on_pages_apis_and_errors(web: httpx.Client, user) -> None:
    responses = {
        "shell": web.get("/"),
        "deep link": web.get("/movies/1"),
        "asset 404": web.get("/assets/missing.js"),
        "catalog json": web.get("/api/movies"),
        "catalog 404": web.get("/api/movies/999999999"),
        "catalog 401": web.get("/api/auth/me"),
        "recs json": web.get("/api/recs/me", headers=bearer(user[0])),
        "recs 401": web.get("/api/recs/me"),
        "nginx 413": web.post("/api/auth/login", content=b"x" * (2 * 1024 * 1024)),
    }
    for name, r in responses.items():
        for header, value in SECURITY_HEADERS.items():
            assert r.headers.get(header) == value, (name, header, r.headers)
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (name, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, name
        assert "/" not in r.headers.get("server", ""), (name, r.headers.get("server"))
        assert "x-powered-by" not in r.headers, name
        assert len(r.headers.get_list("x-request-id")) == 1, (name, r.headers)  # sent once
    # The login cookie is httpOnly and SameSite=Lax.
    name = f"ck{uuid.uuid4().hex[:10]}"
    r = web.post("/api/auth/register", json={"username": name, "password": "long-enough-pw"})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie


def _walk_keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _walk_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _walk_keys(v)}
    return set()


def test_passwords_and_tokens_are_never_logged_or_returned(
    hstack: HStack, web: httpx.Client, admin_token: str
) -> None:
    name = f"log{uuid.uuid4().hex[:10]}"
    password = f"pw-{secrets.token_hex(12)}"
    bodies = []
    reg = web.post("/api/auth/register", json={"username": name, "password": password})
    assert reg.status_code == 201
    login = web.post("/api/auth/login", json={"username": name, "password": password})
    assert login.status_code == 200
    token = login.json()["access_token"]
    wrong = f"wrong-{secrets.token_hex(12)}"
    bodies += [reg, login, web.post("/api/auth/login", json={"username": name, "password": wrong})]
    short = f"s{secrets.token_hex(2)}"  # too short: a 422 must not echo it back
    bodies.append(web.post("/api/auth/register", json={"username": f"{name}x", "password": short}))
    bodies.append(web.post("/api/auth/login", json={"username": name, "password": {"p": wrong}}))
    auth = bearer(token)
    bodies += [
        web.get("/api/auth/me", headers=auth),
        web.put("/api/movies/1/rating", json={"rating": 4.5}, headers=auth),
        web.get("/api/me/ratings", headers=auth),
        web.get("/api/movies/1", headers=auth),
        web.get("/api/recs/me", headers=auth),
        web.get("/api/recs/me", headers={"Authorization": f"Bearer {token}x"}),
        web.get("/api/auth/me", headers={"Authorization": f"Bearer {token}x"}),
        web.get("/api/admin/jobs", headers=bearer(admin_token)),
        web.get("/api/admin/models", headers=bearer(admin_token)),
    ]
    for r in bodies:
        text = r.text
        assert password not in text and wrong not in text and short not in text, r.request.url
        assert "password_hash" not in text and "$argon2" not in text, r.request.url
        if r.headers.get("content-type", "").startswith("application/json"):
            assert not {"password", "password_hash"} & _walk_keys(r.json()), r.request.url
    time.sleep(1.0)  # let the services flush their log lines
    secrets_to_hide = {
        "password": password,
        "wrong password": wrong,
        "short password": short,
        "token signature": token.split(".")[2],
        "admin password": hstack.admin_password,
        "admin token signature": admin_token.split(".")[2],
        "jwt secret": hstack.jwt_secret,
        "api key": API_KEY,
    }
    logs = {p.name: p.read_text(errors="replace") for p in hstack.logs.rglob("*.log")}
    assert {"catalog.log", "recommender.log", "access.log"} <= set(logs), sorted(logs)
    catalog_log = logs.get("catalog.log", "")
    assert "/api/auth/login" in catalog_log, "the catalog's request log is missing"
    for log_name, text in logs.items():
        for what, value in secrets_to_hide.items():
            assert value not in text, f"{what} appears in {log_name}"
