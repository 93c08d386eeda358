"""Shared check: every operation of an API refuses a query parameter it does not declare."""

from __future__ import annotations

import re

import httpx

SAMPLE_PATH_VALUES = {"movie_id": "1", "user_id": "1", "job_id": "0" * 24, "version": "v1"}


def operations(schema: dict) -> list[tuple[str, str, list[str]]]:
    """(METHOD, concrete path, declared query names) for every operation in an OpenAPI schema."""
    out = []
    for path, item in schema["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PATH_VALUES.get(m.group(1), "1"), path)
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            out.append((method.upper(), concrete, names))
    return out


def assert_unknown_params_refused(client: httpx.Client) -> int:
    """Sends `?no_such_param=1` to every operation; each must answer 422 unknown_parameter
    naming the operation's real parameters. Returns the number of operations checked."""
    schema = client.get("/openapi.json").json()
    ops = operations(schema)
    assert ops
    for method, path, names in ops:
        r = client.request(method, path, params={"no_such_param": "1"})
        assert r.status_code == 422, (method, path, r.status_code, r.text[:300])
        err = r.json()["error"]
        assert err["code"] == "unknown_parameter", (method, path, err)
        assert err["details"]["unknown"] == ["no_such_param"], (path, err)
        assert sorted(err["details"]["allowed"]) == sorted(names), (path, err)
    return len(ops)


def assert_repeated_params_refused(client: httpx.Client) -> int:
    """Sends each one-value query parameter of every operation twice (`?k=1&k=1`); each must
    answer 422 repeated_parameter naming it, never keep one of the values silently. Array
    parameters (OpenAPI type "array") take repeats. Returns the number of requests checked."""
    schema = client.get("/openapi.json").json()
    checked = 0
    for path, item in schema["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PATH_VALUES.get(m.group(1), "1"), path)
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            for p in op.get("parameters", []):
                if p["in"] != "query" or _is_array(p.get("schema", {})):
                    continue
                r = client.request(
                    method.upper(), concrete, params=[(p["name"], "1"), (p["name"], "2")]
                )
                assert r.status_code == 422, (method, path, p["name"], r.status_code, r.text)
                err = r.json()["error"]
                assert err["code"] == "repeated_parameter", (method, path, err)
                assert err["details"][0]["loc"] == ["query", p["name"]], err
                checked += 1
    return checked


def _is_array(schema: dict) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_is_array(s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))
