"""`docker compose up`, proven: build every image and boot the Compose stack, then use it.

The images are built through docker-compose.yml's own `build:` sections and the stack is the
users' compose file; tests/compose/docker-compose.test.yml substitutes only what the CI
machines cannot get (base images, the mongo image, the MovieLens download - see that file).
podman runs it (tests/compose/stack.py); the test talks to the stack only through the one
published port, as a user would, plus `podman exec`/inspect to check every replica.

Run with `make test-compose` (root, podman, docker-compose, debootstrap; .ci/run installs them).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid

import httpx
import pytest

from tests.compose.stack import TIMINGS, Stack, StackError

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(5400)]

SERVICES = {
    "mongo",
    "spark-master",
    "spark-worker",
    "catalog",
    "recommender",
    "trainer",
    "nginx",
}
RETRAIN_TIMEOUT = 900.0


def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.env_extra['MOVIEREC_HTTP_PORT']}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(stack: Stack, service: str, r: httpx.Response, status: int = 200) -> dict:
    if r.status_code != status:
        raise stack.fail(
            service, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:500]}"
        )
    return r.json() if r.content else {}


def admin_token(stack: Stack) -> str:
    r = httpx.post(
        base(stack) + "/api/auth/login",
        json={"username": "admin", "password": stack.env_extra["ADMIN_PASSWORD"]},
        timeout=30,
    )
    return ok(stack, "catalog", r)["access_token"]


def served_versions(stack: Stack) -> dict[str, str | None]:
    """The model version each running recommender replica serves, asked inside its container."""
    code = (
        "import json, urllib.request;"
        "print(json.load(urllib.request.urlopen('http://127.0.0.1:8002/api/recs/model',"
        " timeout=5))['version'])"
    )
    return {
        c.name: stack.exec_python(c.id, code).strip() or None for c in stack.running("recommender")
    }


def wait_served(stack: Stack, version: str, replicas: int, timeout: float = 120) -> float:
    t0 = time.monotonic()
    seen: dict[str, str | None] = {}
    while time.monotonic() - t0 < timeout:
        seen = served_versions(stack)
        if len(seen) == replicas and set(seen.values()) == {version}:
            return time.monotonic() - t0
        time.sleep(1.0)
    raise stack.fail("recommender", f"replicas serve {seen}, expected {version} on {replicas}")


def test_every_service_is_up_and_healthy(stack: Stack) -> None:
    cs = stack.containers()
    by_service = {c.service for c in cs}
    assert by_service >= SERVICES, f"missing services: {SERVICES - by_service}"
    for c in cs:
        if c.service in ("data", "mongo-init", "initial-model"):
            assert (c.state, c.exit_code) == ("exited", 0), c
        else:
            assert c.state == "running" and c.health == "healthy", c
    home = httpx.get(base(stack) + "/", timeout=10)
    assert home.status_code == 200 and "<html" in home.text.lower()
    health = httpx.get(base(stack) + "/healthz", timeout=10)
    assert health.status_code == 200


def test_user_signs_up_rates_five_and_gets_fold_in_and_similar(stack: Stack) -> None:
    url = base(stack)
    username = f"compose_{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        url + "/api/auth/register",
        json={"username": username, "password": secrets.token_urlsafe(18)},
        timeout=30,
    )
    token = ok(stack, "catalog", r, 201)["access_token"]
    popular = ok(stack, "catalog", httpx.get(url + "/api/movies/popular", timeout=30))
    items = popular["items"] if isinstance(popular, dict) else popular
    movie_ids = [int(m["movieId"]) for m in items[:5]]
    assert len(movie_ids) == 5, popular
    for movie_id, stars in zip(movie_ids, (5.0, 4.5, 4.0, 3.5, 5.0), strict=True):
        r = httpx.put(
            f"{url}/api/movies/{movie_id}/rating",
            json={"rating": stars},
            headers=auth(token),
            timeout=30,
        )
        ok(stack, "catalog", r)
    recs = ok(
        stack, "recommender", httpx.get(url + "/api/recs/me", headers=auth(token), timeout=30)
    )
    assert recs["strategy"] == "fold-in", recs
    rec_ids = [it["movieId"] for it in recs["items"]]
    assert rec_ids and not set(rec_ids) & set(movie_ids), recs
    similar = ok(
        stack, "recommender", httpx.get(f"{url}/api/recs/similar/{movie_ids[0]}", timeout=30)
    )
    sim_items = similar["items"] if isinstance(similar, dict) else similar
    assert sim_items and all(int(s["movieId"]) != movie_ids[0] for s in sim_items), similar


def test_scale_to_two_spark_workers_and_two_recommenders(stack: Stack) -> None:
    took = stack.up("--scale", "spark-worker=2", "--scale", "recommender=2", timeout=600)
    TIMINGS["scale_up_s"] = took
    for service in ("spark-worker", "recommender"):
        running = stack.running(service)
        assert len(running) == 2, (service, running)
        assert all(c.health == "healthy" for c in running), running
    # The master sees both workers alive.
    ui = f"http://127.0.0.1:{stack.env_extra['SPARK_UI_PORT']}/json/"
    deadline = time.monotonic() + 60
    alive: list = []
    while time.monotonic() < deadline:
        workers = httpx.get(ui, timeout=10).json().get("workers", [])
        alive = [w for w in workers if w.get("state") == "ALIVE"]
        if len(alive) == 2:
            break
        time.sleep(1)
    if len(alive) != 2:
        raise stack.fail("spark-master", f"{len(alive)} ALIVE workers registered, expected 2")


def test_admin_retrain_runs_on_the_cluster_is_served_everywhere_and_rolls_back(
    stack: Stack,
) -> None:
    url = base(stack)
    headers = auth(admin_token(stack))
    models = ok(stack, "catalog", httpx.get(url + "/api/admin/models", headers=headers, timeout=30))
    initial = models["current"]
    assert initial, models
    replicas = len(stack.running("recommender"))
    wait_served(stack, initial, replicas)

    t0 = time.monotonic()
    r = httpx.post(url + "/api/admin/retrain", json={"iterations": 5}, headers=headers, timeout=30)
    job = ok(stack, "catalog", r, 202)
    deadline = t0 + RETRAIN_TIMEOUT
    while time.monotonic() < deadline:
        job = ok(
            stack,
            "catalog",
            httpx.get(f"{url}/api/admin/jobs/{job['id']}", headers=headers, timeout=30),
        )
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(2)
    if job["status"] != "succeeded":
        raise stack.fail("trainer", f"retrain ended {job['status']}: {json.dumps(job)[:2000]}")
    new = job["model_version"]
    assert new and new != initial, job
    wait_served(stack, new, replicas)
    TIMINGS["retrain_post_to_served_s"] = time.monotonic() - t0

    # The executors ran in the spark-worker containers (their work dirs hold the application),
    # so they reached the trainer's driver across the compose network.
    for c in stack.running("spark-worker"):
        apps = podman_ls(stack, c.id, "/tmp/spark/work")
        if not any(a.startswith("app-") for a in apps):
            raise stack.fail("spark-worker", f"{c.name} ran no executor (work dir: {apps})")

    # Rollback through the admin API; every replica serves the initial version again.
    r = httpx.post(f"{url}/api/admin/models/{initial}/activate", headers=headers, timeout=30)
    assert ok(stack, "catalog", r)["version"] == initial
    wait_served(stack, initial, replicas)


def podman_ls(stack: Stack, container: str, path: str) -> list[str]:
    code = f"import os; print('\\n'.join(sorted(os.listdir({path!r}))))"
    return stack.exec_python(container, code).split()


def test_down_v_leaves_nothing_behind(stack: Stack) -> None:
    r = stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300)
    assert r.returncode == 0
    left = stack.leftovers()
    if left:
        raise StackError(f"docker-compose down -v left {left} behind")
    print(f"\ncompose timings: {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")
