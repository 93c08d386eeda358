"""Catalog fixtures: a real `python -m catalog_api` on the shared MovieLens database, and one
on a schema-only database for the admin/job tests (so queued test jobs never meet another
suite's trainer worker)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from tests.integration.catalog.support import CatalogServer, make_schema_db, start_catalog
from tests.support.movielens_db import MovieLensDB

ADMIN_ONLY_PASSWORD = "schema-db-admin-password"


@pytest.fixture(scope="session")
def catalog(
    movielens_db: MovieLensDB,
    movielens_dir: Path,
    output_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CatalogServer]:
    server = start_catalog(
        movielens_db.url,
        movielens_db.db,
        tmp_path_factory.mktemp("catalog-models"),
        movielens_dir,
        output_dir,
    )
    yield server
    server.stop()


@pytest.fixture
def http(catalog: CatalogServer) -> Iterator[httpx.Client]:
    with catalog.client() as c:
        yield c


@pytest.fixture(scope="module")
def admin_catalog(
    mongo_url: str,
    movielens_dir: Path,
    output_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CatalogServer]:
    db = f"cat_admin_{uuid.uuid4().hex[:8]}"
    make_schema_db(mongo_url, db, ADMIN_ONLY_PASSWORD)
    server = start_catalog(
        mongo_url, db, tmp_path_factory.mktemp("admin-models"), movielens_dir, output_dir
    )
    yield server
    server.stop()
    client = MongoClient(mongo_url)
    client.drop_database(db)
    client.close()


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
