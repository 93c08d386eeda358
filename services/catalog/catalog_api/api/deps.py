"""Dependencies: the app's state objects, the caller (Principal), role checks, paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from movierec_common.account_check import AccountCheck
from movierec_common.api_errors import ApiError
from movierec_common.docs import documented_credentials
from movierec_common.tokens import (
    API_KEY_HEADER,
    COOKIE_NAME,
    Principal,
    TokenError,
    check_api_key,
)

from ..core.config import CatalogSettings
from ..core.proxies import TrustedProxies
from ..core.security import LoginLimiter, Passwords, SlidingWindowLimiter, TokenService
from ..metrics import Metrics
from ..repositories import Repos


@dataclass
class AppState:
    settings: CatalogSettings
    repos: Repos
    passwords: Passwords
    tokens: TokenService
    limiter: LoginLimiter
    signups: SlidingWindowLimiter
    metrics: Metrics
    api_keys: list[str]
    trusted_proxies: TrustedProxies
    accounts: AccountCheck


def get_state(request: Request) -> AppState:
    state = getattr(request.app.state, "catalog", None)
    if state is None:
        raise ApiError(503, "starting", "the service is starting")
    return state


State = Annotated[AppState, Depends(get_state)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "invalid_token", "Authorization must be 'Bearer <token>'")
    return value.strip()


async def resolve_principal(request: Request, state: AppState) -> Principal | None:
    """Bearer header, then the login cookie, then X-API-Key; None when nothing was presented.

    A credential that is presented but wrong is an error (401), never silently anonymous. A
    token is checked against the account as stored now (AccountCheck): deleted accounts and
    revoked tokens get 401, and the role is the stored one.
    """
    token = _bearer(request) or request.cookies.get(COOKIE_NAME)
    if token:
        try:
            return await state.accounts.confirm(state.tokens.decode(token))
        except TokenError as exc:
            code = "token_expired" if "expired" in str(exc) else "invalid_token"
            raise ApiError(401, code, f"{exc}; log in again") from exc
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        principal = check_api_key(key, state.api_keys)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "the API key is not valid")
        return principal
    return None


Credentials = Annotated[None, Depends(documented_credentials)]  # OpenAPI security schemes


async def optional_principal(request: Request, state: State, _doc: Credentials) -> Principal | None:
    """For public pages that show more to a logged-in caller: a bad/expired credential is
    treated as anonymous, so an old cookie never breaks browsing."""
    try:
        return await resolve_principal(request, state)
    except ApiError:
        return None


async def require_principal(request: Request, state: State, _doc: Credentials) -> Principal:
    principal = await resolve_principal(request, state)
    if principal is None:
        raise ApiError(401, "not_authenticated", "log in first")
    return principal


async def require_user(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """A person with a userId (user or admin); API keys act for services, not for a user."""
    if principal.user_id is None:
        raise ApiError(403, "forbidden", "this action needs a user account")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if not principal.is_privileged:
        raise ApiError(403, "forbidden", "admin role required")
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
CurrentUser = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.page_size

    def pages(self, total: int) -> int:
        return max(1, -(-total // self.page_size))


def paging(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, description="Items per page (≤ 100)")] = 20,
) -> Paging:
    return Paging(page, page_size)


PageParams = Annotated[Paging, Depends(paging)]


def reject_operator_keys(request: Request) -> None:
    """Query keys like `genre[$ne]` or `$where` are refused (422) instead of silently ignored, so
    a client probing for operator injection gets an unambiguous answer."""
    bad = [k for k in request.query_params if "$" in k or "[" in k or "]" in k]
    if bad:
        raise ApiError(
            422,
            "validation_error",
            "query parameter names may not contain '$', '[' or ']'",
            details=[{"loc": ["query", k], "msg": "operator-like parameter refused"} for k in bad],
        )
