"""Register, login (JWT in an httpOnly cookie and in the body), logout, me."""

from __future__ import annotations

import math
from ipaddress import IPv4Network, IPv6Network, ip_address

from fastapi import APIRouter, Request, Response
from movierec_common import data_model as model
from movierec_common.api_errors import ApiError
from movierec_common.tokens import COOKIE_NAME

from ...repositories.users import UsernameTaken
from ...schemas import (
    Credentials,
    LoginResponse,
    MeResponse,
    RegisterRequest,
    UserOut,
)
from ..deps import CurrentPrincipal, State

router = APIRouter(prefix="/api/auth", tags=["auth"])

INVALID = ApiError(401, "invalid_credentials", "invalid username or password")


def client_address(
    request: Request, trust_forwarded: bool, trusted: list[IPv4Network | IPv6Network]
) -> str:
    """The peer address, or the client our nginx names (X-Real-IP, else the last
    X-Forwarded-For hop) when forwarding is trusted and the peer is a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not trust_forwarded:
        return peer
    named = (
        request.headers.get("x-real-ip")
        or (request.headers.get("x-forwarded-for", "").split(",")[-1])
    )
    if not named.strip():
        return peer
    try:
        peer_ip = ip_address(peer)
    except ValueError:
        return peer
    if any(peer_ip in net for net in trusted):
        return named.strip()[:64]
    return peer


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


def _login_body(state, response: Response, user: dict) -> LoginResponse:
    issued = state.tokens.issue(user["userId"], user["username"], user["role"])
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
    responses={409: {"description": "username taken"}, 422: {"description": "invalid input"}},
)
async def register(body: RegisterRequest, state: State, response: Response) -> LoginResponse:
    password_hash = await state.passwords.hash(body.password)
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
    client = client_address(request, state.settings.trust_forwarded_for, state.trusted_proxies)
    wait = state.limiter.retry_after(key, client)
    if wait is not None:
        state.metrics.logins.labels("rate_limited").inc()
        raise ApiError(
            429,
            "too_many_attempts",
            "too many failed logins; wait and try again",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    user = await state.repos.users.by_username(body.username)
    # Same work and the same answer whether or not the username exists.
    ok = await state.passwords.verify(user["password_hash"] if user else None, body.password)
    if user is None or not ok:
        state.limiter.failure(key, client)
        state.metrics.logins.labels("failed").inc()
        raise INVALID
    state.limiter.success(key)
    state.metrics.logins.labels("ok").inc()
    if state.passwords.needs_rehash(user["password_hash"]) and not user.get("demo"):
        await state.repos.users.set_password_hash(
            user["userId"], await state.passwords.hash(body.password)
        )
    return _login_body(state, response, user)


@router.post("/logout", status_code=204, summary="Clear the login cookie")
async def logout(state: State) -> Response:
    # Tokens are stateless and short-lived: logout removes the browser's copy. A Bearer token
    # a program kept stays valid until it expires (JWT_TTL_SECONDS).
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=state.settings.cookie_secure
    )
    return response


@router.get("/me", response_model=MeResponse, summary="Who am I")
async def me(principal: CurrentPrincipal) -> MeResponse:
    return MeResponse(userId=principal.user_id, username=principal.username, role=principal.role)
