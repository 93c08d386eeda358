"""Passwords (argon2id), access tokens, and the login and sign-up rate limiters.

Hashing runs in a worker thread: argon2id is deliberately slow (~tens of ms of CPU), and doing
it on the event loop would stall every other request during a login burst. At most
`hash_concurrency` hashes run at once (a semaphore), and sign-ups take one more, narrower
semaphore (`signup_concurrency`), so a burst of registrations queues behind itself instead of
taking every core from the people logging in.
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
    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        hash_concurrency: int = 2,
        signup_concurrency: int = 1,
    ) -> None:
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        # Verified against when the username is unknown, so a miss costs as long as a hit and
        # response timing does not reveal which usernames exist.
        self._dummy = self.hasher.hash("movierec-timing-equaliser")
        self._cpu = asyncio.Semaphore(hash_concurrency)
        self._signups = asyncio.Semaphore(signup_concurrency)

    async def hash(self, password: str) -> str:
        async with self._cpu:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def hash_for_signup(self, password: str) -> str:
        """hash() behind the sign-up semaphore: registrations wait for each other first."""
        async with self._signups:
            return await self.hash(password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        async with self._cpu:
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

    def issue(
        self, user_id: int, username: str, role: tokens.Role, version: int = 0
    ) -> IssuedToken:
        token = tokens.issue_token(
            self._secret, user_id, username, role, self.ttl_seconds, version=version
        )
        return IssuedToken(token, self.ttl_seconds)


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

    def count(self, key: str, now: float | None = None) -> int:
        """Events for `key` inside the window."""
        now = time.monotonic() if now is None else now
        q = self._prune(key, now)
        return 0 if q is None else len(q)


class LoginLimiter:
    """Failed logins, counted three ways inside one sliding window (per replica):

    - per (username, client): `per_username_client` failures answer 429 to that client for
      that account, so one address cannot go on guessing one password;
    - per client: `per_client` failures answer 429 to that address for every account;
    - per username, from every address together: past `slowdown_after` failures each attempt
      at that account waits (0.25 s doubling, at most `slowdown_max_seconds`) before it is
      checked. Never a hard lock: failures from other addresses cannot lock the owner out,
      they only slow everyone's attempts at that account down.
    """

    def __init__(
        self,
        window: float,
        per_username_client: int,
        per_client: int,
        slowdown_after: int = 5,
        slowdown_max_seconds: float = 3.0,
    ) -> None:
        self.by_username_client = SlidingWindowLimiter(window, per_username_client)
        self.by_client = SlidingWindowLimiter(window, per_client)
        self.by_username = SlidingWindowLimiter(window, 1_000_000_000)
        self.slowdown_after = slowdown_after
        self.slowdown_max_seconds = slowdown_max_seconds

    @staticmethod
    def _pair(username_key: str, client: str) -> str:
        return f"{username_key}\x00{client}"

    def retry_after(self, username_key: str, client: str) -> float | None:
        waits = [
            w
            for w in (
                self.by_username_client.retry_after(self._pair(username_key, client)),
                self.by_client.retry_after(client),
            )
            if w is not None
        ]
        return max(waits) if waits else None

    def delay(self, username_key: str) -> float:
        """Seconds to wait before checking a password for this account (0 when not slowed)."""
        over = self.by_username.count(username_key) - self.slowdown_after
        if over < 0:
            return 0.0
        return min(self.slowdown_max_seconds, 0.25 * 2.0 ** min(over, 16))

    def failure(self, username_key: str, client: str) -> None:
        self.by_username_client.failure(self._pair(username_key, client))
        self.by_client.failure(client)
        self.by_username.failure(username_key)

    def success(self, username_key: str, client: str) -> None:
        self.by_username_client.reset(self._pair(username_key, client))
