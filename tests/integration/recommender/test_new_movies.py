"""A movie added through the catalog's admin API, before and after a retrain, with a real
catalog process, a real recommender process and a real SecantusDB: it is searchable at once,
reaches a user whose ratings match its genres through its content profile (`"new": true`),
and after a retrain that saw ratings of it is served from the model's own factors. Its tags
count as well as its genres: an action comedy tagged "superhero" and "comic book" has more
superhero movies among its 100 most similar movies than its untagged twin."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts
from movierec_common.loader import read_tags_file
from movierec_common.movie_tags import movie_tags
from movierec_common.movielens import load_movies, load_ratings
from pymongo import MongoClient

from tests.integration.catalog.support import API_KEY as CATALOG_KEY
from tests.integration.catalog.support import start_catalog
from tests.integration.recommender.support import (
    SeededDb,
    StartServer,
    TrainedModel,
    install_version,
)
from tests.support import ROOT, VENV_BIN

pytestmark = pytest.mark.timeout(900)
GENRES = ["Animation", "Children", "Comedy"]


def seed_movies_only(url: str, name: str, data_dir: Path) -> None:
    """The catalogue without ratings: trained users need no rating reads (RATED_LOOKUP=recent).
    Movies carry their tags as mongo-init stores them (movierec_common.movie_tags)."""
    tags = movie_tags(read_tags_file(data_dir / "tags.csv"))
    client = MongoClient(url)
    try:
        db = client[name]
        db.movies.create_index("movieId", unique=True)
        db.movies.insert_many(
            [
                {
                    "movieId": m.movieId,
                    "title": m.title,
                    "year": m.year,
                    "genres": m.genres,
                    "tags": tags.get(m.movieId, []),
                    "rating_count": 0,
                    "rating_sum": 0.0,
                    "popularity_score": 3.5,
                }
                for m in load_movies(data_dir / "movies.csv")
            ]
        )
        db.meta.insert_one({"_id": "ratings_stats", "global_mean": 3.5})
    finally:
        client.close()


def animation_fans(data_dir: Path, trained: TrainedModel, n: int) -> list[int]:
    """Trained users with the most ratings >= 4 of movies in all of GENRES."""
    movies = {
        m.movieId for m in load_movies(data_dir / "movies.csv") if set(GENRES) <= set(m.genres)
    }
    rt = load_ratings(data_dir / "ratings.csv")
    liked = np.isin(rt.movie_ids, list(movies)) & (rt.ratings >= 4)
    users, counts = np.unique(rt.user_ids[liked], return_counts=True)
    return [int(u) for u in users[np.argsort(-counts, kind="stable")][:n]]


def test_new_movie_served_before_and_after_a_retrain(
    mongo_url: str,
    movielens_dir: Path,
    trained: TrainedModel,
    tmp_path: Path,
    output_dir: Path,
    start_recs_server: StartServer,
) -> None:
    db = SeededDb(mongo_url, f"newmov_{uuid.uuid4().hex[:8]}")
    seed_movies_only(db.url, db.name, movielens_dir)
    model_dir = tmp_path / "models"
    install_version(trained.root, trained.version, model_dir)
    catalog = start_catalog(db.url, db.name, model_dir, movielens_dir, output_dir)
    recs = start_recs_server(db, model_dir, MOVIES_REFRESH_SECONDS="1")
    client = MongoClient(db.url)
    try:
        with catalog.client() as cat:
            key = {"X-API-Key": CATALOG_KEY}
            bad = cat.post(
                "/api/admin/movies", json={"title": "X", "genres": ["Nope"]}, headers=key
            )
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_genre"
            assert (
                cat.post("/api/admin/movies", json={"title": "X", "genres": GENRES}).status_code
                == 401
            )
            r = cat.post(
                "/api/admin/movies",
                json={
                    "title": "Zorbulon the Friendly Robot",
                    "year": 2026,
                    "genres": GENRES,
                    "imdbId": "0099999",
                },
                headers=key,
            )
            assert r.status_code == 201, r.text
            movie = r.json()
            new_id = movie["movieId"]
            assert new_id > 193609 and movie["new"] is True  # above every MovieLens id
            # Searchable and browsable in this process at once.
            found = cat.get("/api/movies", params={"q": "zorbulon"}).json()
            assert [m["movieId"] for m in found["items"]] == [new_id] and found["items"][0]["new"]
            detail = cat.get(f"/api/movies/{new_id}")
            assert detail.status_code == 200 and detail.json()["new"] is True
            # A MovieLens movie the active model has factors for is not new.
            known = cat.get("/api/movies/1")
            assert known.status_code == 200 and known.json()["new"] is False, known.text
        # The recommender picks it up at its next movie refresh (1 s here).
        fans = animation_fans(movielens_dir, trained, 5)
        deadline = time.monotonic() + 30
        served: dict[int, dict] = {}
        while time.monotonic() < deadline:
            served = {
                u: recs.client.get(
                    f"/api/recs/users/{u}", params={"k": 10}, headers=recs.service
                ).json()
                for u in fans
            }
            if any(new_id in [it["movieId"] for it in b["items"]] for b in served.values()):
                break
            time.sleep(1)
        hits = [u for u, b in served.items() if new_id in [it["movieId"] for it in b["items"]]]
        assert hits, {u: [it["movieId"] for it in b["items"]] for u, b in served.items()}
        body = served[hits[0]]
        item = next(it for it in body["items"] if it["movieId"] == new_id)
        assert item["new"] is True and item["title"] == "Zorbulon the Friendly Robot"
        assert item["predicted_rating"] >= 3.5 and len(body["items"]) == 10
        sim = recs.client.get(f"/api/recs/similar/{new_id}", params={"k": 5})
        assert sim.status_code == 200 and sim.json()["new"] is True
        assert all(set(GENRES) & set(it["genres"]) for it in sim.json()["items"])
        # A retrain that saw ratings of it: 30 fans rate it; the trainer merges DB + CSV.
        now = int(time.time())
        client[db.name].ratings.insert_many(
            [
                {"userId": u, "movieId": new_id, "rating": 4.5, "timestamp": now}
                for u in animation_fans(movielens_dir, trained, 30)
                if u not in hits
            ]
        )
        args = [
            str(VENV_BIN / "python"), "-m", "movierec_trainer", "retrain", "--csv-path",
            str(movielens_dir / "ratings.csv"), "--engine", "local", "--holdout", "0",
            "--output", str(tmp_path / "retrained"), "--json",
        ]  # fmt: skip
        env = {**os.environ, "MONGO_URL": db.url, "MONGO_DB": db.name}
        run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-3000:]
        version = json.loads(run.stdout.strip().splitlines()[-1])["version"]
        assert new_id in artifacts.load_model(tmp_path / "retrained", version).item_ids
        install_version(tmp_path / "retrained", version, model_dir)
        deadline = time.monotonic() + 60
        while recs.client.get("/api/recs/model").json()["version"] != version:
            assert time.monotonic() < deadline, "the retrained model was not loaded"
            time.sleep(0.5)
        sim = recs.client.get(f"/api/recs/similar/{new_id}", params={"k": 5}).json()
        assert sim["model_version"] == version and not sim.get("new")  # from the model itself
        pred = recs.client.get(
            "/api/recs/predict", params={"userId": hits[0], "movieId": new_id}, headers=recs.service
        )
        assert pred.status_code == 200 and pred.json()["model_version"] == version
        # The catalog drops the label once the active model has learned the movie: its detail
        # and its lists alike (CURRENT is re-read at most every 2 s).
        with catalog.client() as cat:
            deadline = time.monotonic() + 30
            while cat.get(f"/api/movies/{new_id}").json()["new"]:
                assert time.monotonic() < deadline, "the detail still says new after the retrain"
                time.sleep(0.5)
            found = cat.get("/api/movies", params={"q": "zorbulon"}).json()["items"]
            assert [(m["movieId"], m["new"]) for m in found] == [(new_id, False)]
    finally:
        catalog.stop()
        client.drop_database(db.name)
        client.close()


def test_tags_place_a_new_movie_among_movies_with_those_tags(
    mongo_url: str,
    movielens_dir: Path,
    trained: TrainedModel,
    tmp_path: Path,
    output_dir: Path,
    start_recs_server: StartServer,
) -> None:
    """Two new action comedies, one tagged "superhero" and "comic book": the tagged one's
    100 most similar movies (from its content profile, a similarity-weighted mean over hundreds
    of neighbours, so tags tilt it rather than decide it) hold more superhero movies than its
    twin's (4 vs 0 when written)."""
    db = SeededDb(mongo_url, f"newtag_{uuid.uuid4().hex[:8]}")
    seed_movies_only(db.url, db.name, movielens_dir)
    hero = {m for m, t in movie_tags(read_tags_file(movielens_dir / "tags.csv")).items()
            if "superhero" in t}  # fmt: skip
    model_dir = tmp_path / "models"
    install_version(trained.root, trained.version, model_dir)
    catalog = start_catalog(db.url, db.name, model_dir, movielens_dir, output_dir)
    recs = start_recs_server(db, model_dir, MOVIES_REFRESH_SECONDS="1")
    client = MongoClient(db.url)
    try:
        ids = {}
        with catalog.client() as cat:
            twins = (("Capes and Pratfalls", ["Superhero", "comic book"]), ("Pratfalls", []))
            for name, tags in twins:
                body = {"title": name, "year": 2026, "genres": ["Action", "Comedy"], "tags": tags}
                r = cat.post(
                    "/api/admin/movies",
                    json=body,
                    headers={"X-API-Key": CATALOG_KEY},
                )
                assert r.status_code == 201, r.text
                ids[name] = r.json()["movieId"]
        lists: dict[str, list[int]] = {}
        deadline = time.monotonic() + 30
        while len(lists) < 2:
            assert time.monotonic() < deadline, "the recommender did not profile the new movies"
            for name, mid in ids.items():
                r = recs.client.get(f"/api/recs/similar/{mid}", params={"k": 100})
                if r.status_code == 200 and r.json().get("new"):
                    lists[name] = [it["movieId"] for it in r.json()["items"]]
            time.sleep(0.5)
        tagged = len(set(lists["Capes and Pratfalls"]) & hero)
        untagged = len(set(lists["Pratfalls"]) & hero)
        assert tagged >= 3 and tagged > untagged, (tagged, untagged, lists)
    finally:
        catalog.stop()
        client.drop_database(db.name)
        client.close()


def test_a_just_added_movie_has_similar_movies_before_the_periodic_refresh(
    mongo_url: str,
    movielens_dir: Path,
    trained: TrainedModel,
    tmp_path: Path,
    output_dir: Path,
    start_recs_server: StartServer,
) -> None:
    """With the periodic movie refresh an hour away, the movie page of a movie added a moment
    ago still gets its similar movies: a request about a movie the recommender's snapshot
    lacks re-reads the movies (rate-limited, movies.ON_DEMAND_SECONDS). An id that exists
    nowhere stays a 404 `unknown_movie`, asked twice in a row."""
    db = SeededDb(mongo_url, f"newnow_{uuid.uuid4().hex[:8]}")
    seed_movies_only(db.url, db.name, movielens_dir)
    model_dir = tmp_path / "models"
    install_version(trained.root, trained.version, model_dir)
    catalog = start_catalog(db.url, db.name, model_dir, movielens_dir, output_dir)
    recs = start_recs_server(db, model_dir, MOVIES_REFRESH_SECONDS="3600")
    client = MongoClient(db.url)
    try:
        for _ in range(2):
            r = recs.client.get("/api/recs/similar/987654321")
            assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_movie", r.text
        with catalog.client() as cat:
            body = {"title": "Pixel Pals", "year": 2026, "genres": GENRES}
            r = cat.post("/api/admin/movies", json=body, headers={"X-API-Key": CATALOG_KEY})
            assert r.status_code == 201, r.text
            new_id = r.json()["movieId"]
        # Within the on-demand rate limit of the 404s above at most: no periodic refresh.
        deadline = time.monotonic() + 10
        while True:
            sim = recs.client.get(f"/api/recs/similar/{new_id}", params={"k": 5})
            if sim.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sim.status_code == 200, sim.text
        assert sim.json()["new"] is True and len(sim.json()["items"]) == 5
        assert all(set(GENRES) & set(it["genres"]) for it in sim.json()["items"])
    finally:
        catalog.stop()
        client.drop_database(db.name)
        client.close()
