"""A/B serving in a real recommender process: with an experiment running (as the catalog's
admin API writes it), each user is served by their arm's model version, the lists and their
impressions carry the arm; when it ends everyone is served by CURRENT again."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import pytest
from movierec_common.experiments import assign_arm
from movierec_common.impressions import lists_of
from pymongo import MongoClient

from tests.integration.recommender.support import (
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
)

pytestmark = pytest.mark.timeout(300)


def test_both_versions_are_served_to_their_arms(
    mongo_url: str,
    trained: TrainedModel,
    trained_explicit_only: TrainedModel,
    tmp_path: Path,
    start_recs_server: StartServer,
) -> None:
    control, candidate = trained.version, trained_explicit_only.version
    assert control != candidate
    model_dir = tmp_path / "models"
    install_version(trained_explicit_only.root, candidate, model_dir, activate=False)
    install_version(trained.root, control, model_dir)
    # Its own (empty) database: a running experiment must not reach the shared server. Trained
    # users need no rating reads with RATED_LOOKUP=recent (the artifact lists them).
    db = SeededDb(mongo_url, f"ab_{uuid.uuid4().hex[:8]}")
    client = MongoClient(mongo_url)
    exp_id = uuid.uuid4().hex[:24]
    try:
        client[db.name].experiments.insert_one(
            {
                "_id": exp_id,
                "control": control,
                "candidate": candidate,
                "split": 0.5,
                "status": "running",
                "started_at": dt.datetime.now(dt.UTC),
            }
        )
        server = start_recs_server(db, model_dir, EXPERIMENTS_POLL_SECONDS="0.5")
        users = list(range(1, 61))
        served: dict[int, dict] = {}
        for u in users:
            r = server.client.get(f"/api/recs/users/{u}", params={"k": 5}, headers=server.service)
            assert r.status_code == 200, r.text
            served[u] = r.json()
        arms = {u: assign_arm(u, exp_id, 0.5) for u in users}
        assert 10 < sum(a == "candidate" for a in arms.values()) < 50
        for u, body in served.items():
            want = candidate if arms[u] == "candidate" else control
            assert body["model_version"] == want, (u, body["model_version"])
            assert body["arm"] == arms[u] and body["experiment_id"] == exp_id
            assert body["ranking_model"] is (arms[u] == "control")  # explicit-only candidate
        batch = server.client.post(
            "/api/recs/batch", json={"userIds": users[:20], "k": 3}, headers=server.service
        ).json()
        for res in batch["results"]:
            u = res["userId"]
            assert res["arm"] == arms[u]
            assert res["model_version"] == (candidate if arms[u] == "candidate" else control)
        # Impressions carry the arm (written off the request path: wait, bounded).
        deadline = time.monotonic() + 20
        while True:
            found = client[db.name].impressions.find({"experiment_id": exp_id})
            docs = [d for d in lists_of(found, experiment_id=exp_id) if d["kind"] == "user"]
            if len(docs) >= len(users) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(docs) == len(users)
        for d in docs:
            assert d["arm"] == arms[d["userId"]]
            assert d["model_version"] == (candidate if d["arm"] == "candidate" else control)
        # End it: within a poll every user is back on CURRENT, outside any experiment.
        client[db.name].experiments.update_one({"_id": exp_id}, {"$set": {"status": "ended"}})
        deadline = time.monotonic() + 20
        u = next(u for u in users if arms[u] == "candidate")
        while time.monotonic() < deadline:
            body = server.client.get(f"/api/recs/users/{u}", headers=server.service).json()
            if body["model_version"] == control:
                break
            time.sleep(0.3)
        assert body["model_version"] == control and "arm" not in body
    finally:
        client.drop_database(db.name)
        client.close()
