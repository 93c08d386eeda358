"""The one ratings loader: every MovieLens release (and your own ratings) read and cleaned the
same way, for mongo-init, `train`, `retrain` (files and database snapshot) and the benchmarks.

What it does, in order, for every path:

1. **Decoding.** Each physical line is decoded with the release's documented encoding (UTF-8,
   or ISO-8859-1 for ml-100k/ml-1m). A line that is not valid UTF-8 is a malformed row with the
   reason `not valid UTF-8` (reported as `<file>:<line>: not valid UTF-8`).
2. **Fields.** Ids are plain ASCII integers (`[0-9]+`, nothing else: no sign, no `²`, no
   `620.0`); ratings are 0.5–5.0 in steps of 0.5; timestamps are Unix seconds within
   [1995-01-01, now + 1 day] (MovieLens began in 1995: a value outside is in the wrong unit, such
   as milliseconds, or corrupt). Text fields are NFC-normalised, control characters become
   spaces, runs of white space collapse to one, and the ends are trimmed; an empty field is
   malformed.
3. **Malformed rows** (any of the above, or the wrong number of fields) are reported with
   `file:line` and skipped, or, in strict mode (`on_error="raise"`), the first one stops the
   load with the same message (`MalformedRowError`).
4. **Cleaning the ratings as a whole** (`clean_ratings`): one rating per (user, movie), the one
   with the latest timestamp (ties: the later row, so a database row placed after file rows
   wins); ratings of movies that are not in the catalogue are dropped; pairs whose latest event
   is a recorded deletion are dropped (see `Tombstones`).
5. **One summary** (`LoadSummary`): rows read, kept and dropped by reason, per file; every
   command prints `summary.lines()` and the retrain job records `summary.to_dict()`.

Formats (`LAYOUTS`, chosen from the files present in the directory, see `detect_layout`):

=============== ======================================== ============= =============
layout          files                                    separator     encoding
=============== ======================================== ============= =============
csv             ratings.csv movies.csv links.csv tags.csv ``,`` + header UTF-8
ml-10m          ratings.dat movies.dat tags.dat          ``::``        UTF-8
ml-1m           ratings.dat movies.dat users.dat         ``::``        ISO-8859-1
ml-100k         u.data u.item                            tab / ``|``   ISO-8859-1
=============== ======================================== ============= =============

`csv` is the layout of ml-latest-small, ml-20m, ml-25m, ml-32m and of your own data.
Ratings files take a vectorised fast path (pyarrow) when every row parses; on any parse failure
the file is read again line by line so that each bad row is reported with its line number.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from movierec_common.data_model import RATING_MAX, RATING_MIN, RATING_STEP, on_rating_scale

log = logging.getLogger(__name__)

OnError = Literal["skip", "raise"]

TIMESTAMP_MIN = 788_918_400  # 1995-01-01T00:00:00Z: MovieLens' first ratings are from 1995
FUTURE_SLACK_S = 86_400  # a timestamp may lie at most one day after "now"
MAX_ID = 2**53  # ids beyond this are not exact as JSON numbers
_ID_RE = re.compile(r"[0-9]{1,16}")
_YEAR_RE = re.compile(r"\s*\((\d{4})(?:[–-]\d{0,4})?\)\s*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES_RE = re.compile(r"\s+")
NOT_UTF8 = "not valid UTF-8"

# Drop reasons of the summary (one word each, stable: the job record and tests use them).
MALFORMED = "malformed"
DUPLICATE = "duplicate"
UNKNOWN_MOVIE = "unknown_movie"
DELETED = "deleted"


class MalformedRowError(ValueError):
    """Strict mode met a malformed row (message `file:line: reason`), or a file's header is
    not the documented one (always refused: it means the wrong file or layout)."""


@dataclass(frozen=True)
class RowIssue:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class FileCounts:
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class LoadSummary:
    """Rows read, kept and dropped by reason, per source (a file name or `mongodb`).

    `issues` keeps every malformed row (file, line, reason); `kept` of a ratings source is
    counted after de-duplication and the catalogue filter."""

    files: dict[str, FileCounts] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)

    def counts(self, source: str) -> FileCounts:
        return self.files.setdefault(source, FileCounts())

    def add_issue(self, issue: RowIssue, on_error: OnError) -> None:
        """Record one malformed row; raises MalformedRowError in strict mode."""
        if on_error == "raise":
            raise MalformedRowError(str(issue))
        log.warning("skipping malformed row: %s", issue)
        self.issues.append(issue)
        self.counts(issue.file).dropped[MALFORMED] += 1

    def drop(self, source: str, reason: str, n: int) -> None:
        if n:
            self.counts(source).dropped[reason] += int(n)

    @property
    def dropped(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for c in self.files.values():
            total.update(c.dropped)
        return dict(total)

    def to_dict(self, max_issues: int = 20) -> dict[str, Any]:
        return {
            "files": {
                name: {"read": c.read, "kept": c.kept, "dropped": dict(c.dropped)}
                for name, c in self.files.items()
            },
            "dropped": self.dropped,
            "issues": [str(i) for i in self.issues[:max_issues]],
            "n_issues": len(self.issues),
        }

    def lines(self, max_issues: int = 5) -> list[str]:
        """The human summary every command prints (one line per source, then a few issues)."""
        out = []
        for name, c in self.files.items():
            drops = ", ".join(f"{k} {v:,}" for k, v in sorted(c.dropped.items()) if v) or "none"
            out.append(f"{name}: read {c.read:,}, kept {c.kept:,}, dropped: {drops}")
        out += [f"  {i}" for i in self.issues[:max_issues]]
        if len(self.issues) > max_issues:
            out.append(f"  … and {len(self.issues) - max_issues} more malformed rows")
        return out


# Backwards-compatible name: per-file readers accept a LoadSummary as `report`.
LoadReport = LoadSummary


@dataclass(frozen=True)
class Ratings:
    """Columnar ratings: one NumPy array per field, row i across all four."""

    user_ids: np.ndarray  # int64
    movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64, Unix seconds

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


# ------------------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class FileFormat:
    name: str
    sep: str  # "," means CSV with quoting; anything else is a plain split
    encoding: str
    header: tuple[str, ...] | None  # the documented header line, or None (no header)


@dataclass(frozen=True)
class Layout:
    name: str
    ratings: FileFormat
    movies: FileFormat
    links: FileFormat | None = None
    tags: FileFormat | None = None


_CSV = Layout(
    "csv",
    FileFormat("ratings.csv", ",", "utf-8", ("userId", "movieId", "rating", "timestamp")),
    FileFormat("movies.csv", ",", "utf-8", ("movieId", "title", "genres")),
    FileFormat("links.csv", ",", "utf-8", ("movieId", "imdbId", "tmdbId")),
    FileFormat("tags.csv", ",", "utf-8", ("userId", "movieId", "tag", "timestamp")),
)
LAYOUTS: dict[str, Layout] = {
    "csv": _CSV,
    "ml-10m": Layout(
        "ml-10m",
        FileFormat("ratings.dat", "::", "utf-8", None),
        FileFormat("movies.dat", "::", "utf-8", None),
        tags=FileFormat("tags.dat", "::", "utf-8", None),
    ),
    "ml-1m": Layout(
        "ml-1m",
        FileFormat("ratings.dat", "::", "iso-8859-1", None),
        FileFormat("movies.dat", "::", "iso-8859-1", None),
    ),
    "ml-100k": Layout(
        "ml-100k",
        FileFormat("u.data", "\t", "iso-8859-1", None),
        FileFormat("u.item", "|", "iso-8859-1", None),
    ),
}
# ml-100k's u.item: 5 fields, then 19 genre flags in u.genre's order.
ML100K_GENRES = (
    None,  # "unknown": no genre
    "Action",
    "Adventure",
    "Animation",
    "Children",  # "Children's" in ml-100k, "Children" in the later releases
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def detect_layout(data_dir: Path) -> Layout:
    """The layout of a data directory: ratings.csv → csv; u.data → ml-100k; ratings.dat with
    users.dat → ml-1m (ISO-8859-1), ratings.dat alone → ml-10m. Raises FileNotFoundError."""
    d = Path(data_dir)
    if (d / "ratings.csv").exists():
        return LAYOUTS["csv"]
    if (d / "u.data").exists():
        return LAYOUTS["ml-100k"]
    if (d / "ratings.dat").exists():
        return LAYOUTS["ml-1m" if (d / "users.dat").exists() else "ml-10m"]
    raise FileNotFoundError(
        f"{d / 'ratings.csv'} not found (no ratings.csv, ratings.dat or u.data): run "
        "`make data`, or point DATA_DIR at a directory in the MovieLens CSV layout"
    )


# ------------------------------------------------------------------------------ fields


def parse_id(text: str) -> int:
    """A plain ASCII integer id 0..2^53 (surrounding blanks allowed in files); ValueError."""
    t = text.strip()
    if not _ID_RE.fullmatch(t) or int(t) > MAX_ID:
        raise ValueError(f"not an integer id: {text[:32]!r}")
    return int(t)


def _int(text: str) -> int:
    t = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,19}", t):
        raise ValueError(f"not an integer: {text[:32]!r}")
    return int(t)


def parse_rating(text: str) -> float:
    """A rating must be a number in 0.5–5.0 in steps of 0.5."""
    value = float(text)
    if not math.isfinite(value) or not RATING_MIN <= value <= RATING_MAX:
        raise ValueError(f"rating {text!r} outside {RATING_MIN}–{RATING_MAX}")
    if not on_rating_scale(value):
        raise ValueError(f"rating {text!r} is not a multiple of {RATING_STEP}")
    return value


def timestamp_bounds(now: float | None = None) -> tuple[int, int]:
    """The plausible range of a rating's Unix-seconds timestamp: [1995-01-01, now + 1 day]."""
    return TIMESTAMP_MIN, int(time.time() if now is None else now) + FUTURE_SLACK_S


def parse_timestamp(text: str, hi: int) -> int:
    t = _int(text)
    if not TIMESTAMP_MIN <= t <= hi:
        raise ValueError(
            f"timestamp {t} outside 1995-01-01..now+1d in Unix seconds (milliseconds?)"
        )
    return t


def clean_text(text: str) -> str:
    """The one cleaning of every text field: NFC, control characters → space, runs of white
    space → one space, ends trimmed."""
    t = unicodedata.normalize("NFC", text)
    t = _CONTROL_RE.sub(" ", t)
    return _SPACES_RE.sub(" ", t).strip()


def parse_title(raw: str) -> tuple[str, int | None]:
    """Split 'Heat (1995)' into ('Heat', 1995); titles without a year keep year=None."""
    raw = raw.strip()
    m = _YEAR_RE.search(raw)
    if not m:
        return raw, None
    return raw[: m.start()].strip(), int(m.group(1))


# ------------------------------------------------------------------------------ rows


def _rows(
    path: Path, fmt: FileFormat, summary: LoadSummary, on_error: OnError
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each physical line after the header; undecodable lines are
    reported and skipped. A CSV record spanning lines (a quoted newline) is joined first."""
    counts = summary.counts(path.name)
    with path.open("rb") as fh:
        if fmt.header is not None:
            first = fh.readline()
            try:
                header = [h.strip() for h in next(csv.reader([first.decode(fmt.encoding)]), [])]
            except UnicodeDecodeError:
                header = None
            if header != list(fmt.header):
                raise MalformedRowError(
                    f"{path.name}:1: expected header {list(fmt.header)}, got {header}"
                )
            line_no = 1
        else:
            line_no = 0
        pending: str | None = None
        pending_line = 0
        for raw in fh:
            line_no += 1
            try:
                text = raw.decode(fmt.encoding)
            except UnicodeDecodeError:
                counts.read += 1
                summary.add_issue(RowIssue(path.name, line_no, NOT_UTF8), on_error)
                pending = None
                continue
            if pending is not None:
                text, start = pending + text, pending_line
            else:
                start = line_no
                if not text.strip():
                    continue  # blank lines (e.g. a trailing one) are not rows
            if fmt.sep == ",":
                if text.count('"') % 2:  # an open quote: the record continues on the next line
                    pending, pending_line = text, start
                    continue
                pending = None
                if '"' in text:
                    fields = next(csv.reader([text]), [])
                else:  # the common case: no quoting, a plain split is the same and ~5x faster
                    fields = text.rstrip("\r\n").split(",")
            else:
                pending = None
                fields = text.rstrip("\r\n").split(fmt.sep)
            counts.read += 1
            yield start, fields


def _check_fields(fields: list[str], n: int) -> str | None:
    if len(fields) != n:
        return f"expected {n} fields, got {len(fields)}"
    if any(f.strip() == "" for f in fields):
        return "empty field"
    return None


def _ratings_fast(path: Path, fmt: FileFormat, hi: int) -> Ratings | None:
    """pyarrow parse of a well-formed ratings file; None when any row needs the slow path
    (so that row is reported with its line number there)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    blob = path.read_bytes()
    start = 0
    if fmt.header is not None:
        cut = blob.find(b"\n")
        start = cut + 1 if cut >= 0 else len(blob)
    # Searches with a start offset: no copy of a file that may be gigabytes.
    if re.compile(rb"\S").search(blob, start) is None:
        return Ratings(*(np.empty(0, dt) for dt in (np.int64, np.int64, np.float32, np.int64)))
    if (
        blob.find(b"\n\n", start) >= 0
        or blob.find(b"\n\r\n", start) >= 0
        or blob.startswith((b"\n", b"\r\n"), start)
        or blob.find(b'"', start) >= 0
    ):
        return None  # blank lines would shift line numbers; quotes are not numbers
    if fmt.sep == "::":
        body = pa.py_buffer(blob[start:].replace(b"::", b"\x1f"))
        delimiter = "\x1f"
    else:
        body = pa.py_buffer(blob).slice(start)  # zero-copy
        delimiter = fmt.sep
    names = ["u", "m", "r", "t"]
    try:
        table = pacsv.read_csv(
            body,
            read_options=pacsv.ReadOptions(column_names=names, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"u": pa.int64(), "m": pa.int64(), "r": pa.float64(), "t": pa.int64()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    del blob, body
    # Writable int64/float32 arrays (a single-chunk column may come back as a read-only view).
    u = np.require(table["u"].to_numpy(), np.int64, ["W"])
    m = np.require(table["m"].to_numpy(), np.int64, ["W"])
    r = table["r"].to_numpy().astype(np.float32)  # ratings are multiples of 0.5: exact
    t = np.require(table["t"].to_numpy(), np.int64, ["W"])
    del table
    ok = (
        (u >= 0)
        & (u <= MAX_ID)
        & (m >= 0)
        & (m <= MAX_ID)
        & on_rating_scale(r)
        & (t >= TIMESTAMP_MIN)
        & (t <= hi)
    )
    if not ok.all():
        return None
    return Ratings(u, m, r, t)


def read_ratings_file(
    path: Path,
    fmt: FileFormat | None = None,
    *,
    on_error: OnError = "skip",
    summary: LoadSummary | None = None,
    now: float | None = None,
) -> Ratings:
    """One ratings file as columnar arrays, malformed rows reported (not yet de-duplicated)."""
    path = Path(path)
    fmt = fmt or _CSV.ratings
    summary = summary if summary is not None else LoadSummary()
    _, hi = timestamp_bounds(now)
    if fmt.header is not None:  # check the header first: a wrong file is refused either way
        with path.open("rb") as fh:
            first = fh.readline()
        try:
            header = [h.strip() for h in next(csv.reader([first.decode(fmt.encoding)]), [])]
        except UnicodeDecodeError:
            header = None
        if header != list(fmt.header):
            raise MalformedRowError(
                f"{path.name}:1: expected header {list(fmt.header)}, got {header}"
            )
    fast = _ratings_fast(path, fmt, hi)
    if fast is not None:
        c = summary.counts(path.name)
        c.read += len(fast)
        c.kept += len(fast)
        return fast
    users: list[int] = []
    movies: list[int] = []
    values: list[float] = []
    stamps: list[int] = []
    for line, fields in _rows(path, fmt, summary, on_error):
        problem = _check_fields(fields, 4)
        if problem is None:
            try:
                u, m, r, t = (
                    parse_id(fields[0]),
                    parse_id(fields[1]),
                    parse_rating(fields[2]),
                    parse_timestamp(fields[3], hi),
                )
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            summary.add_issue(RowIssue(path.name, line, problem), on_error)
            continue
        users.append(u)
        movies.append(m)
        values.append(r)
        stamps.append(t)
    summary.counts(path.name).kept += len(values)
    return Ratings(
        user_ids=np.asarray(users, dtype=np.int64),
        movie_ids=np.asarray(movies, dtype=np.int64),
        ratings=np.asarray(values, dtype=np.float32),
        timestamps=np.asarray(stamps, dtype=np.int64),
    )


# One genre vocabulary across releases: ml-100k and ml-1m say "Children's", later ones "Children".
_GENRE_NAMES = {"Children's": "Children"}


def _genres_from_text(text: str) -> list[str]:
    text = clean_text(text)
    if text in ("", "(no genres listed)"):
        return []
    genres = (clean_text(x) for x in text.split("|"))
    return [_GENRE_NAMES.get(g, g) for g in genres if g]


def read_movies_file(
    path: Path,
    fmt: FileFormat | None = None,
    *,
    on_error: OnError = "skip",
    summary: LoadSummary | None = None,
) -> list[Movie]:
    """movies.csv / movies.dat / u.item as Movie rows (title cleaned, year split off)."""
    path = Path(path)
    fmt = fmt or _CSV.movies
    summary = summary if summary is not None else LoadSummary()
    out: list[Movie] = []
    seen: set[int] = set()
    is_100k = fmt.sep == "|"
    for line, fields in _rows(path, fmt, summary, on_error):
        problem = None
        if is_100k:
            if len(fields) != 5 + len(ML100K_GENRES):
                problem = f"expected {5 + len(ML100K_GENRES)} fields, got {len(fields)}"
        else:
            problem = _check_fields(fields, 3)
        movie_id = 0
        title = ""
        if problem is None:
            try:
                movie_id = parse_id(fields[0])
                title = clean_text(fields[1])
                if not title:
                    raise ValueError("empty title")
                if movie_id in seen:
                    raise ValueError(f"movieId {movie_id} repeated")
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            summary.add_issue(RowIssue(path.name, line, problem), on_error)
            continue
        if is_100k:
            genres = [
                g
                for g, flag in zip(ML100K_GENRES, fields[5:], strict=True)
                if g and flag.strip() == "1"
            ]
        else:
            genres = _genres_from_text(fields[2])
        name, year = parse_title(title)
        seen.add(movie_id)
        out.append(Movie(movie_id, name, year, genres))
    summary.counts(path.name).kept += len(out)
    return out


def read_links_file(
    path: Path,
    fmt: FileFormat | None = None,
    *,
    on_error: OnError = "skip",
    summary: LoadSummary | None = None,
) -> list[Link]:
    path = Path(path)
    fmt = fmt or _CSV.links
    summary = summary if summary is not None else LoadSummary()
    out: list[Link] = []
    for line, fields in _rows(path, fmt, summary, on_error):
        # tmdbId is legitimately empty for a handful of movies; only movieId is required.
        if len(fields) != 3 or not fields[0].strip():
            summary.add_issue(
                RowIssue(path.name, line, f"expected 3 fields, got {fields!r}"), on_error
            )
            continue
        try:
            movie_id = parse_id(fields[0])
            imdb = fields[1].strip() or None
            if imdb is not None and not _ID_RE.fullmatch(imdb):
                raise ValueError(f"imdbId not numeric: {imdb!r}")
            tmdb = parse_id(fields[2]) if fields[2].strip() else None
        except ValueError as exc:
            summary.add_issue(RowIssue(path.name, line, str(exc)), on_error)
            continue
        out.append(Link(movie_id, imdb, tmdb))
    summary.counts(path.name).kept += len(out)
    return out


def read_tags_file(
    path: Path,
    fmt: FileFormat | None = None,
    *,
    on_error: OnError = "skip",
    summary: LoadSummary | None = None,
    now: float | None = None,
) -> list[Tag]:
    path = Path(path)
    fmt = fmt or _CSV.tags
    summary = summary if summary is not None else LoadSummary()
    _, hi = timestamp_bounds(now)
    out: list[Tag] = []
    for line, fields in _rows(path, fmt, summary, on_error):
        problem = _check_fields(fields, 4)
        if problem is None:
            try:
                tag = clean_text(fields[2])
                if not tag:
                    raise ValueError("empty tag")
                out.append(
                    Tag(
                        parse_id(fields[0]),
                        parse_id(fields[1]),
                        tag,
                        parse_timestamp(fields[3], hi),
                    )
                )
                continue
            except ValueError as exc:
                problem = str(exc)
        summary.add_issue(RowIssue(path.name, line, problem), on_error)
    summary.counts(path.name).kept += len(out)
    return out


# ------------------------------------------------------------------------------ cleaning


@dataclass(frozen=True)
class Tombstones:
    """Recorded deletions: (user, movie) deleted at a time (Unix seconds). In the merge a
    deletion is an event like a rating: when it is the latest event of its pair, the pair is
    gone, so a file row older than the deletion never brings a deleted rating back."""

    user_ids: np.ndarray
    movie_ids: np.ndarray
    deleted_at: np.ndarray

    @classmethod
    def empty(cls) -> Tombstones:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])


def concat(parts: list[Ratings]) -> Ratings:
    return Ratings(
        user_ids=np.concatenate([p.user_ids for p in parts]),
        movie_ids=np.concatenate([p.movie_ids for p in parts]),
        ratings=np.concatenate([p.ratings for p in parts]),
        timestamps=np.concatenate([p.timestamps for p in parts]),
    )


def subset(r: Ratings, index: np.ndarray) -> Ratings:
    return Ratings(r.user_ids[index], r.movie_ids[index], r.ratings[index], r.timestamps[index])


def valid_rows(r: Ratings, source: str, summary: LoadSummary, now: float | None = None) -> Ratings:
    """The field rules of the file readers applied to rows from elsewhere (the database):
    ids 0..2^53, rating 0.5–5.0 in steps of 0.5, timestamp in [1995-01-01, now + 1 day].
    Refused rows are counted as malformed against `source` (they have no line number)."""
    lo, hi = timestamp_bounds(now)
    with np.errstate(invalid="ignore"):
        ok = (
            (r.user_ids >= 0)
            & (r.user_ids <= MAX_ID)
            & (r.movie_ids >= 0)
            & (r.movie_ids <= MAX_ID)
            & on_rating_scale(r.ratings)
            & (r.timestamps >= lo)
            & (r.timestamps <= hi)
        )
    c = summary.counts(source)
    c.read += len(r)
    bad = int((~ok).sum())
    if bad:
        log.warning("%s: %d rows refused (id, rating or timestamp out of range)", source, bad)
        summary.drop(source, MALFORMED, bad)
    c.kept += len(r) - bad
    return subset(r, np.flatnonzero(ok)) if bad else r


def clean_ratings(
    sources: list[tuple[str, Ratings]],
    summary: LoadSummary,
    *,
    known_movies: np.ndarray | None = None,
    tombstones: Tombstones | None = None,
) -> Ratings:
    """Merge rating sources (in priority order: on equal timestamps a later source wins) into
    one rating per (user, movie): the latest event wins, a pair whose latest event is a
    deletion is dropped, ratings of movies not in `known_movies` are dropped. Drops are counted
    in `summary` against the source each dropped row came from. Output is in input order."""
    parts = [r for _, r in sources]
    src = np.concatenate(
        [np.full(len(r), i, np.int32) for i, (_, r) in enumerate(sources)]
        or [np.empty(0, np.int32)]
    )
    if len(parts) == 1:
        both = parts[0]  # no copy
    else:
        both = concat(parts) if parts else Ratings(*(np.empty(0, np.int64),) * 4)
    n = len(both)
    t = tombstones if tombstones is not None else Tombstones.empty()
    nt = len(t)
    if nt:
        users = np.concatenate([both.user_ids, t.user_ids])
        movies = np.concatenate([both.movie_ids, t.movie_ids])
        stamps = np.concatenate([both.timestamps, t.deleted_at])
    else:
        users, movies, stamps = both.user_ids, both.movie_ids, both.timestamps
    # Tombstones sort after the rows they tie with: a deletion at second T beats a file row
    # stamped T. A rating made after the deletion has a later stamp and wins.
    # Two stable sorts (timestamp, then pair; np.lexsort is ~10x slower here): on equal
    # (pair, timestamp) the input order decides (sources in priority order, tombstones last).
    by_time = np.argsort(stamps, kind="stable")
    if users.size and users.max() < 2**31 and movies.max() < 2**31 and users.min() >= 0:
        key = (users << 31) | movies
        order = by_time[np.argsort(key[by_time], kind="stable")]
        k = key[order]
        last = np.r_[k[1:] != k[:-1], True]
        del key, k
    else:
        by_movie = by_time[np.argsort(movies[by_time], kind="stable")]
        order = by_movie[np.argsort(users[by_movie], kind="stable")]
        u, m = users[order], movies[order]
        last = (
            np.r_[(u[1:] != u[:-1]) | (m[1:] != m[:-1]), True] if order.size else order.astype(bool)
        )
    winners = order[last]
    keep = np.zeros(n, bool)
    keep[winners[winners < n]] = True
    deleted_pairs = np.zeros(n, bool)
    if nt and order.size:
        group = np.cumsum(np.r_[True, last[:-1]]) - 1  # pair number of each sorted position
        winner_is_tomb = winners >= n
        is_row = order < n
        deleted_pairs[order[is_row]] = winner_is_tomb[group[is_row]]
    for i, (name, _) in enumerate(sources):
        mine = src == i
        summary.drop(name, DELETED, int((deleted_pairs & mine).sum()))
        summary.drop(name, DUPLICATE, int((~keep & ~deleted_pairs & mine).sum()))
    if known_movies is not None:
        known = np.isin(both.movie_ids, np.asarray(known_movies, np.int64))
        for i, (name, _) in enumerate(sources):
            summary.drop(name, UNKNOWN_MOVIE, int((keep & ~known & (src == i)).sum()))
        keep &= known
    for i, (name, r) in enumerate(sources):
        c = summary.counts(name)
        c.kept = int((keep & (src == i)).sum())
        if c.read == 0:
            c.read = len(r)
    return both if keep.all() else subset(both, np.flatnonzero(keep))


# ------------------------------------------------------------------------------ a data set


@dataclass(frozen=True)
class Dataset:
    layout: str
    ratings: Ratings
    movies: list[Movie]
    links: list[Link]
    tags: list[Tag]
    summary: LoadSummary

    @property
    def movie_ids(self) -> np.ndarray:
        return np.asarray(sorted(m.movieId for m in self.movies), np.int64)


def load_dataset(
    data_dir: Path,
    *,
    on_error: OnError = "skip",
    with_tags: bool = False,
    tombstones: Tombstones | None = None,
    now: float | None = None,
    require_movies: bool = True,
) -> Dataset:
    """Read and clean one MovieLens directory (any layout, see `detect_layout`).

    Ratings are de-duplicated (latest timestamp wins) and those of movies missing from the
    movies file are dropped; `summary` counts every row read, kept and dropped by reason.
    Raises FileNotFoundError (no ratings file, or no movies file while `require_movies`),
    MalformedRowError (strict mode, or a wrong header)."""
    data_dir = Path(data_dir)
    layout = detect_layout(data_dir)
    summary = LoadSummary()
    movies_path = data_dir / layout.movies.name
    movies: list[Movie] = []
    if movies_path.exists():
        movies = read_movies_file(movies_path, layout.movies, on_error=on_error, summary=summary)
    elif require_movies:
        raise FileNotFoundError(f"{movies_path} not found: the catalogue is needed to load ratings")
    links: list[Link] = []
    if layout.links is not None and (data_dir / layout.links.name).exists():
        links = read_links_file(
            data_dir / layout.links.name, layout.links, on_error=on_error, summary=summary
        )
    tags: list[Tag] = []
    if with_tags and layout.tags is not None and (data_dir / layout.tags.name).exists():
        tags = read_tags_file(
            data_dir / layout.tags.name, layout.tags, on_error=on_error, summary=summary, now=now
        )
    raw = read_ratings_file(
        data_dir / layout.ratings.name, layout.ratings, on_error=on_error, summary=summary, now=now
    )
    known = (
        np.asarray(sorted(m.movieId for m in movies), np.int64) if movies_path.exists() else None
    )
    ratings = clean_ratings(
        [(layout.ratings.name, raw)], summary, known_movies=known, tombstones=tombstones
    )
    return Dataset(layout.name, ratings, movies, links, tags, summary)
