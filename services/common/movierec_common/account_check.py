"""Is the account behind a valid token still allowed, and with which role? Both APIs ask here.

A signed token only proves that the catalog issued it. Each request also reads the account's
document (`users`, by `userId`): a deleted account, or a token whose `ver` claim differs from
the account's `token_version` (bumped by a password change, a logout or an admin's demotion of
the account), is refused, and the role is the one stored now, never the one in the token.

The collection is `data_model.USERS` (the apps pass it in). Answers are cached per userId for
`cache_seconds` (0 = read on every request), so a change made directly in the database reaches
a service within that time; the catalog calls `forget` after its own changes, so they take
effect on the very next request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from movierec_common.callers import Caller
from movierec_common.tokens import TokenClaims, TokenError

ROLES = ("user", "admin")
_PROJECTION = {"_id": 0, "userId": 1, "username": 1, "role": 1, "token_version": 1}


class AccountCheck:
    def __init__(
        self, users: AsyncCollection, cache_seconds: float = 0.0, max_entries: int = 50_000
    ) -> None:
        self._users = users
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._cache: OrderedDict[int, tuple[float, dict[str, Any] | None]] = OrderedDict()

    async def _account(self, user_id: int, fresh: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        if self.cache_seconds > 0 and not fresh:
            hit = self._cache.get(user_id)
            if hit is not None and now - hit[0] < self.cache_seconds:
                return hit[1]
        doc = await self._users.find_one({"userId": user_id}, _PROJECTION)
        if self.cache_seconds > 0:
            self._cache[user_id] = (now, doc)
            self._cache.move_to_end(user_id)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return doc

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    async def confirm(self, claimed: TokenClaims) -> Caller:
        """The caller as the database sees it now: the stored username, role and
        token_version of the token's account.

        Raises TokenError when the account is gone, the token's version is stale or the stored
        role is unknown. Database errors propagate (the apps answer 503)."""
        doc = await self._account(claimed.user_id)
        if self.cache_seconds > 0 and (
            doc is None or doc.get("token_version", 0) != claimed.token_version
        ):
            # A refusal is never taken from the cache: a token issued after the cached read
            # (log out, log in again within the cache period) carries a newer version.
            doc = await self._account(claimed.user_id, fresh=True)
        if doc is None:
            raise TokenError("the account no longer exists")
        version = doc.get("token_version", 0)
        if not isinstance(version, int) or version != claimed.token_version:
            raise TokenError("the token was revoked (logout, password or role change)")
        role = doc.get("role")
        if role not in ROLES:
            raise TokenError("the account has no valid role")
        return Caller(
            user_id=claimed.user_id,
            username=doc.get("username", claimed.username),
            role=role,
            token_version=version,
        )
