"""Recommender latency under a bounded loopback load, in-process compute, and the choice of
factors for similar movies.

What runs (all real, nothing mocked):
  1. MongoDB: an embedded SecantusDB on a free port (or --mongo-url), loaded with ml-latest-small
     by `python -m movierec_init` (the real init job).
  2. A model: `python -m movierec_trainer train --engine local --holdout 0` when the trainer CLI
     exists, else the kernel's local engine + artifacts.save_model (same arrays).
  3. `python -m recommender_api` (uvicorn): `--replicas` processes (default 2, as Compose runs
     RECOMMENDER_REPLICAS=2 behind nginx) for the default lookup, with the load spread over
     them round-robin as nginx does; the `known one replica` row is the same load on one.
  4. Open-loop load at a fixed rate (default 200 req/s for 15 s per scenario) from a separate
     process: latency is measured from each request's *scheduled* start, so a slow server cannot
     hide queueing (no coordinated omission). Scenarios: known users (k=10), fold-in users
     (MovieLens users copied under new ids, so they are not in the model), similar movies.
     Each row also gives the CPU time the API process and the embedded database spent per
     request during the run (from their /proc counters): what a saturated row is bound by.
  5. In-process: the same work without HTTP or MongoDB (service.recommend on a loaded model), and
     the MongoDB read alone, so transport/database cost against compute is visible.
  6. Similar-movie factors: hit rate of co-rated held-out pairs (seeded 80/20 split; a pair is two
     movies the same user rated ≥ 4 in the test part; hit if the second is in the first's top 10)
     for explicit q, ranking y, whitened y, blends, and the most-rated list; plus Toy Story 2's
     position among Toy Story's neighbours on the full-data model.

Run: .venv/bin/python bench/bench_recs.py [--rates 200,50] [--duration 15] [--skip-load]
     [--scenarios 'impressions on/off']  (impressions recording on vs off, side by side:
     alternating rounds against two servers, the ratio printed; part of the default run)
Writes bench/out/recs.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
from movierec_common import als, artifacts
from movierec_common.loader import load_dataset
from pymongo import MongoClient
from recommender_api import ranking, service
from recommender_api.config import RecommenderSettings
from recommender_api.model_store import load_serving_model
from recommender_api.movies import MovieCatalog
from recommender_api.repository import UserRatings
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out" / "recs.md"
AB = "impressions on/off"  # the interleaved side-by-side comparison (a --scenarios name)
API_KEY = "bench-recs-key-0123456789"
DB = "movierec_bench"
FOLD_IN_BASE = 9_000_000
# (p50, p99) ms. Known user: p99 ≤ 15 ms at 200 req/s with the served models and impressions
# recording on (issues 17 and 20; the first version's 25 ms was for rank 20 without EASE).
TARGETS = {"known": (5.0, 15.0), "fold-in": (None, 30.0), "similar": (None, None)}

console = Console()
report: list[str] = []


def emit(table: Table, title: str) -> None:
    console.print(table)
    report.append(f"\n### {title}\n")
    cols = [c.header for c in table.columns]
    report.append("| " + " | ".join(str(c) for c in cols) + " |")
    report.append("|" + "---|" * len(cols))
    for row in zip(*[c._cells for c in table.columns], strict=True):
        report.append("| " + " | ".join(str(x) for x in row) + " |")


WARMUP_REQUESTS = 50


def cpu_seconds(proc: subprocess.Popen | list[subprocess.Popen] | None) -> float | None:
    """User + system CPU seconds of a child (or of several: their sum) and its descendants so
    far (None: not ours, or gone). Read around a load run, it says which process the run's
    requests cost: the API's own work against the database's, on a box where both share the
    cores."""
    if proc is None:
        return None
    if isinstance(proc, list):
        parts = [cpu_seconds(p) for p in proc]
        return None if any(x is None for x in parts) else sum(x for x in parts if x is not None)
    try:
        root = psutil.Process(proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise TimeoutError(url)


@contextlib.contextmanager
def child(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A child in its own process group, always stopped (with its children) on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ROOT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# ------------------------------------------------------------------------------------------
# Set-up: database, model
# ------------------------------------------------------------------------------------------


def init_db(mongo_url: str, data_dir: Path, work: Path) -> float:
    t = time.perf_counter()
    env = {"MONGO_URL": mongo_url, "MONGO_DB": DB, "DATA_DIR": str(data_dir), "LOG_JSON": "0"}
    r = subprocess.run(
        [str(BIN / "python"), "-m", "movierec_init"],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    (work / "init.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise RuntimeError(f"movierec_init failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def train_model(data_dir: Path, model_dir: Path) -> tuple[str, str]:
    """(how, version): the trainer CLI when it exists, else the kernel directly."""
    if (ROOT / "spark/trainer/movierec_trainer/__main__.py").exists():
        r = subprocess.run(
            [str(BIN / "python"), "-m", "movierec_trainer", "train", "--data-dir", str(data_dir),
             "--engine", "local", "--holdout", "0", "--output", str(model_dir), "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if r.returncode == 0:
            return "trainer CLI", json.loads(r.stdout.strip().splitlines()[-1])["version"]
        console.print(f"[yellow]trainer CLI failed, using the kernel: {r.stderr[-500:]}")
    rt = load_dataset(data_dir).ratings
    inter, uids, iids = als.index_ratings(rt.user_ids, rt.movie_ids, rt.ratings)
    em = als.fit_explicit(inter, als.DEFAULT_EXPLICIT)
    im = als.fit_implicit(inter, als.DEFAULT_IMPLICIT)
    arrays = {
        "P": em.P, "Q": em.Q, "user_bias": em.user_bias, "item_bias": em.item_bias,
        "global_mean": np.asarray(em.mu), "user_ids": uids, "item_ids": iids,
        "item_counts": np.bincount(inter.item_idx, minlength=inter.n_items),
        "rank_X": im.X, "rank_Y": im.Y,
    }  # fmt: skip
    manifest = {
        "params": {
            "explicit": als.DEFAULT_EXPLICIT.to_dict(),
            "ranking": als.DEFAULT_IMPLICIT.to_dict(),
        },
        "data": {"n_ratings": len(inter), "n_users": inter.n_users, "n_items": inter.n_items},
        "metrics": {},
        "history": em.history,
    }
    return "kernel local engine", artifacts.save_model(model_dir, arrays, manifest)


def add_fold_in_users(mongo_url: str, ratings, n: int) -> list[int]:
    """Copy n median-sized MovieLens users under new ids: same ratings, not in the model, stamped
    now. `remove_fold_in_users` takes them out again before anything retrains: a model trained
    on them would make them known users on the next run (with a timestamp of 0, as before, a
    retrain refused every copied rating as malformed instead)."""
    users, counts = np.unique(ratings.user_ids, return_counts=True)
    order = np.argsort(np.abs(counts - np.median(counts)))[:n]
    client = MongoClient(mongo_url)
    new_ids = []
    try:
        for src in users[order]:
            mask = ratings.user_ids == src
            uid = FOLD_IN_BASE + int(src)
            client[DB].ratings.delete_many({"userId": uid})
            now = int(time.time())
            client[DB].ratings.insert_many(
                [
                    {"userId": uid, "movieId": int(m), "rating": float(r), "timestamp": now}
                    for m, r in zip(ratings.movie_ids[mask], ratings.ratings[mask], strict=True)
                ]
            )
            new_ids.append(uid)
    finally:
        client.close()
    return new_ids


def remove_fold_in_users(mongo_url: str, ids: list[int]) -> int:
    """Delete the ratings `add_fold_in_users` wrote; returns how many."""
    client = MongoClient(mongo_url)
    try:
        gone = client[DB].ratings.delete_many({"userId": {"$in": [int(u) for u in ids]}})
        return gone.deleted_count
    finally:
        client.close()


# ------------------------------------------------------------------------------------------
# Open-loop load
# ------------------------------------------------------------------------------------------


class RawConnection:
    """Minimal keep-alive HTTP/1.1 client: a load generator must cost far less CPU per request
    than the server it measures (httpx costs about as much as the endpoint itself)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {API_KEY}\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


async def open_loop(
    base: str | list[str], paths: list[str], rate: float, duration: float, raw: bool = False
) -> dict:
    """Requests at `rate`/s for `duration` s; with several bases, request i goes to base
    i mod len(bases) (nginx's round-robin over replicas), each base with its own keep-alive
    connections."""
    targets = [base] if isinstance(base, str) else list(base)
    hosts = [b.removeprefix("http://").split(":") for b in targets]
    n = int(rate * duration)
    lat_sched: list[float] = []
    lat_send: list[float] = []
    errors: dict[str, int] = {}
    pools: list[list[RawConnection]] = [[] for _ in targets]

    gate = asyncio.Semaphore(256)  # bounded connections (file descriptors); waits count

    async def request(path: str, which: int) -> bool:
        async with gate:
            return await _request(path, which)

    async def _request(path: str, which: int) -> bool:
        host, port = hosts[which]
        idle = pools[which]
        conn = idle.pop() if idle else RawConnection(host, int(port))
        reused = conn.writer is not None
        try:
            try:
                status = await conn.get(path)
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                # The server closed an idle keep-alive connection (uvicorn: after 5 s), as
                # every HTTP client does, retry once on a fresh one.
                conn = RawConnection(host, int(port))
                status = await conn.get(path)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return False
        idle.append(conn)
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
        return status == 200

    # warm-up: connections and first-touch costs, not timed
    for i, p in enumerate(paths[:WARMUP_REQUESTS]):
        await request(p, i % len(targets))
    start = time.perf_counter() + 0.1

    async def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.perf_counter()
        await request(paths[i % len(paths)], i % len(targets))
        done = time.perf_counter()
        lat_sched.append((done - scheduled) * 1000)
        lat_send.append((done - sent) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    for conn in (c for idle in pools for c in idle):
        if conn.writer is not None:
            conn.writer.close()
    q = np.percentile(lat_sched, [50, 90, 99])
    return {
        "n": n,
        "rps": n / elapsed,
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "max": max(lat_sched),
        "p50_send": float(np.percentile(lat_send, 50)),
        "errors": errors,
        "load_avg": os.getloadavg()[0],
        **({"samples": lat_sched} if raw else {}),
    }


def run_load_in_child(
    base: str | list[str], paths: list[str], rate: float, duration: float, raw: bool = False
) -> dict:
    """The load generator runs in its own process so its CPU is not the server's."""
    spec = json.dumps(
        {"base": base, "paths": paths, "rate": rate, "duration": duration, "raw": raw}
    )
    r = subprocess.run(
        [sys.executable, __file__, "--load-child"], input=spec, capture_output=True,
        text=True, timeout=duration * 10 + 120, cwd=ROOT,
    )  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def impressions_on_off(
    on: str | list[str],
    off: str | list[str],
    paths: list[str],
    rate: float,
    duration: float,
    rounds: int = 6,
) -> dict[str, dict]:
    """Impressions recording on vs off, side by side: `rounds` alternating loads of
    duration/rounds seconds on the recording server (`on`) and on the same server with
    IMPRESSIONS_ENABLED=false (`off`), in ABBA order (on, off, off, on, …) so a change of the
    machine's load during the run falls on both alike; each arm's latencies (from the scheduled
    start, ms) are pooled over its rounds. Returns {"on": {...}, "off": {...}} with n, rps,
    p50, p90, p99, max, errors and the load averages seen."""
    pooled: dict[str, dict] = {
        arm: {"samples": [], "errors": {}, "load": [], "secs": 0.0} for arm in ("on", "off")
    }
    per = duration / rounds
    for r in range(rounds):
        order = ("on", "off") if r % 2 == 0 else ("off", "on")
        for arm in order:
            t0 = time.perf_counter()
            res = run_load_in_child(on if arm == "on" else off, paths, rate, per, raw=True)
            got = pooled[arm]
            got["samples"] += res["samples"]
            got["secs"] += res["n"] / res["rps"] if res["rps"] else time.perf_counter() - t0
            got["load"].append(res["load_avg"])
            for k, v in res["errors"].items():
                got["errors"][k] = got["errors"].get(k, 0) + v
    out = {}
    for arm, got in pooled.items():
        q = np.percentile(got["samples"], [50, 90, 99])
        out[arm] = {
            "n": len(got["samples"]),
            "rps": len(got["samples"]) / got["secs"],
            "p50": float(q[0]),
            "p90": float(q[1]),
            "p99": float(q[2]),
            "max": max(got["samples"]),
            "errors": got["errors"],
            "load": (min(got["load"]), max(got["load"])),
        }
    return out


# ------------------------------------------------------------------------------------------
# In-process timings
# ------------------------------------------------------------------------------------------


def timeit_us(fn, repeats: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples), float(np.percentile(samples, 99))


def in_process(model_dir: Path, mongo_url: str, ratings, known: list[int], folds: list[int]):
    # the served form as the API builds it: its default budget of precomputed user parts
    parts_bytes = int(RecommenderSettings.model_fields["trained_user_parts_mb"].default * 2**20)
    model = load_serving_model(model_dir, None, "auto", 10, parts_bytes)
    client = MongoClient(mongo_url)
    db = client[DB]
    docs = list(db.movies.find({}, {"_id": 0}))
    catalog = MovieCatalog.from_docs(docs)

    def rated(uid: int) -> UserRatings:
        rows = list(db.ratings.find({"userId": uid}, {"_id": 0, "movieId": 1, "rating": 1}))
        return UserRatings(
            np.array([d["movieId"] for d in rows], np.int64),
            np.array([d["rating"] for d in rows], np.float32),
        )

    fold_r = {u: rated(u) for u in folds}
    rated_sets = {int(u): set() for u in known}
    for u, m in zip(ratings.user_ids.tolist(), ratings.movie_ids.tolist(), strict=True):
        rated_sets[u].add(m)
    rows = []
    it = iter(range(10**9))

    def cyc(keys):
        keys = list(keys)
        return lambda: keys[next(it) % len(keys)]

    nk, nf = cyc(rated_sets), cyc(fold_r)

    def db_recent() -> None:
        since = model.rated_since
        list(db.ratings.find({"userId": nk(), "timestamp": {"$gte": since}}, {"movieId": 1}))

    heaviest = max(rated_sets, key=lambda u: len(rated_sets[u]))

    rated_arrays = {
        u: UserRatings(np.fromiter(sorted(ms), np.int64), np.full(len(ms), np.nan, np.float32))
        for u, ms in rated_sets.items()
    }

    def known_all(order: str) -> dict:
        u = nk()
        return service.recommend(model, catalog, u, rated_arrays[u], k=10, order=order)

    def known_recent() -> dict:
        # What the server passes (recommender_api.rated): the model's rated list with its stars
        # (they feed the EASE parts of the blend), NaN only for artifacts without stars.
        u = nk()
        row = model.users.get(u)
        ids = model.rated_in_data(row)
        stars = model.stars_in_data(row)
        if stars is None:
            stars = np.full(ids.shape, np.nan, np.float32)
        return service.recommend(model, catalog, u, UserRatings(ids, stars), k=10)

    def db_ids(uid: int | None = None) -> None:
        uid = nk() if uid is None else uid
        list(db.ratings.find({"userId": uid}, {"_id": 0, "movieId": 1}, batch_size=5000))

    def db_heavy_recent() -> None:
        flt = {"userId": heaviest, "timestamp": {"$gte": model.rated_since}}
        list(db.ratings.find(flt, {"movieId": 1}))

    rows.append(("MongoDB: all of a fold-in user's ratings (sync pymongo)", *timeit_us(
        lambda: rated(nf()), 200)))  # fmt: skip
    rows.append(("MongoDB: a known user's rated movieIds (RATED_LOOKUP=all)", *timeit_us(
        db_ids, 200)))  # fmt: skip
    rows.append(("MongoDB: a known user's ratings since the model's data (recent)", *timeit_us(
        db_recent, 200)))  # fmt: skip
    rows.append(("known user: score + exclusion + top-10 + items (ranking order)", *timeit_us(
        lambda: known_all("ranking"), 500)))  # fmt: skip
    rows.append(("known user: rating order", *timeit_us(
        lambda: known_all("rating"), 500)))  # fmt: skip
    rows.append(("known user, recent mode: the model's rated list + score + top-10", *timeit_us(
        known_recent, 500)))  # fmt: skip
    rows.append(("fold-in user: 2 solves + score + top-10", *timeit_us(
        lambda: service.recommend(model, catalog, (u := nf()), fold_r[u], k=10), 500)))  # fmt: skip
    idx = np.flatnonzero(model.sim_ok)
    rows.append(("similar: cosine over all movies + top-10", *timeit_us(
        lambda: ranking.similar(model, int(idx[next(it) % idx.size]), 10), 500)))  # fmt: skip
    n_heavy = len(rated_sets[heaviest])
    rows.append((f"MongoDB: heaviest user ({n_heavy} ratings), all rated movieIds", *timeit_us(
        lambda: db_ids(heaviest), 50)))  # fmt: skip
    rows.append((f"MongoDB: heaviest user ({n_heavy} ratings), ratings since the data", *timeit_us(
        db_heavy_recent, 200)))  # fmt: skip
    rows.append(("model load (verify sha256 + precompute)", *timeit_us(
        lambda: load_serving_model(model_dir, None, "auto", 10, parts_bytes), 5)))  # fmt: skip
    client.close()
    return rows


# ------------------------------------------------------------------------------------------
# Similar-movie factor choice
# ------------------------------------------------------------------------------------------


def similar_eval(data_dir: Path) -> list[tuple]:
    rt = load_dataset(data_dir).ratings
    inter, _, iids = als.index_ratings(rt.user_ids, rt.movie_ids, rt.ratings)
    train_m, test_m = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, 42)
    tr, te = inter.subset(train_m), inter.subset(test_m)
    em, im = als.fit_explicit(tr, als.DEFAULT_EXPLICIT), als.fit_implicit(tr, als.DEFAULT_IMPLICIT)
    emf = als.fit_explicit(inter, als.DEFAULT_EXPLICIT)
    imf = als.fit_implicit(inter, als.DEFAULT_IMPLICIT)
    counts = np.bincount(tr.item_idx, minlength=inter.n_items)
    counts_full = np.bincount(inter.item_idx, minlength=inter.n_items)
    liked = te.rating >= 4
    rng = np.random.default_rng(0)
    pairs = []
    for u in np.unique(te.user_idx[liked]):
        items = te.item_idx[liked & (te.user_idx == u)]
        for _ in range(min(5, items.size) if items.size >= 2 else 0):
            a, b = rng.choice(items, 2, replace=False)
            pairs.append((int(a), int(b)))
    ts, ts2 = int(np.searchsorted(iids, 1)), int(np.searchsorted(iids, 3114))
    min_r = 10

    def score(name: str, vec_train: np.ndarray | None, vec_full: np.ndarray | None) -> tuple:
        ok = counts >= min_r
        hits = n = 0
        for a, b in pairs:
            if counts[a] < min_r:
                continue
            if vec_train is None:  # most-rated list
                s = np.where(ok, counts.astype(np.float32), -np.inf)
            else:
                s = np.where(ok, vec_train @ vec_train[a], -np.inf)
            s[a] = -np.inf
            hits += b in ranking.top_k(s, 10)
            n += 1
        pos = "—"
        if vec_full is not None:
            s = np.where(counts_full >= min_r, vec_full @ vec_full[ts], -np.inf)
            s[ts] = -np.inf
            pos = str(int((s > s[ts2]).sum()) + 1)
        return name, n, hits / n, pos

    def blend(q, y, w, white):
        yy = ranking.whiten(y) if white else y
        return np.hstack(
            [np.sqrt(w) * ranking.unit_rows(q), np.sqrt(1 - w) * ranking.unit_rows(yy)]
        )

    rows = [
        score("explicit q (cosine)", ranking.unit_rows(em.Q), ranking.unit_rows(emf.Q)),
        score("ranking y (cosine)", ranking.unit_rows(im.Y), ranking.unit_rows(imf.Y)),
        score(
            "ranking y whitened",
            ranking.unit_rows(ranking.whiten(im.Y)),
            ranking.unit_rows(ranking.whiten(imf.Y)),
        ),
    ]
    for w in (0.3, 0.5):
        for white in (False, True):
            name = f"blend {w:.1f}·q + {1 - w:.1f}·y{' whitened' if white else ''}"
            if w == ranking.BLEND_EXPLICIT_WEIGHT and white:
                name += "  (auto without rated lists)"
            rows.append(score(name, blend(em.Q, im.Y, w, white), blend(emf.Q, imf.Y, w, white)))
    rows.append(score("most-rated list (reference)", None, None))
    rows.append(cooc_score(pairs, tr, inter, counts, counts_full, ts, ts2, min_r))
    return rows


def cooc_score(pairs, tr, full, counts, counts_full, ts: int, ts2: int, min_r: int) -> tuple:
    """The served neighbours (ranking.CoRated, asymmetric co-rating cosine) on the same pairs."""

    def build(inter: als.Interactions) -> ranking.CoRated:
        ptr, idx, _ = als.to_csr(inter.user_idx, inter.item_idx, np.ones(len(inter)), inter.n_users)
        return ranking.CoRated.build(
            ptr, idx.astype(np.int64), ranking.IdIndex(np.arange(inter.n_items))
        )

    co, co_full = build(tr), build(full)
    ok = counts >= min_r
    hits = n = 0
    for a, b in pairs:
        if counts[a] < min_r:
            continue
        s = np.where(ok, co.similarity(a), -np.inf)
        s[a] = -np.inf
        hits += b in ranking.top_k(s, 10)
        n += 1
    s = np.where(counts_full >= min_r, co_full.similarity(ts), -np.inf)
    s[ts] = -np.inf
    pos = str(int((s > s[ts2]).sum()) + 1)
    name = "co-rating asymmetric cosine (n_i^0.5·n_j^0.7 + 100)  ← served (auto)"
    return name, n, hits / n, pos


# ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "ml-latest-small")
    ap.add_argument(
        "--rates", default="200,50", help="comma-separated req/s; the first is the target's"
    )
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="recommender processes behind the round-robin for the default lookup (Compose's "
        "RECOMMENDER_REPLICAS default); `known one replica` is always measured on one",
    )
    ap.add_argument("--mongo-url", help="use this server (loaded by movierec_init) instead")
    ap.add_argument("--skip-load", action="store_true", help="only in-process and similar eval")
    ap.add_argument("--skip-similar-eval", action="store_true")
    ap.add_argument(
        "--scenarios",
        help="comma-separated HTTP scenario names to run (default: all), e.g. "
        f"'{AB}' for only the interleaved impressions on/off comparison",
    )
    ap.add_argument("--load-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        spec = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run(open_loop(**spec))))
        return

    report.append("# Recommender benchmark (bench/bench_recs.py)\n")
    report.append(
        f"Machine: {os.cpu_count()} cores, shared with other work (load average at start "
        f"{os.getloadavg()[0]:.1f}; per row in the HTTP table). "
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}."
    )
    ratings = load_dataset(args.data_dir).ratings
    with tempfile.TemporaryDirectory(prefix="bench-recs-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            mongo_url = args.mongo_url
            mongo_proc: subprocess.Popen | None = None
            if mongo_url is None:
                port = free_port()
                mongo_proc = stack.enter_context(child(
                    [str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port),
                     "--storage-path", str(work / "db"), "--standalone", "--log-level", "WARNING"],
                    {}, work / "secantus.log",
                ))  # fmt: skip
                mongo_url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
                for _ in range(300):
                    with socket.socket() as s:
                        if s.connect_ex(("127.0.0.1", port)) == 0:
                            break
                    time.sleep(0.1)
            console.print("[bold]loading ml-latest-small with movierec_init …")
            init_s = init_db(mongo_url, args.data_dir, work)
            console.print(f"  {init_s:.1f}s")
            model_dir = work / "models"
            how, version = train_model(args.data_dir, model_dir)
            console.print(f"model {version} via {how}")
            folds = add_fold_in_users(mongo_url, ratings, 20)
            known = [int(u) for u in np.unique(ratings.user_ids)]
            report.append(
                f"Model: {version} ({how}); data loaded by movierec_init in {init_s:.0f} s; "
                f"MongoDB: {'embedded SecantusDB' if args.mongo_url is None else 'external'}.\n"
            )

            rows = in_process(model_dir, mongo_url, ratings, known, folds)
            t = Table(title="In-process (no HTTP), per call")
            for c in ("operation", "median µs", "p99 µs"):
                t.add_column(c)
            for name, med, p99 in rows:
                t.add_row(name, f"{med:,.0f}", f"{p99:,.0f}")
            emit(t, "In-process cost, per call")
            compute_us = {"known": rows[5][1], "fold-in": rows[6][1], "similar": rows[7][1]}
            db_us = (rows[0][1], rows[1][1], rows[2][1])

            if not args.skip_load:
                bases: dict[str, list[str]] = {}
                procs: dict[str, list[subprocess.Popen]] = {}
                # "recent-off": the same servers with impressions recording turned off, so the
                # cost of recording is measured side by side in one run (issue 17). The
                # deployment's lookup runs as `--replicas` processes, as Compose runs it.
                replicas = max(1, args.replicas)
                servers = [("recent", r) for r in range(replicas)] + [("all", 0)]
                servers += [("recent-off", r) for r in range(replicas)]
                for lookup, replica in servers:
                    port = free_port()
                    env = {
                        "MONGO_URL": mongo_url, "MONGO_DB": DB, "MODEL_DIR": str(model_dir),
                        "RECOMMENDER_PORT": str(port), "API_KEYS": json.dumps([API_KEY]),
                        "LOG_LEVEL": "WARNING", "RELOAD_POLL_SECONDS": "30",
                        "RATED_LOOKUP": lookup.removesuffix("-off"),
                        "JWT_SECRET": secrets.token_hex(32),
                        "IMPRESSIONS_ENABLED": "false" if lookup.endswith("-off") else "true",
                    }  # fmt: skip
                    proc = stack.enter_context(
                        child(
                            [str(BIN / "python"), "-m", "recommender_api"],
                            env,
                            work / f"api-{lookup}-{replica}.log",
                        )
                    )
                    wait_http(f"http://127.0.0.1:{port}/readyz", proc)
                    bases.setdefault(lookup, []).append(f"http://127.0.0.1:{port}")
                    procs.setdefault(lookup, []).append(proc)
                bases["one"], procs["one"] = bases["recent"][:1], procs["recent"][:1]
                rng = np.random.default_rng(1)
                sims = np.unique(ratings.movie_ids, return_counts=True)
                sim_ids = sims[0][sims[1] >= 10]
                known_paths = [f"/api/recs/users/{u}?k=10" for u in rng.permutation(known)]
                scenarios = {
                    "known": ("recent", known_paths),
                    "known impressions off": ("recent-off", known_paths),
                    "known one replica": ("one", known_paths),
                    "known, RATED_LOOKUP=all": ("all", known_paths),
                    "fold-in": ("recent", [f"/api/recs/users/{u}?k=10" for u in folds]),
                    "similar": (
                        "recent",
                        [f"/api/recs/similar/{m}?k=10" for m in rng.permutation(sim_ids)],
                    ),
                }
                if args.scenarios:
                    wanted = [x.strip() for x in args.scenarios.split(",")]
                    scenarios = {k: v for k, v in scenarios.items() if k in wanted}
                t = Table(
                    title=f"HTTP, open loop, {args.duration:.0f} s per row "
                    "(latency from scheduled start, ms); every row but `known one replica` and "
                    f"`known, RATED_LOOKUP=all` is served by {replicas} recommender processes "
                    "round-robin (Compose's RECOMMENDER_REPLICAS default), CPU summed over them"
                )
                for c in ("scenario", "offered", "req/s", "p50", "p90", "p99", "max", "errors",
                          "p50 target", "p99 target", "p50 / in-process compute",
                          "API CPU ms/req", "DB CPU ms/req",
                          "load avg"):  # fmt: skip
                    t.add_column(c)
                rates = [float(r) for r in args.rates.split(",")]
                runs = [(r, name, *sc) for r in rates for name, sc in scenarios.items()]
                for rate, name, lookup, paths in runs:
                    console.print(f"load: {name} at {rate:.0f} req/s …")
                    cpu0 = (cpu_seconds(procs[lookup]), cpu_seconds(mongo_proc))
                    res = run_load_in_child(bases[lookup], paths, rate, args.duration)
                    # per request, the un-timed warm-up requests included (they cost CPU too)
                    sent = res["n"] + min(WARMUP_REQUESTS, len(paths))
                    api_ms, db_ms = (
                        "—" if a is None or b is None else f"{(b - a) * 1000 / sent:.2f}"
                        for a, b in zip(
                            cpu0,
                            (cpu_seconds(procs[lookup]), cpu_seconds(mongo_proc)),
                            strict=True,
                        )
                    )
                    kind = name.split(",")[0].split(" ")[0]  # known, fold-in or similar
                    p50_t, p99_t = TARGETS[kind]
                    t.add_row(
                        name,
                        f"{rate:.0f}",
                        f"{res['rps']:.0f}",
                        f"{res['p50']:.2f}",
                        f"{res['p90']:.2f}",
                        f"{res['p99']:.2f}",
                        f"{res['max']:.1f}",
                        ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "0",
                        f"{p50_t} ({res['p50'] / p50_t:.2f}×)" if p50_t else "—",
                        f"{p99_t} ({res['p99'] / p99_t:.2f}×)" if p99_t else "—",
                        f"{res['p50'] * 1000 / compute_us[kind]:.0f}×",
                        api_ms,
                        db_ms,
                        f"{res['load_avg']:.1f}",
                    )
                if t.row_count:
                    emit(t, "HTTP latency under a bounded loopback load")
                if not args.scenarios or AB in [x.strip() for x in args.scenarios.split(",")]:
                    rate = rates[0]
                    up_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout
                    console.print(f"load: {AB} at {rate:.0f} req/s, interleaved …")
                    ab = impressions_on_off(
                        bases["recent"], bases["recent-off"], known_paths, rate, args.duration * 2
                    )
                    up_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout
                    t = Table(
                        title=f"Known user, k=10, {rate:.0f} req/s: impressions recording on vs "
                        f"off, 6 alternating rounds (ABBA) of {args.duration / 3:.0f} s each, "
                        "pooled per arm (latency from scheduled start, ms)"
                    )
                    for c in ("recording", "requests", "req/s", "p50", "p90", "p99", "max",
                              "errors", "load avg (min–max)"):  # fmt: skip
                        t.add_column(c)
                    for arm in ("on", "off"):
                        a = ab[arm]
                        t.add_row(
                            arm,
                            f"{a['n']:,}",
                            f"{a['rps']:.0f}",
                            f"{a['p50']:.2f}",
                            f"{a['p90']:.2f}",
                            f"{a['p99']:.2f}",
                            f"{a['max']:.1f}",
                            ", ".join(f"{k}: {v}" for k, v in a["errors"].items()) or "0",
                            f"{a['load'][0]:.1f}–{a['load'][1]:.1f}",
                        )
                    on, off = ab["on"], ab["off"]
                    t.add_row(
                        "ratio on / off", "", "",
                        f"{on['p50'] / off['p50']:.2f}×", f"{on['p90'] / off['p90']:.2f}×",
                        f"{on['p99'] / off['p99']:.2f}×", "", "", "",
                    )  # fmt: skip
                    emit(t, "Impressions recording on vs off, side by side (issue 17)")
                    report.append(
                        f"\np99 with recording on: {on['p99']:.2f} ms (target ≤ 15 ms: "
                        f"{'met' if on['p99'] <= 15 else 'NOT met'}); ratio on/off p50 "
                        f"{on['p50'] / off['p50']:.2f}×, p99 {on['p99'] / off['p99']:.2f}×.\n"
                        f"uptime before: {up_before.strip()}\nuptime after: {up_after.strip()}"
                    )
                    console.print(report[-1])
                counts: dict[str, float] = {}
                for url in bases["recent"]:
                    text = httpx.get(f"{url}/metrics", timeout=10).text
                    for line in text.splitlines():
                        if (
                            line.startswith("movierec_recs_impressions_")
                            and "_total" in line
                            and not line.startswith("#")
                        ):
                            name, value = line.split(" ")[:2]
                            counts[name] = counts.get(name, 0.0) + float(value)
                report.append(
                    f"\nImpressions on the {len(bases['recent'])} recording servers "
                    "(RATED_LOOKUP=recent) after the load: "
                    + ", ".join(f"{k} = {v:g}" for k, v in sorted(counts.items()))
                    + "; the `known impressions off` row and the `off` arm are the same load on "
                    "a server with IMPRESSIONS_ENABLED=false."
                )
                console.print(report[-1])
                server_errors = [
                    line
                    for log in work.glob("api-*.log")
                    for line in log.read_text(errors="replace").splitlines()
                    if '"level":"ERROR"' in line
                ]
                for line in server_errors[-5:]:
                    console.print(f"[red]server: {line[:300]}")
                report.append(
                    "\nMongoDB alone, median: all of a fold-in user's ratings "
                    f"{db_us[0] / 1000:.2f} ms; a known user's rated movieIds "
                    f"{db_us[1] / 1000:.2f} ms; a known user's ratings since the model's data "
                    f"{db_us[2] / 1000:.2f} ms."
                )

    if not args.skip_similar_eval:
        console.print("similar-movie factor evaluation (two fits on 80 %, two on 100 %) …")
        t = Table(title="Similar movies: hit rate of co-rated held-out pairs (top 10, ≥10 ratings)")
        for c in ("factors", "pairs", "hit@10", "Toy Story 2 position for Toy Story"):
            t.add_column(c)
        for name, n, hit, pos in similar_eval(args.data_dir):
            t.add_row(name, str(n), f"{hit:.4f}", pos)
        emit(t, "Similar movies: which factors")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(report) + "\n")
    console.print(f"written {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
