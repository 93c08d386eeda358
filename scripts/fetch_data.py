"""Fill ./data/<DATASET> with one MovieLens release (`make data DATASET=ml-1m`).

Why a script and not a committed copy: the GroupLens licence forbids redistributing the data
sets, so every checkout fetches its own. For ml-latest-small the shared read-only copy next to
the project is used when present (no network needed). Otherwise the release's official zip is
downloaded and checked against the MD5 sum GroupLens publishes next to it (`<zip>.md5`) before
anything is extracted; ml-latest-small's files are also checked one by one against the sums of
its September 2018 release. A truncated download or an edited file never trains a model
silently. Each release keeps its own file layout and encoding (movierec_common.loader reads
them all):

  ml-100k           u.data (tab) + u.item (|), ISO-8859-1
  ml-1m             ratings.dat / movies.dat / users.dat ("::"), ISO-8859-1
  ml-10m            ratings.dat / movies.dat / tags.dat ("::"), UTF-8
  ml-20m, ml-25m, ml-32m, ml-latest-small   ratings.csv / movies.csv / links.csv / tags.csv, UTF-8

  synthetic-25m, synthetic-10m, synthetic-1m, synthetic-100k   generated here, not downloaded:
                    MovieLens-shaped CSVs at ml-25m's (or a smaller release's) counts,
                    written by scripts/synth_movielens.py (for scale tests on machines that
                    cannot download the real files)

A zip downloaded by hand can be given with --zip (its MD5 is checked the same way, against
--md5 or the published sum).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import sys
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth_movielens as synth  # a sibling script: run as a file or imported

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SHARED = ROOT.parent / "shared" / "data"
BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Release:
    name: str
    folder: str  # the top folder inside the zip
    files: tuple[str, ...]  # what is extracted (the loader needs the first two)
    file_md5: dict[str, str] = field(default_factory=dict)  # per-file sums, when published

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.name}.zip"


_CSV_FILES = ("ratings.csv", "movies.csv", "links.csv", "tags.csv", "README.txt")
RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("ml-100k", "ml-100k", ("u.data", "u.item", "u.genre", "u.user", "README")),
        Release("ml-1m", "ml-1m", ("ratings.dat", "movies.dat", "users.dat", "README")),
        Release("ml-10m", "ml-10M100K", ("ratings.dat", "movies.dat", "tags.dat", "README.html")),
        Release("ml-20m", "ml-20m", _CSV_FILES),
        Release("ml-25m", "ml-25m", _CSV_FILES),
        Release("ml-32m", "ml-32m", _CSV_FILES),
        Release(
            "ml-latest-small",
            "ml-latest-small",
            _CSV_FILES,
            # MD5 sums of the September 2018 release (also in the release's own MD5SUMS).
            {
                "links.csv": "316913f95cdad64c745ca22f3630e230",
                "movies.csv": "ed94fab72b62442ef8150d9446e000d6",
                "ratings.csv": "325a6f09399d1c45671f187505e1a100",
                "tags.csv": "1b2d21a7be1cc23d327b11155a4a6aea",
            },
        ),
    )
}
DEFAULT = "ml-latest-small"


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def parse_md5(text: str) -> str:
    """The hex digest in a published `.md5` file (`<hex>  <name>` or `MD5 (<name>) = <hex>`)."""
    m = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if m is None:
        raise ValueError(f"no MD5 sum in {text[:80]!r}")
    return m.group(1).lower()


def marker(dest: Path) -> Path:
    return dest / ".verified"


def verified(rel: Release, dest: Path) -> bool:
    """Already fetched and verified: per-file sums when published, else the marker written
    after the zip's checksum was verified (holding that checksum)."""
    needed = rel.files[:2]
    if not all((dest / n).is_file() for n in needed):
        return False
    if rel.file_md5:
        return all(md5_file(dest / n) == h for n, h in rel.file_md5.items())
    return marker(dest).is_file()


def fetch(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def extract(rel: Release, blob: bytes, dest: Path, expected_md5: str) -> None:
    """Check the zip's MD5, then extract the release's files into `dest`."""
    got = md5_bytes(blob)
    if got != expected_md5:
        raise ValueError(f"{rel.name}.zip: MD5 {got} != published {expected_md5}")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = set(zf.namelist())
        for name in rel.files:
            member = f"{rel.folder}/{name}"
            if member in names:
                (dest / name).write_bytes(zf.read(member))
            elif name in rel.files[:2]:
                raise ValueError(f"{rel.name}.zip has no {member}")
    marker(dest).write_text(f"{rel.name}.zip md5 {got}\n")


def own_data(dest: Path) -> bool:
    """A directory of your own ratings in the MovieLens CSV layout (ratings.csv + movies.csv)."""
    return (dest / "ratings.csv").is_file() and (dest / "movies.csv").is_file()


def make_synthetic(name: str, dest: Path) -> int:
    """A generated MovieLens-shaped set (scripts/synth_movielens.py) instead of a download:
    written once, kept while its README names the same preset and seed."""
    stamp = f"{name}: a synthetic MovieLens-shaped data set"
    readme = dest / "README.txt"
    if readme.is_file() and readme.read_text(encoding="utf-8").startswith(stamp):
        print(f"data ok: {dest} (synthetic, already generated)")
        return 0
    ratings, users, movies = synth.PRESETS[name]
    synth.write(synth.SynthSpec(n_ratings=ratings, n_users=users, n_movies=movies), dest, name)
    return 0


def check_files(rel: Release, dest: Path) -> list[str]:
    return [n for n, h in rel.file_md5.items() if md5_file(dest / n) != h]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dataset",
        default=None,
        choices=sorted([*RELEASES, *synth.PRESETS]),
        help="default: DATASET, else the --dest folder's name when it names a release, else "
        f"{DEFAULT}",
    )
    ap.add_argument("--dest", type=Path, default=None, help="default: data/<dataset>")
    ap.add_argument("--source", type=Path, default=None, help="local copy to use when present")
    ap.add_argument("--zip", type=Path, default=None, help="a release zip downloaded by hand")
    ap.add_argument("--md5", default=None, help="the zip's published MD5 (with --zip, offline)")
    args = ap.parse_args(argv)
    name = args.dataset or os.environ.get("DATASET") or None
    if name is None and args.dest is not None and args.dest.name in RELEASES:
        name = args.dest.name
    if name is None and args.dest is not None and own_data(args.dest):
        print(f"data ok: {args.dest} (your own ratings, not a MovieLens release: not fetched)")
        return 0
    name = name or DEFAULT
    if name in synth.PRESETS:
        return make_synthetic(name, args.dest or DATA / name)
    if name not in RELEASES:
        choices = ", ".join([*RELEASES, *synth.PRESETS])
        print(f"error: DATASET={name!r}: choose one of {choices}", file=sys.stderr)
        return 2
    rel = RELEASES[name]
    dest: Path = args.dest or DATA / rel.name
    source: Path = args.source or SHARED / rel.name
    if verified(rel, dest):
        print(f"data ok: {dest}")
        return 0
    try:
        if args.zip is not None:
            blob = args.zip.read_bytes()
            expected = args.md5 or parse_md5(fetch(f"{rel.url}.md5").decode())
            extract(rel, blob, dest, expected.lower())
        elif rel.file_md5 and all((source / n).is_file() for n in rel.file_md5):
            print(f"copying {rel.name} from {source}")
            dest.mkdir(parents=True, exist_ok=True)
            for name in rel.files:
                if (source / name).is_file():
                    shutil.copyfile(source / name, dest / name)
        else:
            print(f"downloading {rel.url} (and its published MD5) ...", flush=True)
            expected = parse_md5(fetch(f"{rel.url}.md5").decode())
            extract(rel, fetch(rel.url, timeout=600), dest, expected)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # network errors come in many types; all mean the same here
        print(
            f"error: no MovieLens data for {rel.name}. The download of {rel.url} failed "
            f"({exc}). Download the zip by hand and run: python scripts/fetch_data.py "
            f"--dataset {rel.name} --zip <file> [--md5 <published sum>]",
            file=sys.stderr,
        )
        return 2
    bad = check_files(rel, dest)
    if bad:
        print(f"error: checksum mismatch for {', '.join(bad)} in {dest}", file=sys.stderr)
        return 2
    print(f"data ok: {dest} (checksums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
