"""Resolving the caller (movierec_common.callers) as both APIs do: a small FastAPI app with the
shared dependencies, a real AccountCheck on a real MongoDB wire-protocol server, real tokens.
Order (API key, then Authorization, then cookie), fail-closed checks and the one error
vocabulary."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from fastapi import FastAPI
from movierec_common import callers, data_model
from movierec_common.account_check import AccountCheck
from movierec_common.api_errors import install_error_handlers
from movierec_common.mongo import make_client
from movierec_common.tokens import COOKIE_NAME, issue_token

SECRET = "unit-test-secret-0123456789-0123456789-abcdef"
KEY = "unit-test-api-key"


def _app(resolver: callers.CallerResolver | None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.callers = resolver

    def who(caller: callers.Caller | None) -> dict:
        if caller is None:
            return {"anonymous": True}
        return {"userId": caller.user_id, "role": caller.role, "ver": caller.token_version}

    @app.get("/any")
    async def any_caller(caller: callers.CurrentCaller) -> dict:
        return who(caller)

    @app.get("/maybe")
    async def maybe(caller: callers.OptionalCaller) -> dict:
        return who(caller)

    @app.get("/person")
    async def person(caller: callers.CurrentPerson) -> dict:
        return who(caller)

    @app.get("/privileged")
    async def privileged(caller: callers.Privileged) -> dict:
        return who(caller)

    @app.get("/read/{user_id}")
    async def read(user_id: int, caller: callers.CurrentCaller) -> dict:
        return who(callers.require_read(caller, user_id))

    return app


@pytest.fixture
async def env(mongo_url: str, db_name: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    client = make_client(mongo_url)
    users = client[db_name][data_model.USERS]
    await users.insert_many(
        [
            {"userId": 1, "username": "ann", "role": "user", "token_version": 0},
            {"userId": 2, "username": "bob", "role": "admin", "token_version": 3},
            {"userId": 3, "username": "cid", "role": "superuser", "token_version": 0},
        ]
    )
    resolver = callers.CallerResolver(SECRET, [KEY, "second-key"], AccountCheck(users))
    transport = httpx.ASGITransport(app=_app(resolver))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http, {"users": users}
    await client.drop_database(db_name)
    await client.close()


def _token(user_id: int, role: str = "user", version: int = 0, age: float = 0.0) -> str:
    name = f"u{user_id}"
    return issue_token(SECRET, user_id, name, role, 600, now=time.time() - age, version=version)  # type: ignore[arg-type]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE_NAME}={token}"}


def _assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    assert r.json()["error"]["message"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


async def test_no_credentials_is_not_authenticated(env) -> None:
    http, _ = env
    _assert_error(await http.get("/any"), 401, callers.NOT_AUTHENTICATED)
    assert (await http.get("/maybe")).json() == {"anonymous": True}


async def test_api_key_is_a_service_and_wins_over_a_cookie(env) -> None:
    http, _ = env
    for key in (KEY, "second-key"):
        r = await http.get("/any", headers={"X-API-Key": key})
        assert r.json() == {"userId": None, "role": "service", "ver": 0}
    # A cookie beside an API key is not used (OriginCheck lets such requests through unchecked).
    r = await http.get("/any", headers={"X-API-Key": KEY, **_cookie(_token(1))})
    assert r.json()["role"] == "service"
    _assert_error(await http.get("/person", headers={"X-API-Key": KEY}), 403, callers.FORBIDDEN)
    assert (await http.get("/privileged", headers={"X-API-Key": KEY})).status_code == 200
    assert (await http.get("/read/7", headers={"X-API-Key": KEY})).status_code == 200


async def test_a_wrong_api_key_is_refused_even_beside_a_good_token(env) -> None:
    http, _ = env
    for key in ("wrong", "", KEY + "x", KEY[:-1]):
        r = await http.get("/any", headers={"X-API-Key": key, **_bearer(_token(1))})
        _assert_error(r, 401, callers.INVALID_API_KEY)
    # Optional routes treat it as anonymous rather than failing.
    r = await http.get("/maybe", headers={"X-API-Key": "wrong"})
    assert r.json() == {"anonymous": True}


async def test_token_role_and_version_come_from_the_database(env) -> None:
    http, ctx = env
    # The token says admin; the account is a user: a user it is.
    r = await http.get("/any", headers=_bearer(_token(1, role="admin")))
    assert r.json() == {"userId": 1, "role": "user", "ver": 0}
    _assert_error(
        await http.get("/privileged", headers=_bearer(_token(1, "admin"))), 403, "forbidden"
    )
    # The token says user; the account is an admin now.
    r = await http.get("/privileged", headers=_bearer(_token(2, version=3)))
    assert r.json() == {"userId": 2, "role": "admin", "ver": 3}
    # The cookie works like the header.
    r = await http.get("/any", headers=_cookie(_token(2, version=3)))
    assert r.json()["userId"] == 2
    # Own data only, unless privileged.
    assert (await http.get("/read/1", headers=_bearer(_token(1)))).status_code == 200
    _assert_error(await http.get("/read/2", headers=_bearer(_token(1))), 403, "forbidden")
    assert (await http.get("/read/1", headers=_bearer(_token(2, version=3)))).status_code == 200
    # Revoked (stale version), deleted account, unknown stored role: refused.
    _assert_error(await http.get("/any", headers=_bearer(_token(2))), 401, "invalid_token")
    _assert_error(await http.get("/any", headers=_bearer(_token(3))), 401, "invalid_token")
    await ctx["users"].delete_one({"userId": 1})
    _assert_error(await http.get("/any", headers=_bearer(_token(1))), 401, "invalid_token")
    assert (await http.get("/maybe", headers=_bearer(_token(1)))).json() == {"anonymous": True}


async def test_bad_and_expired_tokens(env) -> None:
    http, _ = env
    expired = _token(1, age=3600)
    _assert_error(await http.get("/any", headers=_bearer(expired)), 401, callers.TOKEN_EXPIRED)
    foreign = issue_token("another-secret-0123456789-0123456789-xyz", 1, "u1", "user", 600)
    for header in (f"Bearer {foreign}", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer"):
        r = await http.get("/any", headers={"Authorization": header})
        _assert_error(r, 401, callers.INVALID_TOKEN)
    # A malformed (or empty) Authorization header is refused, not replaced by a good cookie:
    # OriginCheck waves through any request that carries the header.
    for header in ("Basic abc", ""):
        r = await http.get("/any", headers={"Authorization": header, **_cookie(_token(1))})
        _assert_error(r, 401, callers.INVALID_TOKEN)
    _assert_error(await http.get("/any", headers=_cookie("x.y.z")), 401, "invalid_token")


async def test_signed_tokens_with_odd_subjects_or_versions_are_invalid_not_500(env) -> None:
    """Validly signed (the secret is known) but naming no int64 user or version: a 401, never
    a database query with a number MongoDB cannot hold (that was a 500)."""
    http, _ = env
    now = int(time.time())
    base = {"iss": "movierec", "iat": now, "exp": now + 600, "role": "user", "ver": 0}
    odd = [
        {"sub": str(2**63)},
        {"sub": "9" * 40},
        {"sub": "+1"},
        {"sub": "1 "},
        {"sub": "0001"},
        {"sub": "\u0661"},  # ARABIC-INDIC DIGIT ONE
        {"sub": "-1"},
        {"sub": ""},
        {"sub": 1},
        {"sub": "1", "ver": 2**63},
        {"sub": "1", "ver": -1},
        {"sub": "1", "ver": 1.0},
        {"sub": "1", "ver": True},
    ]
    for claims in odd:
        token = jwt.encode({**base, **claims}, SECRET, algorithm="HS256")
        _assert_error(await http.get("/any", headers=_bearer(token)), 401, callers.INVALID_TOKEN)


async def test_before_start_up_the_answer_is_503() -> None:
    transport = httpx.ASGITransport(app=_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        _assert_error(await http.get("/any"), 503, "starting")
