"""Movie statistics converge to an exact recount after the catalog dies between a rating write
and its statistics update (issue 19 B), with no operator and no in-memory state surviving.

The crash is placed with SecantusDB's own fail points (`configureFailPoint failCommand`, the
server is started with --enable-test-commands by the hardening fixture), scoped to one catalog
process by its connection's appName, so the product carries no test hook: the rating's write
command is held for 3 s; while it is held the fail point is switched to the next `update` (the
statistics update), which is held for 15 s and then refused. As soon as the rating is visible in
the database, the catalog is SIGKILLed: the statistics update never happens and no process
remembers it. A new catalog on the same database must bring the movie's count and sum back to
a recount of `ratings`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from tests.hardening.conftest import HStack, base_env, wait_for
from tests.support import ManagedProcess, free_port, wait_http

pytestmark = pytest.mark.timeout(240)


def start_catalog(st: HStack, app: str, log: Path, **env: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = ManagedProcess(
        [st.procs["catalog"].args[0], "-m", "catalog_api"],
        env={
            **base_env(),
            **st.service_env,
            "MONGO_URL": f"{st.mongo_url}&appName={app}",
            "CATALOG_HOST": "127.0.0.1",
            "CATALOG_PORT": str(port),
            **env,
        },
        log_path=log,
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", timeout=90, proc=proc.proc)
    return proc, url


def fail_point(db_client: MongoClient, mode: object, **data: object) -> None:
    db_client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})


def stats_and_recount(db, movie: int) -> tuple[tuple[int, float], tuple[int, float]]:
    m = db.movies.find_one({"movieId": movie})
    docs = list(db.ratings.find({"movieId": movie}, {"rating": 1}))
    return (m["rating_count"], float(m["rating_sum"])), (
        len(docs),
        float(sum(d["rating"] for d in docs)),
    )


@pytest.mark.parametrize("change", ["put", "delete"])
def test_catalog_killed_between_rating_and_stats_converges_to_a_recount(
    hstack: HStack, change: str, output_dir: Path
) -> None:
    app = f"crash-{change}"
    movie = 2 if change == "put" else 3
    client: MongoClient = MongoClient(hstack.mongo_url, serverSelectionTimeoutMS=10_000)
    db = client[hstack.db_name]
    crashing, url = start_catalog(hstack, app, hstack.logs / f"catalog-{app}.log")
    healer: ManagedProcess | None = None
    try:
        token, _, user_id = hstack.register(f"crash{change}")
        auth = {"Authorization": f"Bearer {token}"}
        if change == "delete":
            r = httpx.put(
                f"{url}/api/movies/{movie}/rating", json={"rating": 4.5}, headers=auth, timeout=30
            )
            assert r.status_code == 200, r.text
        assert stats_and_recount(db, movie)[0] == stats_and_recount(db, movie)[1]

        answers: list[object] = []

        def send() -> None:
            try:
                if change == "put":
                    answers.append(
                        httpx.put(
                            f"{url}/api/movies/{movie}/rating",
                            json={"rating": 2.5},
                            headers=auth,
                            timeout=60,
                        ).status_code
                    )
                else:
                    answers.append(
                        httpx.delete(
                            f"{url}/api/movies/{movie}/rating", headers=auth, timeout=60
                        ).status_code
                    )
            except httpx.HTTPError as exc:
                answers.append(exc)

        write_cmd = "insert" if change == "put" else "delete"
        common = {"appName": app, "blockConnection": True}
        fail_point(client, {"times": 1}, failCommands=[write_cmd], blockTimeMS=3000, **common)
        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(1.0)  # the rating write is now held by the server
        fail_point(
            client,
            {"times": 1},
            failCommands=["update"],
            blockTimeMS=15000,
            errorCode=91,
            **common,
        )

        def rating_written() -> bool:
            doc = db.ratings.find_one({"userId": user_id, "movieId": movie})
            return doc is not None if change == "put" else doc is None

        wait_for(rating_written, 15, "the rating write to land")
        time.sleep(0.5)  # the catalog is now waiting on its statistics update
        crashing.kill()
        killed = time.monotonic()
        fail_point(client, "off")
        sender.join(30)
        assert answers and not (isinstance(answers[0], int) and answers[0] < 300), answers
        stored, recount = stats_and_recount(db, movie)
        assert stored != recount, "the fault was not injected: the stats were updated"

        healer, _ = start_catalog(
            hstack,
            f"heal-{change}",
            hstack.logs / f"catalog-heal-{change}.log",
            STATS_PENDING_STALE_SECONDS="3",
            STATS_RECONCILE_SECONDS="1",
        )

        def converged() -> bool:
            stored, recount = stats_and_recount(db, movie)
            return stored[0] == recount[0] and stored[1] == pytest.approx(recount[1])

        wait_for(converged, 60, f"movie {movie}'s stats to equal a recount")
        recovered_s = round(time.monotonic() - killed, 1)
        m = db.movies.find_one({"movieId": movie})
        assert not m.get("stats_pending") and "stats_repair" not in m, m
        assert m["avg_rating"] == pytest.approx(m["rating_sum"] / m["rating_count"])
        # Writes on the movie go on normally afterwards, exactly counted.
        r = httpx.put(
            f"{hstack.catalog_url}/api/movies/{movie}/rating",
            json={"rating": 1.0},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        stored, recount = stats_and_recount(db, movie)
        assert stored[0] == recount[0] and stored[1] == pytest.approx(recount[1])
        out = output_dir / "hardening"
        out.mkdir(exist_ok=True)
        (out / f"stats-recovery-{change}.json").write_text(
            json.dumps({"change": change, "kill_to_exact_s": recovered_s})
        )
    finally:
        fail_point(client, "off")
        crashing.stop()
        if healer is not None:
            healer.stop()
        client.close()
