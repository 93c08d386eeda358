"""Helpers for the catalog suites: a real `python -m catalog_api` process and logins."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from movierec_init.schema import ensure_schema
from pymongo import AsyncMongoClient, MongoClient

from tests.support import VENV_BIN, ManagedProcess, free_port, wait_http

JWT_SECRET = "catalog-tests-jwt-secret-0123456789abcdef0123456789"
API_KEY = "catalog-tests-service-key-0123456789"


@dataclass
class CatalogServer:
    base_url: str
    proc: ManagedProcess
    mongo_url: str
    db: str
    model_dir: Path
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def client(self, **kw) -> httpx.Client:
        kw.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.base_url, **kw)

    def stop(self) -> None:
        self.proc.stop()


def start_catalog(
    mongo_url: str, db: str, model_dir: Path, data_dir: Path, log_dir: Path, **env: str
) -> CatalogServer:
    port = free_port()
    log_path = log_dir / f"catalog-{db}-{port}.log"
    proc = ManagedProcess(
        [str(VENV_BIN / "python"), "-m", "catalog_api"],
        env={
            "MONGO_URL": mongo_url,
            "MONGO_DB": db,
            "MODEL_DIR": str(model_dir),
            "DATA_DIR": str(data_dir),
            "CATALOG_HOST": "127.0.0.1",
            "CATALOG_PORT": str(port),
            "JWT_SECRET": JWT_SECRET,
            "API_KEYS": f'["{API_KEY}"]',
            "POPULARITY_PRIOR_WEIGHT": "20",
            "LOG_LEVEL": "INFO",
            # The suites register dozens of accounts from 127.0.0.1; the sign-up limit has its
            # own test (tests/hardening/test_accounts.py) on a private catalog.
            "SIGNUP_MAX_PER_CLIENT": "100000",
            **env,
        },
        log_path=log_path,
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout=90, proc=proc.proc)
    except Exception:
        print(proc.log_tail())
        proc.stop()
        raise
    return CatalogServer(base, proc, mongo_url, db, model_dir, log_path, env)


def make_schema_db(mongo_url: str, db: str, admin_password: str) -> None:
    """A database with the schema and one admin account, without the (slower) MovieLens import."""

    async def _go() -> None:
        client = AsyncMongoClient(mongo_url)
        try:
            await ensure_schema(client[db])
            await client[db].counters.update_one(
                {"_id": "userId"}, {"$max": {"seq": 1001}}, upsert=True
            )
        finally:
            await client.close()

    asyncio.run(_go())
    client = MongoClient(mongo_url)
    try:
        client[db].users.insert_one(
            {
                "userId": 1001,
                "username": "admin",
                "username_key": "admin",
                "password_hash": PasswordHasher().hash(admin_password),
                "role": "admin",
                "created_at": datetime.now(UTC),
            }
        )
    finally:
        client.close()


def login(client: httpx.Client, username: str, password: str) -> str:
    r = client.post("/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(client: httpx.Client, username: str, password: str = "password-123") -> str:
    r = client.post("/api/auth/register", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    return r.json()["access_token"]


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
