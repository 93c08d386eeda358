"""Register, login (JWT in an httpOnly cookie and in the body), logout, password change, me.

Every token carries the account's `token_version`; logout and a password change increment it,
so every token issued before stops working on the next request (both APIs check it).
"""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Request, Response
from movierec_common import data_model as model
from movierec_common.api_errors import ApiError
from movierec_common.password_policy import password_problem
from movierec_common.tokens import COOKIE_NAME

from ...repositories.users import UsernameTaken
from ...schemas import (
    Credentials,
    LoginResponse,
    MeResponse,
    PasswordChange,
    RegisterRequest,
    SessionResponse,
    UserOut,
)
from ..deps import CurrentCaller, CurrentUser, OptionalCaller, State

router = APIRouter(prefix="/api/auth", tags=["auth"])

INVALID = ApiError(401, "invalid_credentials", "invalid username or password")


def _set_cookie(response: Response, token: str, max_age: int, secure: bool) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )


def _too_many(message: str, wait: float) -> ApiError:
    return ApiError(
        429,
        "too_many_attempts",
        message,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _login_body(state, response: Response, user: dict) -> LoginResponse:
    issued = state.tokens.issue(
        user["userId"], user["username"], user["role"], int(user.get("token_version", 0))
    )
    _set_cookie(response, issued.token, issued.expires_in, state.settings.cookie_secure)
    return LoginResponse(
        access_token=issued.token,
        expires_in=issued.expires_in,
        user=UserOut(userId=user["userId"], username=user["username"], role=user["role"]),
    )


@router.post(
    "/register",
    status_code=201,
    response_model=LoginResponse,
    summary="Create an account (and log in)",
    responses={
        409: {"description": "username taken"},
        422: {"description": "invalid input (e.g. a common password)"},
        429: {"description": "too many sign-ups from this client"},
    },
)
async def register(
    body: RegisterRequest, request: Request, state: State, response: Response
) -> LoginResponse:
    client = state.trusted_proxies.client_address(request, state.settings.trust_forwarded_for)
    wait = state.signups.retry_after(client)
    if wait is not None:
        state.metrics.logins.labels("signup_rate_limited").inc()
        raise _too_many("too many sign-ups from this address; try again later", wait)
    state.signups.failure(client)  # every attempt counts, so failures cannot probe for free
    password_hash = await state.passwords.hash_for_signup(body.password)
    try:
        user = await state.repos.users.create(body.username, password_hash, model.ROLE_USER)
    except UsernameTaken as exc:
        raise ApiError(409, "username_taken", "that username is taken; choose another") from exc
    return _login_body(state, response, user)


@router.post(
    "/login",
    response_model=LoginResponse,
    summary="Log in: sets the httpOnly cookie and returns the same JWT for Bearer use",
    responses={401: {"description": "invalid credentials"}, 429: {"description": "rate limited"}},
)
async def login(
    body: Credentials, request: Request, response: Response, state: State
) -> LoginResponse:
    key = body.username.casefold()
    client = state.trusted_proxies.client_address(request, state.settings.trust_forwarded_for)
    wait = state.limiter.retry_after(key, client)
    if wait is not None:
        state.metrics.logins.labels("rate_limited").inc()
        raise _too_many("too many failed logins; wait and try again", wait)
    delay = state.limiter.delay(key)
    if delay > 0:  # many failures for this account from anywhere: slow down, never lock out
        state.metrics.logins.labels("slowed").inc()
        await asyncio.sleep(delay)
    user = await state.repos.users.by_username(body.username)
    # Same work and the same answer whether or not the username exists.
    ok = await state.passwords.verify(user["password_hash"] if user else None, body.password)
    if user is None or not ok:
        state.limiter.failure(key, client)
        state.metrics.logins.labels("failed").inc()
        raise INVALID
    state.limiter.success(key, client)
    state.metrics.logins.labels("ok").inc()
    if state.passwords.needs_rehash(user["password_hash"]) and not user.get("demo"):
        await state.repos.users.set_password_hash(
            user["userId"], await state.passwords.hash(body.password)
        )
    return _login_body(state, response, user)


@router.post(
    "/logout",
    status_code=204,
    summary="Log out: clears the cookie and ends every token of the account (all sessions)",
)
async def logout(caller: OptionalCaller, state: State) -> Response:
    if caller is not None and caller.user_id is not None:
        await state.repos.users.bump_token_version(caller.user_id)
        state.accounts.forget(caller.user_id)
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=state.settings.cookie_secure
    )
    return response


@router.post(
    "/password",
    response_model=LoginResponse,
    summary="Change your password: ends every older token and returns a new one",
    responses={
        401: {"description": "the current password is wrong"},
        422: {"description": "the new password breaks the password policy"},
        429: {"description": "too many wrong current passwords"},
    },
)
async def change_password(
    body: PasswordChange, user: CurrentUser, request: Request, response: Response, state: State
) -> LoginResponse:
    doc = await state.repos.users.by_id(user.user_id)  # type: ignore[arg-type]
    if doc is None:
        raise ApiError(401, "invalid_token", "the account no longer exists; log in again")
    key = doc["username"].casefold()
    client = state.trusted_proxies.client_address(request, state.settings.trust_forwarded_for)
    wait = state.limiter.retry_after(key, client)
    if wait is not None:
        raise _too_many("too many wrong passwords; wait and try again", wait)
    if not await state.passwords.verify(doc.get("password_hash"), body.current_password):
        state.limiter.failure(key, client)
        raise ApiError(
            401,
            "invalid_credentials",
            "the current password is wrong",
            details=[{"loc": ["body", "current_password"], "msg": "wrong password"}],
        )
    problem = password_problem(body.new_password, doc["username"])
    if problem:
        raise ApiError(
            422,
            "validation_error",
            f"new_password {problem}",
            details=[{"loc": ["body", "new_password"], "msg": problem}],
        )
    updated = await state.repos.users.change_password(
        doc["userId"], await state.passwords.hash(body.new_password)
    )
    state.accounts.forget(doc["userId"])
    if updated is None:
        raise ApiError(401, "invalid_token", "the account no longer exists; log in again")
    return _login_body(state, response, updated)


@router.get("/me", response_model=MeResponse, summary="Who am I")
async def me(caller: CurrentCaller) -> MeResponse:
    return MeResponse(userId=caller.user_id, username=caller.username, role=caller.role)


@router.get(
    "/session",
    response_model=SessionResponse,
    summary="Am I logged in? (200 either way)",
    description="Like `/api/auth/me`, but an anonymous caller (or an expired or invalid "
    'credential) gets 200 `{"authenticated": false}` instead of 401, so the web UI can ask '
    "on every page load without logging an error.",
)
async def session(caller: OptionalCaller) -> SessionResponse:
    if caller is None:
        return SessionResponse(authenticated=False)
    user = MeResponse(userId=caller.user_id, username=caller.username, role=caller.role)
    return SessionResponse(authenticated=True, user=user)
