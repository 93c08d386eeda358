"""Schemathesis against a running MovieRec API: no 5xx, and every response matches the schema.

Runs the schemathesis CLI (v4) on the API's own /openapi.json with the checks that matter here:
not_a_server_error, status_code_conformance (every status is documented),
content_type_conformance and response_schema_conformance (bodies match the declared models,
errors included). Credentials go in as headers (an admin token reaches every route).

tests/hardening/test_fuzz.py runs it with a few examples per operation; bench/run_all.py runs
the long version (more examples, the coverage phase too) and puts the summary in the report.
Only 127.0.0.1 is ever a target.

    .venv/bin/python bench/fuzz_long.py --api http://127.0.0.1:8001 -H "Authorization: Bearer …"
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@dataclass
class FuzzResult:
    api: str
    returncode: int
    seconds: float
    output: str
    operations: int
    cases: int
    failures: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure_text(self, limit: int = 6000) -> str:
        """The FAILURES section (or the tail) of the run's output, for assertion messages."""
        start = self.output.find("FAILURES")
        text = self.output[start:] if start >= 0 else self.output
        return text[:limit]


def _count(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else 0


def run_schemathesis(
    api_url: str,
    *,
    headers: dict[str, str] | None = None,
    max_examples: int = 25,
    phases: str = "examples,fuzzing",
    seed: int = 1,
    workers: int = 1,
    request_timeout: float = 60.0,
    max_time: float | None = None,
    log_path: Path | None = None,
    exclude_paths: tuple[str, ...] = (),
) -> FuzzResult:
    host = urlsplit(api_url).hostname or ""
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        raise SystemExit(f"fuzz only targets loopback addresses, not {host!r}")
    args = [
        str(SCHEMATHESIS),
        "--no-color",
        "run",
        f"{api_url}/openapi.json",
        "--url",
        api_url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--request-timeout",
        str(request_timeout),
        "--max-failures",
        "100",
        "--suppress-health-check",
        "all",
    ]
    if max_time:
        args += ["--max-time", str(int(max_time))]
    for path in exclude_paths:
        args += ["--exclude-path", path]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    start = time.monotonic()
    # Run in a scratch directory: Hypothesis keeps its example database in the working dir.
    with tempfile.TemporaryDirectory(prefix="fuzz-") as scratch:
        proc = subprocess.run(
            args,
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
        )
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(output)
    return FuzzResult(
        api=api_url,
        returncode=proc.returncode,
        seconds=seconds,
        output=output,
        operations=_count(r"Tested:\s+(\d+)", output),
        cases=_count(r"(\d+) generated", output),
        failures=_count(r"found (\d+) unique failures", output),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--api", required=True, help="base URL of one API, e.g. http://127.0.0.1:8001")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    p.add_argument("--max-examples", type=int, default=200)
    p.add_argument("--phases", default="examples,coverage,fuzzing")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    res = run_schemathesis(
        args.api,
        headers=headers,
        max_examples=args.max_examples,
        phases=args.phases,
        seed=args.seed,
    )
    print(res.output)
    raise SystemExit(res.returncode)


if __name__ == "__main__":
    main()
