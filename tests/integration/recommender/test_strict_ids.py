"""Issue 18, fault 4: ids are plain ASCII integers in every recommender route (path, query and
body), and a bad one is a 422 naming it, never a 500 or another user's list. A small server of
its own (the issue's fault data set, a model trained on it), so this runs in seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from tests.integration.recommender.support import (
    RecsServer,
    SeededDb,
    install_version,
    seed_movielens,
    train_and_publish,
)
from tests.support.fault_data import write_fault_dataset

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def small_recs(
    mongo_url: str, tmp_path_factory: pytest.TempPathFactory, start_recs_server
) -> Iterator[RecsServer]:
    data = write_fault_dataset(tmp_path_factory.mktemp("strict-ids") / "ml")
    name = f"ids_{uuid.uuid4().hex[:8]}"
    seed_movielens(mongo_url, name, data)
    trained = train_and_publish(data, tmp_path_factory.mktemp("strict-ids-model"))
    served = tmp_path_factory.mktemp("strict-ids-served")
    install_version(trained.root, trained.version, served)
    yield start_recs_server(SeededDb(mongo_url, name), served)
    client = MongoClient(mongo_url)
    client.drop_database(name)
    client.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "shown"),
    [
        ("GET", "/api/recs/users/1?exclude=%C2%B2", None, "'²'"),
        ("GET", "/api/recs/users/1?exclude=2,%D9%A3", None, "'٣'"),
        ("GET", "/api/recs/users/1?exclude=2.0", None, "'2.0'"),
        ("GET", "/api/recs/users/620.0", None, "'620.0'"),
        ("GET", "/api/recs/users/%C2%B2", None, "'²'"),
        ("GET", "/api/recs/users/1%0A", None, "'1\\n'"),
        ("GET", "/api/recs/users/+1", None, "'+1'"),
        ("GET", "/api/recs/predict?userId=true&movieId=1", None, "'true'"),
        ("GET", "/api/recs/predict?userId=1&movieId=1e0", None, "'1e0'"),
        ("GET", "/api/recs/similar/1.0", None, "'1.0'"),
        ("POST", "/api/recs/batch", {"userIds": [True]}, "True"),
        ("POST", "/api/recs/batch", {"userIds": [1, False]}, "False"),
        ("POST", "/api/recs/batch", {"userIds": ["1"]}, "'1'"),
        ("POST", "/api/recs/batch", {"userIds": [1.0]}, "1.0"),
    ],
)
def test_a_bad_id_is_a_422_naming_it(small_recs: RecsServer, method, path, body, shown) -> None:
    r = small_recs.client.request(method, path, json=body, headers=small_recs.service)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    assert shown in err["message"] + str(err.get("details")), err


def test_good_ids_still_work_and_no_unknown_movie_is_listed(small_recs: RecsServer) -> None:
    c, h = small_recs.client, small_recs.service
    # User 21 rated movies 2..22 of the 22 in the catalogue: movie 1 is all that is left.
    one = c.get("/api/recs/users/21?exclude=2,3&k=50", headers=h)
    assert one.status_code == 200, one.text
    assert one.json()["strategy"] == "personalized"
    assert [i["movieId"] for i in one.json()["items"]] == [1]
    assert one.json()["items"][0]["title"] == "Movie 1"
    batch = c.post("/api/recs/batch", json={"userIds": [1, 2]}, headers=h)
    assert batch.status_code == 200 and [x["userId"] for x in batch.json()["results"]] == [1, 2]
    assert c.get("/api/recs/predict?userId=1&movieId=4", headers=h).status_code == 200
    assert c.get("/api/recs/similar/4", headers=h).status_code == 200
