"""In-memory movie metadata and popularity order, kept fresh from MongoDB.

Titles and genres change rarely and popularity drifts slowly, so a snapshot keeps a database
round trip out of every response. It is read whole at start-up and every
`full_reload_seconds` (a safety net), and every `refresh_seconds` only the movies changed since
(`movierec_common.movie_changes`: an indexed range query on the change stamp every movie write
sets), applied to a copy of the snapshot. A movie an admin has just added is picked up sooner: a
request about a movie the snapshot lacks triggers a refresh, at most once per
`ON_DEMAND_SECONDS` across all requests (unknown ids cannot drive the database).

Why not re-read everything each time: at 9.7k movies a whole read kept the embedded server
busy ~0.3 s and building the snapshot held the event loop ~0.1 s, once a minute (the stall in the
recommender's p99 under load, bench/REPORT.md); at 62k movies, seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from movierec_common.data_model import genre_key
from movierec_common.movie_changes import FULL_RELOAD_SECONDS, ChangeMark
from movierec_common.movie_tags import normalise_tag

from .repository import Repository

log = logging.getLogger(__name__)
ON_DEMAND_SECONDS = 2.0


def _tags(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    out = dict.fromkeys(normalise_tag(t) for t in raw if isinstance(t, str))
    return tuple(t for t in out if t)


@dataclass(frozen=True)
class MovieMeta:
    movieId: int
    title: str | None
    year: int | None
    genres: list[str]
    rating_count: int
    popularity_score: float | None
    new: bool = False  # added by an admin after the import (issue 17: content profile)
    tags: tuple[str, ...] = ()  # normalised (movierec_common.movie_tags), for content profiles

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> MovieMeta | None:
        """One movie document's metadata; None without a usable movieId."""
        try:
            mid = int(d["movieId"])
        except (KeyError, TypeError, ValueError):
            return None
        pop = d.get("popularity_score")
        return cls(
            movieId=mid,
            title=d.get("title"),
            year=d.get("year"),
            genres=[str(g) for g in (d.get("genres") or [])],
            rating_count=int(d.get("rating_count") or 0),
            popularity_score=float(pop) if pop is not None else None,
            new=d.get("added_at") is not None,
            tags=_tags(d.get("tags")),
        )


def _popular_order(meta: dict[int, MovieMeta]) -> np.ndarray:
    """movieIds with a popularity score, damped mean first; rating_count then movieId break
    ties so the order is stable."""
    ranked = [m for m in meta.values() if m.popularity_score is not None]
    ids = np.fromiter((m.movieId for m in ranked), np.int64, len(ranked))
    pop = np.fromiter((m.popularity_score or 0.0 for m in ranked), np.float64, len(ranked))
    cnt = np.fromiter((m.rating_count for m in ranked), np.int64, len(ranked))
    return ids[np.lexsort((ids, -cnt, -pop))]


def _genre_index(meta: dict[int, MovieMeta]) -> dict[str, np.ndarray]:
    by_genre: dict[str, list[int]] = {}
    for m in meta.values():
        for g in m.genres:
            by_genre.setdefault(g, []).append(m.movieId)
    return {g: np.asarray(sorted(ids), np.int64) for g, ids in by_genre.items()}


@dataclass(frozen=True)
class MovieCatalog:
    meta: dict[int, MovieMeta] = field(default_factory=dict)
    genre_names: dict[str, str] = field(default_factory=dict)  # genre_key → canonical
    genre_ids: dict[str, np.ndarray] = field(default_factory=dict)  # canonical → movieIds
    popular_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    loaded_at: float = 0.0
    new_ids: tuple[int, ...] = ()  # movies an admin added after the import, in id order

    @classmethod
    def from_docs(cls, docs: Iterable[dict[str, Any]]) -> MovieCatalog:
        meta: dict[int, MovieMeta] = {}
        for d in docs:
            m = MovieMeta.from_doc(d)
            if m is not None:
                meta[m.movieId] = m
        return cls._build(meta)

    @classmethod
    def _build(
        cls, meta: dict[int, MovieMeta], genre_ids: dict[str, np.ndarray] | None = None
    ) -> MovieCatalog:
        """The snapshot of `meta`; `genre_ids` when unchanged, else indexed from `meta`."""
        genre_ids = _genre_index(meta) if genre_ids is None else genre_ids
        return cls(
            meta=meta,
            genre_names={genre_key(g): g for g in genre_ids},
            genre_ids=genre_ids,
            popular_ids=_popular_order(meta),
            loaded_at=time.time(),
            new_ids=tuple(sorted(m.movieId for m in meta.values() if m.new)),
        )

    def with_changes(self, docs: Iterable[dict[str, Any]]) -> MovieCatalog:
        """A new snapshot with these movie documents (changed or new) applied; this one is
        left as it is (requests in flight keep reading it). The genre index is rebuilt only
        when a movie is new or its genres changed."""
        meta = dict(self.meta)
        genres_changed = False
        for d in docs:
            m = MovieMeta.from_doc(d)
            if m is None:
                continue
            old = meta.get(m.movieId)
            genres_changed |= old is None or old.genres != m.genres
            meta[m.movieId] = m
        return self._build(meta, None if genres_changed else self.genre_ids)

    def resolve_genre(self, genre: str) -> str | None:
        return self.genre_names.get(genre_key(genre))


class MovieCache:
    """The current `MovieCatalog`, replaced (never mutated) by each refresh."""

    def __init__(
        self,
        repo: Repository,
        refresh_seconds: float,
        full_reload_seconds: float = FULL_RELOAD_SECONDS,
    ) -> None:
        self.repo = repo
        self.refresh_seconds = refresh_seconds
        self.full_reload_seconds = full_reload_seconds
        self.catalog = MovieCatalog()
        self.last_error: str | None = None
        self._mark = ChangeMark()
        self._last_full = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()
        self._on_demand_at = -float("inf")

    async def refresh(self) -> bool:
        """Read what changed since the last refresh (everything while the snapshot is empty
        or the full reload is due) and swap in the new snapshot. False when the database
        could not be read (the snapshot stays as it was)."""
        async with self._refresh_lock:  # one reader at a time: the mark moves forward only
            full = (
                not self.catalog.meta
                or time.monotonic() - self._last_full >= self.full_reload_seconds
            )
            mark = ChangeMark.now()  # the next read's "since", once this one worked
            try:
                docs = await self.repo.movies(None if full else self._mark.changed_filter())
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("movie metadata refresh failed", extra={"error": self.last_error})
                return False
            # Both builds off the event loop: a whole one ~0.1 s at 9.7k movies and ~0.5 s at
            # 62k; applying changes ~30 ms at 62k (the popularity order is redone), every
            # refresh while ratings arrive.
            if full:
                self.catalog = await asyncio.to_thread(MovieCatalog.from_docs, docs)
                self._last_full = time.monotonic()
            elif docs:
                self.catalog = await asyncio.to_thread(self.catalog.with_changes, docs)
            self._mark = mark
            self.last_error = None
            return True

    async def refresh_for_unknown(self, movie_id: int) -> bool:
        """Re-read the movies because a request named `movie_id`, which the snapshot lacks (an
        admin may have added it since the last refresh). At most one re-read per
        ON_DEMAND_SECONDS whatever the requests ask; concurrent callers share it. True when
        the movie is known afterwards."""
        if movie_id in self.catalog.meta:
            return True
        now = time.monotonic()
        if now - self._on_demand_at >= ON_DEMAND_SECONDS:
            self._on_demand_at = now
            await self.refresh()
        elif self._refresh_lock.locked():
            async with self._refresh_lock:  # wait for the refresh under way
                pass
        return movie_id in self.catalog.meta

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="movie-refresh")

    async def _loop(self) -> None:
        while True:
            # Retry quickly while empty (database still being initialised), slowly afterwards.
            delay = self.refresh_seconds if self.catalog.meta else min(2.0, self.refresh_seconds)
            await asyncio.sleep(delay)
            await self.refresh()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
