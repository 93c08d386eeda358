"""Bounded loopback load through nginx: browse, rate and recommend at a fixed rate, then audit.

Open loop: requests are *scheduled* at a fixed rate and latency is measured from the scheduled
start, so a slow server shows up as latency instead of silently lowering the rate. The run
stops by itself after `duration` seconds (at most 60) and never has more than `max_in_flight`
requests open. Only 127.0.0.1 is ever a target.

Afterwards the database is audited against what the clients were told:
  * every acknowledged rating write (2xx) is in MongoDB with the acknowledged value, and every
    acknowledged delete is gone. Writes to the same (user, movie) pair never overlap in time,
    so the last acknowledged write is the expected final state;
  * every movie's rating_count / rating_sum equal a recount of the `ratings` collection.

Used by tests/hardening/test_load.py (30 s) and by bench/run_all.py (longer, into the report).
Run alone: .venv/bin/python bench/load_mix.py --base-url http://127.0.0.1:8080 \
    --mongo-url mongodb://127.0.0.1:27017/?directConnection=true --db movierec --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from pymongo import MongoClient

MAX_DURATION_S = 60.0
# Share of scheduled requests per operation (browse-heavy, like people using the site).
MIX: dict[str, float] = {
    "browse_list": 0.22,
    "browse_search": 0.08,
    "browse_detail": 0.15,
    "browse_popular": 0.05,
    "rate_put": 0.22,
    "rate_delete": 0.04,
    "recs_me": 0.16,
    "recs_similar": 0.08,
}
# Lighter on list/search/popular pages, which sort thousands of movies per request: what a
# shared 2-core box with the embedded MongoDB sustains (see the load table in bench/REPORT.md).
LIGHT_MIX: dict[str, float] = {
    "browse_list": 0.07,
    "browse_search": 0.03,
    "browse_detail": 0.30,
    "browse_popular": 0.02,
    "rate_put": 0.25,
    "rate_delete": 0.05,
    "recs_me": 0.18,
    "recs_similar": 0.10,
}
SEARCH_TERMS = ("star", "love", "the", "man", "war", "toy", "day", "night", "king", "girl")
SORTS = ("popularity", "rating", "count", "title", "year", "year_desc")


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"load_mix only targets loopback addresses, not {host!r}")


@dataclass
class Sample:
    op: str
    status: int  # 0 = transport error
    latency_ms: float


@dataclass
class LoadResult:
    duration_s: float
    target_rate: float
    scheduled: int = 0
    skipped_busy: int = 0  # not sent because max_in_flight was reached: the server fell behind
    samples: list[Sample] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    acknowledged: dict[tuple[int, int], float | None] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if not 200 <= s.status < 300)

    def by_op(self) -> dict[str, dict[str, float]]:
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in self.samples:
            groups[s.op].append(s)
        groups["ALL"] = list(self.samples)
        out = {}
        for op, items in sorted(groups.items()):
            lat = sorted(s.latency_ms for s in items)
            out[op] = {
                "requests": len(items),
                "errors": sum(1 for s in items if not 200 <= s.status < 300),
                "p50_ms": _pct(lat, 50),
                "p95_ms": _pct(lat, 95),
                "p99_ms": _pct(lat, 99),
                "max_ms": lat[-1] if lat else 0.0,
                "mean_ms": statistics.fmean(lat) if lat else 0.0,
            }
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 2),
            "target_rate": self.target_rate,
            "achieved_rate": round(len(self.samples) / self.duration_s, 1)
            if self.duration_s
            else 0.0,
            "scheduled": self.scheduled,
            "completed": len(self.samples),
            "skipped_busy": self.skipped_busy,
            "errors": self.errors,
            "acknowledged_pairs": len(self.acknowledged),
            "by_op": self.by_op(),
            "error_examples": self.error_examples[:10],
        }


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class LoadUser:
    user_id: int
    token: str
    busy_movies: set[int] = field(default_factory=set)


async def _register_users(client: httpx.AsyncClient, n: int) -> list[LoadUser]:
    users = []
    for _ in range(n):
        name = f"load{uuid.uuid4().hex[:12]}"
        r = await client.post(
            "/api/auth/register", json={"username": name, "password": secrets.token_urlsafe(16)}
        )
        r.raise_for_status()
        body = r.json()
        users.append(LoadUser(body["user"]["userId"], body["access_token"]))
    return users


async def _movie_pool(client: httpx.AsyncClient, pages: int = 5) -> list[int]:
    ids: list[int] = []
    for page in range(1, pages + 1):
        r = await client.get(
            "/api/movies", params={"page": page, "page_size": 100, "sort": "count"}
        )
        r.raise_for_status()
        ids += [m["movieId"] for m in r.json()["items"]]
    return ids


async def run_load(
    base_url: str,
    *,
    duration: float = 30.0,
    rate: float = 40.0,
    n_users: int = 12,
    max_in_flight: int = 64,
    seed: int = 7,
    mix: dict[str, float] | None = None,
    progress: bool = False,
) -> LoadResult:
    """Run the mix against `base_url` (nginx) and return every sample and acknowledged write."""
    _check_loopback(base_url)
    duration = min(duration, MAX_DURATION_S)
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    # Generous: a request that times out client-side is still processed by the server, and its
    # outcome would then be unknown to the audit.
    timeout = httpx.Timeout(120.0)
    result = LoadResult(duration_s=duration, target_rate=rate)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        users = await _register_users(client, n_users)
        movies = await _movie_pool(client)
        rated: dict[int, set[int]] = defaultdict(set)  # user -> movies with a live rating
        ops, weights = zip(*(mix or MIX).items(), strict=True)
        in_flight = 0
        tasks: set[asyncio.Task] = set()

        async def one(op: str, scheduled_at: float) -> None:
            nonlocal in_flight
            user = rng.choice(users)
            headers = {"Authorization": f"Bearer {user.token}"}
            pair: tuple[int, int] | None = None
            value: float | None = None
            try:
                if op == "browse_list":
                    params = {"page": rng.randint(1, 20), "sort": rng.choice(SORTS)}
                    r = await client.get("/api/movies", params=params)
                elif op == "browse_search":
                    r = await client.get("/api/movies", params={"q": rng.choice(SEARCH_TERMS)})
                elif op == "browse_detail":
                    r = await client.get(f"/api/movies/{rng.choice(movies)}", headers=headers)
                elif op == "browse_popular":
                    r = await client.get("/api/movies/popular", params={"limit": 20})
                elif op in ("rate_put", "rate_delete"):
                    candidates = (
                        [m for m in rated[user.user_id] if m not in user.busy_movies]
                        if op == "rate_delete"
                        else []
                    )
                    if not candidates:
                        op = "rate_put"
                        movie = rng.choice(movies)
                        while movie in user.busy_movies:  # one write per pair at a time
                            movie = rng.choice(movies)
                    else:
                        movie = rng.choice(candidates)
                    pair = (user.user_id, movie)
                    user.busy_movies.add(movie)
                    if op == "rate_put":
                        value = rng.randint(1, 10) / 2
                        r = await client.put(
                            f"/api/movies/{movie}/rating", json={"rating": value}, headers=headers
                        )
                    else:
                        r = await client.delete(f"/api/movies/{movie}/rating", headers=headers)
                elif op == "recs_me":
                    r = await client.get("/api/recs/me", params={"k": 10}, headers=headers)
                else:
                    r = await client.get(f"/api/recs/similar/{rng.choice(movies[:200])}")
                status = r.status_code
                if not 200 <= status < 300 and len(result.error_examples) < 20:
                    result.error_examples.append(f"{op} {r.request.url} -> {status} {r.text[:200]}")
            except httpx.HTTPError as exc:
                status = 0
                if len(result.error_examples) < 20:
                    result.error_examples.append(f"{op} -> {type(exc).__name__}: {exc}")
            finally:
                in_flight -= 1
                if pair is not None:
                    user.busy_movies.discard(pair[1])
            latency = (time.perf_counter() - scheduled_at) * 1000
            result.samples.append(Sample(op, status, latency))
            if pair is not None and 200 <= status < 300:
                result.acknowledged[pair] = value  # None = deleted
                if value is None:
                    rated[pair[0]].discard(pair[1])
                else:
                    rated[pair[0]].add(pair[1])

        start = time.perf_counter()
        interval = 1.0 / rate
        next_report = start + 5
        i = 0
        while True:
            scheduled_at = start + i * interval
            if scheduled_at - start >= duration:
                break
            delay = scheduled_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            i += 1
            result.scheduled += 1
            if in_flight >= max_in_flight:
                result.skipped_busy += 1
                continue
            in_flight += 1
            task = asyncio.create_task(one(rng.choices(ops, weights)[0], scheduled_at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if progress and time.perf_counter() >= next_report:
                next_report += 5
                done = len(result.samples)
                print(
                    f"  load: {time.perf_counter() - start:5.1f}s sent={result.scheduled} "
                    f"done={done} in_flight={in_flight} errors={result.errors}",
                    flush=True,
                )
        if tasks:
            await asyncio.wait(tasks, timeout=150)
        result.duration_s = time.perf_counter() - start
    return result


@dataclass
class AuditResult:
    missing_or_wrong: list[str]
    stats_mismatches: list[str]
    checked_pairs: int
    checked_movies: int

    @property
    def ok(self) -> bool:
        return not self.missing_or_wrong and not self.stats_mismatches


def audit(mongo_url: str, db_name: str, acknowledged: dict[tuple[int, int], float | None]):
    """Compare MongoDB with the acknowledged writes, and movie stats with a recount."""
    client: MongoClient = MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[db_name]
        wrong: list[str] = []
        by_user: dict[int, dict[int, float | None]] = defaultdict(dict)
        for (u, m), v in acknowledged.items():
            by_user[u][m] = v
        for u, expected in by_user.items():
            stored = {
                d["movieId"]: float(d["rating"])
                for d in db.ratings.find({"userId": u}, {"_id": 0, "movieId": 1, "rating": 1})
            }
            for m, v in expected.items():
                if stored.get(m) != v:
                    wrong.append(f"user {u} movie {m}: acknowledged {v}, stored {stored.get(m)}")
        recount = {
            d["_id"]: (d["n"], d["s"])
            for d in db.ratings.aggregate(
                [{"$group": {"_id": "$movieId", "n": {"$sum": 1}, "s": {"$sum": "$rating"}}}]
            )
        }
        mismatches: list[str] = []
        n_movies = 0
        for movie in db.movies.find(
            {}, {"_id": 0, "movieId": 1, "rating_count": 1, "rating_sum": 1}
        ):
            n_movies += 1
            n, s = recount.get(movie["movieId"], (0, 0.0))
            if movie.get("rating_count", 0) != n or abs(movie.get("rating_sum", 0.0) - s) > 1e-6:
                mismatches.append(
                    f"movie {movie['movieId']}: stored ({movie.get('rating_count')}, "
                    f"{movie.get('rating_sum')}), recount ({n}, {s})"
                )
        return AuditResult(wrong, mismatches, len(acknowledged), n_movies)
    finally:
        client.close()


def markdown(summary: dict[str, Any], audit_result: AuditResult | None) -> str:
    lines = [
        f"Target {summary['target_rate']} req/s for {summary['duration_s']} s through nginx: "
        f"{summary['completed']} requests, achieved {summary['achieved_rate']} req/s, "
        f"errors {summary['errors']}; not sent because {summary['skipped_busy']} were already "
        "in flight at the cap.",
        "",
        "| operation | requests | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for op, s in summary["by_op"].items():
        lines.append(
            f"| {op} | {s['requests']} | {s['errors']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} "
            f"| {s['p99_ms']:.1f} | {s['max_ms']:.1f} |"
        )
    if audit_result is not None:
        lines += [
            "",
            f"Audit: {audit_result.checked_pairs} acknowledged (user, movie) writes checked, "
            f"{len(audit_result.missing_or_wrong)} missing or wrong; "
            f"{audit_result.checked_movies} movies recounted, "
            f"{len(audit_result.stats_mismatches)} stats mismatches.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base-url", required=True, help="nginx, e.g. http://127.0.0.1:8080")
    p.add_argument("--mongo-url", required=True)
    p.add_argument("--db", default="movierec")
    p.add_argument("--duration", type=float, default=30.0, help=f"≤ {MAX_DURATION_S:.0f} s")
    p.add_argument("--rate", type=float, default=40.0, help="scheduled requests per second")
    p.add_argument("--users", type=int, default=12)
    p.add_argument("--light", action="store_true", help="the lighter browse mix (LIGHT_MIX)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args()
    res = asyncio.run(
        run_load(
            args.base_url,
            duration=args.duration,
            rate=args.rate,
            n_users=args.users,
            mix=LIGHT_MIX if args.light else MIX,
            progress=True,
        )
    )
    aud = audit(args.mongo_url, args.db, res.acknowledged)
    summary = res.summary()
    if args.json:
        print(json.dumps({**summary, "audit_ok": aud.ok}))
    else:
        print(markdown(summary, aud))
    raise SystemExit(0 if res.errors == 0 and aud.ok else 1)


if __name__ == "__main__":
    main()
