"""The retrain data snapshot: MongoDB ratings merged over the MovieLens file, written once as
Parquet, then read back by Spark.

MongoDB is read in one pass with a projection (no per-row round trips) straight into columnar
arrays. Both sources go through the one loader's cleaning (`movierec_common.loader`): the file
with its malformed-row rule, the database rows with the same field checks, then one rating per
(userId, movieId) with the latest timestamp (the database row on a tie), ratings of movies that
are not in the `movies` collection dropped, and recorded deletions (`rating_deletions`) applied
to the file rows, so a rating a user deleted never comes back from the file. The load summary
goes into the job record. The Parquet file is the job's frozen input: the model, its
fingerprint and any later re-run all see exactly the same ratings even while users keep rating.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from movierec_common import data_model
from movierec_common.loader import (
    LoadSummary,
    Ratings,
    Tombstones,
    clean_ratings,
    detect_layout,
    read_ratings_file,
    valid_rows,
)

from movierec_trainer import data as tdata

log = logging.getLogger(__name__)

DB_SOURCE = "mongodb"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    n_ratings: int
    n_db: int
    n_csv: int
    source: dict[str, Any]
    summary: LoadSummary


class _Columns:
    """Growable columnar buffers: rows are appended a chunk at a time into preallocated NumPy
    arrays (capacity doubles when full), so a read holds each rating once, in 28 bytes, never
    as Python objects beyond one chunk."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.cols = [
            np.empty(max(capacity, 1), np.int64),
            np.empty(max(capacity, 1), np.int64),
            np.empty(max(capacity, 1), np.float32),
            np.empty(max(capacity, 1), np.int64),
        ]

    def append(self, chunk: list[list]) -> None:
        k = len(chunk[0])
        if self.n + k > len(self.cols[0]):
            size = max(2 * len(self.cols[0]), self.n + k)
            grown = []
            for c in self.cols:
                g = np.empty(size, c.dtype)
                g[: self.n] = c[: self.n]
                grown.append(g)
            self.cols = grown
        for c, values in zip(self.cols, chunk, strict=True):
            c[self.n : self.n + k] = values
        self.n += k

    def ratings(self) -> Ratings:
        u, m, r, t = (c[: self.n] for c in self.cols)
        return tdata.make_ratings(u, m, r, t)


def expected_ratings(db: Any) -> int:
    """How many ratings the database holds, from the movies' `rating_count` (the catalog keeps
    them exact): a sizing hint read from ~62k small documents. Not the collection's count,
    which SecantusDB answers by scanning every rating (~3 minutes of server CPU at 25M)."""
    rows = db[data_model.MOVIES].aggregate(
        [{"$group": {"_id": None, "n": {"$sum": {"$ifNull": ["$rating_count", 0]}}}}]
    )
    return max((int(d["n"]) for d in rows), default=0)


def read_db_ratings(db: Any, batch_size: int = 50_000, expected: int | None = None) -> Ratings:
    """All ratings of the `ratings` collection as columnar arrays (sync pymongo database).

    Streamed: documents are converted a chunk of `batch_size` at a time into arrays sized from
    `expected` (1% headroom; grown by doubling past it, or from 1M rows without it), so 25M
    ratings cost ~0.7 GB here, not a Python list of every field of every row (~3.5 GB) plus
    the arrays made from it."""
    cols = _Columns(int(expected * 1.01) + 1024 if expected is not None else 1 << 20)
    chunk: list[list] = [[], [], [], []]
    cursor = (
        db[data_model.RATINGS]
        .find({}, {"_id": 0, "userId": 1, "movieId": 1, "rating": 1, "timestamp": 1})
        .batch_size(batch_size)
    )
    users, movies, values, stamps = chunk
    for doc in cursor:
        try:
            u, m, r = int(doc["userId"]), int(doc["movieId"]), float(doc["rating"])
            ts = doc.get("timestamp", 0)
            t = int(ts.timestamp()) if hasattr(ts, "timestamp") else int(ts or 0)
            if not -(2**63) <= u < 2**63 or not -(2**63) <= m < 2**63 or not -(2**63) <= t < 2**63:
                raise OverflowError
        except (KeyError, TypeError, ValueError, OverflowError):
            u, m, r, t = -1, -1, float("nan"), 0  # refused by valid_rows as malformed
        users.append(u)
        movies.append(m)
        values.append(r)
        stamps.append(t)
        if len(users) >= batch_size:
            cols.append(chunk)
            for c in chunk:
                c.clear()
    if users:
        cols.append(chunk)
    return cols.ratings()


def read_db_movie_ids(db: Any) -> np.ndarray | None:
    """The catalogue: every movieId of the `movies` collection, or None (no filter, logged)
    while the collection is empty (a database mongo-init has not filled)."""
    ids = [int(d["movieId"]) for d in db[data_model.MOVIES].find({}, {"_id": 0, "movieId": 1})]
    if not ids:
        log.warning("the movies collection is empty: ratings are not checked against it")
        return None
    return np.asarray(sorted(ids), np.int64)


def read_tombstones(db: Any) -> Tombstones:
    """The recorded rating deletions (the catalog writes one before deleting a rating)."""
    users, movies, stamps = [], [], []
    for d in db[data_model.RATING_DELETIONS].find(
        {}, {"_id": 0, "userId": 1, "movieId": 1, "deleted_at": 1}
    ):
        users.append(int(d["userId"]))
        movies.append(int(d["movieId"]))
        stamps.append(int(d["deleted_at"]))
    return Tombstones(
        np.asarray(users, np.int64), np.asarray(movies, np.int64), np.asarray(stamps, np.int64)
    )


def resolve_csv(csv_path: str | Path | None, data_dir: Path) -> Path:
    """A ratings CSV: the given file, a directory holding ratings.csv, or DATA_DIR's. Relative
    paths are taken inside DATA_DIR, and nothing outside DATA_DIR is read (the path arrives in
    an HTTP request)."""
    base = Path(data_dir).resolve()
    p = base if csv_path is None else Path(csv_path)
    if not p.is_absolute():
        p = base / p
    p = p.resolve()
    if p.is_dir():
        try:
            p = p / detect_layout(p).ratings.name
        except FileNotFoundError:
            p = p / "ratings.csv"
    if base not in (p, *p.parents):
        raise ValueError(f"csv_path {csv_path!r} is outside DATA_DIR ({base})")
    if not p.exists():
        raise FileNotFoundError(f"{p} not found")
    return p


def write_parquet(r: Ratings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "userId": r.user_ids,
            "movieId": r.movie_ids,
            "rating": r.ratings,
            "timestamp": r.timestamps,
        }
    )
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def take_snapshot(
    db: Any,
    work_dir: Path,
    name: str,
    *,
    db_only: bool,
    csv_path: str | None,
    data_dir: Path,
    strict: bool = False,
) -> Snapshot:
    started = int(time.time())  # every rating committed before this is in the read
    summary = LoadSummary()
    db_r = valid_rows(
        read_db_ratings(db, expected=expected_ratings(db)), DB_SOURCE, summary, now=started
    )
    known = read_db_movie_ids(db)
    source: dict[str, Any] = {
        "source": "mongodb" if db_only else "mongodb+csv",
        "db_read_started_at": started,
    }
    if db_only:
        merged = clean_ratings([(DB_SOURCE, db_r)], summary, known_movies=known)
        n_csv = 0
    else:
        csv = resolve_csv(csv_path, data_dir)
        layout = detect_layout(csv.parent)
        fmt = layout.ratings if layout.ratings.name == csv.name else None  # else CSV layout
        csv_r = read_ratings_file(
            csv, fmt, on_error="raise" if strict else "skip", summary=summary, now=started
        )
        # Deletions beat older file rows; then the latest of file and database wins.
        csv_r = clean_ratings([(csv.name, csv_r)], summary, tombstones=read_tombstones(db))
        merged = clean_ratings([(csv.name, csv_r), (DB_SOURCE, db_r)], summary, known_movies=known)
        n_csv = len(csv_r)
        source["csv"] = str(csv)
        del csv_r  # the inputs go as soon as the merge exists: one copy of 25M rows, not three
    n_db = len(db_r)
    del db_r
    source.update(n_db_ratings=n_db, n_csv_ratings=n_csv, load=summary.to_dict())
    for line in summary.lines():
        log.info("snapshot load: %s", line)
    if len(merged) == 0:
        raise ValueError("the snapshot has no ratings to train on")
    path = Path(work_dir) / "snapshots" / f"{name}.parquet"
    write_parquet(merged, path)
    return Snapshot(path, len(merged), n_db, n_csv, source, summary)


def read_snapshot_local(path: Path) -> Ratings:
    """The Parquet snapshot as columns, read by the process that wrote it (the driver)."""
    t = pq.read_table(path)
    return tdata.make_ratings(
        t["userId"].to_numpy(),
        t["movieId"].to_numpy(),
        t["rating"].to_numpy(),
        t["timestamp"].to_numpy(),
    )


def remove_snapshot(path: Path) -> None:
    """Delete one snapshot (file or Parquet directory); missing is fine."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    path.with_suffix(".tmp").unlink(missing_ok=True)


def prune_snapshots(work_dir: Path, model_dir: Path, min_age_seconds: float = 600.0) -> list[str]:
    """Keep scratch bounded: delete every snapshot under `work_dir/snapshots` that no published
    version's manifest names (`data.snapshot`), i.e. those of pruned versions and of jobs that
    died, once it is `min_age_seconds` old (a job of another worker may still be reading a
    younger one). Returns the names deleted."""
    from movierec_common import artifacts

    folder = Path(work_dir) / "snapshots"
    if not folder.is_dir():
        return []
    kept = {
        Path(str((m.get("data") or {}).get("snapshot"))).name
        for m in artifacts.list_versions(model_dir)
        if (m.get("data") or {}).get("snapshot")
    }
    now = time.time()
    removed = []
    for entry in folder.iterdir():
        if entry.name in kept or entry.with_suffix(".parquet").name in kept:  # or its .tmp
            continue
        try:
            if now - entry.stat().st_mtime < min_age_seconds:
                continue
        except OSError:
            continue
        remove_snapshot(entry)
        removed.append(entry.name)
    return removed
