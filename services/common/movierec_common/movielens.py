"""The MovieLens record types and per-file readers (kept for existing imports).

The reading and cleaning rules live in `movierec_common.loader` (one loader for every path);
these names are that module's, re-exported. `load_*` read one file in the CSV layout with the
loader's decoding, field and malformed-row rules, without the data-set-wide cleaning
(de-duplication, catalogue filter) that `loader.load_dataset` adds.
"""

from __future__ import annotations

from pathlib import Path

from movierec_common.loader import (
    RATING_MAX,
    RATING_MIN,
    Link,
    LoadReport,
    LoadSummary,
    MalformedRowError,
    Movie,
    OnError,
    Ratings,
    RowIssue,
    Tag,
    parse_rating,
    parse_title,
    read_links_file,
    read_movies_file,
    read_ratings_file,
    read_tags_file,
)

__all__ = [
    "RATING_MAX",
    "RATING_MIN",
    "Link",
    "LoadReport",
    "LoadSummary",
    "MalformedRowError",
    "Movie",
    "OnError",
    "Ratings",
    "RowIssue",
    "Tag",
    "load_links",
    "load_movies",
    "load_ratings",
    "load_tags",
    "parse_rating",
    "parse_title",
]


def load_ratings(
    path: Path, on_error: OnError = "skip", report: LoadSummary | None = None
) -> Ratings:
    return read_ratings_file(Path(path), on_error=on_error, summary=report)


def load_movies(
    path: Path, on_error: OnError = "skip", report: LoadSummary | None = None
) -> list[Movie]:
    return read_movies_file(Path(path), on_error=on_error, summary=report)


def load_links(
    path: Path, on_error: OnError = "skip", report: LoadSummary | None = None
) -> list[Link]:
    return read_links_file(Path(path), on_error=on_error, summary=report)


def load_tags(
    path: Path, on_error: OnError = "skip", report: LoadSummary | None = None
) -> list[Tag]:
    return read_tags_file(Path(path), on_error=on_error, summary=report)
