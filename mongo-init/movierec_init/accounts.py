"""The admin account, the demo logins, and the userId counter.

Demo logins share one configured password, so its argon2id hash is computed once and stored in
every demo document (same salt): hashing 610 times would take ~30 s of CPU for no security gain,
since the password is the same anyway. Registered users always get their own salted hash.
"""

from __future__ import annotations

from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from movierec_common import data_model as model
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from movierec_init.importer import insert_ignoring_duplicates

DEMO_PREFIX = "ml"


def _verifies(hasher: PasswordHasher, stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def ensure_user_counter(db: AsyncDatabase, floor: int) -> int:
    """Make sure new ids start above `floor` (every MovieLens id) and every existing user."""
    top = await db[model.USERS].find_one({}, {"userId": 1}, sort=[("userId", -1)])
    floor = max(floor, int(top["userId"]) if top else 0)
    doc = await db[model.COUNTERS].find_one_and_update(
        {"_id": model.USER_ID_COUNTER},
        {"$max": {"seq": floor}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return int(doc["seq"])


async def next_user_id(db: AsyncDatabase) -> int:
    doc = await db[model.COUNTERS].find_one_and_update(
        {"_id": model.USER_ID_COUNTER},
        {"$inc": {"seq": 1}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return int(doc["seq"])


async def ensure_admin(
    db: AsyncDatabase, username: str, password: str, hasher: PasswordHasher
) -> str:
    """Create the admin, or bring an existing one in line with the configured password."""
    key = username.casefold()
    users = db[model.USERS]
    existing = await users.find_one({"username_key": key})
    if existing is not None:
        update: dict = {}
        if existing.get("role") != model.ROLE_ADMIN:
            update["role"] = model.ROLE_ADMIN
        if not _verifies(hasher, existing.get("password_hash"), password):
            update["password_hash"] = hasher.hash(password)
        if update:
            await users.update_one({"_id": existing["_id"]}, {"$set": update})
            return "updated"
        return "unchanged"
    try:
        await users.insert_one(
            {
                "userId": await next_user_id(db),
                "username": username,
                "username_key": key,
                "password_hash": hasher.hash(password),
                "role": model.ROLE_ADMIN,
                "created_at": datetime.now(UTC),
            }
        )
    except DuplicateKeyError:
        return "unchanged"  # a concurrent init created it
    return "created"


async def ensure_demo_accounts(
    db: AsyncDatabase, user_ids: list[int], password: str, hasher: PasswordHasher, batch_size: int
) -> tuple[int, int]:
    """Returns (accounts created, accounts whose shared password hash was refreshed)."""
    users = db[model.USERS]
    sample = await users.find_one({"demo": True})
    password_hash = None
    refreshed = 0
    if sample is not None and _verifies(hasher, sample.get("password_hash"), password):
        password_hash = sample["password_hash"]
    else:
        password_hash = hasher.hash(password)
        if sample is not None:
            res = await users.update_many(
                {"demo": True}, {"$set": {"password_hash": password_hash}}
            )
            refreshed = res.modified_count
    now = datetime.now(UTC)
    docs = [
        {
            "userId": uid,
            "username": f"{DEMO_PREFIX}{uid}",
            "username_key": f"{DEMO_PREFIX}{uid}",
            "password_hash": password_hash,
            "role": model.ROLE_USER,
            "created_at": now,
            "demo": True,
        }
        for uid in user_ids
    ]
    created = await insert_ignoring_duplicates(users, docs, batch_size)
    return created, refreshed
