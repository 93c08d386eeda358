"""Container health checks as one command whose arguments contain no spaces.

Why a module and not `python -c "..."`: podman 4.3's Docker-compatible API splits a
`["CMD", ...]` health check's arguments at spaces, so inline Python never arrives intact
there; `python -m movierec_common.healthcheck URL...` is the same argument vector on Docker and
podman. Standard library only, so every image that installs movierec_common can run it.

    python -m movierec_common.healthcheck http://127.0.0.1:8001/readyz
    python -m movierec_common.healthcheck tcp://spark-master:7077 tcp://mongo:27017

Each target must answer within --timeout seconds (default 3): an http(s) URL with a 2xx
status, a tcp://HOST:PORT address by accepting a connection. Exit status 0 when all answer,
1 otherwise (the first failure is printed to stderr, which `docker inspect` shows).
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.request
from urllib.parse import urlsplit


def check(target: str, timeout: float) -> None:
    """Raise OSError (or ValueError for a malformed target) unless `target` answers."""
    parts = urlsplit(target)
    if parts.scheme == "tcp":
        if not parts.hostname or parts.port is None:
            raise ValueError(f"tcp target needs host and port: {target!r}")
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
        return
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported target {target!r} (use http://, https:// or tcp://)")
    with urllib.request.urlopen(target, timeout=timeout) as resp:  # raises on 4xx/5xx
        if not 200 <= resp.status < 300:
            raise OSError(f"HTTP {resp.status}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="+", help="http(s)://HOST:PORT/PATH or tcp://HOST:PORT")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per target")
    args = ap.parse_args(argv)
    for target in args.targets:
        try:
            check(target, args.timeout)
        except (OSError, ValueError) as exc:
            print(f"unhealthy: {target}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
