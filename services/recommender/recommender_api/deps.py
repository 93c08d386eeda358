"""Who is calling, and may they read this user's recommendations?

The catalog issues the tokens; here they are only verified (Bearer header or the httpOnly
cookie). Other services send an API key and get the `service` role. Users read only their own
lists; admins and services read anyone's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from movierec_common.api_errors import ApiError
from movierec_common.docs import documented_credentials
from movierec_common.tokens import (
    API_KEY_HEADER,
    COOKIE_NAME,
    Principal,
    TokenError,
    check_api_key,
    decode_token,
)

from .state import AppState

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_state(request: Request) -> AppState:
    return request.app.state.recs


async def get_principal(
    request: Request, _doc: Annotated[None, Depends(documented_credentials)]
) -> Principal:
    return await resolve_principal(request)


async def resolve_principal(request: Request) -> Principal:
    """API key (service), else Bearer header, else the login cookie; a token is then checked
    against the account as stored now (movierec_common.account_check): deleted accounts and
    revoked tokens get 401 and the role is the stored one."""
    state: AppState = request.app.state.recs
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        principal = check_api_key(key, state.api_keys)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "API key not recognised", headers=_CHALLENGE)
        return principal
    token: str | None = None
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(
                401, "invalid_token", "Authorization must be 'Bearer <token>'", headers=_CHALLENGE
            )
        token = value.strip()
    else:
        token = request.cookies.get(COOKIE_NAME)
    if not token:
        raise ApiError(401, "unauthorized", "authentication required", headers=_CHALLENGE)
    try:
        return await state.accounts.confirm(decode_token(state.jwt_secret, token))
    except TokenError as exc:
        code = "token_expired" if "expired" in str(exc) else "invalid_token"
        raise ApiError(401, code, str(exc), headers=_CHALLENGE) from exc


async def optional_principal(request: Request) -> Principal | None:
    """The caller when valid credentials came with the request, else None (never an error)."""
    try:
        return await resolve_principal(request)
    except ApiError:
        return None


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
State = Annotated[AppState, Depends(get_state)]


def require_read(principal: Principal, user_id: int) -> None:
    if not principal.may_read_user(user_id):
        raise ApiError(403, "forbidden", "you may only read your own recommendations")


def require_privileged(principal: Principal) -> None:
    if not principal.is_privileged:
        raise ApiError(403, "forbidden", "admin or service credentials required")
