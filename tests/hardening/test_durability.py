"""Kill drill (issue 19 A): no acknowledged write is lost when the database process dies.

Eight clients put and delete ratings and one loop registers accounts, all through the catalog
API, while the SecantusDB process is SIGKILLed about 4 s into the burst. The database is started
again on the same files, the catalog reconnects by itself, and every acknowledged write is
audited against what is stored:

* per (user, movie), the stored rating is the value of the last acknowledged operation (None
  for a delete), or of an operation sent after it whose answer never came (the crash may or may
  not have taken it; both are correct);
* every registration answered 201 exists, with the userId it was given.

The drill runs three times in a row; writes lost must be 0 every time. Each run's figures are
written to test-output/hardening/durability.json (bench/REPORT.md quotes them).
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
from pymongo import MongoClient

from tests.hardening.conftest import DEMO_PASSWORD, HStack, wait_for

pytestmark = pytest.mark.timeout(300)

WRITERS = 8
MOVIES = [1, 2, 3, 6, 10, 32, 47, 50, 110, 150, 260, 296, 318, 356, 480, 527, 589, 593]
KILL_AFTER_S = 4.0
KILL_AT_MOST_S = 60.0
MIN_ACKS = 20
WRITE_AFTER_KILL_S = 1.5
RUNS = 3
UNSET = object()


@dataclass
class PairLog:
    """What one client knows about one (user, movie): the last acknowledged value and the
    values of operations sent after it whose outcome is unknown (no answer, 5xx)."""

    acked: object = UNSET  # float | None (deleted) | UNSET (never acknowledged)
    unknown: list[float | None] = field(default_factory=list)
    acks: int = 0


def writer(url: str, token: str, user_id: int, stop: threading.Event, out: dict, seed: int) -> None:
    rnd = random.Random(seed)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        while not stop.is_set():
            movie = rnd.choice(MOVIES)
            pair = out.setdefault((user_id, movie), PairLog())
            value: float | None = None if rnd.random() < 0.3 else rnd.randint(1, 10) / 2
            try:
                if value is None:
                    r = c.delete(f"/api/movies/{movie}/rating")
                    ok = r.status_code == 204
                else:
                    r = c.put(f"/api/movies/{movie}/rating", json={"rating": value})
                    ok = r.status_code == 200
                    if ok:
                        assert r.json()["rating"] == value
                if not ok:
                    assert r.status_code >= 500 or r.status_code == 409, (r.status_code, r.text)
            except httpx.HTTPError:
                ok = False
            if ok:
                pair.acked, pair.unknown, pair.acks = value, [], pair.acks + 1
            else:
                pair.unknown.append(value)
                time.sleep(0.05)


def registrar(url: str, stop: threading.Event, made: dict[str, int], tried: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.is_set():
            name = f"kd{uuid.uuid4().hex[:12]}"
            tried[0] += 1
            try:
                r = c.post(
                    "/api/auth/register",
                    json={"username": name, "password": secrets.token_urlsafe(16)},
                )
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if r.status_code == 201:
                made[name] = r.json()["user"]["userId"]
            elif r.status_code == 429:  # sign-up limits: back off, nothing was acknowledged
                time.sleep(0.5)
            else:
                time.sleep(0.05)


def drill(st: HStack, run: int) -> dict:
    users = [10 * run + i for i in range(1, WRITERS + 1)]  # ml11.., ml21.., ml31..: own pairs
    tokens = {u: st.login(f"ml{u}", DEMO_PASSWORD) for u in users}
    client: MongoClient = MongoClient(st.mongo_url, serverSelectionTimeoutMS=30_000)
    db = client[st.db_name]
    before = {
        (d["userId"], d["movieId"]): d["rating"]
        for d in db.ratings.find({"userId": {"$in": users}, "movieId": {"$in": MOVIES}})
    }
    client.close()

    stop = threading.Event()
    logs: dict[int, dict] = {u: {} for u in users}
    made: dict[str, int] = {}
    tried = [0]
    threads = [
        threading.Thread(
            target=writer, args=(st.catalog_url, tokens[u], u, stop, logs[u], run * 100 + u)
        )
        for u in users
    ]
    threads.append(threading.Thread(target=registrar, args=(st.catalog_url, stop, made, tried)))
    for t in threads:
        t.start()
    try:
        # Mid-burst: after KILL_AFTER_S and at least MIN_ACKS acknowledged writes (a loaded
        # machine answers slowly), at most KILL_AT_MOST_S into the burst.
        started = time.monotonic()
        while time.monotonic() - started < KILL_AT_MOST_S and (
            time.monotonic() - started < KILL_AFTER_S
            or sum(p.acks for log in logs.values() for p in list(log.values())) < MIN_ACKS
        ):
            time.sleep(0.1)
        st.mongo.kill()  # SIGKILL: no shutdown, no checkpoint
        killed_at = time.monotonic()
        time.sleep(WRITE_AFTER_KILL_S)  # writes keep coming while it is down
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    st.mongo.start()
    restarted = time.monotonic()
    wait_for(
        lambda: httpx.get(f"{st.catalog_url}/readyz", timeout=5).status_code == 200,
        90,
        "the catalog ready again after the database restarted",
    )
    ready_s = time.monotonic() - restarted

    client = MongoClient(st.mongo_url, serverSelectionTimeoutMS=30_000)
    try:
        db = client[st.db_name]
        stored = {
            (d["userId"], d["movieId"]): d["rating"]
            for d in db.ratings.find({"userId": {"$in": users}, "movieId": {"$in": MOVIES}})
        }
        acked_writes, lost = 0, []
        for u in users:
            for key, pair in logs[u].items():
                acked_writes += pair.acks
                expected = pair.acked if pair.acked is not UNSET else before.get(key)
                allowed = [expected, *pair.unknown]
                if stored.get(key) not in allowed:
                    lost.append((key, stored.get(key), expected, pair.unknown))
        accounts = {
            d["username"]: d.get("userId")
            for d in db.users.find({"username": {"$in": list(made)}}, {"username": 1, "userId": 1})
        }
        lost_accounts = {n: i for n, i in made.items() if accounts.get(n) != i}
    finally:
        client.close()
    return {
        "run": run,
        "acknowledged_ratings": acked_writes,
        "acknowledged_registrations": len(made),
        "registrations_tried": tried[0],
        "lost_ratings": lost,
        "lost_registrations": lost_accounts,
        "kill_to_ready_s": round(time.monotonic() - killed_at, 1),
        "restart_to_ready_s": round(ready_s, 1),
    }


def test_database_sigkill_mid_burst_loses_no_acknowledged_write(hstack: HStack, output_dir) -> None:
    results = []
    for run in range(1, RUNS + 1):
        res = drill(hstack, run)
        results.append(res)
        print(json.dumps(res, default=str))
        assert res["acknowledged_ratings"] >= MIN_ACKS, res  # the burst really wrote something
        assert not res["lost_ratings"], res
        assert not res["lost_registrations"], res
    (output_dir / "hardening").mkdir(exist_ok=True)
    (output_dir / "hardening" / "durability.json").write_text(json.dumps(results, indent=2))


def test_every_process_writes_with_a_journaled_write_concern(hstack: HStack) -> None:
    """The clients the catalog and the trainer write through ask for `{w: 1, j: true}`
    (SecantusDB then fsyncs its log before answering, as mongod does), so an acknowledged write
    also survives a power loss, not only a process kill. (mongo-init's re-runnable bulk import
    writes unjournaled and ends with an `fsync` command instead.)"""
    from movierec_common.mongo import make_client
    from movierec_trainer.config import TrainerSettings
    from movierec_trainer.session import mongo

    client = make_client(hstack.mongo_url, appname="movierec-catalog")
    sync = mongo(TrainerSettings(mongo_url=hstack.mongo_url))
    try:
        for c in (client, sync):
            assert c.write_concern.document == {"w": 1, "j": True}
            db = c[hstack.db_name]
            for name in ("ratings", "users", "movies", "jobs", "counters"):
                assert db[name].write_concern.document == {"w": 1, "j": True}, name
    finally:
        sync.close()
        import asyncio

        asyncio.run(client.close())
