"""Schemathesis against both APIs on real servers (SecantusDB, a trained model): no 5xx, every
status documented, every body matching its declared schema. A bounded run here (a few examples
per operation); bench/run_all.py runs the long one."""

from __future__ import annotations

import httpx
import pytest
from pymongo import MongoClient

from bench.fuzz_long import run_schemathesis
from tests.hardening.conftest import HStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_admin_token(hstack: HStack) -> str:
    """An admin account of the fuzzer's own. The fuzzer calls every operation, logout and
    password change included, and those end every token of the account they act on (issue 19
    D): fuzzing as the session's admin would leave the later tests' admin token dead."""
    _, password, user_id = hstack.register("fuzzadmin")
    with MongoClient(hstack.mongo_url) as client:
        users = client[hstack.db_name]["users"]
        assert users.update_one({"userId": user_id}, {"$set": {"role": "admin"}}).modified_count
        name = users.find_one({"userId": user_id})["username"]
    return hstack.login(name, password)


@pytest.mark.parametrize("api", ["catalog", "recommender"])
def test_schemathesis_finds_no_server_error_or_schema_violation(
    hstack: HStack, fuzz_admin_token: str, api: str
) -> None:
    url = hstack.catalog_url if api == "catalog" else hstack.recs_url
    result = run_schemathesis(
        url,
        headers={"Authorization": f"Bearer {fuzz_admin_token}"},
        max_examples=MAX_EXAMPLES,
        phases="examples,fuzzing",
        log_path=hstack.logs / f"schemathesis-{api}.txt",
    )
    # The run really exercised the API (a schema that failed to load tests nothing).
    assert result.operations >= (15 if api == "catalog" else 6), result.output[-3000:]
    assert result.cases > result.operations, result.output[-3000:]
    assert result.ok, result.failure_text()
    # The server survived the run.
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
