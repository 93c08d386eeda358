"""Online metrics and A/B experiments through a real catalog process and SecantusDB: hit
counting on a scripted sequence of impressions and ratings with exact expected values, the
MongoDB aggregation equal to the plain-Python definition on a random sequence, and an
experiment's life (start, 409 on a second, arm metrics, promote = CURRENT moves, ended)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from pathlib import Path

import httpx
import pytest
from movierec_common import artifacts, online_metrics
from movierec_common.experiments import wilson_interval
from movierec_common.impressions import buckets
from pymongo import MongoClient

from tests.integration.catalog.conftest import ADMIN_ONLY_PASSWORD
from tests.integration.catalog.support import (
    CatalogServer,
    assert_error,
    bearer,
    login,
    start_catalog,
)
from tests.integration.catalog.test_catalog_admin import _arrays, _manifest

pytestmark = pytest.mark.timeout(120)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def admin_token(admin_catalog: CatalogServer) -> str:
    with admin_catalog.client() as c:
        return login(c, "admin", ADMIN_ONLY_PASSWORD)


@pytest.fixture
def api(admin_catalog: CatalogServer):
    with admin_catalog.client() as c:
        yield c


@pytest.fixture
def db(admin_catalog: CatalogServer):
    client = MongoClient(admin_catalog.mongo_url, tz_aware=True)
    d = client[admin_catalog.db]
    for name in ("impressions", "experiments", "ratings", "movies"):
        d[name].delete_many({})
    d.meta.delete_many({"_id": "experiment_running"})
    yield d
    client.close()


def imp(user, movies, version, ts, **kw) -> dict:
    return {
        "list_id": uuid.uuid4().hex,
        "userId": user,
        "movieIds": movies,
        "model_version": version,
        "ts": ts,
        **kw,
    }


def store(db, lists: list[dict], rng: random.Random | None = None) -> None:
    """Write lists as the recommender does (bucket documents, movierec_common.impressions): all
    in one write, or with `rng` in time order in writes of 1-8 lists, about one write in four
    as one-list documents without list_id, as earlier releases stored them."""
    if rng is None:
        db.impressions.insert_many(buckets(lists))
        return
    ordered = sorted(lists, key=lambda d: d["ts"])
    i = 0
    while i < len(ordered):
        n = rng.randint(1, 8)
        chunk, i = ordered[i : i + n], i + n
        if rng.random() < 0.25:
            legacy = [{k: v for k, v in d.items() if k != "list_id"} for d in chunk]
            db.impressions.insert_many(legacy)
        else:
            db.impressions.insert_many(buckets(chunk))


def rating(user, movie, when: dt.datetime) -> dict:
    return {"userId": user, "movieId": movie, "rating": 4.0, "timestamp": int(when.timestamp())}


def test_hit_counting_on_a_scripted_sequence(api: httpx.Client, admin_token: str, db) -> None:
    """Window 7 days (default). Version A: 4 lists to users, 1 anonymous; B: 2 lists."""
    t0, t1 = NOW - 3 * DAY, NOW - 2 * DAY
    db.movies.insert_many(
        [
            {"movieId": m, "title": f"m{m}", "genres": [], "rating_count": 0, "rating_sum": 0.0}
            for m in range(1, 21)
        ]
    )
    store(
        db,
        [
            imp(1, [10, 11, 12], "A", t0),  # 11 rated 1 h later: hit at position 1
            imp(2, [10, 11, 12], "A", t0),  # 10 rated before the impression: no hit
            imp(3, [13, 14, 15], "A", t1),  # 15 rated 8 days later (outside): no hit
            imp(1, [16, 10, 17], "A", t1),  # 10 rated 1 h later + 16 rated 1 day later: hit
            imp(None, [18, 19], "A", t1),  # anonymous: coverage only
            imp(4, [1, 2], "B", t0),  # 1 rated 2 days later: hit at position 0
            imp(5, [2, 3], "B", t1),  # 5 rated 3 (another user rated 2): no hit
        ],
    )
    db.ratings.insert_many(
        [
            rating(1, 11, t0 + dt.timedelta(hours=1)),
            rating(2, 10, t0 - dt.timedelta(hours=1)),
            rating(3, 15, t1 + 8 * DAY),  # in the future of the test; outside the window
            rating(1, 10, t1 + dt.timedelta(hours=1)),
            rating(1, 16, t1 + DAY),
            rating(4, 1, t0 + 2 * DAY),
            rating(6, 2, t1 + dt.timedelta(hours=1)),
        ]
    )
    r = api.get("/api/admin/online-metrics", params={"days": 14}, headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window_days"] == 7 and body["catalogue_size"] == 20
    a, b = body["versions"]
    assert a["version"] == "A" and b["version"] == "B"
    assert (a["lists"], a["hit_lists"], a["users"]) == (4, 2, 3)
    assert a["hit_rate"] == 0.5
    assert a["ci95"] == pytest.approx(list(wilson_interval(2, 4)))
    assert a["movies_shown"] == 10 and a["coverage"] == 0.5  # 10..19
    day0, day1 = t0.date().isoformat(), t1.date().isoformat()
    assert a["daily"] == [
        {"day": day0, "lists": 2, "hit_lists": 1, "hit_rate": 0.5},
        {"day": day1, "lists": 2, "hit_lists": 1, "hit_rate": 0.5},
    ]
    # position 0: 10 (user 1: rated 1 day 1 h later, inside the window), 10, 13, 16 -> 2 hits;
    # position 1: 11 (user 1), 11, 14, 10 (user 1) -> 2 hits; position 2: none
    assert a["by_position"] == [
        {"position": 0, "shown": 4, "hits": 2, "hit_rate": 0.5},
        {"position": 1, "shown": 4, "hits": 2, "hit_rate": 0.5},
        {"position": 2, "shown": 4, "hits": 0, "hit_rate": 0.0},
    ]
    assert (b["lists"], b["hit_lists"], b["users"], b["movies_shown"]) == (2, 1, 2, 3)
    assert b["coverage"] == 3 / 20
    assert b["by_position"] == [
        {"position": 0, "shown": 2, "hits": 1, "hit_rate": 0.5},
        {"position": 1, "shown": 2, "hits": 0, "hit_rate": 0.0},
    ]
    # A shorter look-back leaves out the older day's lists.
    short = api.get("/api/admin/online-metrics", params={"days": 3}, headers=bearer(admin_token))
    sa = short.json()["versions"][0]
    assert (sa["lists"], sa["hit_lists"]) == (2, 1)
    assert_error(
        api.get("/api/admin/online-metrics", params={"days": 0}, headers=bearer(admin_token)), 422
    )
    assert_error(api.get("/api/admin/online-metrics"), 401)


def test_aggregation_equals_the_python_definition(
    api: httpx.Client,
    admin_token: str,
    db,
    admin_catalog: CatalogServer,
    movielens_dir: Path,
    output_dir: Path,
    tmp_path: Path,
) -> None:
    """The MongoDB aggregation (online_metrics.pipeline, run here on the embedded server) and
    the served metrics (ONLINE_METRICS_ENGINE=auto: counted in the catalog on SecantusDB) equal
    `online_metrics.summarise` over the same documents on a seeded random sequence (4 versions,
    2 arms, anonymous and empty lists, millisecond times, ratings before, inside, on both edges
    of and after the 7-day window), per version and per arm."""
    rng = random.Random(17)
    db.movies.insert_many(
        [
            {"movieId": m, "title": f"m{m}", "genres": [], "rating_count": 0, "rating_sum": 0.0}
            for m in range(1, 61)
        ]
    )
    since = NOW - 14 * DAY
    imps, rated = [], {}
    for _ in range(400):
        ago = rng.randrange(3600, 20 * 86400)
        if abs(ago - 14 * 86400) < 7200:  # clear of the look-back edge (the API's own clock)
            continue
        ts = NOW - dt.timedelta(seconds=ago, milliseconds=500)
        user = rng.choice([None, *range(1, 41)])
        movies = rng.sample(range(1, 61), rng.choice([0, 3, 5, 10]))
        extra = {"experiment_id": "e1", "arm": rng.choice(["control", "candidate"])}
        imps.append(
            imp(user, movies, rng.choice("ABCD"), ts, **(extra if rng.random() < 0.5 else {}))
        )
        if user is None:
            continue
        for m in movies:
            if rng.random() < 0.3 and (user, m) not in rated:
                t = ts.timestamp()
                rated[(user, m)] = rng.choice(
                    [int(t) - 1, int(t), int(t) + 60, int(t + 7 * 86400), int(t + 7 * 86400) + 1]
                )
    store(db, imps, rng)
    # A write that spans the look-back start: its bucket's ts is inside, its first list is not.
    hour = dt.timedelta(hours=1)
    edge = [imp(1, [1, 2], "A", since - 3 * hour), imp(2, [3, 4], "B", since + 3 * hour)]
    db.impressions.insert_many(buckets(edge))
    imps += edge
    db.ratings.insert_many(
        [{"userId": u, "movieId": m, "rating": 4.0, "timestamp": t} for (u, m), t in rated.items()]
    )
    assert db.impressions.count_documents({"lists": {"$exists": True}}) > 10  # buckets
    assert db.impressions.count_documents({"lists": {"$exists": False}}) > 10  # one-list docs
    in_range = [i for i in imps if i["ts"] >= since]
    ratings = list(db.ratings.find())
    expected = online_metrics.summarise(in_range, ratings, window_days=7, catalogue_size=60)
    assert sum(v["hit_lists"] for v in expected["versions"]) > 20  # hits of every kind occur
    r = api.get("/api/admin/online-metrics", params={"days": 14}, headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["versions"] == expected["versions"]
    doc = next(db.ratings.aggregate(online_metrics.pipeline(since, 7)))
    assert online_metrics.from_pipeline(doc, window_days=7, catalogue_size=60) == expected
    # A catalog told to aggregate in the database serves the same numbers.
    in_db = start_catalog(
        admin_catalog.mongo_url, admin_catalog.db, tmp_path, movielens_dir, output_dir,
        ONLINE_METRICS_ENGINE="database",
    )  # fmt: skip
    try:
        with in_db.client() as c:
            token = login(c, "admin", ADMIN_ONLY_PASSWORD)
            r = c.get("/api/admin/online-metrics", params={"days": 14}, headers=bearer(token))
            assert r.status_code == 200, r.text
            assert r.json()["versions"] == expected["versions"]
    finally:
        in_db.stop()
    # Per arm of an experiment (the experiment page's numbers), straight on the server.
    doc = next(db.ratings.aggregate(online_metrics.pipeline(since, 7, "e1")))
    got = online_metrics.from_pipeline(doc, window_days=7, catalogue_size=60, experiment_id="e1")
    want = online_metrics.summarise(
        [i for i in in_range if i.get("experiment_id") == "e1"],
        ratings,
        window_days=7,
        catalogue_size=60,
        experiment_id="e1",
    )
    assert got == want and want["arms"]["control"]["lists"] > 10


def test_experiment_start_metrics_promote(
    api: httpx.Client, admin_token: str, admin_catalog: CatalogServer, db
) -> None:
    model_dir = admin_catalog.model_dir
    names = {v["version"] for v in artifacts.list_versions(model_dir)}
    v1 = (
        "v0001"
        if "v0001" in names
        else artifacts.save_model(model_dir, _arrays(1), _manifest(0.9), version="v0001")
    )
    v2 = (
        "v0002"
        if "v0002" in names
        else artifacts.save_model(model_dir, _arrays(2), _manifest(0.85), version="v0002")
    )
    artifacts.activate(model_dir, v1)
    h = bearer(admin_token)
    assert_error(api.post("/api/admin/experiments", json={"candidate": v1}, headers=h), 422)
    assert_error(api.post("/api/admin/experiments", json={"candidate": "v9"}, headers=h), 404)
    assert_error(
        api.post("/api/admin/experiments", json={"candidate": v2, "split": 1.5}, headers=h), 422
    )
    r = api.post("/api/admin/experiments", json={"candidate": v2, "split": 0.3}, headers=h)
    assert r.status_code == 201, r.text
    exp = r.json()
    assert (exp["control"], exp["candidate"], exp["split"], exp["status"]) == (
        v1,
        v2,
        0.3,
        "running",
    )
    second = api.post("/api/admin/experiments", json={"candidate": v2}, headers=h)
    assert assert_error(second, 409, "experiment_running")["details"]["running"]["id"] == exp["id"]
    ts = dt.datetime.fromisoformat(exp["started_at"]) + dt.timedelta(seconds=30)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    later = ts + dt.timedelta(hours=1)
    e = {"experiment_id": exp["id"]}
    store(
        db,
        [
            imp(1, [1, 2], v1, ts, arm="control", **e),
            imp(2, [1, 2], v1, ts, arm="control", **e),
            imp(2, [3, 4], v1, ts, arm="control", **e),
            imp(3, [1, 2], v2, ts, arm="candidate", **e),
            imp(1, [5, 6], v1, ts),  # outside the experiment
        ],
    )
    db.ratings.insert_many([rating(1, 2, later), rating(3, 1, later), rating(1, 6, later)])
    got = api.get(f"/api/admin/experiments/{exp['id']}", headers=h).json()
    arms = got["metrics"]["arms"]
    assert arms["control"]["lists"] == 3 and arms["control"]["hit_lists"] == 1
    assert arms["control"]["users"] == 2 and arms["control"]["versions"] == [v1]
    assert arms["control"]["ci95"] == pytest.approx(list(wilson_interval(1, 3)))
    assert arms["candidate"] == {
        "lists": 1,
        "hit_lists": 1,
        "hit_rate": 1.0,
        "ci95": pytest.approx(list(wilson_interval(1, 1))),
        "users": 1,
        "versions": [v2],
    }
    listed = api.get("/api/admin/experiments", headers=h).json()
    assert listed["running"]["id"] == exp["id"]
    r = api.post(f"/api/admin/experiments/{exp['id']}/end", json={"winner": "candidate"}, headers=h)
    assert r.status_code == 200, r.text
    ended = r.json()
    assert ended["status"] == "ended" and ended["winner"] == "candidate"
    assert ended["previous_current"] == v1
    assert artifacts.current_version(model_dir) == v2  # promoted through verified activation
    assert api.get("/api/admin/experiments", headers=h).json()["running"] is None
    again = api.post(f"/api/admin/experiments/{exp['id']}/end", json={}, headers=h)
    assert_error(again, 404, "experiment_not_running")
    # the slot is free: a new experiment (back to v1 as candidate) can start
    r = api.post("/api/admin/experiments", json={"candidate": v1}, headers=h)
    assert r.status_code == 201, r.text
    stop = api.post(f"/api/admin/experiments/{r.json()['id']}/end", json={}, headers=h)
    assert stop.json()["winner"] is None and artifacts.current_version(model_dir) == v2
