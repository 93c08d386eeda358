"""The retrain data snapshot: MongoDB ratings merged over the MovieLens file, written once as
Parquet, then read back by Spark.

MongoDB is read by ranges of userId of ~5,000 ratings each on the (userId, movieId) index, with
a projection, straight into columnar arrays: the embedded server holds its storage lock while it
gathers a query's whole result, and one cursor over 25M ratings held it for minutes, so serving
stalled while a retrain read. Both sources go through the one loader's cleaning
(`movierec_common.loader`): the file with its malformed-row rule, the database rows with the
same field checks, then one rating per (userId, movieId) with the latest timestamp (the database
row on a tie), ratings of movies that are not in the `movies` collection dropped, and recorded
deletions (`rating_deletions`) applied to the file rows, so a rating a user deleted never comes
back from the file. The load summary goes into the job record. The Parquet file is the job's
frozen input: the model, its fingerprint and any later re-run all see exactly the same ratings
even while users keep rating.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
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
    # movieId → genre names from the `movies` collection (the blend's genre part)
    genres_of: dict[int, tuple[str, ...]] = field(default_factory=dict)


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


#: Rows per range read (target): the embedded server (SecantusDB) holds its storage lock while
#: it gathers a whole query result, so one range of ~5,000 rows stalls other clients for ~0.1 s
#: where one cursor over 25M ratings stalled them for minutes (measured: bench/REPORT.md).
RANGE_ROWS = 5_000
_INT64_MAX = 2**63 - 1
_PROJECTION = {"_id": 1, "userId": 1, "movieId": 1, "rating": 1, "timestamp": 1}
#: One range per BSON type beyond the numbers (a comparison matches its own type only): a row the
#: collection validator would refuse (null or missing, NaN, string, binary, ObjectId, bool or
#: date userId) is still read, and then refused as malformed by `valid_rows`. Not an embedded
#: document: SecantusDB compares every index key to answer `{$gte: {}}` (1.4 s per 100k
#: ratings, all of it under its lock), so a userId that is an object is not read; nor one that
#: is a Timestamp, regex, code, MinKey/MaxKey, an array of arrays or documents, or a positive
#: double below 2^-128 (SecantusDB's index keys sort those above every number, then its matcher
#: drops them from both numeric ranges). A valid rating is none of these (the validator: int
#: userId ≥ 1); only the load summary's malformed count can miss such a row.
_OTHER_TYPE_BRACKETS: tuple[dict[str, Any], ...] = (
    {"$eq": None},
    {"$eq": float("nan")},
    {"$gte": ""},
    {"$gte": b""},
    {"$gte": bson.ObjectId("0" * 24)},
    {"$gte": False},
    {"$gte": dt.datetime.min},
)


def _user_index(coll: Any) -> bool:
    """Whether an index leads with userId (mongo-init's `user_movie`): without one a range
    query is a collection scan, and one cursor is the cheaper read."""
    specs = coll.index_information().values()
    return any(next(iter(dict(s["key"])), None) == "userId" for s in specs)


_pause = time.sleep  # the pacing's sleep (one name, so a test can watch it)


@dataclass(frozen=True)
class ReadPacing:
    """How a range read shares the database. After each range it sleeps `pause_ratio` times
    the seconds the server took to answer it (to its first batch: SecantusDB gathers the whole
    range under its lock before answering), so at 1.0 the read holds the server at most about
    half the time and other clients' queries are not queued behind range after range. Then it
    calls `on_range(rows read so far)`, which may raise to stop the read (a cancel)."""

    pause_ratio: float = 0.0
    on_range: Callable[[int], None] | None = None


def range_cuts(user_ids: np.ndarray, counts: np.ndarray, rows: int) -> np.ndarray:
    """userIds at which a range read should start a new range so that each holds ~`rows` of
    the ratings counted (`user_ids` sorted, `counts` each user's ratings; e.g. the last model's,
    `artifacts.user_rating_counts`): sorted int64. Empty for no users."""
    if user_ids.size == 0:
        return np.empty(0, np.int64)
    before = np.concatenate(([0], np.cumsum(counts)[:-1]))  # ratings before each user
    starts = np.flatnonzero(np.diff(before // max(rows, 1), prepend=-1) > 0)
    return np.asarray(user_ids, np.int64)[starts[1:]] if starts.size > 1 else np.empty(0, np.int64)


def _user_ranges(
    coll: Any, rows: int, pacing: ReadPacing = ReadPacing(), cuts: np.ndarray | None = None
) -> Iterator[dict]:
    """Documents of `coll` read by ranges of userId on its index, each sized to ~`rows` rows.

    The numeric ids are walked from 0 up to 2^63 in half-open ranges whose width follows the
    rows the last range returned (at most doubling, so a dense run after a gap is entered with
    a width near the one that fit before it; empty ranges double it, so the walk past the
    last id takes ~60 cheap empty lookups). Ids below 0 and beyond int64 (doubles), and the
    other scalar BSON types, are read by one range each (`_OTHER_TYPE_BRACKETS`). A row is
    read once: an array-valued userId (several index keys) is returned only the first time its
    `_id` is seen. Between ranges, `pacing` (see `ReadPacing`).

    The walk alone cannot see a gap's far side: after k empty ranges the width is 2^k times
    the last that fit, so the first range past a gap (or past 0, when the ids start high)
    could hold a whole dense run. `cuts` (`range_cuts` of the last model's users) bound that:
    no range crosses a cut, and cuts sit every ~`rows` ratings of the users known then."""
    seen_odd: set[Any] = set()
    total = 0

    def emit(flt: dict[str, Any]) -> Iterator[dict[str, Any]]:
        nonlocal total
        started = time.monotonic()
        answered = None
        for doc in coll.find({"userId": flt}, _PROJECTION).batch_size(rows + rows // 2 + 100):
            if answered is None:
                answered = time.monotonic() - started
            u = doc.get("userId")
            if not isinstance(u, int) or isinstance(u, bool):  # may have several index keys
                if doc["_id"] in seen_odd:
                    continue
                seen_odd.add(doc["_id"])
            total += 1
            yield doc
        if pacing.pause_ratio > 0:
            _pause(pacing.pause_ratio * (answered or time.monotonic() - started))
        if pacing.on_range is not None:
            pacing.on_range(total)

    yield from emit({"$lt": 0})
    lo, width = 0, max(1, rows // 100)  # ~100 ratings per user to begin with
    cuts = np.empty(0, np.int64) if cuts is None else np.asarray(cuts, np.int64)
    while lo <= _INT64_MAX:
        hi = lo + width
        nxt = int(np.searchsorted(cuts, lo, side="right"))
        if nxt < cuts.size and hi > int(cuts[nxt]):
            hi = int(cuts[nxt])  # never past a known dense run's first cut
        if hi > _INT64_MAX:
            yield from emit({"$gte": lo})  # the rest, with doubles beyond int64
            break
        n = 0
        for doc in emit({"$gte": lo, "$lt": hi}):
            n += 1
            yield doc
        span = hi - lo  # the width this range had (a cut may have shortened it)
        width = span * 2 if n == 0 else max(1, min(span * 2, span * rows // n))
        lo = hi
    for flt in _OTHER_TYPE_BRACKETS:
        yield from emit(flt)


def _as_id(value: Any) -> int:
    """An id field as an int: an int, or a double with an integral value (what a shell or
    mongoimport writes). Raises TypeError for a bool or any other type and ValueError for a
    fractional, infinite or NaN double, so 2.5 or true is never read as user 2 or 1."""
    if isinstance(value, int) and not isinstance(value, bool):  # int, or bson's Int64
        return int(value)
    if type(value) is float and value.is_integer():
        return int(value)
    raise TypeError(f"not an id: {value!r}") if type(value) is not float else ValueError(value)


def read_db_ratings(
    db: Any,
    batch_size: int = 50_000,
    expected: int | None = None,
    range_rows: int | None = RANGE_ROWS,
    pacing: ReadPacing = ReadPacing(),
    known_users: tuple[np.ndarray, np.ndarray] | None = None,
) -> Ratings:
    """All ratings of the `ratings` collection as columnar arrays (sync pymongo database).

    Read by userId ranges of ~`range_rows` rows on the (userId, movieId) index (`_user_ranges`),
    or with one cursor when the collection has no such index or `range_rows` is None. A range
    read is not one point-in-time view: a rating written while the read runs is in it or not,
    as with any cursor on MongoDB; every rating committed before the read began is in it.
    `pacing` paces the range read and reports its progress (`ReadPacing`); `known_users`
    (user_ids, rating counts, e.g. the last model's) place cuts every ~`range_rows` of their
    ratings that no range crosses (`range_cuts`).

    Streamed: documents are converted a chunk of `batch_size` at a time into arrays sized from
    `expected` (1% headroom; grown by doubling past it, or from 1M rows without it), so 25M
    ratings cost ~0.7 GB here, not a Python list of every field of every row (~3.5 GB) plus
    the arrays made from it."""
    cols = _Columns(int(expected * 1.01) + 1024 if expected is not None else 1 << 20)
    chunk: list[list] = [[], [], [], []]
    coll = db[data_model.RATINGS]
    if range_rows is not None and _user_index(coll):
        cuts = None if known_users is None else range_cuts(*known_users, range_rows)
        docs: Iterator[dict[str, Any]] = _user_ranges(coll, range_rows, pacing, cuts)
    else:
        if range_rows is not None:
            log.warning("ratings has no index on userId: read with one cursor")
        docs = iter(coll.find({}, _PROJECTION).batch_size(batch_size))
    users, movies, values, stamps = chunk
    for doc in docs:
        try:
            u, m, r = _as_id(doc["userId"]), _as_id(doc["movieId"]), float(doc["rating"])
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


def read_db_catalogue(db: Any) -> tuple[np.ndarray | None, dict[int, tuple[str, ...]]]:
    """The catalogue in one pass over the `movies` collection: every movieId (sorted), or None
    (no filter, logged) while the collection is empty (a database mongo-init has not filled),
    and each movie's genres (movieId → names; a missing or malformed `genres` field counts as
    none)."""
    ids: list[int] = []
    genres_of: dict[int, tuple[str, ...]] = {}
    for d in db[data_model.MOVIES].find({}, {"_id": 0, "movieId": 1, "genres": 1}):
        m = int(d["movieId"])
        ids.append(m)
        g = d.get("genres")
        if isinstance(g, list):
            names = tuple(x for x in g if isinstance(x, str) and x)
            if names:
                genres_of[m] = names
    if not ids:
        log.warning("the movies collection is empty: ratings are not checked against it")
        return None, genres_of
    return np.asarray(sorted(ids), np.int64), genres_of


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
    pacing: Callable[[int], ReadPacing] | None = None,
    known_users: tuple[np.ndarray, np.ndarray] | None = None,
) -> Snapshot:
    """Read, merge, clean and write the snapshot. `pacing(expected ratings)` gives the MongoDB
    read's pacing and progress (`ReadPacing`); None: unpaced, silent. `known_users` (user_ids,
    rating counts) of the last model place the read's range cuts (`range_cuts`)."""
    started = int(time.time())  # every rating committed before this is in the read
    summary = LoadSummary()
    expected = expected_ratings(db)
    paced = ReadPacing() if pacing is None else pacing(expected)
    db_r = valid_rows(
        read_db_ratings(
            db,
            expected=expected,
            pacing=paced,
            known_users=known_users,
        ),
        DB_SOURCE,
        summary,
        now=started,
    )
    known, genres_of = read_db_catalogue(db)
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
    return Snapshot(path, len(merged), n_db, n_csv, source, summary, genres_of)


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
