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
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt

ALGORITHM = "HS256"
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
    """The token is missing, expired, tampered with or otherwise unacceptable."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with their id), an admin, or another service (API key)."""

    user_id: int | None
    username: str | None
    role: Role
    token_version: int = 0  # the token's `ver` claim; compared with the account's

    @property
    def is_privileged(self) -> bool:
        return self.role in ("admin", "service")

    def may_read_user(self, user_id: int) -> bool:
        return self.is_privileged or self.user_id == user_id


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


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "role", "ver"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token") from exc
    role = claims.get("role")
    if role not in ("user", "admin"):
        raise TokenError("invalid token")
    try:
        user_id = int(claims["sub"])
        version = claims["ver"]
        if type(version) is not int:
            raise TypeError("ver")
    except (TypeError, ValueError) as exc:
        raise TokenError("invalid token") from exc
    return Principal(
        user_id=user_id, username=claims.get("username"), role=role, token_version=version
    )


def check_api_key(presented: str | None, configured: list[str]) -> Principal | None:
    """Constant-time comparison against every configured key; None when nothing matches."""
    if not presented:
        return None
    ok = False
    for key in configured:
        ok |= hmac.compare_digest(presented.encode(), key.encode())
    return Principal(user_id=None, username=None, role="service") if ok else None
