"""Fill ./data/ml-latest-small with the MovieLens CSVs.

Why a script and not a committed copy: the GroupLens licence forbids redistributing the data
set, so every checkout fetches its own. The shared read-only copy next to the project is used
when present (no network needed); otherwise the official zip is downloaded. Either way every
CSV is checked against the published MD5 sums before it is used, so a truncated download or a
locally edited file never trains a model silently.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "data" / "ml-latest-small"
SHARED = ROOT.parent / "shared" / "data" / "ml-latest-small"
URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
# MD5 sums of the September 2018 release (also in the release's own MD5SUMS).
MD5 = {
    "links.csv": "316913f95cdad64c745ca22f3630e230",
    "movies.csv": "ed94fab72b62442ef8150d9446e000d6",
    "ratings.csv": "325a6f09399d1c45671f187505e1a100",
    "tags.csv": "1b2d21a7be1cc23d327b11155a4a6aea",
}
EXTRA = ["README.txt"]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def verified(dest: Path) -> bool:
    return all((dest / n).is_file() and md5((dest / n).read_bytes()) == h for n, h in MD5.items())


def copy_shared(src: Path, dest: Path) -> None:
    for name in [*MD5, *EXTRA]:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)


def download(dest: Path) -> None:
    print(f"downloading {URL} ...", flush=True)
    with urllib.request.urlopen(URL, timeout=60) as resp:
        blob = resp.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for name in [*MD5, *EXTRA]:
            (dest / name).write_bytes(zf.read(f"ml-latest-small/{name}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--source", type=Path, default=SHARED, help="local copy to use when present")
    args = ap.parse_args(argv)
    dest: Path = args.dest
    if verified(dest):
        print(f"data ok: {dest}")
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    if (args.source / "ratings.csv").is_file():
        print(f"copying MovieLens from {args.source}")
        copy_shared(args.source, dest)
    else:
        try:
            download(dest)
        except Exception as exc:  # network errors come in many types; all mean the same here
            print(
                f"error: no MovieLens data. {args.source} does not exist and the download of "
                f"{URL} failed ({exc}). Put ml-latest-small's CSVs into {dest} and re-run.",
                file=sys.stderr,
            )
            return 2
    bad = [n for n, h in MD5.items() if md5((dest / n).read_bytes()) != h]
    if bad:
        print(f"error: checksum mismatch for {', '.join(bad)} in {dest}", file=sys.stderr)
        return 2
    print(f"data ok: {dest} (checksums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
