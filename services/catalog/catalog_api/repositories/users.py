"""Accounts: lookup by username (case-insensitive key), creation with an atomic new userId."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from movierec_common import data_model as model
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


class UsernameTaken(Exception):
    pass


class UsersRepo:
    def __init__(self, db: AsyncDatabase) -> None:
        self.users = db[model.USERS]
        self.counters = db[model.COUNTERS]

    async def by_username(self, username: str) -> dict[str, Any] | None:
        return await self.users.find_one({"username_key": username.casefold()})

    async def by_id(self, user_id: int) -> dict[str, Any] | None:
        return await self.users.find_one({"userId": user_id})

    async def _next_user_id(self) -> int:
        # mongo-init seeded the counter above every MovieLens userId; $inc is atomic, so two
        # concurrent registrations never get the same id.
        doc = await self.counters.find_one_and_update(
            {"_id": model.USER_ID_COUNTER},
            {"$inc": {"seq": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["seq"])

    async def create(self, username: str, password_hash: str, role: str) -> dict[str, Any]:
        if await self.by_username(username) is not None:
            raise UsernameTaken(username)
        for _ in range(5):
            doc = {
                "userId": await self._next_user_id(),
                "username": username,
                "username_key": username.casefold(),
                "password_hash": password_hash,
                "role": role,
                "created_at": datetime.now(UTC),
            }
            try:
                await self.users.insert_one(doc)
                return doc
            except DuplicateKeyError as exc:
                if await self.by_username(username) is not None:
                    raise UsernameTaken(username) from exc  # lost a race for the same name
                # Otherwise the id was taken (a counter behind a hand-made account): next id.
        raise RuntimeError("could not allocate a free userId")

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self.users.update_one({"userId": user_id}, {"$set": {"password_hash": password_hash}})

    async def bump_token_version(self, user_id: int) -> None:
        """End every token issued to the account so far (they carry the old version)."""
        await self.users.update_one({"userId": user_id}, {"$inc": {"token_version": 1}})

    async def change_password(self, user_id: int, password_hash: str) -> dict[str, Any] | None:
        """New hash and a new token version in one write (the demo flag goes: the account now
        has its own password); the updated document, or None when it no longer exists."""
        return await self.users.find_one_and_update(
            {"userId": user_id},
            {
                "$set": {"password_hash": password_hash},
                "$inc": {"token_version": 1},
                "$unset": {"demo": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
