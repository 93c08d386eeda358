"""An in-process read model of the movie catalog for list, search, popular and genres.

Why: SecantusDB (the embedded server) answers an unfiltered sorted page or a regex in 0.7–3 s
(it scans and sorts ~10k documents per call, even with an index), which 20 concurrent clients
turn into multi-second queues. The catalog is ~10k small documents (a few MB), so each process
loads it once and keeps it fresh:

- a full load at start-up (and every `full_reload_seconds` as a safety net);
- every `refresh_seconds`, an indexed range query for the movies changed since the last refresh
  (`movierec_common.movie_changes`: the change stamp every movie write sets);
- this process's own rating writes are applied at once.

So lists may show another replica's new ratings up to `refresh_seconds` late. Movie detail and
everything written still read MongoDB directly. Derived fields (avg_rating, popularity_score)
are computed here from the exact count and sum with the shared formula.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from dataclasses import dataclass
from typing import Any

from movierec_common import data_model as model
from movierec_common.movie_changes import FULL_RELOAD_SECONDS, READ_BATCH, ChangeMark
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

FIELDS = {
    "_id": 0,
    "movieId": 1,
    "title": 1,
    "year": 1,
    "genres": 1,
    "imdbId": 1,
    "tmdbId": 1,
    "rating_count": 1,
    "rating_sum": 1,
    "title_tokens": 1,
    "added_at": 1,
}


@dataclass
class _Entry:
    doc: dict[str, Any]  # public fields, derived stats included
    tokens: frozenset[str]
    title_key: str


def _sort_key(sort: str):
    # Keys for an ascending sort of the *default* direction; None-safe.
    if sort == "popularity":
        return lambda e: (-e.doc["popularity_score"], -e.doc["rating_count"], e.doc["movieId"])
    if sort == "rating":
        return lambda e: (
            -e.doc["popularity_score"],
            -(e.doc["avg_rating"] or 0.0),
            e.doc["movieId"],
        )
    if sort == "count":
        return lambda e: (-e.doc["rating_count"], -e.doc["popularity_score"], e.doc["movieId"])
    if sort == "title":
        return lambda e: (e.title_key, e.doc["year"] or 0, e.doc["movieId"])
    if sort == "year":
        return lambda e: (
            e.doc["year"] is None,
            e.doc["year"] or 0,
            e.title_key,
            e.doc["movieId"],
        )
    raise ValueError(sort)


class MovieCache:
    def __init__(
        self,
        movies: AsyncCollection,
        prior_weight: float,
        refresh_seconds: float,
        full_reload_seconds: float = FULL_RELOAD_SECONDS,
    ) -> None:
        self.movies = movies
        self.prior_weight = prior_weight
        self.refresh_seconds = refresh_seconds
        self.full_reload_seconds = full_reload_seconds
        self.global_mean = 3.5
        self._entries: dict[int, _Entry] = {}
        self._mark = ChangeMark()
        self._last_full = 0.0
        self._sorted: dict[str, list[_Entry]] = {}
        self._positions: dict[str, dict[int, int]] = {}
        self._genres: list[dict[str, Any]] | None = None
        # Title search index: token -> movieIds, and the sorted vocabulary for prefix ranges.
        self._token_ids: dict[str, set[int]] = {}
        self._vocab: list[str] = []
        self.loaded = False

    # ---- loading -------------------------------------------------------------------------

    def _entry(self, raw: dict[str, Any]) -> _Entry:
        n = int(raw.get("rating_count", 0))
        s = float(raw.get("rating_sum", 0.0))
        doc = {
            "movieId": raw["movieId"],
            "title": raw["title"],
            "year": raw.get("year"),
            "genres": raw.get("genres", []),
            "imdbId": raw.get("imdbId"),
            "tmdbId": raw.get("tmdbId"),
            **model.movie_stats(s, n, self.global_mean, self.prior_weight),
            "new": raw.get("added_at") is not None,
        }
        tokens = raw.get("title_tokens") or model.title_tokens(raw["title"])
        return _Entry(doc, frozenset(tokens), model.fold(raw["title"]))

    def _changed(self) -> None:
        self._sorted.clear()
        self._positions.clear()
        self._genres = None

    def _index_titles(self) -> None:
        token_ids: dict[str, set[int]] = {}
        for mid, e in self._entries.items():
            for t in e.tokens:
                token_ids.setdefault(t, set()).add(mid)
        self._token_ids = token_ids
        self._vocab = sorted(token_ids)

    async def full_load(self, global_mean: float) -> None:
        self.global_mean = global_mean
        entries: dict[int, _Entry] = {}
        mark = ChangeMark.now()
        async for raw in self.movies.find({}, FIELDS, batch_size=READ_BATCH):
            entries[int(raw["movieId"])] = self._entry(raw)
        self._mark = mark
        self._entries = entries
        self._index_titles()
        self._last_full = time.monotonic()
        self.loaded = True
        self._changed()
        log.info("movie cache loaded", extra={"movies": len(entries)})

    async def refresh(self) -> int:
        """Pull movies whose stats changed since the last refresh; returns how many."""
        if not self.loaded or time.monotonic() - self._last_full > self.full_reload_seconds:
            await self.full_load(self.global_mean)
            return len(self._entries)
        n = 0
        new_movie = False
        mark = ChangeMark.now()
        changed = self._mark.changed_filter()
        async for raw in self.movies.find(changed, FIELDS, batch_size=READ_BATCH):
            mid = int(raw["movieId"])
            new_movie |= mid not in self._entries
            self._entries[mid] = self._entry(raw)
            n += 1
        self._mark = mark
        if new_movie:
            self._index_titles()
        if n:
            self._changed()
        return n

    async def run(self, stop: asyncio.Event) -> None:
        """Background refresher; a database outage only delays freshness."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.refresh_seconds)
                return
            except TimeoutError:
                pass
            try:
                await self.refresh()
            except PyMongoError as exc:
                log.warning("movie cache refresh failed", extra={"error": str(exc)[:200]})

    def apply(self, raw: dict[str, Any]) -> None:
        """This process's own write: the movie as read back after the change."""
        if raw is not None and "title" in raw:
            mid = int(raw["movieId"])
            new_movie = mid not in self._entries
            self._entries[mid] = self._entry(raw)
            if new_movie:
                self._index_titles()
            self._changed()

    # ---- queries -------------------------------------------------------------------------

    def _ordered(self, sort: str) -> list[_Entry]:
        cached = self._sorted.get(sort)
        if cached is None:
            cached = sorted(self._entries.values(), key=_sort_key(sort))
            self._sorted[sort] = cached
        return cached

    def _position(self, sort: str) -> dict[int, int]:
        pos = self._positions.get(sort)
        if pos is None:
            pos = {e.doc["movieId"]: i for i, e in enumerate(self._ordered(sort))}
            self._positions[sort] = pos
        return pos

    def _title_matches(self, whole: list[str], last: str) -> set[int]:
        """Movies having every whole word as a token and some token starting with `last`."""
        lo = bisect.bisect_left(self._vocab, last)
        hi = bisect.bisect_left(self._vocab, last + "\U0010ffff")
        hits: set[int] = set()
        for token in self._vocab[lo:hi]:
            hits |= self._token_ids[token]
        for word in whole:
            hits &= self._token_ids.get(word, set())
            if not hits:
                break
        return hits

    def search(
        self,
        *,
        q: str | None,
        genre: str | None,
        year_min: int | None,
        year_max: int | None,
        sort: str,
        descending_flip: bool,
        skip: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        candidates: list[_Entry]
        if q:
            words = model.tokenize(q)
            if not words:
                return [], 0
            *whole, last = words
            ids = self._title_matches(whole, last)
            pos = self._position(sort)
            ordered_ids = sorted(ids, key=pos.__getitem__, reverse=descending_flip)
            candidates = [self._entries[i] for i in ordered_ids]
        else:
            candidates = self._ordered(sort)
            if descending_flip:
                candidates = candidates[::-1]

        def keep(e: _Entry) -> bool:
            d = e.doc
            if genre is not None and genre not in d["genres"]:
                return False
            if year_min is not None and (d["year"] is None or d["year"] < year_min):
                return False
            return not (year_max is not None and (d["year"] is None or d["year"] > year_max))

        if genre is None and year_min is None and year_max is None:
            hits = candidates
        else:
            hits = [e for e in candidates if keep(e)]
        return [e.doc for e in hits[skip : skip + limit]], len(hits)

    def popular(self, genre: str | None, limit: int, min_count: int) -> list[dict[str, Any]]:
        out = []
        for e in self._ordered("popularity"):
            d = e.doc
            if d["rating_count"] < min_count or (genre is not None and genre not in d["genres"]):
                continue
            out.append(d)
            if len(out) == limit:
                break
        return out

    def genres(self) -> list[dict[str, Any]]:
        if self._genres is None:
            counts: dict[str, int] = {}
            for e in self._entries.values():
                for g in e.doc["genres"]:
                    counts[g] = counts.get(g, 0) + 1
            self._genres = [{"genre": g, "count": counts[g]} for g in sorted(counts)]
        return self._genres
