"""Issue 19 D: accounts and tokens, attacked the way the second review did.

One private catalog and one recommender (no model needed) on a schema-only database, with
nginx in front (the config `make run` renders), so every limit can be set low without
disturbing the other suites. The catalog trusts forwarded addresses from loopback (as behind
nginx); tests name their own client with X-Real-IP from TEST-NET ranges.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from movierec_common import artifacts
from movierec_common.tokens import COOKIE_NAME, DEV_ONLY_JWT_SECRET
from pymongo import MongoClient

from tests.integration.catalog.support import (
    JWT_SECRET,
    CatalogServer,
    make_schema_db,
    start_catalog,
)
from tests.support import NGINX, ROOT, ManagedProcess, free_port, start_nginx, wait_http

ADMIN_PASSWORD = "accounts-admin-password-1"
ALLOWED = "http://allowed.example"
SLOWDOWN_MAX = 0.6
_addresses = (f"198.51.100.{i}" for i in itertools.count(1))
TIMEOUT = 120.0  # generous: argon2 hashing on a loaded 2-core CI box can take seconds


class _Http:
    """httpx's one-shot functions with a long timeout and no cookie memory between calls."""

    @staticmethod
    def get(url: str, **kw) -> httpx.Response:
        return httpx.get(url, **{"timeout": TIMEOUT, **kw})

    @staticmethod
    def post(url: str, **kw) -> httpx.Response:
        return httpx.post(url, **{"timeout": TIMEOUT, **kw})

    @staticmethod
    def put(url: str, **kw) -> httpx.Response:
        return httpx.put(url, **{"timeout": TIMEOUT, **kw})


HTTP = _Http()


def next_ip() -> str:
    """A fresh client address for X-Real-IP (believed from the loopback peer, like nginx)."""
    return next(_addresses)


@dataclass
class Stack:
    catalog: CatalogServer
    recs_url: str
    web_url: str
    mongo_url: str
    db: str

    def users(self) -> MongoClient:
        return MongoClient(self.mongo_url)

    def register(self, prefix: str = "acc") -> tuple[str, str, str, int]:
        """(username, password, token, userId) of a new account, from its own address."""
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        password = secrets.token_urlsafe(16)
        r = HTTP.post(
            f"{self.catalog.base_url}/api/auth/register",
            json={"username": name, "password": password},
            headers={"X-Real-IP": next_ip()},
        )
        assert r.status_code == 201, r.text
        return name, password, r.json()["access_token"], r.json()["user"]["userId"]

    def login(self, username: str, password: str, ip: str | None = None) -> httpx.Response:
        return HTTP.post(
            f"{self.catalog.base_url}/api/auth/login",
            json={"username": username, "password": password},
            headers={"X-Real-IP": ip or next_ip()},
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code_of(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


@pytest.fixture(scope="module")
def stack(
    mongo_url: str, movielens_dir: Path, output_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    db = f"accounts_{uuid.uuid4().hex[:8]}"
    make_schema_db(mongo_url, db, ADMIN_PASSWORD)
    client = MongoClient(mongo_url)
    client[db].movies.insert_one(
        {
            "movieId": 1,
            "title": "Toy Story (1995)",
            "year": 1995,
            "genres": ["Animation"],
            "rating_count": 0,
            "rating_sum": 0.0,
            "avg_rating": None,
            "popularity_score": 3.5,
        }
    )
    client.close()
    model_dir = tmp_path_factory.mktemp("accounts-models")
    catalog = start_catalog(
        mongo_url,
        db,
        model_dir,
        movielens_dir,
        output_dir,
        TRUST_FORWARDED_FOR="true",
        SIGNUP_MAX_PER_CLIENT="3",
        LOGIN_MAX_FAILURES_PER_USERNAME="5",
        LOGIN_MAX_FAILURES_PER_CLIENT="8",
        LOGIN_SLOWDOWN_AFTER="5",
        LOGIN_SLOWDOWN_MAX_SECONDS=str(SLOWDOWN_MAX),
        CORS_ORIGINS=json.dumps([ALLOWED]),
    )
    recs_port, web_port = free_port(), free_port()
    procs: list[ManagedProcess] = []
    try:
        procs.append(
            ManagedProcess(
                [sys.executable, "-m", "recommender_api"],
                env={
                    "MONGO_URL": mongo_url,
                    "MONGO_DB": db,
                    "MODEL_DIR": str(model_dir),
                    "RECOMMENDER_HOST": "127.0.0.1",
                    "RECOMMENDER_PORT": str(recs_port),
                    "JWT_SECRET": JWT_SECRET,
                    "ACCOUNT_CACHE_SECONDS": "0",
                    "CORS_ORIGINS": json.dumps([ALLOWED]),
                },
                log_path=output_dir / f"accounts-recs-{recs_port}.log",
            ).start()
        )
        wait_http(f"http://127.0.0.1:{recs_port}/healthz", timeout=90, proc=procs[0].proc)
        if not Path(NGINX).exists():
            pytest.fail("nginx is not installed (.ci/run installs it: apt-get install nginx)")
        catalog_port = int(catalog.base_url.rsplit(":", 1)[1])
        prefix = output_dir / "accounts-nginx" / uuid.uuid4().hex[:8]
        prefix.mkdir(parents=True)
        procs.append(start_nginx(prefix, web_port, catalog_port, recs_port, prefix / "nginx.log"))
        wait_http(f"http://127.0.0.1:{web_port}/healthz", timeout=30, proc=procs[1].proc)
        yield Stack(
            catalog, f"http://127.0.0.1:{recs_port}", f"http://127.0.0.1:{web_port}", mongo_url, db
        )
    finally:
        for p in reversed(procs):
            p.stop()
        catalog.stop()
        c = MongoClient(mongo_url)
        c.drop_database(db)
        c.close()


def _both_apis(stack: Stack, token: str) -> tuple[int, int]:
    cat = HTTP.get(f"{stack.catalog.base_url}/api/auth/me", headers=bearer(token))
    rec = HTTP.get(f"{stack.recs_url}/api/recs/me", headers=bearer(token))
    return cat.status_code, rec.status_code


# --- D1: tokens end with the account's state -------------------------------------------------


def test_demoted_admin_loses_admin_at_once_on_both_apis(stack: Stack) -> None:
    r = stack.login("admin", ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    cat = stack.catalog.base_url
    assert HTTP.get(f"{cat}/api/admin/jobs", headers=bearer(token)).status_code == 200
    assert HTTP.get(f"{stack.recs_url}/api/recs/users/5", headers=bearer(token)).status_code in (
        200,
        404,
    )
    with stack.users() as c:
        c[stack.db].users.update_one({"userId": 1001}, {"$set": {"role": "user"}})
    try:
        r = HTTP.get(f"{cat}/api/admin/jobs", headers=bearer(token))
        assert r.status_code == 403, r.text
        r = HTTP.get(f"{stack.recs_url}/api/recs/users/5", headers=bearer(token))
        assert r.status_code == 403, r.text
        me = HTTP.get(f"{cat}/api/auth/me", headers=bearer(token)).json()
        assert me["role"] == "user", me
    finally:
        with stack.users() as c:
            c[stack.db].users.update_one({"userId": 1001}, {"$set": {"role": "admin"}})


def test_deleted_account_cannot_write_ratings(stack: Stack) -> None:
    _, _, token, user_id = stack.register("del")
    cat = stack.catalog.base_url
    r = HTTP.put(f"{cat}/api/movies/1/rating", json={"rating": 4.0}, headers=bearer(token))
    assert r.status_code in (200, 201), r.text
    with stack.users() as c:
        c[stack.db].users.delete_one({"userId": user_id})
        c[stack.db].ratings.delete_many({"userId": user_id})
    r = HTTP.put(f"{cat}/api/movies/1/rating", json={"rating": 2.0}, headers=bearer(token))
    assert r.status_code == 401, r.text
    assert _both_apis(stack, token) == (401, 401)
    with stack.users() as c:
        assert c[stack.db].ratings.count_documents({"userId": user_id}) == 0


def test_password_change_ends_every_older_token(stack: Stack) -> None:
    name, password, t_register, _ = stack.register("pw")
    t_login = stack.login(name, password).json()["access_token"]
    cat = stack.catalog.base_url
    weak = HTTP.post(
        f"{cat}/api/auth/password",
        json={"current_password": password, "new_password": "password"},
        headers=bearer(t_login),
    )
    assert weak.status_code == 422 and "new_password" in weak.text, weak.text
    wrong = HTTP.post(
        f"{cat}/api/auth/password",
        json={"current_password": "not-the-password", "new_password": "a-new-passphrase-77"},
        headers=bearer(t_login),
    )
    assert wrong.status_code == 401, wrong.text
    assert _both_apis(stack, t_login) == (200, 200)  # refused attempts revoke nothing
    new_password = "a-new-passphrase-" + secrets.token_hex(4)
    r = HTTP.post(
        f"{cat}/api/auth/password",
        json={"current_password": password, "new_password": new_password},
        headers=bearer(t_login),
    )
    assert r.status_code == 200, r.text
    fresh = r.json()["access_token"]
    assert _both_apis(stack, t_register) == (401, 401)
    assert _both_apis(stack, t_login) == (401, 401)
    assert _both_apis(stack, fresh) == (200, 200)
    assert stack.login(name, password).status_code == 401
    assert stack.login(name, new_password).status_code == 200


def test_logout_ends_bearer_tokens_too(stack: Stack) -> None:
    name, password, t_register, _ = stack.register("out")
    t_login = stack.login(name, password).json()["access_token"]
    assert _both_apis(stack, t_login) == (200, 200)
    r = HTTP.post(f"{stack.catalog.base_url}/api/auth/logout", headers=bearer(t_login))
    assert r.status_code == 204, r.text
    assert _both_apis(stack, t_login) == (401, 401)
    assert _both_apis(stack, t_register) == (401, 401)
    assert stack.login(name, password).status_code == 200  # logging in again works


# --- D2: no published or short secret ---------------------------------------------------------


@pytest.mark.parametrize("module", ["catalog_api", "recommender_api"])
@pytest.mark.parametrize("secret", [None, DEV_ONLY_JWT_SECRET, "a", "x" * 31])
def test_apis_refuse_the_published_or_a_short_jwt_secret(
    module: str, secret: str | None, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "ALLOW_DEV_JWT_SECRET")}
    env |= {
        "MONGO_URL": "mongodb://127.0.0.1:9/?directConnection=true",
        "CATALOG_PORT": str(free_port()),
        "RECOMMENDER_PORT": str(free_port()),
        "MODEL_DIR": str(tmp_path),
    }
    if secret is not None:
        env["JWT_SECRET"] = secret
    # cwd=tmp_path: no .env there, so nothing but this environment configures the process.
    r = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "refusing to start" in r.stderr and "JWT_SECRET" in r.stderr, r.stderr[-2000:]


def test_the_development_secret_needs_the_explicit_setting(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(
        [sys.executable, "-m", "recommender_api"],
        env={
            "ALLOW_DEV_JWT_SECRET": "true",
            "MONGO_URL": "mongodb://127.0.0.1:9/?directConnection=true",
            "RECOMMENDER_PORT": str(port),
            "MODEL_DIR": str(tmp_path),
        },
        log_path=tmp_path / "recs.log",
        cwd=tmp_path,
    )
    proc.env.pop("JWT_SECRET", None)  # the published development secret, allowed explicitly
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90, proc=proc.proc)
    finally:
        proc.stop()


def test_make_run_generates_a_strong_secret_and_policy_passwords() -> None:
    sys.path.insert(0, str(ROOT))
    from movierec_common.password_policy import password_problem
    from movierec_common.tokens import check_secret

    from scripts.run_stack import generate_secrets

    for _ in range(200):
        s = generate_secrets()
        check_secret(s["JWT_SECRET"])
        assert password_problem(s["ADMIN_PASSWORD"], "admin") is None
        assert password_problem(s["DEMO_PASSWORD"], "ml1") is None


# --- D3: cookie-authenticated changes only from our own origin ---------------------------------


def _cookie_client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, cookies={COOKIE_NAME: token}, timeout=TIMEOUT)


def test_cookie_changes_from_other_origins_are_refused(stack: Stack) -> None:
    admin = stack.login("admin", ADMIN_PASSWORD).json()["access_token"]
    _, _, user, _ = stack.register("csrf")
    other_port = f"http://127.0.0.1:{free_port()}"
    job = "0123456789abcdef01234567"
    for base in (stack.catalog.base_url, stack.web_url):
        bad_origins = [
            {"Origin": "http://evil.example"},
            {"Origin": other_port},  # same site (same host), another port
            {"Referer": "http://evil.example/page"},
            {"Origin": "null"},
        ]
        for headers in bad_origins:
            with _cookie_client(base, admin) as c:
                for method, path, body in [
                    ("POST", "/api/admin/models/v1/activate", None),
                    ("POST", f"/api/admin/jobs/{job}/cancel", None),
                    ("POST", "/api/admin/retrain", {}),
                    ("POST", "/api/auth/logout", None),
                ]:
                    r = c.request(method, path, json=body, headers=headers)
                    assert r.status_code == 403, (base, headers, path, r.text)
                    assert code_of(r) == "origin_refused", r.text
            with _cookie_client(base, user) as c:
                r = c.put("/api/movies/1/rating", json={"rating": 3.0}, headers=headers)
                assert r.status_code == 403 and code_of(r) == "origin_refused", r.text
                r = c.delete("/api/movies/1/rating", headers=headers)
                assert r.status_code == 403, r.text
                r = c.post("/api/recs/batch", json={"userIds": [1]}, headers=headers)
                assert r.status_code == 403, r.text
        # Our own pages and the configured CORS origin may; a Bearer token from anywhere may.
        own = {"Origin": base}
        with _cookie_client(base, user) as c:
            for headers in (own, {"Origin": ALLOWED}, {"Referer": f"{base}/movies/1"}):
                r = c.put("/api/movies/1/rating", json={"rating": 3.5}, headers=headers)
                assert r.status_code in (200, 201), (base, headers, r.text)
        r = HTTP.put(
            f"{base}/api/movies/1/rating",
            json={"rating": 4.0},
            headers={**bearer(user), "Origin": "http://evil.example"},
        )
        assert r.status_code in (200, 201), r.text
    # The admin's own-origin cookie calls reach the routes (404 unknown job, not 403).
    with _cookie_client(stack.web_url, admin) as c:
        r = c.post(f"/api/admin/jobs/{job}/cancel", headers={"Origin": stack.web_url})
        assert r.status_code == 404, r.text


# --- D4: sign-up limit per client -----------------------------------------------------------


def test_signups_are_limited_per_client(stack: Stack) -> None:
    ip = next_ip()

    def signup(address: str) -> httpx.Response:
        return HTTP.post(
            f"{stack.catalog.base_url}/api/auth/register",
            json={"username": f"su{uuid.uuid4().hex[:10]}", "password": secrets.token_hex(8)},
            headers={"X-Real-IP": address},
        )

    statuses = [signup(ip).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429], statuses
    r = signup(ip)
    assert r.status_code == 429 and code_of(r) == "too_many_attempts", r.text
    assert int(r.headers["retry-after"]) >= 1
    assert signup(next_ip()).status_code == 201  # another client is not affected


# --- D5: password policy ----------------------------------------------------------------------


def test_password_policy_follows_nist_800_63b(stack: Stack) -> None:
    name = f"Pol{uuid.uuid4().hex[:8]}"
    bad = [
        "password",
        "12345678",
        "        ",
        "\t \t \t \t ",
        name,
        name.lower(),
        name.upper(),
        "short7!",
        "Password1",
        "qwertyuiop",
        "iloveyou",
        "x" * 1025,
        # invisible, control and blank characters (a tester's reproducers): none of them
        # counts toward the length, passes for a password, or hides a common one
        "\u200b" * 8,
        "\u00ad" * 8,
        "\ufeff" * 8,
        "\u0301" * 8,
        "\u2800" * 8,
        "\u3164" * 8,
        "\x00" * 8,
        "\x7f" * 8,
        "correct horse\x00battery",
        "password\u200b",
        "passw\u200bord",
        "pass\u00adword1",
        "abc\u200b\u200b\u200b\u200b\u200b",
    ]
    for password in bad:
        r = HTTP.post(
            f"{stack.catalog.base_url}/api/auth/register",
            json={"username": name, "password": password},
            headers={"X-Real-IP": next_ip()},
        )
        assert r.status_code == 422, (password, r.text)
        assert "password" in json.dumps(r.json()["error"]["details"]), r.text
    for password in (
        "correct horse battery staple",
        "ü" * 8,
        "a" * 64 + " long passphrase",
        "tab\tseparated words",
        "n\u0303o\u0303 c\u0327a\u0301 tilde",  # combining marks on letters are fine
    ):
        r = HTTP.post(
            f"{stack.catalog.base_url}/api/auth/register",
            json={"username": f"ok{uuid.uuid4().hex[:10]}", "password": password},
            headers={"X-Real-IP": next_ip()},
        )
        assert r.status_code == 201, (password, r.text)


# --- D6: no lockout of someone else ---------------------------------------------------------


def test_failures_from_many_addresses_do_not_lock_the_owner_out(stack: Stack) -> None:
    name, password, _, _ = stack.register("lock")
    for _ in range(5):  # five addresses, five wrong passwords each
        ip = next_ip()
        for i in range(5):
            r = stack.login(name, f"wrong-{i}", ip)
            assert r.status_code == 401, r.text
    start = time.monotonic()
    r = stack.login(name, password)  # the owner, from their own address
    elapsed = time.monotonic() - start
    assert r.status_code == 200, r.text
    # ... after a slow-down: every attempt at this account now waits before it is checked.
    assert elapsed >= SLOWDOWN_MAX * 0.9, elapsed
    # One address guessing one account is stopped (429), for that account only.
    ip = next_ip()
    for i in range(5):
        assert stack.login(name, f"again-{i}", ip).status_code == 401
    r = stack.login(name, password, ip)
    assert r.status_code == 429 and code_of(r) == "too_many_attempts", r.text
    assert stack.login(name, password).status_code == 200


# --- D7: forwarded addresses only from trusted proxies --------------------------------------


def test_forwarded_addresses_are_believed_only_from_loopback_proxies(stack: Stack) -> None:
    """A peer on 127.0.0.2 (not our nginx) names a new X-Real-IP on every attempt; the
    per-client limit (8) still applies to the peer itself."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    statuses = []
    with httpx.Client(transport=transport, timeout=TIMEOUT) as c:
        for _ in range(10):
            r = c.post(
                f"{stack.catalog.base_url}/api/auth/login",
                json={"username": f"spray{uuid.uuid4().hex[:8]}", "password": "x" * 12},
                headers={"X-Real-IP": next_ip(), "X-Forwarded-For": next_ip()},
            )
            statuses.append(r.status_code)
    assert statuses == [401] * 8 + [429] * 2, statuses


# --- F4, F5: what the APIs show and the headers they send ------------------------------------


def test_model_paths_are_shown_to_admins_only(stack: Stack) -> None:
    rng = np.random.default_rng(7)
    n_users, n_items, k = 6, 8, 3
    arrays = {
        "P": 0.3 * rng.standard_normal((n_users, k)),
        "Q": 0.3 * rng.standard_normal((n_items, k)),
        "user_bias": 0.1 * rng.standard_normal(n_users),
        "item_bias": 0.1 * rng.standard_normal(n_items),
        "global_mean": np.array(3.5),
        "user_ids": np.arange(1, n_users + 1, dtype=np.int64),
        "item_ids": np.arange(1, n_items + 1, dtype=np.int64),
        "item_counts": np.arange(1, n_items + 1, dtype=np.int64),
    }
    secret_dir = "/srv/private-data/ml-latest"
    manifest = {
        "params": {"explicit": {"rank": k}, "ranking": None},
        "data": {"path": secret_dir, "snapshot": "/var/lib/trainer/snap-1.parquet", "n": 48},
        "metrics": {"rmse": 0.9},
    }
    version = artifacts.save_model(stack.catalog.model_dir, arrays, manifest)

    def info(headers: dict[str, str]) -> httpx.Response:
        return HTTP.get(f"{stack.recs_url}/api/recs/model", headers=headers)

    deadline = time.monotonic() + 60
    while info({}).json().get("version") != version:
        assert time.monotonic() < deadline, info({}).text
        time.sleep(0.5)
    anonymous = info({})
    _, _, user, _ = stack.register("paths")
    for r in (anonymous, info(bearer(user))):
        assert r.status_code == 200, r.text
        assert secret_dir not in r.text and "/var/lib/trainer" not in r.text, r.text
        assert r.json()["data"]["path"] == "<path>" and r.json()["data"]["n"] == 48
    admin = stack.login("admin", ADMIN_PASSWORD).json()["access_token"]
    shown = info(bearer(admin)).json()
    assert shown["data"]["path"] == secret_dir, shown


SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def test_apis_send_security_headers_themselves(stack: Stack) -> None:
    cat, recs = stack.catalog.base_url, stack.recs_url
    _, _, token, _ = stack.register("hdr")
    responses = {
        "catalog json": HTTP.get(f"{cat}/api/movies"),
        "catalog 404": HTTP.get(f"{cat}/api/movies/999999999"),
        "catalog 401": HTTP.get(f"{cat}/api/auth/me"),
        "catalog 422": HTTP.get(f"{cat}/api/movies", params={"page": 0}),
        "recs json": HTTP.get(f"{recs}/api/recs/model"),
        "recs 401": HTTP.get(f"{recs}/api/recs/me"),
        "recs 404": HTTP.get(f"{recs}/api/nope"),
        "me": HTTP.get(f"{cat}/api/auth/me", headers=bearer(token)),
    }
    for name, r in responses.items():
        for header, value in SECURITY.items():
            assert r.headers.get_list(header) == [value], (name, header, r.headers)
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), name
    # Responses that carry or describe credentials are never stored by a cache.
    login = stack.login("admin", ADMIN_PASSWORD)
    for r in (login, responses["me"]):
        assert r.headers.get("cache-control") == "no-store", r.headers
    # Neither are answers that depend on the caller (their list, ratings, my_rating), through
    # nginx too; an anonymous catalogue page stays cacheable, and every answer names the
    # credentials it may vary with.
    for base in (None, stack.web_url):
        for path, url in (("/api/me/ratings", cat), ("/api/movies/1", cat), ("/api/recs/me", recs)):
            r = HTTP.get(f"{base or url}{path}", headers=bearer(token))
            assert r.status_code == 200, (path, r.text[:200])
            assert r.headers.get("cache-control") == "private, no-store", (path, r.headers)
            assert "Authorization" in r.headers.get("vary", ""), (path, r.headers)
        r = HTTP.get(f"{base or cat}/api/movies/1")
        assert "no-store" not in r.headers.get("cache-control", ""), r.headers
    # Through nginx each header arrives once (nginx's values, the apps' copies hidden).
    for path in ("/api/movies", "/api/recs/model", "/api/auth/me"):
        r = HTTP.get(f"{stack.web_url}{path}")
        for header, value in SECURITY.items():
            assert r.headers.get_list(header) == [value], (path, header, r.headers)
        assert len(r.headers.get_list("content-security-policy")) == 1, r.headers
