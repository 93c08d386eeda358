"""Stamp index.html's asset URLs with content hashes (`?v=<hash>`).

nginx caches `/assets/...?v=<hash>` for a year as immutable and revalidates everything else,
so a changed stylesheet or script reaches browsers on the next page load while unchanged ones
are never re-downloaded. The stylesheet's hash covers app.css; the script's hash covers every
module, because app.js imports the others by plain relative URLs.

    python frontend/stamp_assets.py          # rewrite site/index.html
    python frontend/stamp_assets.py --check  # exit 1 when index.html is stale (CI)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent / "site"


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.relative_to(SITE).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def stamped(html: str, site: Path) -> str:
    css = digest([site / "assets" / "app.css"])
    js = digest(list((site / "assets" / "js").rglob("*.js")))
    html = re.sub(r"(/assets/app\.css)\?v=[0-9A-Za-z_-]*", rf"\1?v={css}", html)
    return re.sub(r"(/assets/js/app\.js)\?v=[0-9A-Za-z_-]*", rf"\1?v={js}", html)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="only verify; exit 1 if stale")
    args = p.parse_args(argv)
    index = SITE / "index.html"
    html = index.read_text()
    new = stamped(html, SITE)
    if args.check:
        if new != html:
            print(
                "frontend/site/index.html asset hashes are stale: run `make css`", file=sys.stderr
            )
            return 1
        return 0
    if new != html:
        index.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
