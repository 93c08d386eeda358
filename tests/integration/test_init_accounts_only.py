"""`python -m movierec_init --accounts-only` (what make run runs on an initialised database):
the admin and demo logins end up with the configured passwords, nothing else is touched."""

from __future__ import annotations

import os
import subprocess
import sys

from argon2 import PasswordHasher
from pymongo import MongoClient

from tests.support import ROOT


def accounts_only(mongo_url: str, db: str, **env: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "movierec_init", "--accounts-only"],
        cwd=ROOT,
        env={**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": db, "LOG_JSON": "false", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_accounts_follow_the_configured_passwords(mongo_url: str, db_name: str) -> None:
    hasher = PasswordHasher()
    client: MongoClient = MongoClient(mongo_url)
    users = client[db_name]["users"]
    try:
        users.insert_one(
            {
                "userId": 1,
                "username": "ml1",
                "username_key": "ml1",
                "password_hash": hasher.hash("old-demo"),
                "role": "user",
                "demo": True,
            }
        )
        out = accounts_only(mongo_url, db_name, ADMIN_PASSWORD="first-Pass-1")
        assert "admin 'admin' created" in out
        out = accounts_only(
            mongo_url, db_name, ADMIN_PASSWORD="second-Pass-2", DEMO_PASSWORD="new-demo"
        )
        assert "admin 'admin' password (or role) changed" in out
        assert "demo logins given DEMO_PASSWORD: 1" in out
        admin = users.find_one({"username_key": "admin"})
        assert hasher.verify(admin["password_hash"], "second-Pass-2")
        assert hasher.verify(users.find_one({"userId": 1})["password_hash"], "new-demo")
        assert users.count_documents({}) == 2  # no demo logins created, nothing imported
        assert "movies" not in client[db_name].list_collection_names()
        out = accounts_only(mongo_url, db_name, ADMIN_PASSWORD="second-Pass-2")
        assert "already matches ADMIN_PASSWORD" in out
    finally:
        client.drop_database(db_name)
        client.close()
