"""Who is calling: one resolution of a request's credentials, and one error vocabulary, for
both APIs.

A request may present three kinds of credential:

- `X-API-Key: <key>`: another service; must equal one of `API_KEYS` (constant-time compare).
  The caller gets the `service` role and no userId.
- `Authorization: Bearer <jwt>`: a token the catalog issued (`movierec_common.tokens`).
- the httpOnly cookie `movierec_token`: the same token, as browsers send it.

Order: the API key when the header is present, else the Authorization header, else the
cookie. The cookie is therefore used only when the request carries neither header, which is
exactly the case `web_security.OriginCheck` guards against cross-site forgery. A credential
that is presented is checked, and a wrong one is a 401, never silently anonymous (fail closed).
A token is then confirmed against the account as stored now (`account_check.AccountCheck`):
a deleted account, a revoked token (`token_version` moved on) or an unknown stored role is a
401, and the role is the stored one, never the token's.

Errors *(contract, both APIs)*: every refusal is `ApiError` with the JSON error shape; 401s
carry `WWW-Authenticate: Bearer` (RFC 9110 §11.6.1).

| status | code | when |
|---|---|---|
| 401 | `not_authenticated` | no credential at all on a route that needs one |
| 401 | `invalid_token` | bad Authorization header, signature or claims; revoked; account gone |
| 401 | `token_expired` | the token's `exp` has passed |
| 401 | `invalid_api_key` | `X-API-Key` present but not one of `API_KEYS` |
| 403 | `forbidden` | authenticated, but the role does not allow the action |

The FastAPI dependencies at the bottom read the resolver from `app.state.callers`, which each
app sets at start-up; the services re-export them from their own `deps` modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from movierec_common.api_errors import ApiError
from movierec_common.docs import documented_credentials
from movierec_common.tokens import (
    API_KEY_HEADER,
    COOKIE_NAME,
    Role,
    TokenError,
    check_api_key,
    decode_token,
)

if TYPE_CHECKING:
    from movierec_common.account_check import AccountCheck

NOT_AUTHENTICATED = "not_authenticated"
INVALID_TOKEN = "invalid_token"
TOKEN_EXPIRED = "token_expired"
INVALID_API_KEY = "invalid_api_key"
FORBIDDEN = "forbidden"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """A confirmed caller: a user or admin (with their userId and the account's current
    `token_version`), or another service (API key: no userId, role `service`)."""

    user_id: int | None
    username: str | None
    role: Role
    token_version: int = 0

    @property
    def is_privileged(self) -> bool:
        """Admins and services may read anyone's data and run admin actions."""
        return self.role in ("admin", "service")

    @property
    def is_person(self) -> bool:
        """An account (user or admin), not a service."""
        return self.user_id is not None

    def may_read_user(self, user_id: int) -> bool:
        return self.is_privileged or self.user_id == user_id


SERVICE = Caller(user_id=None, username=None, role="service")


def unauthenticated(code: str, message: str) -> ApiError:
    """The 401 of this vocabulary, with the Bearer challenge."""
    return ApiError(401, code, message, headers=dict(CHALLENGE))


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthenticated(INVALID_TOKEN, "Authorization must be 'Bearer <token>'")
    return value.strip()


class CallerResolver:
    """Turns a request's credentials into a Caller (see the module docstring for the order and
    the error codes). One per app, built at start-up from the JWT secret, the configured
    API keys and the app's AccountCheck."""

    def __init__(self, jwt_secret: str, api_keys: Sequence[str], accounts: AccountCheck) -> None:
        self._secret = jwt_secret
        self._api_keys = list(api_keys)
        self.accounts = accounts

    async def resolve(self, conn: HTTPConnection) -> Caller | None:
        """The caller, or None when the request presents no credential at all.

        Raises ApiError 401 (`invalid_api_key`, `invalid_token`, `token_expired`) for a
        credential that is presented but not accepted. Database errors while confirming the
        account propagate (the apps answer 503)."""
        key = conn.headers.get(API_KEY_HEADER)
        if key is not None:
            if not check_api_key(key, self._api_keys):
                raise unauthenticated(INVALID_API_KEY, "the API key is not valid")
            return SERVICE
        header = conn.headers.get("authorization")
        token = _bearer(header) if header is not None else conn.cookies.get(COOKIE_NAME)
        if not token:
            return None
        try:
            claims = decode_token(self._secret, token)
            return await self.accounts.confirm(claims)
        except TokenError as exc:
            code = TOKEN_EXPIRED if exc.expired else INVALID_TOKEN
            raise unauthenticated(code, f"{exc}; log in again") from exc

    async def require(self, conn: HTTPConnection) -> Caller:
        """The caller; ApiError 401 `not_authenticated` when no credential was presented,
        and the errors of `resolve` for a wrong one."""
        caller = await self.resolve(conn)
        if caller is None:
            raise unauthenticated(NOT_AUTHENTICATED, "authentication required: log in first")
        return caller

    async def optional(self, conn: HTTPConnection) -> Caller | None:
        """For public routes that show more to a known caller: a wrong or expired credential
        counts as anonymous (an old cookie never breaks browsing). Database errors propagate."""
        try:
            return await self.resolve(conn)
        except ApiError:
            return None


def require_person(caller: Caller) -> Caller:
    """The caller when it is an account (user or admin); 403 `forbidden` for a service."""
    if not caller.is_person:
        raise ApiError(403, FORBIDDEN, "this action needs a user account, not an API key")
    return caller


def require_privileged(caller: Caller) -> Caller:
    """The caller when admin or service; 403 `forbidden` otherwise."""
    if not caller.is_privileged:
        raise ApiError(403, FORBIDDEN, "admin or service credentials required")
    return caller


def require_read(caller: Caller, user_id: int) -> Caller:
    """The caller when it may read `user_id`'s data (itself, admin, service); else 403."""
    if not caller.may_read_user(user_id):
        raise ApiError(403, FORBIDDEN, "you may only read your own data")
    return caller


# FastAPI dependencies (both apps set `app.state.callers` at start-up). Every one is `async def`
# although none awaits: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
# (and GIL hand-over) on every request for what is an attribute read.


def resolver_of(request: Request) -> CallerResolver:
    """The app's CallerResolver; ApiError 503 `starting` before start-up has set it."""
    resolver = getattr(request.app.state, "callers", None)
    if resolver is None:
        raise ApiError(503, "starting", "the service is starting")
    return resolver


async def get_resolver(request: Request) -> CallerResolver:
    return resolver_of(request)


Resolver = Annotated[CallerResolver, Depends(get_resolver)]
Credentials = Annotated[None, Depends(documented_credentials)]  # OpenAPI security schemes


async def current_caller(request: Request, resolver: Resolver, _doc: Credentials) -> Caller:
    return await resolver.require(request)


async def optional_caller(request: Request, resolver: Resolver, _doc: Credentials) -> Caller | None:
    return await resolver.optional(request)


async def current_person(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    return require_person(caller)


async def current_privileged(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    return require_privileged(caller)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
CurrentPerson = Annotated[Caller, Depends(current_person)]
Privileged = Annotated[Caller, Depends(current_privileged)]
