"""Passwords (argon2id), access tokens, and the login rate limiter.

Hashing runs in a worker thread: argon2id is deliberately slow (~tens of ms of CPU), and doing
it on the event loop would stall every other request during a login burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from movierec_common import tokens


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        # Verified against when the username is unknown, so a miss costs as long as a hit and
        # response timing does not reveal which usernames exist.
        self._dummy = self.hasher.hash("movierec-timing-equaliser")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


class TokenService:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: int, username: str, role: tokens.Role) -> IssuedToken:
        token = tokens.issue_token(self._secret, user_id, username, role, self.ttl_seconds)
        return IssuedToken(token, self.ttl_seconds)

    def decode(self, token: str) -> tokens.Principal:
        return tokens.decode_token(self._secret, token)


class SlidingWindowLimiter:
    """Counts failures per key inside a sliding window; in process memory, so per replica."""

    def __init__(self, window_seconds: float, max_failures: int, max_keys: int = 100_000):
        self.window = window_seconds
        self.max_failures = max_failures
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float] | None:
        q = self._events.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._events[key]
            return None
        return q

    def retry_after(self, key: str, now: float | None = None) -> float | None:
        """Seconds until another attempt is allowed, or None when allowed now."""
        now = time.monotonic() if now is None else now
        q = self._prune(key, now)
        if q is None or len(q) < self.max_failures:
            return None
        return max(0.0, q[0] + self.window - now)

    def failure(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if key not in self._events and len(self._events) >= self.max_keys:
            # Bounded memory under a username-spraying attack: drop the oldest key.
            self._events.pop(next(iter(self._events)))
        self._events.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        self._events.pop(key, None)


class LoginLimiter:
    def __init__(self, window: float, per_username: int, per_client: int) -> None:
        self.by_username = SlidingWindowLimiter(window, per_username)
        self.by_client = SlidingWindowLimiter(window, per_client)

    def retry_after(self, username_key: str, client: str) -> float | None:
        waits = [
            w
            for w in (
                self.by_username.retry_after(username_key),
                self.by_client.retry_after(client),
            )
            if w is not None
        ]
        return max(waits) if waits else None

    def failure(self, username_key: str, client: str) -> None:
        self.by_username.failure(username_key)
        self.by_client.failure(client)

    def success(self, username_key: str) -> None:
        self.by_username.reset(username_key)
