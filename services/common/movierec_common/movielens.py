"""Reading the MovieLens CSVs (ratings, movies, links, tags).

The files have CRLF line endings, UTF-8 titles with quoted commas, and `title (year)` names. A
malformed row is never guessed at: each one is reported with its file and line number and then
either skipped (`on_error="skip"`, the default, so one bad line does not stop an import) or
turned into an exception (`on_error="raise"`). The rule is the same for every file.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from movierec_common.data_model import RATING_MAX, RATING_MIN

log = logging.getLogger(__name__)

OnError = Literal["skip", "raise"]
_YEAR_RE = re.compile(r"\s*\((\d{4})(?:[–-]\d{0,4})?\)\s*$")


class MalformedRowError(ValueError):
    pass


@dataclass(frozen=True)
class RowIssue:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class LoadReport:
    issues: list[RowIssue] = field(default_factory=list)

    def add(self, issue: RowIssue, on_error: OnError) -> None:
        if on_error == "raise":
            raise MalformedRowError(str(issue))
        log.warning("skipping malformed row: %s", issue)
        self.issues.append(issue)


@dataclass(frozen=True)
class Ratings:
    """Columnar ratings: one NumPy array per field, row i across all four."""

    user_ids: np.ndarray  # int64
    movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.ratings.shape[0])


@dataclass(frozen=True)
class Movie:
    movieId: int
    title: str
    year: int | None
    genres: list[str]


@dataclass(frozen=True)
class Link:
    movieId: int
    imdbId: str | None
    tmdbId: int | None


@dataclass(frozen=True)
class Tag:
    userId: int
    movieId: int
    tag: str
    timestamp: int


def _rows(path: Path, expected: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) after checking the header; newline='' keeps CRLF correct."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != expected:
            raise MalformedRowError(f"{path.name}:1: expected header {expected}, got {header}")
        for fields in reader:
            yield reader.line_num, fields


def _int(text: str) -> int:
    if not re.fullmatch(r"\s*-?\d+\s*", text):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def _check_fields(fields: list[str], n: int) -> str | None:
    if len(fields) != n:
        return f"expected {n} fields, got {len(fields)}"
    if any(f.strip() == "" for f in fields):
        return "empty field"
    return None


def parse_rating(text: str) -> float:
    """A rating must be a number in 0.5–5.0 in steps of 0.5."""
    value = float(text)
    if not math.isfinite(value) or not RATING_MIN <= value <= RATING_MAX:
        raise ValueError(f"rating {text!r} outside {RATING_MIN}–{RATING_MAX}")
    if value * 2 != round(value * 2):
        raise ValueError(f"rating {text!r} is not a multiple of 0.5")
    return value


def load_ratings(
    path: Path, on_error: OnError = "skip", report: LoadReport | None = None
) -> Ratings:
    report = report if report is not None else LoadReport()
    users: list[int] = []
    movies: list[int] = []
    values: list[float] = []
    stamps: list[int] = []
    for line, fields in _rows(path, ["userId", "movieId", "rating", "timestamp"]):
        problem = _check_fields(fields, 4)
        if problem is None:
            try:
                u, m, r, t = (
                    _int(fields[0]),
                    _int(fields[1]),
                    parse_rating(fields[2]),
                    _int(fields[3]),
                )
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            report.add(RowIssue(path.name, line, problem), on_error)
            continue
        users.append(u)
        movies.append(m)
        values.append(r)
        stamps.append(t)
    return Ratings(
        user_ids=np.asarray(users, dtype=np.int64),
        movie_ids=np.asarray(movies, dtype=np.int64),
        ratings=np.asarray(values, dtype=np.float32),
        timestamps=np.asarray(stamps, dtype=np.int64),
    )


def parse_title(raw: str) -> tuple[str, int | None]:
    """Split 'Heat (1995)' into ('Heat', 1995); titles without a year keep year=None."""
    raw = raw.strip()
    m = _YEAR_RE.search(raw)
    if not m:
        return raw, None
    return raw[: m.start()].strip(), int(m.group(1))


def load_movies(
    path: Path, on_error: OnError = "skip", report: LoadReport | None = None
) -> list[Movie]:
    report = report if report is not None else LoadReport()
    out: list[Movie] = []
    for line, fields in _rows(path, ["movieId", "title", "genres"]):
        problem = _check_fields(fields, 3)
        if problem is None:
            try:
                movie_id = _int(fields[0])
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            report.add(RowIssue(path.name, line, problem), on_error)
            continue
        title, year = parse_title(fields[1])
        genres = [] if fields[2] == "(no genres listed)" else fields[2].split("|")
        out.append(Movie(movie_id, title, year, genres))
    return out


def load_links(
    path: Path, on_error: OnError = "skip", report: LoadReport | None = None
) -> list[Link]:
    report = report if report is not None else LoadReport()
    out: list[Link] = []
    for line, fields in _rows(path, ["movieId", "imdbId", "tmdbId"]):
        # tmdbId is legitimately empty for a handful of movies; only movieId is required.
        if len(fields) != 3 or not fields[0].strip():
            report.add(RowIssue(path.name, line, f"expected 3 fields, got {fields!r}"), on_error)
            continue
        try:
            movie_id = _int(fields[0])
            imdb = fields[1].strip() or None
            if imdb is not None and not imdb.isdigit():
                raise ValueError(f"imdbId not numeric: {imdb!r}")
            tmdb = _int(fields[2]) if fields[2].strip() else None
        except ValueError as exc:
            report.add(RowIssue(path.name, line, str(exc)), on_error)
            continue
        out.append(Link(movie_id, imdb, tmdb))
    return out


def load_tags(
    path: Path, on_error: OnError = "skip", report: LoadReport | None = None
) -> list[Tag]:
    report = report if report is not None else LoadReport()
    out: list[Tag] = []
    for line, fields in _rows(path, ["userId", "movieId", "tag", "timestamp"]):
        problem = _check_fields(fields, 4)
        if problem is None:
            try:
                out.append(Tag(_int(fields[0]), _int(fields[1]), fields[2], _int(fields[3])))
                continue
            except ValueError as exc:
                problem = str(exc)
        report.add(RowIssue(path.name, line, problem), on_error)
    return out
