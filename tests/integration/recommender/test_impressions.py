"""Impressions against a real uvicorn recommender and a real SecantusDB: every returned list is
recorded with its movies in order, off the request path; with the database stopped requests
still answer and the lost impressions are counted; IMPRESSIONS_ENABLED=false writes nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.integration.recommender.support import (
    RecsServer,
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
)
from tests.support import MongoServer

pytestmark = pytest.mark.timeout(300)


def wait_docs(db: SeededDb, query: dict, n: int, timeout: float = 20.0) -> list[dict]:
    client = MongoClient(db.url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            docs = list(client[db.name].impressions.find(query, {"_id": 0}))
            if len(docs) >= n or time.monotonic() > deadline:
                return docs
            time.sleep(0.2)
    finally:
        client.close()


def metric(server: RecsServer, name: str, labels: str = "") -> float:
    text = server.client.get("/metrics").text
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def test_every_list_kind_is_recorded_with_positions(recs: RecsServer, recs_db: SeededDb) -> None:
    user = recs.client.get("/api/recs/users/1", params={"k": 5}, headers=recs.service).json()
    me = recs.client.get("/api/recs/me", params={"k": 4}, headers=recs.as_user(2)).json()
    sim = recs.client.get("/api/recs/similar/1", params={"k": 6}, headers=recs.as_user(3)).json()
    anon = recs.client.get("/api/recs/similar/1", params={"k": 3}).json()
    batch = recs.client.post(
        "/api/recs/batch", json={"userIds": [4, 5], "k": 3}, headers=recs.service
    ).json()
    lists = {
        user["list_id"]: ("user", 1, user),
        me["list_id"]: ("user", 2, me),
        sim["list_id"]: ("similar", 3, sim),
        anon["list_id"]: ("similar", None, anon),
    }
    for res in batch["results"]:
        lists[res["list_id"]] = ("batch", res["userId"], res)
    assert all(re.fullmatch(r"[0-9a-f]{32}", lid) for lid in lists)
    docs = wait_docs(recs_db, {"list_id": {"$in": list(lists)}}, len(lists))
    assert len(docs) == len(lists) == 6
    for doc in docs:
        kind, user_id, body = lists[doc["list_id"]]
        assert doc["kind"] == kind and doc["userId"] == user_id
        assert doc["movieIds"] == [it["movieId"] for it in body["items"]]  # index = position
        assert doc["model_version"] == body["model_version"]
        assert doc["ts"] is not None and "arm" not in doc
        if kind == "similar":
            assert doc["source_movieId"] == 1
        else:
            assert doc["strategy"] == body["strategy"] == "personalized"
    assert metric(recs, "movierec_recs_impressions_written_total") >= 6


def test_recording_can_be_turned_off(
    recs_db: SeededDb, trained: TrainedModel, tmp_path: Path, start_recs_server: StartServer
) -> None:
    install_version(trained.root, trained.version, tmp_path)
    server = start_recs_server(recs_db, tmp_path, IMPRESSIONS_ENABLED="false")
    body = server.client.get("/api/recs/users/7", headers=server.service).json()
    assert body["items"] and "list_id" not in body
    time.sleep(1.5)  # longer than a flush: anything queued would have been written
    assert metric(server, "movierec_recs_impressions_written_total") == 0
    assert not wait_docs(recs_db, {"userId": 7, "kind": "user"}, 1, timeout=0.5)


def test_database_down_requests_answer_and_drops_are_counted(
    trained: TrainedModel,
    tmp_path: Path,
    start_recs_server: StartServer,
    output_dir: Path,
) -> None:
    """The recorder's database is stopped: lists that need no database read (similar movies)
    keep answering at once, impressions pile up to the queue bound and the rest are dropped
    and counted; the write attempts that fail are counted too."""
    mongo = MongoServer(tmp_path / "db", log_path=output_dir / "secantus-impressions.log").start()
    db = SeededDb(mongo.url, "impressions_down")
    install_version(trained.root, trained.version, tmp_path / "models")
    server = start_recs_server(
        db,
        tmp_path / "models",
        IMPRESSIONS_QUEUE_SIZE="20",
        IMPRESSIONS_BATCH_SIZE="1",
        IMPRESSIONS_WRITE_TIMEOUT_SECONDS="3.0",
        MONGO_TIMEOUT_MS="3000",
    )
    dropped = "movierec_recs_impressions_dropped_total"
    try:
        assert server.client.get("/api/recs/similar/1").status_code == 200
        assert wait_docs(db, {"kind": "similar"}, 1), "recording works while the database is up"
        written = metric(server, "movierec_recs_impressions_written_total")
        mongo.stop()
        n = 200
        start = time.perf_counter()
        for _ in range(n):
            r = server.client.get("/api/recs/similar/1", params={"k": 10})
            assert r.status_code == 200
        elapsed = time.perf_counter() - start
        # Were a request to wait for its impression's write, each would take >= 3 s (the
        # server-selection timeout): 200 of them >= 600 s. A blocking check, not a timing claim.
        assert elapsed < n * 1.0, elapsed
        # The writer takes one impression per failed attempt (>= 3 s each); everything beyond
        # the 20 queued and those taken is dropped at once and counted.
        taken = elapsed / 3.0 + 1
        full = metric(server, dropped, '{reason="queue_full"}')
        assert full >= n - 20 - taken, (full, elapsed)
        deadline = time.monotonic() + 15
        while metric(server, dropped, '{reason="write_failed"}') == 0:
            assert time.monotonic() < deadline, "failed writes are not counted"
            time.sleep(0.2)
        assert metric(server, "movierec_recs_impressions_written_total") == written
        assert server.client.get("/healthz").status_code == 200
    finally:
        mongo.stop()
