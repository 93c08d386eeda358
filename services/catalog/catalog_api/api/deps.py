"""Dependencies: the app's state objects, the caller and role checks (movierec_common.callers),
paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from movierec_common import callers
from movierec_common.account_check import AccountCheck
from movierec_common.api_errors import ApiError

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
    trusted_proxies: TrustedProxies
    accounts: AccountCheck


async def get_state(request: Request) -> AppState:
    state = getattr(request.app.state, "catalog", None)
    if state is None:
        raise ApiError(503, "starting", "the service is starting")
    return state


State = Annotated[AppState, Depends(get_state)]


# The caller: resolved once for both APIs in movierec_common.callers (order, fail-closed
# checks, the one error vocabulary); these are the catalog's names for its dependencies.
OptionalCaller = callers.OptionalCaller  # public pages that show more to a known caller
CurrentCaller = callers.CurrentCaller  # any authenticated caller (user, admin, service)
CurrentUser = callers.CurrentPerson  # an account with a userId (API keys act for no user)
Admin = callers.Privileged  # admin or service


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.page_size

    def pages(self, total: int) -> int:
        return max(1, -(-total // self.page_size))


async def paging(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, description="Items per page (≤ 100)")] = 20,
) -> Paging:
    return Paging(page, page_size)


PageParams = Annotated[Paging, Depends(paging)]


async def reject_operator_keys(request: Request) -> None:
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
