"""The issue-18 fault data set, written by tests (no downloads): small MovieLens CSVs whose right
answers are known exactly.

* 450 distinct (user, movie) pairs whose ratings sum to 1260.0 (mean 2.8000).
* Movie 1 is rated by users 1..9; the latest (1, 1) rating is 1.0, the other eight sum to 22.5,
  so movie 1 has count 9 and sum 23.5. Pair (1, 1) also has two older rows at 5.0 (duplicates).
* 29 ratings (5.0) of movieId 777777, which is not in movies.csv: with them the mean would be
  (1260 + 145) / 479 = 2.9332.
* One ratings row and one movies row hold a Latin-1 byte (0xE9, `é`): not valid UTF-8.
* Optionally one millisecond timestamp row (`2,1,4.0,1764460800000`).
"""

from __future__ import annotations

from pathlib import Path

T0 = 1_300_000_000  # 2011-03-13: every good timestamp is T0 + a few seconds
UNKNOWN_MOVIE = 777777
N_KEPT = 450
KEPT_SUM = 1260.0
MOVIE1_COUNT, MOVIE1_SUM = 9, 23.5
BAD_RATINGS_LINE_TEXT = b"5,2,4.0,13000\xe90000"
MS_ROW = "2,1,4.0,1764460800000"


def fault_rows() -> list[str]:
    """The rating rows (no header): 450 pairs + 2 duplicates of (1, 1) + 29 unknown-movie rows."""
    rows: list[str] = []
    # Movie 1: users 2..9 sum 22.5; user 1's pair appears three times, the latest is 1.0.
    for u, r in zip(range(2, 10), [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.5, 2.0], strict=True):
        rows.append(f"{u},1,{r},{T0 + u}")
    rows.append(f"1,1,5.0,{T0 + 10}")
    rows.append(f"1,1,5.0,{T0 + 11}")
    rows.append(f"1,1,1.0,{T0 + 99999}")
    # 441 more pairs: users 1..21 × movies 2..22; 268 of them 3.0 and 173 of them 2.5.
    k = 0
    for u in range(1, 22):
        for m in range(2, 23):
            r = 3.0 if k < 268 else 2.5
            rows.append(f"{u},{m},{r},{T0 + 1000 + k}")
            k += 1
    # 29 ratings of a movie that is not in movies.csv.
    rows += [f"{u},{UNKNOWN_MOVIE},5.0,{T0 + 5000 + u}" for u in range(1, 30)]
    return rows


def write_fault_dataset(directory: Path, *, ms_row: bool = False, bad_bytes: bool = True) -> Path:
    """ratings.csv, movies.csv and links.csv (CRLF, like the real files) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [b"userId,movieId,rating,timestamp", *(r.encode() for r in fault_rows())]
    if bad_bytes:
        lines.insert(5, BAD_RATINGS_LINE_TEXT)  # line 6 of ratings.csv
    if ms_row:
        lines.append(MS_ROW.encode())
    (directory / "ratings.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    movies = [b"movieId,title,genres"]
    movies += [f"{m},Movie {m} ({1990 + m}),Drama|Comedy".encode() for m in range(1, 23)]
    if bad_bytes:
        movies.insert(3, b"23,Caf\xe9 Society (2016),Comedy")  # line 4 of movies.csv
    (directory / "movies.csv").write_bytes(b"\r\n".join(movies) + b"\r\n")
    links = [b"movieId,imdbId,tmdbId"] + [f"{m},{m:07d},{m}".encode() for m in range(1, 23)]
    (directory / "links.csv").write_bytes(b"\r\n".join(links) + b"\r\n")
    return directory
