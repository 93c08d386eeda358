"""Impressions against a real uvicorn recommender and a real SecantusDB: every returned list is
recorded with its movies in order, off the request path; with the database stopped requests
still answer and the lost impressions are counted; IMPRESSIONS_ENABLED=false writes nothing."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from movierec_common.impressions import lists_of
from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient, MongoClient
from recommender_api.impressions import ImpressionRecorder

from tests.integration.recommender.support import (
    RecsServer,
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
)
from tests.support import MongoServer

pytestmark = pytest.mark.timeout(300)


def wait_docs(
    db: SeededDb, keep: Callable[[dict], bool], n: int, timeout: float = 20.0
) -> list[dict]:
    """The recorded lists (bucket documents unwound) that `keep` accepts, once there are n of
    them or after `timeout` seconds."""
    client = MongoClient(db.url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            docs = [d for d in lists_of(client[db.name].impressions.find()) if keep(d)]
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
    docs = wait_docs(recs_db, lambda d: d["list_id"] in lists, len(lists))
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
    assert not wait_docs(recs_db, lambda d: (d["userId"], d["kind"]) == (7, "user"), 1, timeout=0.5)


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
        assert wait_docs(db, lambda d: d["kind"] == "similar", 1), (
            "recording works while the database is up"
        )
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


def test_recorder_writes_one_bucket_per_write_and_experiment(mongo_url: str) -> None:
    """The recorder against the real server: 25 lists queued at once with batch_size 10 are
    written as buckets of at most 10 lists, a batch that spans an experiment's start is split
    per experiment, and every list comes back once, in order, through `lists_of`."""
    name = f"recorder_{uuid.uuid4().hex[:8]}"

    async def run() -> list[dict]:
        client: AsyncMongoClient = AsyncMongoClient(mongo_url, tz_aware=True)
        registry = CollectorRegistry()
        recorder = ImpressionRecorder(
            client[name].impressions,
            enabled=True,
            queue_size=100,
            batch_size=10,
            flush_seconds=0.2,
            write_timeout=5.0,
            written=Counter("written", "", registry=registry),
            dropped=Counter("dropped", "", ["reason"], registry=registry),
        )
        await recorder.start()
        for i in range(25):
            experiment = {"experiment_id": "e1", "arm": "control"} if i >= 22 else {}
            assert recorder.record(
                list_id=f"{i:032x}",
                user_id=i,
                kind="user",
                movie_ids=[i, i + 1],
                model_version="v1",
                strategy="personalized",
                **experiment,
            )
        await recorder.stop(drain_seconds=5.0)
        assert registry.get_sample_value("written_total") == 25
        docs = await client[name].impressions.find().sort("_id", 1).to_list(None)
        await client.drop_database(name)
        await client.close()
        return docs

    docs = asyncio.run(run())
    assert [d["n"] for d in docs] == [10, 10, 2, 3]
    assert [d.get("experiment_id") for d in docs] == [None, None, None, "e1"]
    assert all(d["ts"] == max(x["ts"] for x in d["lists"]) for d in docs)
    lists = list(lists_of(docs))
    assert [d["userId"] for d in lists] == list(range(25))
    assert [d["movieIds"] for d in lists] == [[i, i + 1] for i in range(25)]
    assert [d.get("arm") for d in lists] == [None] * 22 + ["control"] * 3
