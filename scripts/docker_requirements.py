"""Print the project's pinned runtime requirements, minus the ones an image does not need.

Why: pyproject.toml keeps ONE set of pins for every process (so driver, executors and services
agree on NumPy), but the API image has no use for pyspark (~300 MB) and no image needs the
embedded SecantusDB or honcho, which only `make run` uses. The Dockerfiles install exactly
this filtered list, then the project itself with --no-deps.

    python scripts/docker_requirements.py --exclude pyspark secantusdb honcho
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def requirement_name(req: str) -> str:
    return re.split(r"[\[=<>!~; ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def filtered(pyproject: Path, exclude: set[str]) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    unknown = exclude - {requirement_name(d) for d in deps}
    if unknown:
        raise SystemExit(f"error: --exclude names no dependency: {sorted(unknown)}")
    return [d for d in deps if requirement_name(d) not in exclude]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    ap.add_argument("--exclude", nargs="*", default=[], help="distribution names to leave out")
    args = ap.parse_args(argv)
    exclude = {n.lower().replace("_", "-") for n in args.exclude}
    sys.stdout.write("".join(f"{d}\n" for d in filtered(args.pyproject, exclude)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
