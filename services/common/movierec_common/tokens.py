"""Signed access tokens, shared by the catalog (which issues them) and the recommender (which
only verifies them). One module so the two services can never disagree on algorithm, claims or
cookie name.

Tokens are HS256 JWTs with a short lifetime. Verification pins the algorithm list, so
`alg=none` and algorithm-confusion tokens are refused, and requires `exp`, `iat`, `sub`,
`role` and the issuer.
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


class TokenError(Exception):
    """The token is missing, expired, tampered with or otherwise unacceptable."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with their id), an admin, or another service (API key)."""

    user_id: int | None
    username: str | None
    role: Role

    @property
    def is_privileged(self) -> bool:
        return self.role in ("admin", "service")

    def may_read_user(self, user_id: int) -> bool:
        return self.is_privileged or self.user_id == user_id


def issue_token(
    secret: str, user_id: int, username: str, role: Role, ttl_seconds: int, now: float | None = None
) -> str:
    now = time.time() if now is None else now
    claims = {
        "sub": str(user_id),
        "username": username,
        "role": role,
        "iss": ISSUER,
        "iat": int(now),
        "exp": int(now + ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "role"]},
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
    except (TypeError, ValueError) as exc:
        raise TokenError("invalid token") from exc
    return Principal(user_id=user_id, username=claims.get("username"), role=role)


def check_api_key(presented: str | None, configured: list[str]) -> Principal | None:
    """Constant-time comparison against every configured key; None when nothing matches."""
    if not presented:
        return None
    ok = False
    for key in configured:
        ok |= hmac.compare_digest(presented.encode(), key.encode())
    return Principal(user_id=None, username=None, role="service") if ok else None
