"""Catalog API throughput and latency under a bounded loopback load.

What runs (all real, nothing mocked):
  1. MongoDB: an embedded SecantusDB daemon on a free port in a temp directory (or --mongo-url),
     loaded with ml-latest-small by `python -m movierec_init` (the real init job; timed).
  2. `python -m catalog_api` (uvicorn, one process) on a free port of 127.0.0.1.
  3. Closed loop: N concurrent clients (default 20), each sending its next request as soon as
     the previous one answered, for a bounded time per scenario (default 10 s, at most 20 s).
     Scenarios: GET /healthz (the reference: HTTP + app overhead, no database),
     GET /api/movies?q=… (title search), GET /api/movies/popular, PUT /api/movies/{id}/rating
     (each client its own account, random movies among the 300 most popular, so writes contend
     on the same movie documents).
  4. After the writes, an audit: every movie's rating_count and rating_sum must equal a recount
     of the `ratings` collection (exact stats under concurrency).

The load generator shares the 2-core machine with the server and the database, so absolute
numbers are a floor; the ratios against /healthz show what the database work costs.

Run: .venv/bin/python bench/bench_catalog.py [--clients 20] [--duration 10]
Writes bench/out/catalog.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

OUT = ROOT / "bench" / "out" / "catalog.md"
DATA_DIR = ROOT / "data" / "ml-latest-small"
MAX_DURATION = 20.0
QUERIES = [
    "toy",
    "star wars",
    "godfather",
    "matrix",
    "lord of the",
    "the",
    "alien",
    "bat",
    "harry potter",
    "love",
    "american",
    "back to the",
    "pulp",
    "termin",
    "jurassic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing on 127.0.0.1:{port}")


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


async def closed_loop(
    name: str,
    base: str,
    clients: int,
    duration: float,
    make_request,
    headers_for=lambda i: {},
) -> Result:
    result = Result(name)
    stop_at = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(i: int) -> None:
        rng = random.Random(i)
        async with httpx.AsyncClient(
            base_url=base, timeout=30.0, limits=limits, headers=headers_for(i)
        ) as c:
            while time.perf_counter() < stop_at:
                method, path, body = make_request(rng)
                t0 = time.perf_counter()
                try:
                    r = await c.request(method, path, json=body)
                    ok = r.status_code < 400
                except httpx.HTTPError:
                    ok = False
                if ok:
                    result.latencies.append(time.perf_counter() - t0)
                else:
                    result.errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    result.seconds = time.perf_counter() - start
    return result


def audit(url: str, db: str) -> tuple[int, int]:
    """(movies checked, movies whose stats differ from a recount)."""
    client = MongoClient(url)
    try:
        d = client[db]
        rows = d.ratings.aggregate(
            [{"$group": {"_id": "$movieId", "n": {"$sum": 1}, "s": {"$sum": "$rating"}}}]
        )
        recount = {int(r["_id"]): (int(r["n"]), float(r["s"])) for r in rows}
        bad = checked = 0
        for m in d.movies.find({}, {"movieId": 1, "rating_count": 1, "rating_sum": 1}):
            checked += 1
            if (m["rating_count"], m["rating_sum"]) != recount.get(m["movieId"], (0, 0.0)):
                bad += 1
        return checked, bad
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (≤ 20)")
    ap.add_argument("--mongo-url", default=None, help="use this server instead of an embedded one")
    args = ap.parse_args()
    duration = min(args.duration, MAX_DURATION)
    clients = max(1, min(args.clients, 100))
    console = Console()
    if not (DATA_DIR / "ratings.csv").exists():
        console.print("[red]data/ml-latest-small is missing: run `make data`[/red]")
        return 1

    work = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    logs = ROOT / "bench" / "out"
    logs.mkdir(parents=True, exist_ok=True)
    mongo: subprocess.Popen | None = None
    catalog: subprocess.Popen | None = None
    try:
        if args.mongo_url:
            url = args.mongo_url
        else:
            mport = free_port()
            mongo = spawn(
                [
                    str(BIN / "secantusd-py"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mport),
                    "--storage-path",
                    str(work / "mongo"),
                    "--standalone",
                    "--log-level",
                    "WARNING",
                ],
                dict(os.environ),
                logs / "catalog-bench-mongo.log",
            )
            wait_port(mport, mongo)
            url = f"mongodb://127.0.0.1:{mport}/?directConnection=true"
        db = f"bench_catalog_{uuid.uuid4().hex[:6]}"
        env = {
            **os.environ,
            "MONGO_URL": url,
            "MONGO_DB": db,
            "DATA_DIR": str(DATA_DIR),
            "ADMIN_PASSWORD": "bench-admin-password",
            "DEMO_ACCOUNTS": "0",
            "LOG_JSON": "false",
        }
        console.print(f"[bold]init[/bold]: python -m movierec_init into {db} …")
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "movierec_init"],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        init_s = time.perf_counter() - t0
        port = free_port()
        catalog = spawn(
            [sys.executable, "-m", "catalog_api"],
            {
                **os.environ,
                "MONGO_URL": url,
                "MONGO_DB": db,
                "CATALOG_HOST": "127.0.0.1",
                "CATALOG_PORT": str(port),
                "JWT_SECRET": "bench-catalog-secret-" + "x" * 32,
                "SIGNUP_MAX_PER_CLIENT": "100000",  # every bench client registers from here
                "LOG_LEVEL": "WARNING",
            },
            logs / "catalog-bench-api.log",
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", catalog)

        with httpx.Client(base_url=base, timeout=30) as c:
            tokens = []
            for _ in range(clients):
                name = f"bench_{uuid.uuid4().hex[:8]}"
                r = c.post(
                    "/api/auth/register", json={"username": name, "password": "bench-pass-1"}
                )
                r.raise_for_status()
                tokens.append(r.json()["access_token"])
            top = c.get("/api/movies", params={"sort": "count", "page_size": 100}).json()["items"]
            top += c.get(
                "/api/movies", params={"sort": "count", "page_size": 100, "page": 2}
            ).json()["items"]
            top += c.get(
                "/api/movies", params={"sort": "count", "page_size": 100, "page": 3}
            ).json()["items"]
        movie_ids = [m["movieId"] for m in top]

        scenarios = [
            ("GET /healthz (reference)", lambda rng: ("GET", "/healthz", None), None),
            (
                "GET /api/movies?q=…",
                lambda rng: ("GET", f"/api/movies?q={rng.choice(QUERIES)}", None),
                None,
            ),
            ("GET /api/movies/popular", lambda rng: ("GET", "/api/movies/popular", None), None),
            (
                "PUT /api/movies/{id}/rating",
                lambda rng: (
                    "PUT",
                    f"/api/movies/{rng.choice(movie_ids)}/rating",
                    {"rating": rng.randint(1, 10) / 2},
                ),
                lambda i: {"Authorization": f"Bearer {tokens[i]}"},
            ),
        ]
        results = []
        for name, make, headers in scenarios:
            console.print(f"[bold]{name}[/bold]: {clients} clients × {duration:.0f} s …")
            res = asyncio.run(
                closed_loop(name, base, clients, duration, make, headers or (lambda i: {}))
            )
            console.print(
                f"  {len(res.latencies)} ok, {res.errors} errors, {res.rps:.1f} req/s, "
                f"p50 {res.pct(50):.1f} ms, p99 {res.pct(99):.1f} ms"
            )
            results.append(res)
        checked, bad = audit(url, db)
    finally:
        stop(catalog)
        stop(mongo)
        shutil.rmtree(work, ignore_errors=True)

    ref = results[0]
    table = Table(title=f"Catalog API, {clients} concurrent clients, {duration:.0f} s each")
    cols = [
        "scenario",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "req/s vs ref",
        "p50 vs ref",
    ]
    for col in cols:
        table.add_column(col, justify="left" if col == "scenario" else "right")
    lines = [
        "# Catalog API benchmark",
        "",
        f"`make bench-catalog` — {clients} concurrent closed-loop clients on 127.0.0.1, "
        f"{duration:.0f} s per scenario, one uvicorn process, embedded SecantusDB, "
        f"ml-latest-small. Reference: `GET /healthz` (no database). "
        f"`python -m movierec_init` took {init_s:.1f} s.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in results:
        row = [
            r.name,
            f"{len(r.latencies)}",
            f"{r.errors}",
            f"{r.rps:.1f}",
            f"{r.pct(50):.1f}",
            f"{r.pct(99):.1f}",
            f"{r.rps / ref.rps:.2f}×" if ref.rps else "–",
            f"{r.pct(50) / ref.pct(50):.1f}×" if ref.latencies else "–",
        ]
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    audit_line = (
        f"Audit after the writes: {checked} movies, {bad} with rating_count/rating_sum "
        "different from a recount of `ratings`."
    )
    lines += ["", audit_line, ""]
    console.print(table)
    console.print(audit_line)
    OUT.write_text("\n".join(lines))
    console.print(f"wrote {OUT.relative_to(ROOT)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
