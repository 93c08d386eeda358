"""Admin routes: real role checks, retrain jobs (enqueue, 409 policy, list, get, cancel), model
versions (list, activate/rollback). Runs on a schema-only database of its own."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest
from movierec_common import artifacts
from pymongo import MongoClient

from tests.integration.catalog.conftest import ADMIN_ONLY_PASSWORD, unique_name
from tests.integration.catalog.support import (
    API_KEY,
    CatalogServer,
    assert_error,
    bearer,
    login,
    register,
)


@pytest.fixture(scope="module")
def admin_token(admin_catalog: CatalogServer) -> str:
    with admin_catalog.client() as c:
        return login(c, "admin", ADMIN_ONLY_PASSWORD)


@pytest.fixture
def api(admin_catalog: CatalogServer):
    with admin_catalog.client() as c:
        yield c


@pytest.fixture
def jobs_db(admin_catalog: CatalogServer):
    client = MongoClient(admin_catalog.mongo_url, tz_aware=True)
    db = client[admin_catalog.db]
    db.jobs.delete_many({})
    db.meta.delete_many({"_id": "retrain_slot"})
    yield db
    client.close()


ADMIN_ROUTES = [
    ("POST", "/api/admin/retrain", {}),
    ("GET", "/api/admin/jobs", None),
    ("GET", "/api/admin/jobs/0123456789abcdef01234567", None),
    ("POST", "/api/admin/jobs/0123456789abcdef01234567/cancel", None),
    ("GET", "/api/admin/models", None),
    ("POST", "/api/admin/models/v1/activate", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_anonymous_and_users(api: httpx.Client, method, path, body):
    api.cookies.clear()
    assert_error(api.request(method, path, json=body), 401, "not_authenticated")
    token = register(api, unique_name())
    api.cookies.clear()
    assert_error(api.request(method, path, json=body, headers=bearer(token)), 403, "forbidden")


def test_admin_and_service_key_are_allowed(api: httpx.Client, admin_token: str):
    assert api.get("/api/admin/jobs", headers=bearer(admin_token)).status_code == 200
    assert api.get("/api/admin/jobs", headers={"X-API-Key": API_KEY}).status_code == 200


def test_retrain_enqueues_then_refuses_a_second(api, admin_token, jobs_db):
    r = api.post(
        "/api/admin/retrain",
        json={"iterations": 5, "rank": 8, "reg": 0.1, "db_only": True},
        headers=bearer(admin_token),
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["trigger"] == "manual"
    assert job["params"] == {"iterations": 5, "rank": 8, "reg": 0.1, "db_only": True}
    assert job["requested_by"] == "admin" and job["cancel_requested"] is False
    stored = jobs_db.jobs.find_one()
    assert str(stored["_id"]) == job["id"] and stored["attempts"] == 0
    assert stored["lease_owner"] is None and stored["progress"] is None
    second = api.post("/api/admin/retrain", json={}, headers=bearer(admin_token))
    err = assert_error(second, 409, "job_already_active")
    assert err["details"]["job"]["id"] == job["id"]
    # The job is visible; cancelling a queued job is immediate; then a new one is allowed.
    got = api.get(f"/api/admin/jobs/{job['id']}", headers=bearer(admin_token)).json()
    assert got["id"] == job["id"] and got["status"] == "queued"
    cancelled = api.post(f"/api/admin/jobs/{job['id']}/cancel", headers=bearer(admin_token))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.post(f"/api/admin/jobs/{job['id']}/cancel", headers=bearer(admin_token))
    assert_error(again, 409, "job_finished")
    third = api.post("/api/admin/retrain", json={}, headers={"X-API-Key": API_KEY})
    assert third.status_code == 202 and third.json()["requested_by"] == "service"


def test_running_job_cancel_sets_flag(api, admin_token, jobs_db):
    job = api.post("/api/admin/retrain", json={}, headers=bearer(admin_token)).json()
    from bson import ObjectId

    jobs_db.jobs.update_one({"_id": ObjectId(job["id"])}, {"$set": {"status": "running"}})
    r = api.post(f"/api/admin/jobs/{job['id']}/cancel", headers=bearer(admin_token))
    assert r.status_code == 200
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    # A running job (e.g. one the trainer's scheduler enqueued) also blocks new POSTs.
    assert_error(api.post("/api/admin/retrain", json={}, headers=bearer(admin_token)), 409)


def test_simultaneous_posts_create_exactly_one_job(admin_catalog, admin_token, jobs_db):
    def post(_: int) -> int:
        with admin_catalog.client() as c:
            return c.post("/api/admin/retrain", json={}, headers=bearer(admin_token)).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(8)))
    assert statuses.count(202) == 1, statuses
    assert statuses.count(409) == 7, statuses
    assert jobs_db.jobs.count_documents({"status": {"$in": ["queued", "running"]}}) == 1


def test_retrain_params_validated(api, admin_token, jobs_db, tmp_path):
    bad = [
        {"rank": 0},
        {"rank": 10_000},
        {"iterations": 0},
        {"iterations": "5"},
        {"reg": -1},
        {"reg": {"$gt": 0}},
        {"db_only": "yes"},
        {"unknown": 1},
        {"csv_path": "/etc/passwd"},
        {"csv_path": "../../../etc/passwd"},
        {"csv_path": "no-such-file.csv"},
        {"csv_path": {"$ne": None}},
    ]
    for body in bad:
        assert_error(
            api.post("/api/admin/retrain", json=body, headers=bearer(admin_token)),
            422,
            "validation_error",
        )
    assert jobs_db.jobs.count_documents({}) == 0
    ok = api.post(
        "/api/admin/retrain", json={"csv_path": "ratings.csv"}, headers=bearer(admin_token)
    )
    assert ok.status_code == 202, ok.text
    assert Path(ok.json()["params"]["csv_path"]).name == "ratings.csv"


def test_jobs_list_newest_first_and_paged(api, admin_token, jobs_db):
    ids = []
    for _ in range(5):
        job = api.post("/api/admin/retrain", json={}, headers=bearer(admin_token)).json()
        ids.append(job["id"])
        api.post(f"/api/admin/jobs/{job['id']}/cancel", headers=bearer(admin_token))
    page1 = api.get("/api/admin/jobs", params={"page_size": 2}, headers=bearer(admin_token)).json()
    assert page1["total"] == 5 and page1["pages"] == 3
    assert [j["id"] for j in page1["items"]] == ids[::-1][:2]
    limited = api.get("/api/admin/jobs", params={"limit": 3}, headers=bearer(admin_token)).json()
    assert len(limited["items"]) == 3
    by_status = api.get(
        "/api/admin/jobs", params={"status": "cancelled"}, headers=bearer(admin_token)
    ).json()
    assert by_status["total"] == 5
    assert_error(
        api.get("/api/admin/jobs", params={"status": "weird"}, headers=bearer(admin_token)), 422
    )
    assert_error(api.get("/api/admin/jobs/not-an-id", headers=bearer(admin_token)), 422)
    assert_error(
        api.get("/api/admin/jobs/0123456789abcdef01234567", headers=bearer(admin_token)),
        404,
        "job_not_found",
    )


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "P": rng.standard_normal((4, 3)),
        "Q": rng.standard_normal((6, 3)),
        "user_bias": rng.standard_normal(4),
        "item_bias": rng.standard_normal(6),
        "global_mean": np.array(3.5),
        "user_ids": np.arange(1, 5, dtype=np.int64),
        "item_ids": np.arange(1, 7, dtype=np.int64),
        "item_counts": np.arange(1, 7, dtype=np.int64),
    }


def _manifest(rmse: float) -> dict:
    return {
        "params": {"explicit": {"rank": 3}, "ranking": None},
        "data": {"n_ratings": 10, "n_users": 4, "n_items": 6, "fingerprint": "x"},
        "metrics": {"rmse": rmse, "mae": 0.7},
        "history": [],
    }


def test_models_list_and_activate(api, admin_token, admin_catalog):
    model_dir = admin_catalog.model_dir
    empty = api.get("/api/admin/models", headers=bearer(admin_token)).json()
    assert empty == {"items": [], "current": None}
    v1 = artifacts.save_model(model_dir, _arrays(1), _manifest(0.9), version="v0001")
    v2 = artifacts.save_model(model_dir, _arrays(2), _manifest(0.85), version="v0002")
    listed = api.get("/api/admin/models", headers=bearer(admin_token)).json()
    assert listed["current"] == v2
    assert {m["version"]: m["active"] for m in listed["items"]} == {v1: False, v2: True}
    assert {m["version"]: m["metrics"]["rmse"] for m in listed["items"]} == {v1: 0.9, v2: 0.85}
    r = api.post(f"/api/admin/models/{v1}/activate", headers=bearer(admin_token))
    assert r.status_code == 200 and r.json() == {"version": v1, "active": True, "previous": v2}
    assert artifacts.current_version(model_dir) == v1
    assert_error(
        api.post("/api/admin/models/v9999/activate", headers=bearer(admin_token)),
        404,
        "version_not_found",
    )
    assert_error(
        api.post("/api/admin/models/..%2F..%2Fetc/activate", headers=bearer(admin_token)), 404
    )
    # A corrupted version is refused and CURRENT stays where it was.
    (model_dir / "versions" / v2 / "factors.npz").write_bytes(b"garbage")
    assert_error(
        api.post(f"/api/admin/models/{v2}/activate", headers=bearer(admin_token)),
        409,
        "version_invalid",
    )
    assert artifacts.current_version(model_dir) == v1
