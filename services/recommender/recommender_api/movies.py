"""In-memory movie metadata and popularity order, refreshed periodically from MongoDB.

Titles and genres change rarely and popularity drifts slowly, so a snapshot refreshed every
`movies_refresh_seconds` keeps a database round trip out of every response. A movie an admin
has just added is picked up sooner: a request about a movie the snapshot lacks re-reads it, at
most once per `ON_DEMAND_SECONDS` across all requests (unknown ids cannot drive the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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


@dataclass(frozen=True)
class MovieCatalog:
    meta: dict[int, MovieMeta] = field(default_factory=dict)
    genre_names: dict[str, str] = field(default_factory=dict)  # lower-case → canonical
    genre_ids: dict[str, np.ndarray] = field(default_factory=dict)  # canonical → movieIds
    popular_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    loaded_at: float = 0.0
    new_ids: tuple[int, ...] = ()  # movies an admin added after the import, in id order

    @classmethod
    def from_docs(cls, docs: list[dict[str, Any]]) -> MovieCatalog:
        meta: dict[int, MovieMeta] = {}
        by_genre: dict[str, list[int]] = {}
        for d in docs:
            try:
                mid = int(d["movieId"])
            except (KeyError, TypeError, ValueError):
                continue
            genres = [str(g) for g in (d.get("genres") or [])]
            pop = d.get("popularity_score")
            meta[mid] = MovieMeta(
                movieId=mid,
                title=d.get("title"),
                year=d.get("year"),
                genres=genres,
                rating_count=int(d.get("rating_count") or 0),
                popularity_score=float(pop) if pop is not None else None,
                new=d.get("added_at") is not None,
                tags=_tags(d.get("tags")),
            )
            for g in genres:
                by_genre.setdefault(g, []).append(mid)
        ranked = [m for m in meta.values() if m.popularity_score is not None]
        # Damped mean first; rating_count then movieId break ties so the order is stable.
        ranked.sort(key=lambda m: (-(m.popularity_score or 0.0), -m.rating_count, m.movieId))
        return cls(
            meta=meta,
            genre_names={g.lower(): g for g in by_genre},
            genre_ids={g: np.asarray(sorted(ids), np.int64) for g, ids in by_genre.items()},
            popular_ids=np.asarray([m.movieId for m in ranked], np.int64),
            loaded_at=time.time(),
            new_ids=tuple(sorted(m.movieId for m in meta.values() if m.new)),
        )

    def resolve_genre(self, genre: str) -> str | None:
        return self.genre_names.get(genre.strip().lower())


class MovieCache:
    def __init__(self, repo: Repository, refresh_seconds: float) -> None:
        self.repo = repo
        self.refresh_seconds = refresh_seconds
        self.catalog = MovieCatalog()
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_demand_lock = asyncio.Lock()
        self._on_demand_at = -float("inf")

    async def refresh(self) -> bool:
        try:
            docs = await self.repo.movies()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("movie metadata refresh failed", extra={"error": self.last_error})
            return False
        self.catalog = MovieCatalog.from_docs(docs)
        self.last_error = None
        return True

    async def refresh_for_unknown(self, movie_id: int) -> bool:
        """Re-read the movies because a request named `movie_id`, which the snapshot lacks (an
        admin may have added it since the last refresh). At most one re-read per
        ON_DEMAND_SECONDS whatever the requests ask; concurrent callers share it. True when
        the movie is known afterwards."""
        if movie_id in self.catalog.meta:
            return True
        async with self._on_demand_lock:
            if movie_id not in self.catalog.meta:
                now = time.monotonic()
                if now - self._on_demand_at >= ON_DEMAND_SECONDS:
                    self._on_demand_at = now
                    await self.refresh()
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
