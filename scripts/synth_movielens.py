"""A seeded MovieLens-shaped data set of any size: ratings, movies, links and tags as CSVs.

The real ml-25m / ml-32m cannot be downloaded on every machine, so this writes a stand-in with
the same files, columns and quirks, at the same scale by default (25,000,095 ratings from
162,541 users on 62,423 movies, like ml-25m):

- ``ratings.csv`` ``userId,movieId,rating,timestamp``: long-tailed user activity (log-normal)
  and movie popularity (Zipf), half-star ratings from a low-rank taste model plus biases and
  noise (mean ≈ 3.5), each user's ratings inside their own active period (Unix seconds,
  1996-2023), rows sorted by userId then movieId, no duplicate (user, movie) pair.
- ``movies.csv`` ``movieId,title,genres``: sparse movieIds (like MovieLens, not 1..n), titles
  ``Name (Year)`` with some commas (quoted) and some non-ASCII letters, 1-4 pipe-separated genres
  from MovieLens's 19 that follow each movie's taste vector (so content features carry signal),
  a few ``(no genres listed)``.
- ``links.csv`` ``movieId,imdbId,tmdbId``: imdbId zero-padded to 7 digits, a few tmdbIds empty.
- ``tags.csv`` ``userId,movieId,tag,timestamp``: free-text tags correlated with genres, by users
  who rated the movie, about 4 % as many rows as ratings (ml-25m: 1.09M tags).

Everything is vectorised; ratings.csv goes through Arrow's CSV writer (pyarrow is already a
runtime dependency).

    python scripts/synth_movielens.py --preset synthetic-25m --out data/synthetic-25m
    python scripts/synth_movielens.py --ratings 100000 --users 600 --movies 9000 --out /tmp/s
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
NO_GENRES = "(no genres listed)"
TAGS_BY_GENRE = {
    "Action": ["action", "explosions", "car chase", "martial arts"],
    "Adventure": ["adventure", "quest", "epic"],
    "Animation": ["animation", "pixar", "hand-drawn", "anime"],
    "Children": ["kids", "family", "disney"],
    "Comedy": ["funny", "hilarious", "dark comedy", "quirky"],
    "Crime": ["heist", "mafia", "gangsters"],
    "Documentary": ["documentary", "true story", "politics"],
    "Drama": ["drama", "emotional", "based on a book"],
    "Fantasy": ["magic", "fantasy world", "dragons"],
    "Film-Noir": ["noir", "femme fatale", "black and white"],
    "Horror": ["scary", "gore", "zombies", "creepy"],
    "IMAX": ["imax", "visually stunning"],
    "Musical": ["musical", "great soundtrack", "singing"],
    "Mystery": ["twist ending", "whodunit", "mystery"],
    "Romance": ["romance", "love story", "romantic"],
    "Sci-Fi": ["sci-fi", "space", "time travel", "dystopia"],
    "Thriller": ["suspense", "tense", "psychological"],
    "War": ["war", "world war ii", "vietnam"],
    "Western": ["western", "cowboys"],
}
_WORDS_A = [
    "Silent",
    "Broken",
    "Last",
    "Golden",
    "Hidden",
    "Crimson",
    "Lost",
    "Midnight",
    "Wild",
    "Dark",
    "Bright",
    "Secret",
    "Endless",
    "Frozen",
    "Burning",
    "Little",
    "Iron",
    "Paper",
    "Electric",
    "Distant",
    "Hollow",
    "Quiet",
    "Savage",
    "Sweet",
]
_WORDS_B = [
    "River",
    "Empire",
    "Garden",
    "Horizon",
    "Shadow",
    "Island",
    "Kingdom",
    "Summer",
    "Highway",
    "Letter",
    "Mirror",
    "Storm",
    "Station",
    "Harbor",
    "Orchard",
    "Circus",
    "Voyage",
    "Machine",
    "Window",
    "Frontier",
    "Melody",
    "Promise",
    "Canyon",
]
_NON_ASCII = ["Amélie", "Señor", "Über", "Noël", "Café", "Tōkyō", "Zürich", "Ørsted"]

PRESETS = {
    # name: (ratings, users, movies) — ml-25m's published counts, and smaller steps.
    "synthetic-25m": (25_000_095, 162_541, 62_423),
    "synthetic-10m": (10_000_054, 69_878, 10_677),
    "synthetic-1m": (1_000_209, 6_040, 3_706),
    "synthetic-100k": (100_836, 610, 9_742),
}


@dataclass(frozen=True)
class SynthSpec:
    """Size and seed of a synthetic MovieLens-shaped set."""

    n_ratings: int = 25_000_095
    n_users: int = 162_541
    n_movies: int = 62_423
    seed: int = 20261130
    true_rank: int = 8

    def __post_init__(self) -> None:
        if min(self.n_ratings, self.n_users, self.n_movies) < 1:
            raise ValueError("n_ratings, n_users and n_movies must be positive")
        if self.n_ratings > self.n_users * self.n_movies // 2:
            raise ValueError(
                f"{self.n_ratings} ratings do not fit {self.n_users} users x {self.n_movies} "
                "movies at most half full"
            )


def _capped(weights: np.ndarray, total: int, cap: float) -> np.ndarray:
    """Probabilities proportional to ``weights`` whose expected count out of ``total`` draws
    stays under ``cap`` each (the excess spread over the rest), so nobody saturates."""
    p = weights / weights.sum()
    for _ in range(20):
        over = p * total > cap
        if not over.any():
            break
        p[over] = cap / total
        rest = ~over
        p[rest] *= (1.0 - p[over].sum()) / p[rest].sum()
    return p / p.sum()


def _pairs(rng: np.random.Generator, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user index, movie index) pairs, exactly spec.n_ratings, sorted by user, movie."""
    activity = _capped(rng.lognormal(0.0, 1.1, spec.n_users), spec.n_ratings, 0.3 * spec.n_movies)
    zipf = rng.permutation(1.0 / np.arange(1, spec.n_movies + 1) ** 0.9)
    popularity = _capped(zipf, spec.n_ratings, 0.5 * spec.n_users)
    keys = np.empty(0, dtype=np.int64)
    while keys.size < spec.n_ratings:
        draws = int((spec.n_ratings - keys.size) * 1.3) + 1000
        u = rng.choice(spec.n_users, size=draws, p=activity).astype(np.int64)
        i = rng.choice(spec.n_movies, size=draws, p=popularity)
        keys = np.unique(np.concatenate([keys, u * spec.n_movies + i]))
    keys = np.sort(rng.choice(keys, size=spec.n_ratings, replace=False))
    return keys // spec.n_movies, keys % spec.n_movies


def generate(spec: SynthSpec) -> dict[str, dict[str, np.ndarray]]:
    """The four tables as column arrays: ``{"ratings": {...}, "movies": ..., "links": ...,
    "tags": ...}``, ids as in the CSVs (userId 1..n_users, sparse movieIds)."""
    rng = np.random.default_rng(spec.seed)
    u, i = _pairs(rng, spec)
    k = spec.true_rank
    pu = rng.normal(0, 1 / np.sqrt(k), (spec.n_users, k))
    qi = rng.normal(0, 1 / np.sqrt(k), (spec.n_movies, k))
    bu = rng.normal(0, 0.35, spec.n_users)
    bi = rng.normal(0, 0.45, spec.n_movies)
    rating = np.empty(u.size, dtype=np.float32)
    step = 1 << 21
    for s in range(0, u.size, step):
        us, is_ = u[s : s + step], i[s : s + step]
        raw = 3.55 + bu[us] + bi[is_] + 0.9 * np.einsum("ij,ij->i", pu[us], qi[is_])
        raw += rng.normal(0, 0.75, us.size)
        rating[s : s + step] = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)

    # Each user rates inside an active period: start 1996-2022, log-normal length up to years.
    start = rng.integers(820_454_400, 1_672_531_200, spec.n_users)  # 1996-01-01 .. 2023-01-01
    span = np.minimum(rng.lognormal(15.0, 2.0, spec.n_users), 1_700_000_000 - start)
    ts = (start[u] + rng.random(u.size) * span[u]).astype(np.int64)

    movie_ids = np.sort(rng.choice(np.arange(1, 4 * spec.n_movies + 1), spec.n_movies, False))
    years = np.clip(np.round(2019 - rng.gamma(2.0, 9.0, spec.n_movies)), 1902, 2019).astype(int)
    genre_dirs = rng.normal(0, 1, (len(GENRES), k))
    affinity = qi @ genre_dirs.T + rng.normal(0, 0.35, (spec.n_movies, len(GENRES)))
    n_genres = rng.integers(1, 5, spec.n_movies)
    ranked = np.argsort(-affinity, axis=1)
    titles, genres = [], []
    for m in range(spec.n_movies):
        a, b = _WORDS_A[rng.integers(len(_WORDS_A))], _WORDS_B[rng.integers(len(_WORDS_B))]
        roll = rng.random()
        name = f"The {a} {b}"
        if roll < 0.05:
            name = f"{b}, The {a}"  # MovieLens's "Title, The" form: needs CSV quoting
        elif roll < 0.08:
            name = f"{_NON_ASCII[rng.integers(len(_NON_ASCII))]} {b}"
        titles.append(f"{name} {m + 1} ({years[m]})")
        if rng.random() < 0.01:
            genres.append(NO_GENRES)
        else:
            genres.append("|".join(sorted(GENRES[g] for g in ranked[m, : n_genres[m]])))

    imdb = rng.choice(np.arange(10_000, 9_999_999), spec.n_movies, replace=False)
    tmdb = rng.choice(np.arange(2, 900_000), spec.n_movies, replace=False).astype(object)
    tmdb[rng.random(spec.n_movies) < 0.002] = ""

    n_tags = max(1, int(u.size * 0.044))
    rows = np.sort(rng.choice(u.size, n_tags, replace=False))
    top_genre = ranked[i[rows], 0]
    tags = [
        TAGS_BY_GENRE[GENRES[g]][rng.integers(len(TAGS_BY_GENRE[GENRES[g]]))] for g in top_genre
    ]
    return {
        "ratings": {"userId": u + 1, "movieId": movie_ids[i], "rating": rating, "timestamp": ts},
        "movies": {"movieId": movie_ids, "title": np.array(titles, object), "genres": genres},
        "links": {
            "movieId": movie_ids,
            "imdbId": np.array([f"{x:07d}" for x in imdb], object),
            "tmdbId": tmdb,
        },
        "tags": {
            "userId": u[rows] + 1,
            "movieId": movie_ids[i[rows]],
            "tag": np.array(tags, object),
            "timestamp": ts[rows] + rng.integers(0, 86_400, n_tags),
        },
    }


def _write_table(path: Path, columns: dict[str, np.ndarray]) -> None:
    """One CSV with MovieLens's conventions: a header, ``\n`` line ends, UTF-8, text quoted only
    where it must be, ratings with one decimal ("4.0")."""
    names = list(columns)
    if all(np.asarray(columns[c]).dtype.kind in "iuf" for c in names):
        # All-numeric (ratings): Arrow's C++ writer, 25M rows in seconds; a one-decimal type
        # prints 4.0 as "4.0" like MovieLens does.
        import pyarrow as pa
        import pyarrow.csv as pacsv

        arrays = {
            c: pa.array(np.asarray(v, np.float64)).cast(pa.decimal128(3, 1))
            if np.asarray(v).dtype.kind == "f"
            else pa.array(v)
            for c, v in columns.items()
        }
        with path.open("wb") as fh:
            fh.write((",".join(names) + "\n").encode())
            pacsv.write_csv(pa.table(arrays), fh, pacsv.WriteOptions(include_header=False))
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*(columns[c] for c in names), strict=True))


def write(spec: SynthSpec, out: Path, name: str = "synthetic") -> dict[str, int]:
    """Write ratings.csv, movies.csv, links.csv, tags.csv and a README.txt into ``out``.

    Returns the row count of each table. Raises ValueError for an impossible spec."""
    t0 = time.perf_counter()
    tables = generate(spec)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table, columns in tables.items():
        _write_table(out / f"{table}.csv", columns)
        counts[table] = len(next(iter(columns.values())))
    (out / "README.txt").write_text(
        f"{name}: a synthetic MovieLens-shaped data set written by scripts/synth_movielens.py\n"
        f"(seed {spec.seed}; {counts['ratings']} ratings, {spec.n_users} users, "
        f"{counts['movies']} movies, {counts['tags']} tags). Not MovieLens data: generated, "
        "no licence restrictions. Same columns as MovieLens's CSV releases.\n",
        encoding="utf-8",
    )
    print(f"{name}: wrote {counts} to {out} in {time.perf_counter() - t0:.1f} s", flush=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a named size (ml-*-like counts)")
    ap.add_argument("--ratings", type=int, help="number of ratings (overrides the preset)")
    ap.add_argument("--users", type=int, help="number of users (overrides the preset)")
    ap.add_argument("--movies", type=int, help="number of movies (overrides the preset)")
    ap.add_argument("--seed", type=int, default=SynthSpec.seed)
    ap.add_argument("--out", type=Path, required=True, help="directory to write the CSVs into")
    args = ap.parse_args(argv)
    ratings, users, movies = PRESETS[args.preset or "synthetic-25m"]
    spec = SynthSpec(
        n_ratings=args.ratings or ratings,
        n_users=args.users or users,
        n_movies=args.movies or movies,
        seed=args.seed,
    )
    write(spec, args.out, name=args.preset or "synthetic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
