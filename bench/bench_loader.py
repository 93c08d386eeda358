"""The one ratings loader on the seeded synthetic 10M-rating set: rows/s and peak memory.

Writes ratings.csv (bench/synth.py, 10M rows, CRLF) and a movies.csv for its 30k movies into a
scratch directory, then times, each in a fresh child process (so peak RSS is that load's own):

* `load_dataset` on the clean file: the vectorised path (pyarrow parse, range checks,
  de-duplication, catalogue filter, summary);
* the same file with one malformed row at the end: the line-by-line path that reports each bad
  row with file:line (run on a 1M-row prefix to keep the run short; rows/s is what compares);
* references: `pandas.read_csv` with fixed dtypes, and `pyarrow.csv.read_csv` (parse only, no
  checks, no de-duplication).

    .venv/bin/python bench/bench_loader.py [--ratings 10000000] [--out bench/out/loader.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
kind, path = sys.argv[1], Path(sys.argv[2])
t0 = time.perf_counter()
if kind == "loader":
    from movierec_common.loader import load_dataset
    ds = load_dataset(path)
    n, extra = len(ds.ratings), ds.summary.to_dict()["files"]["ratings.csv"]
elif kind == "pandas":
    import pandas as pd
    df = pd.read_csv(path / "ratings.csv", dtype={"userId": "int64", "movieId": "int64",
                     "rating": "float32", "timestamp": "int64"})
    n, extra = len(df), {}
else:
    import pyarrow.csv as pacsv
    t = pacsv.read_csv(path / "ratings.csv")
    n, extra = t.num_rows, {}
secs = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": n, "seconds": secs, "peak_rss": rss, "summary": extra}))
"""


def run_child(kind: str, directory: Path) -> dict:
    env_py = ROOT / ".venv" / "bin" / "python"
    proc = subprocess.run(
        [str(env_py if env_py.exists() else sys.executable), "-c", CHILD, kind, str(directory)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PATH": "/usr/bin:/bin",
            "LOG_JSON": "false",
        },
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_set(directory: Path, n: int) -> int:
    from synth import generate, write_csv

    arrays = generate(n)
    write_csv(directory, arrays)
    n_items = int(arrays[1].max())
    with (directory / "movies.csv").open("w", newline="") as fh:
        fh.write("movieId,title,genres\r\n")
        for m in range(1, n_items + 1):
            fh.write(f"{m},Movie {m} ({1950 + m % 70}),Drama\r\n")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=10_000_000)
    ap.add_argument("--slow-rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "loader.md")
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the generated set in this directory and reuse it on the next run",
    )
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        big, slow = (args.keep or work / "big"), work / "slow"
        t0 = time.perf_counter()
        if not (big / "movies.csv").exists():
            write_set(big, args.ratings)
        gen_s = time.perf_counter() - t0
        slow.mkdir()
        shutil.copyfile(big / "movies.csv", slow / "movies.csv")
        with (big / "ratings.csv").open("rb") as src, (slow / "ratings.csv").open("wb") as dst:
            for i, line in enumerate(src):
                if i > args.slow_rows:
                    break
                dst.write(line)
            dst.write(b"1,1,x,1300000000\r\n")  # one malformed row: the line-by-line path
        size_mb = (big / "ratings.csv").stat().st_size / 1e6
        rows = [
            ("loader, clean file (vectorised)", args.ratings, run_child("loader", big)),
            ("pandas.read_csv (reference)", args.ratings, run_child("pandas", big)),
            ("pyarrow.csv.read_csv (reference)", args.ratings, run_child("pyarrow", big)),
            (
                f"loader, one bad row (line by line, {args.slow_rows / 1e6:.0f}M rows)",
                args.slow_rows + 1,
                run_child("loader", slow),
            ),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0][2]["seconds"]
    lines = [
        f"### Ratings loader: synthetic {args.ratings / 1e6:.0f}M ratings "
        f"(ratings.csv {size_mb:.0f} MB; generated in {gen_s:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end)",
        "",
        "| path | rows read | seconds | rows/s | peak RSS | time vs loader |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, n, r in rows:
        lines.append(
            f"| {name} | {n:,} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | "
            f"{r['peak_rss'] / 2**30:.2f} GiB | {r['seconds'] / base:.2f}× |"
        )
    s = rows[0][2]["summary"]
    lines += [
        "",
        f"Loader summary (clean file): read {s.get('read', 0):,}, kept {s.get('kept', 0):,}, "
        f"dropped {s.get('dropped', {})}.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
