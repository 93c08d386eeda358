"""Bad input gets a 4xx with the JSON error shape, never a 500."""

from __future__ import annotations

import pytest

from tests.integration.recommender.support import RecsServer

pytestmark = pytest.mark.timeout(300)

BAD_GETS = [
    ("/api/recs/users/1?k=0", 422),
    ("/api/recs/users/1?k=101", 422),
    ("/api/recs/users/1?k=10000", 422),
    ("/api/recs/users/1?k=abc", 422),
    ("/api/recs/users/1?k=1.5", 422),
    ("/api/recs/users/abc", 422),
    ("/api/recs/users/-1", 422),
    ("/api/recs/users/1.5", 422),
    ("/api/recs/users/99999999999999999999999", 422),
    ("/api/recs/users/1?strategy=random", 422),
    ("/api/recs/users/1?genre=" + "x" * 65, 422),
    ("/api/recs/users/1?genre=NotAGenre", 422),
    ("/api/recs/users/1?exclude=abc", 422),
    ("/api/recs/users/1?exclude=1,-2", 422),
    ("/api/recs/users/1?exclude=" + ",".join(str(i) for i in range(600)), 422),
    ("/api/recs/predict?userId=1", 422),
    ("/api/recs/predict?userId=1&movieId=abc", 422),
    ("/api/recs/predict?userId=x&movieId=1", 422),
    ("/api/recs/predict?userId=1&movieId=999999999", 404),
    ("/api/recs/similar/abc", 422),
    ("/api/recs/similar/1?k=0", 422),
    ("/api/recs/similar/1?k=1000", 422),
    ("/api/recs/similar/999999999", 404),
    ("/api/recs/similar/1?genre=NotAGenre", 422),
    ("/api/recs/similar/1?genre=" + "x" * 65, 422),
    ("/api/recs/nope", 404),
    # Ids are plain ASCII integers everywhere (issue 18, fault 4).
    ("/api/recs/users/620.0", 422),
    ("/api/recs/users/%C2%B2", 422),
    ("/api/recs/users/1%0A", 422),
    ("/api/recs/users/+1", 422),
    ("/api/recs/users/1?exclude=%C2%B2", 422),
    ("/api/recs/users/1?exclude=1.0", 422),
    ("/api/recs/predict?userId=true&movieId=1", 422),
    ("/api/recs/predict?userId=1&movieId=1.0", 422),
    ("/api/recs/similar/1.0", 422),
]


@pytest.mark.parametrize(("path", "status"), BAD_GETS)
def test_bad_get_is_a_json_4xx(recs: RecsServer, path: str, status: int) -> None:
    r = recs.client.get(path, headers=recs.service)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] and err["message"]


BAD_BATCHES = [
    b"not json",
    b"{}",
    b'{"userIds": []}',
    b'{"userIds": ["x"]}',
    b'{"userIds": [1], "k": 0}',
    b'{"userIds": [1], "k": 101}',
    b'{"userIds": [1], "strategy": "nope"}',
    b'{"userIds": [1], "unexpected": true}',
    b'{"userIds": [-5]}',
    b'{"userIds": [true]}',
    b'{"userIds": ["1"]}',
    b'{"userIds": [1.0]}',
    b'{"userIds": [1], "genre": "NotAGenre"}',
    b'{"userIds": [' + b",".join(str(i).encode() for i in range(1001)) + b"]}",
]


@pytest.mark.parametrize("body", BAD_BATCHES, ids=lambda b: b[:30].decode())
def test_bad_batch_is_422(recs: RecsServer, body: bytes) -> None:
    r = recs.client.post(
        "/api/recs/batch",
        content=body,
        headers={**recs.service, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] in {"validation_error", "unknown_genre"}


def test_unknown_user_without_ratings_is_not_an_error(recs: RecsServer) -> None:
    r = recs.client.get("/api/recs/users/123456789", headers=recs.service)
    assert r.status_code == 200 and r.json()["strategy"] == "popular"


def test_wrong_method_is_a_json_405(recs: RecsServer) -> None:
    r = recs.client.delete("/api/recs/users/1", headers=recs.service)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_every_operation_refuses_unknown_query_parameters(recs: RecsServer) -> None:
    from tests.support.query_params import assert_unknown_params_refused

    assert assert_unknown_params_refused(recs.client) >= 6
    from tests.support.query_params import assert_repeated_params_refused

    assert assert_repeated_params_refused(recs.client) >= 6
    r = recs.client.get("/api/recs/similar/1", params=[("k", "3"), ("k", "4")])
    assert r.status_code == 422 and r.json()["error"]["code"] == "repeated_parameter", r.text
    # A documented name is honoured: k changes the list length, a misspelt one is refused.
    r = recs.client.get("/api/recs/similar/1", params={"top_k": 3})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_parameter"


def test_docs_are_offline_and_declare_the_security_schemes(recs: RecsServer) -> None:
    from tests.support.api_docs import assert_docs_offline_and_secured

    spec = recs.client.get("/openapi.json").json()
    assert_docs_offline_and_secured(recs.client, spec)
    assert spec["paths"]["/api/recs/me"]["get"]["security"] == [
        {"bearer": []},
        {"cookie": []},
        {"apiKey": []},
    ]
