"""Import movies.csv + links.csv and ratings.csv, with exact per-movie statistics.

Speed: SecantusDB inserts ~6k documents/s, but a bulk of 9.7k single-document updates takes
~14 s, so on a fresh database the statistics are computed in NumPy from the CSV arrays and
written *inside* the movie documents at insert time — no update pass at all. Whenever the
database already held movies or ratings (a re-run after a crash, a changed data set, ratings
made through the API), the statistics are instead reconciled from the `ratings` collection with
a `$group` and only differing movies are updated, so they are exact either way.

Idempotency: the `meta` import marker records the data set's fingerprint; a matching marker
skips the import. Without it, inserts are unordered and duplicate-key errors (unique movieId,
unique (userId, movieId)) are ignored, so existing rows are kept (the database wins).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from movierec_common import data_model as model
from movierec_common import movie_changes
from movierec_common.loader import (
    Dataset,
    OnError,
    Ratings,
    Tombstones,
    detect_layout,
    load_dataset,
)
from movierec_common.movie_tags import movie_tags
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from rich.progress import Progress

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000


@dataclass
class ImportResult:
    skipped: bool
    movies_inserted: int = 0
    ratings_inserted: int = 0
    stats_reconciled: int = 0
    malformed_rows: int = 0
    load_summary: dict[str, Any] = field(default_factory=dict)
    summary_lines: list[str] = field(default_factory=list)
    ml_user_ids: list[int] = field(default_factory=list)
    global_mean: float = 0.0


def fingerprint(data_dir: Path) -> str:
    """sha256 over the layout's ratings, movies and links files (those present)."""
    layout = detect_layout(data_dir)
    h = hashlib.sha256()
    for fmt in (layout.movies, layout.links, layout.ratings):
        if fmt is not None and (data_dir / fmt.name).exists():
            h.update(fmt.name.encode())
            with (data_dir / fmt.name).open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


class RatingDocs(Sequence[dict[str, Any]]):
    """The cleaned ratings as MongoDB documents, built one slice (one insert batch) at a time.

    Why: a list of every document costs ~400 bytes of Python objects per rating, ~10 GB at
    ml-25m, on top of the columnar arrays; a batch of 2,000 costs under 1 MB."""

    def __init__(self, ratings: Ratings) -> None:
        self._r = ratings

    def __len__(self) -> int:
        return len(self._r.user_ids)

    def __getitem__(self, index: int | slice) -> Any:
        if not isinstance(index, slice):
            i = range(len(self))[index]
            return self[i : i + 1][0]
        r = self._r
        return [
            {"userId": u, "movieId": mid, "rating": x, "timestamp": t}
            for u, mid, x, t in zip(
                r.user_ids[index].tolist(),
                r.movie_ids[index].tolist(),
                r.ratings[index].astype(np.float64).tolist(),
                r.timestamps[index].tolist(),
                strict=True,
            )
        ]


async def _insert_batch(coll: AsyncCollection, batch: Sequence[dict[str, Any]]) -> int:
    """One unordered `insert_many`; returns how many documents it inserted, duplicates of the
    unique indexes not counted and not raised."""
    try:
        result = await coll.insert_many(batch, ordered=False)
        return len(result.inserted_ids)
    except BulkWriteError as exc:
        other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if other:
            raise
        return int(exc.details.get("nInserted", 0))


async def insert_ignoring_duplicates(
    coll: AsyncCollection,
    docs: Sequence[dict[str, Any]],
    batch_size: int,
    progress: Progress | None = None,
    label: str = "",
    fields_at_write: Callable[[], dict[str, Any]] | None = None,
    in_flight: int = 2,
) -> int:
    """Unordered batched inserts; rows already present (unique-index hits) are left as they are.

    Up to `in_flight` batches are sent at once, so the client builds and encodes the next batch
    while the server stores the previous one (the embedded server is the import's bound and
    otherwise idles for each round trip). `fields_at_write()` (e.g. `movie_changes.stamp`) is
    added to each batch's documents just before the batch is written, and such batches go one
    at a time: a stamp must never be committed after a later one. The first failing batch's
    error is raised once the batches already sent have finished."""
    if fields_at_write is not None:
        in_flight = 1
    task = progress.add_task(label, total=len(docs)) if progress is not None else None
    inserted = 0
    pending: deque[tuple[asyncio.Task[int], int]] = deque()

    async def finish_oldest() -> int:
        done, size = pending.popleft()
        n = await done
        if progress is not None and task is not None:
            progress.advance(task, size)
        return n

    try:
        for start in range(0, len(docs), batch_size):
            if len(pending) >= max(in_flight, 1):
                inserted += await finish_oldest()
            batch = docs[start : start + batch_size]
            if fields_at_write is not None:
                extra = fields_at_write()
                for d in batch:
                    d.update(extra)
            pending.append((asyncio.create_task(_insert_batch(coll, batch)), len(batch)))
        while pending:
            inserted += await finish_oldest()
    finally:
        # On a failure: let the batches already sent finish (they are acknowledged writes the
        # re-run skips as duplicates), without masking the first error.
        if pending:
            await asyncio.gather(*(t for t, _ in pending), return_exceptions=True)
    return inserted


def _movie_docs(
    ds: Dataset, stats: dict[int, tuple[int, float]], c: float, m: float
) -> list[dict[str, Any]]:
    links = {link.movieId: link for link in ds.links}
    tags = movie_tags(ds.tags)
    docs = []
    for mv in ds.movies:
        link = links.get(mv.movieId)
        count, total = stats.get(mv.movieId, (0, 0.0))
        docs.append(
            {
                "movieId": mv.movieId,
                "title": mv.title,
                "year": mv.year,
                "genres": mv.genres,
                "title_tokens": model.title_tokens(mv.title),
                "imdbId": link.imdbId if link else None,
                "tmdbId": link.tmdbId if link else None,
                "tags": tags.get(mv.movieId, []),
                **model.movie_stats(total, count, c, m),
            }
        )
    return docs


def _tags_fingerprint(data_dir: Path) -> str | None:
    layout = detect_layout(data_dir)
    if layout.tags is None or not (data_dir / layout.tags.name).exists():
        return None
    return hashlib.sha256((data_dir / layout.tags.name).read_bytes()).hexdigest()


async def sync_movie_tags(
    db: AsyncDatabase, data_dir: Path, ds: Dataset, already_written: bool = False
) -> int:
    """Write each MovieLens movie's `tags` (movierec_common.movie_tags) when the tags file
    changed since the last sync (`meta` marker with its sha256): a database imported before
    movies carried tags gets them; `already_written` (a fresh import inserted the movie documents
    with their tags) only records the marker. Admin-added movies
    (`added_at`) keep their own tags. Returns the number of movies updated."""
    fp = _tags_fingerprint(data_dir)
    if fp is None:
        return 0
    marker = await db[model.META].find_one({"_id": model.TAGS_MARKER_ID})
    if marker is not None and marker.get("fingerprint") == fp:
        return 0
    tags = movie_tags(ds.tags)
    ops = (
        []
        if already_written
        else [
            UpdateOne(
                {"movieId": mid, "added_at": {"$exists": False}},
                {"$set": {"tags": names, **movie_changes.stamp()}},
            )
            for mid, names in sorted(tags.items())
        ]
    )
    for start in range(0, len(ops), 500):
        await db[model.MOVIES].bulk_write(ops[start : start + 500], ordered=False)
    await db[model.META].update_one(
        {"_id": model.TAGS_MARKER_ID},
        {"$set": {"fingerprint": fp, "movies": len(tags), "finished_at": datetime.now(UTC)}},
        upsert=True,
    )
    return len(ops)


async def read_tombstones(db: AsyncDatabase) -> Tombstones:
    """The recorded rating deletions (collection `rating_deletions`), so a re-import never
    brings back a rating a user deleted after its file row."""
    users, movies, stamps = [], [], []
    cursor = db[model.RATING_DELETIONS].find(
        {}, {"_id": 0, "userId": 1, "movieId": 1, "deleted_at": 1}
    )
    async for d in cursor:
        users.append(int(d["userId"]))
        movies.append(int(d["movieId"]))
        stamps.append(int(d["deleted_at"]))
    return Tombstones(
        np.asarray(users, np.int64), np.asarray(movies, np.int64), np.asarray(stamps, np.int64)
    )


async def reconcile_stats(db: AsyncDatabase, prior_weight: float) -> tuple[int, float, int]:
    """Recount every movie's stats from `ratings`; update only movies that differ.

    Returns (movies updated, global mean, number of ratings).
    """
    groups = await (
        await db[model.RATINGS].aggregate(
            [{"$group": {"_id": "$movieId", "n": {"$sum": 1}, "s": {"$sum": "$rating"}}}]
        )
    ).to_list(None)
    counts = {int(g["_id"]): (int(g["n"]), float(g["s"])) for g in groups}
    n_total = sum(n for n, _ in counts.values())
    c = (sum(s for _, s in counts.values()) / n_total) if n_total else 0.0
    ops = []
    cursor = db[model.MOVIES].find(
        {}, {"_id": 0, "movieId": 1, "rating_count": 1, "rating_sum": 1, "popularity_score": 1}
    )
    async for doc in cursor:
        n, s = counts.get(int(doc["movieId"]), (0, 0.0))
        want = model.movie_stats(s, n, c, prior_weight)
        have_pop = doc.get("popularity_score")
        if (
            doc.get("rating_count") != n
            or doc.get("rating_sum") != s
            or have_pop is None
            or abs(have_pop - want["popularity_score"]) > 1e-9
        ):
            ops.append(
                UpdateOne({"movieId": doc["movieId"]}, {"$set": {**want, **movie_changes.stamp()}})
            )
    # Small bulks: SecantusDB applies ~700 updates/s, and one 10k-update bulk can outlast the
    # driver's socket timeout on a loaded machine.
    for start in range(0, len(ops), 500):
        await db[model.MOVIES].bulk_write(ops[start : start + 500], ordered=False)
    return len(ops), c, n_total


async def import_movielens(
    db: AsyncDatabase,
    data_dir: Path,
    prior_weight: float,
    batch_size: int,
    progress: Progress | None = None,
    on_error: OnError = "skip",
) -> ImportResult:
    fp = fingerprint(data_dir)
    ds = load_dataset(
        data_dir, on_error=on_error, with_tags=True, tombstones=await read_tombstones(db)
    )
    ratings = ds.ratings  # cleaned: one per (user, movie), latest wins; known movies only
    summary_lines = ds.summary.lines()
    for line in summary_lines:
        log.info("load: %s", line)
    ml_user_ids = sorted({int(u) for u in np.unique(ratings.user_ids)})
    marker = await db[model.META].find_one({"_id": model.IMPORT_MARKER_ID})
    if marker is not None and marker.get("fingerprint") == fp:
        await sync_movie_tags(db, data_dir, ds)
        stats_doc = await db[model.META].find_one({"_id": model.RATINGS_STATS_ID}) or {}
        return ImportResult(
            skipped=True,
            ml_user_ids=ml_user_ids,
            global_mean=float(stats_doc.get("global_mean", 0.0)),
            load_summary=ds.summary.to_dict(),
            summary_lines=summary_lines,
        )

    fresh = (
        await db[model.MOVIES].estimated_document_count() == 0
        and await db[model.RATINGS].estimated_document_count() == 0
    )
    # Exact per-movie sums over the kept ratings (multiples of 0.5: float sums exact).
    movie_ids, inverse = np.unique(ratings.movie_ids, return_inverse=True)
    counts = np.bincount(inverse)
    sums = np.bincount(inverse, weights=ratings.ratings.astype(np.float64))
    stats = {
        int(mid): (int(n), float(s)) for mid, n, s in zip(movie_ids, counts, sums, strict=True)
    }
    c = float(sums.sum() / counts.sum()) if counts.sum() else 0.0

    movie_docs = _movie_docs(ds, stats if fresh else {}, c, prior_weight)
    rating_docs = RatingDocs(ratings)
    movies_inserted = await insert_ignoring_duplicates(
        db[model.MOVIES], movie_docs, batch_size, progress, "movies", movie_changes.stamp
    )
    log.info("ratings import started: %d ratings", len(rating_docs))
    t0 = time.perf_counter()
    ratings_inserted = await insert_ignoring_duplicates(
        db[model.RATINGS], rating_docs, batch_size, progress, "ratings"
    )
    secs = time.perf_counter() - t0
    log.info(
        "ratings imported: %d in %.1f s (%.0f ratings/s)",
        len(rating_docs),
        secs,
        len(rating_docs) / max(secs, 1e-9),
    )
    await sync_movie_tags(db, data_dir, ds, already_written=fresh)
    reconciled = 0
    n_ratings = len(rating_docs)
    if not fresh:
        reconciled, c, n_ratings = await reconcile_stats(db, prior_weight)
    now = datetime.now(UTC)
    await db[model.META].update_one(
        {"_id": model.RATINGS_STATS_ID},
        {
            "$set": {
                "global_mean": c,
                "prior_weight": prior_weight,
                "n_ratings": n_ratings,
                "updated_at": now,
            }
        },
        upsert=True,
    )
    await db[model.META].update_one(
        {"_id": model.IMPORT_MARKER_ID},
        {
            "$set": {
                "fingerprint": fp,
                "finished_at": now,
                "movies": len(movie_docs),
                "ratings": len(rating_docs),
                "malformed_rows": len(ds.summary.issues),
                "load_summary": ds.summary.to_dict(),
            }
        },
        upsert=True,
    )
    return ImportResult(
        skipped=False,
        movies_inserted=movies_inserted,
        ratings_inserted=ratings_inserted,
        stats_reconciled=reconciled,
        malformed_rows=len(ds.summary.issues),
        load_summary=ds.summary.to_dict(),
        summary_lines=summary_lines,
        ml_user_ids=ml_user_ids,
        global_mean=c,
    )
