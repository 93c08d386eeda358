"""Signed access tokens, shared by the catalog (which issues them) and the recommender (which
only verifies them). One module so the two services can never disagree on algorithm, claims or
cookie name.

Tokens are HS256 JWTs with a short lifetime. Verification pins the algorithm list, so
`alg=none` and algorithm-confusion tokens are refused, and requires `exp`, `iat`, `sub`,
`role`, `ver` and the issuer.

A signature only proves who issued the token, not that the account still allows it: every
request also goes through `movierec_common.account_check.AccountCheck`, which compares the
token's `ver` with the account's `token_version` in the database and takes the role from
there. Demotion, deletion, a password change or a logout therefore end old tokens at once.

`check_secret` refuses the development secret published here and secrets shorter than 32 bytes
(RFC 7518 §3.2: an HS256 key at least as long as the hash output).
"""

from __future__ import annotations

import hmac
import re
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt

ALGORITHM = "HS256"
# A token names its user by the canonical decimal of a MongoDB int64 ("2002", never "+2002",
# "002002", "2002 " or other scripts' digits), and its version by an int64 too: anything
# else is refused as an invalid token rather than reaching a database query.
_SUB_RE = re.compile(r"(?:0|[1-9][0-9]{0,17})", re.ASCII)
_INT64_MAX = 2**63 - 1
ISSUER = "movierec"
COOKIE_NAME = "movierec_token"
API_KEY_HEADER = "X-API-Key"

Role = Literal["user", "admin", "service"]


MIN_SECRET_BYTES = 32
# Published in the source, so it signs nothing outside a developer's own machine: the APIs refuse
# it (and any secret shorter than MIN_SECRET_BYTES) unless ALLOW_DEV_JWT_SECRET=true.
DEV_ONLY_JWT_SECRET = "movierec-development-only-secret-change-me-0123456789"


class InsecureSecret(ValueError):
    """The configured JWT secret is the published development one or too short."""


def check_secret(secret: str, allow_dev: bool = False) -> None:
    """Raise InsecureSecret for the published development secret or one shorter than 32 bytes
    (UTF-8), unless `allow_dev` (the explicit development setting) says so."""
    if allow_dev:
        return
    if hmac.compare_digest(secret.encode(), DEV_ONLY_JWT_SECRET.encode()):
        raise InsecureSecret(
            "JWT_SECRET is the development secret published in the source; set a random one "
            "(`python -c 'import secrets; print(secrets.token_hex(32))'`) or, on a developer "
            "machine only, ALLOW_DEV_JWT_SECRET=true"
        )
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise InsecureSecret(
            f"JWT_SECRET is {len(secret.encode())} bytes; at least {MIN_SECRET_BYTES} are needed "
            "(`python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )


class TokenError(Exception):
    """The token is missing, expired, tampered with or otherwise unacceptable; `expired` says
    whether only its lifetime is over."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token claims: who (userId, username), the role at issue time and the
    account's `token_version` then (`ver`). Not yet trusted for authorisation:
    `account_check.AccountCheck.confirm` turns it into a `callers.Caller`."""

    user_id: int
    username: str | None
    role: Literal["user", "admin"]
    token_version: int


def issue_token(
    secret: str,
    user_id: int,
    username: str,
    role: Role,
    ttl_seconds: int,
    now: float | None = None,
    version: int = 0,
) -> str:
    """A signed JWT for the account; `version` is its current `token_version` (0 when the
    document has none)."""
    now = time.time() if now is None else now
    claims = {
        "sub": str(user_id),
        "username": username,
        "role": role,
        "iss": ISSUER,
        "iat": int(now),
        "exp": int(now + ttl_seconds),
        "jti": uuid.uuid4().hex,
        "ver": int(version),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> TokenClaims:
    """Verify signature (HS256 only), issuer and required claims. Raises TokenError
    (`expired=True` when only `exp` has passed)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "role", "ver"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired", expired=True) from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token") from exc
    role = claims.get("role")
    if role not in ("user", "admin"):
        raise TokenError("invalid token")
    sub, version = claims["sub"], claims["ver"]
    if not (isinstance(sub, str) and _SUB_RE.fullmatch(sub)):
        raise TokenError("invalid token")
    if type(version) is not int or not 0 <= version <= _INT64_MAX:
        raise TokenError("invalid token")
    user_id = int(sub)
    return TokenClaims(
        user_id=user_id, username=claims.get("username"), role=role, token_version=version
    )


def check_api_key(presented: str | None, configured: list[str]) -> bool:
    """Whether `presented` equals one of the configured keys (constant-time comparison
    against every key; an empty key never matches)."""
    if not presented:
        return False
    ok = False
    for key in configured:
        ok |= hmac.compare_digest(presented.encode(), key.encode())
    return ok
