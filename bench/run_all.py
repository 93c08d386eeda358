"""`make bench`: run every benchmark and write bench/REPORT.md.

Steps (each a child process or a bounded client; a failed step is reported, not hidden):
  train    bench/bench_train.py (BENCH_TRAIN_ARGS, default --sizes small) -> bench/out/train.md
  catalog  bench/bench_catalog.py                                          -> bench/out/catalog.md
  recs     bench/bench_recs.py                                             -> bench/out/recs.md
  loader   bench/bench_loader.py (ratings loader, synthetic 10M set)          -> bench/out/loader.md
  stack    the whole product as `make run` starts it (scripts/run_stack.py: embedded MongoDB,
           Spark master + worker, both APIs, the trainer worker, nginx) on free loopback ports
           in a scratch VAR_DIR, then:
             retrain  POST /api/admin/retrain -> job succeeded -> recommender serves it
             load     bench/load_mix.py through nginx at fixed rates, with the audit
             fuzz     schemathesis on both APIs (bench/fuzz_long.py), the long run
The report starts with the machine (CPU model, cores, RAM, load, Python/Java/Spark versions),
then one section per area; figures sit next to their reference as a ratio where one exists.

    .venv/bin/python bench/run_all.py [--skip train,catalog] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
REPORT = ROOT / "bench" / "REPORT.md"
PY = sys.executable
sys.path.insert(0, str(ROOT))

from bench.fuzz_long import run_schemathesis  # noqa: E402
from bench.load_mix import MIX, audit, markdown, run_load  # noqa: E402

STEPS = ("train", "catalog", "recs", "loader", "stack")


@dataclass
class Step:
    name: str
    ok: bool = False
    seconds: float = 0.0
    note: str = ""


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)


def say(msg: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# --- machine ---------------------------------------------------------------------------------


def _cmd(args: list[str]) -> str:
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        return (res.stdout + res.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def machine() -> list[tuple[str, str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import numpy
    import psutil
    import pyspark

    java = _cmd(["java", "-version"]).splitlines()
    nginx = _cmd(["nginx", "-v"]) or _cmd(["/usr/sbin/nginx", "-v"])
    commit = _cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    load = os.getloadavg()
    return [
        ("date (UTC)", f"{datetime.now(UTC):%Y-%m-%d %H:%M}"),
        ("git commit", commit),
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("RAM", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("load average at start", " / ".join(f"{x:.1f}" for x in load)),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("Java", java[0] if java else "not found"),
        ("Spark (pyspark)", pyspark.__version__),
        ("NumPy", numpy.__version__),
        ("nginx", nginx.replace("nginx version: ", "")),
    ]


# --- the other engineers' benchmarks -------------------------------------------------------


def run_script(name: str, argv: list[str], output: Path, timeout: float, rep: Report) -> None:
    step = Step(name)
    rep.steps.append(step)
    log = OUT / f"run_all-{name}.log"
    say(f"{name}: {' '.join(shlex.quote(a) for a in argv)} (log {log.relative_to(ROOT)})")
    start = time.monotonic()
    before = output.stat().st_mtime if output.exists() else 0.0
    try:
        with open(log, "wb") as out:
            res = subprocess.run(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        step.ok = res.returncode == 0
        step.note = f"exit code {res.returncode}"
    except subprocess.TimeoutExpired:
        step.note = f"timed out after {timeout:.0f} s"
    step.seconds = time.monotonic() - start
    fresh = output.exists() and output.stat().st_mtime > before
    if fresh:
        rep.sections[name] = output.read_text()
    else:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
        rep.sections[name] = (
            f"**Not produced in this run** ({step.note}).\n\n```\n{tail}\n```\n"
            + (f"\nLast committed table:\n\n{output.read_text()}" if output.exists() else "")
        )
        step.ok = False
    say(f"{name}: {'ok' if step.ok else 'FAILED'} in {step.seconds:.0f} s")


# --- the whole stack -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    proc: subprocess.Popen
    env: dict[str, str]
    var_dir: Path
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['MOVIEREC_HTTP_PORT']}"

    @property
    def catalog(self) -> str:
        return f"http://127.0.0.1:{self.env['CATALOG_PORT']}"

    @property
    def recs(self) -> str:
        return f"http://127.0.0.1:{self.env['RECOMMENDER_PORT']}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.env['MONGO_PORT']}/?directConnection=true"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_stack(var_dir: Path, timeout: float = 900) -> Stack:
    ports = {
        k: str(free_port())
        for k in (
            "MOVIEREC_HTTP_PORT",
            "CATALOG_PORT",
            "RECOMMENDER_PORT",
            "MONGO_PORT",
            "SPARK_MASTER_PORT",
            "SPARK_UI_PORT",
            "SPARK_WORKER_UI_PORT",
        )
    }
    env = {
        **os.environ,
        **ports,
        "VAR_DIR": str(var_dir),
        "ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "DEMO_PASSWORD": secrets.token_urlsafe(16),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "API_KEYS": json.dumps([secrets.token_urlsafe(24)]),
        "MONGO_DB": "movierec_bench_stack",
        "SIGNUP_MAX_PER_CLIENT": "100000",  # load_mix registers its users from one address
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MONGO_URL", None)
    log = OUT / "run_all-stack.log"
    out = open(log, "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [PY, str(ROOT / "scripts" / "run_stack.py")],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack = Stack(proc, env, var_dir, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"make run's stack exited ({proc.returncode}); see {log}")
        if "MovieRec is up." in log.read_text(errors="replace"):
            return stack
        time.sleep(2)
    stack.stop()
    raise RuntimeError(f"the stack was not up after {timeout:.0f} s; see {log}")


def login(stack: Stack) -> str:
    r = httpx.post(
        f"{stack.base}/api/auth/login",
        json={"username": "admin", "password": stack.env["ADMIN_PASSWORD"]},
        timeout=60,
    )
    r.raise_for_status()
    return r.json()["access_token"]


def bench_retrain(stack: Stack, token: str, timeout: float = 1800) -> str:
    auth = {"Authorization": f"Bearer {token}"}
    before = httpx.get(f"{stack.base}/api/recs/model", timeout=30).json().get("version")
    t0 = time.monotonic()
    r = httpx.post(f"{stack.base}/api/admin/retrain", json={}, headers=auth, timeout=60)
    if r.status_code == 409:  # a scheduled/threshold job is already active: follow that one
        job = r.json()["error"]["details"]["job"]
    else:
        r.raise_for_status()
        job = r.json()
    job_id = job["id"]
    served_at = None
    finished_at = None
    missed: list[str] = []  # polls the stack did not answer: a stall is a result, not a crash

    def poll(path: str, **kw: object) -> dict | None:
        try:
            r = httpx.get(f"{stack.base}{path}", timeout=30, **kw)  # type: ignore[arg-type]
            r.raise_for_status()
            return r.json()
        except httpx.HTTPError as exc:
            missed.append(f"{path}: {type(exc).__name__}")
            return None

    while time.monotonic() - t0 < timeout:
        job = poll(f"/api/admin/jobs/{job_id}", headers=auth) or job
        if finished_at is None and job["status"] in (
            "succeeded",
            "failed",
            "rejected",
            "cancelled",
        ):
            finished_at = time.monotonic()
            if job["status"] != "succeeded":
                break
        if finished_at is not None:
            version = (poll("/api/recs/model") or {}).get("version")
            if version == job.get("model_version"):
                served_at = time.monotonic()
                break
        time.sleep(0.5)
    phases = job.get("phases") or {}
    metrics = job.get("metrics") or {}
    train_s = phases.get("train_s")
    total = (served_at or finished_at or time.monotonic()) - t0

    def ratio(x: float | None) -> str:
        return f"{x / train_s:.2f}" if x is not None and train_s else "–"

    rows = [
        ("queue (created → claimed)", phases.get("queue_s")),
        ("snapshot (MongoDB + CSV → Parquet)", phases.get("snapshot_s")),
        ("tune (the explicit λ on validation, 5 × 8 iterations)", phases.get("tune_s")),
        ("train (Spark ALS, reference)", train_s),
        ("validate", phases.get("validate_s")),
        ("publish", phases.get("publish_s")),
        ("POST → job finished", (finished_at - t0) if finished_at else None),
        ("POST → new version served by the recommender", (served_at - t0) if served_at else None),
    ]
    lines = [
        f"One retrain through the admin API on the full `make run` stack (Spark standalone, "
        f"1 worker core). Job `{job_id}`: **{job['status']}**; model {before} → "
        f"{job.get('model_version')}; RMSE {metrics.get('rmse')}, NDCG@10 "
        f"{metrics.get('ndcg_at_10')}.",
        "",
        "| phase | seconds | × train phase |",
        "|---|---:|---:|",
    ]
    for name, secs in rows:
        lines.append(
            f"| {name} | {secs:.1f} | {ratio(secs)} |"
            if secs is not None
            else f"| {name} | – | – |"
        )
    if job["status"] != "succeeded":
        lines.append(f"\nError: `{str(job.get('error'))[:300]}`")
    if missed:
        lines.append(
            f"\n{len(missed)} status polls (every 0.5 s, 30 s timeout) went unanswered, "
            f"first: `{missed[0]}`."
        )
    lines.append(f"\nTotal measured: {total:.1f} s.")
    return "\n".join(lines) + "\n"


def bench_load(stack: Stack, rates: list[float], duration: float) -> str:
    parts = [
        "Open-loop fixed-rate load through nginx (bench/load_mix.py): browse (list, search, "
        "detail, popular), rate (PUT/DELETE) and recommend (me, similar); mix "
        + ", ".join(f"{k} {v:.0%}" for k, v in MIX.items())
        + ". Latency is measured from each request's scheduled start. After each run every "
        "acknowledged rating is checked in MongoDB and every movie's stats are recounted. "
        "Reference for the ratio: the target rate.",
        "",
        "| target req/s | achieved req/s | × target | errors | not sent (cap) | p50 ms | p95 ms "
        "| p99 ms | ratings audit | stats recount |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    details = []
    for rate in rates:
        say(f"load: {rate} req/s for {duration:.0f} s")
        res = asyncio.run(run_load(stack.base, duration=duration, rate=rate, seed=int(rate)))
        summary = res.summary()
        report = audit(stack.mongo_url, stack.env["MONGO_DB"], res.acknowledged)
        a = summary["by_op"]["ALL"]
        parts.append(
            f"| {rate:g} | {summary['achieved_rate']} | {summary['achieved_rate'] / rate:.2f} "
            f"| {summary['errors']} | {summary['skipped_busy']} | {a['p50_ms']:.0f} "
            f"| {a['p95_ms']:.0f} | {a['p99_ms']:.0f} "
            f"| {len(report.missing_or_wrong)} wrong of {report.checked_pairs} "
            f"| {len(report.stats_mismatches)} off of {report.checked_movies} |"
        )
        details.append(f"\n### {rate:g} req/s\n\n" + markdown(summary, report))
        if summary["error_examples"]:
            details.append("Errors (first few): " + "; ".join(summary["error_examples"][:3]))
        time.sleep(5)
    return "\n".join(parts) + "\n" + "\n".join(details)


def bench_fuzz(stack: Stack, token: str, max_examples: int) -> str:
    lines = [
        "Schemathesis (phases examples, coverage, fuzzing; checks: no 5xx, documented status, "
        "content type and response schema) against each API with an admin token.",
        "",
        "| API | operations | test cases | failures | seconds | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    outputs = []
    for name, url in (("catalog", stack.catalog), ("recommender", stack.recs)):
        say(f"fuzz: {name} ({max_examples} examples per operation)")
        res = run_schemathesis(
            url,
            headers={"Authorization": f"Bearer {token}"},
            max_examples=max_examples,
            phases="examples,coverage,fuzzing",
            log_path=OUT / f"run_all-fuzz-{name}.txt",
        )
        lines.append(
            f"| {name} | {res.operations} | {res.cases} | {res.failures} | {res.seconds:.0f} "
            f"| {'pass' if res.ok else 'FAIL'} |"
        )
        if not res.ok:
            outputs.append(f"\n{name} failures:\n\n```\n{res.failure_text(3000)}\n```\n")
    return "\n".join(lines) + "\n" + "\n".join(outputs)


def run_stack_benches(rep: Report, args: argparse.Namespace) -> None:
    step = Step("stack")
    rep.steps.append(step)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="movierec-bench-") as tmp:
        stack = None
        try:
            say("stack: starting scripts/run_stack.py (make run) on free ports")
            stack = start_stack(Path(tmp) / "var")
            say(f"stack: up in {time.monotonic() - start:.0f} s")
            rep.sections["stack start"] = (
                f"`make run` (scripts/run_stack.py) from an empty VAR_DIR to all health checks "
                f"green: {time.monotonic() - start:.0f} s (MongoDB init with ml-latest-small, "
                f"first model, Spark master + worker, both APIs, trainer worker, nginx).\n"
            )
            token = login(stack)
            for name, fn in (
                ("retrain", lambda: bench_retrain(stack, token)),
                ("load", lambda: bench_load(stack, args.rates, args.load_seconds)),
                ("fuzz", lambda: bench_fuzz(stack, login(stack), args.fuzz_examples)),
            ):
                t0 = time.monotonic()
                try:
                    rep.sections[name] = fn()
                except Exception as exc:  # one area failing must not hide the others
                    rep.sections[name] = f"**Failed**: `{type(exc).__name__}: {exc}`\n"
                    step.note += f"{name} failed; "
                say(f"{name}: done in {time.monotonic() - t0:.0f} s")
            step.ok = not step.note
        except Exception as exc:
            step.note = f"{type(exc).__name__}: {exc}"
            for name in ("retrain", "load", "fuzz"):
                rep.sections.setdefault(name, f"**Not run**: the stack did not start ({exc}).\n")
        finally:
            if stack is not None:
                say("stack: stopping")
                stack.stop()
    step.seconds = time.monotonic() - start


# --- report --------------------------------------------------------------------------------


def _demote(md: str) -> str:
    """Nest another report's headings under this report's section heading."""
    return "\n".join(("##" + line) if line.startswith("#") else line for line in md.splitlines())


def write_report(rep: Report, host: list[tuple[str, str]], args: argparse.Namespace) -> None:
    lines = [
        "# MovieRec benchmark report (`make bench`)",
        "",
        "Generated by bench/run_all.py. The machine is shared (see the load average): absolute "
        "seconds are noisy, ratios within one run are the comparison.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in host],
        "",
        "## Steps",
        "",
        "| step | result | seconds | note |",
        "|---|---|---:|---|",
        *[
            f"| {s.name} | {'ok' if s.ok else 'FAILED'} | {s.seconds:.0f} | {s.note} |"
            for s in rep.steps
        ],
    ]
    titles = {
        "train": "Training (bench/bench_train.py)",
        "loader": "Ratings loader (bench/bench_loader.py)",
        "catalog": "Catalog API (bench/bench_catalog.py)",
        "recs": "Recommender API (bench/bench_recs.py)",
        "stack start": "Whole stack start (`make run`)",
        "retrain": "Retrain latency (admin API → trainer worker on Spark → served)",
        "load": "Mixed load through nginx (bench/load_mix.py)",
        "fuzz": "API fuzzing (bench/fuzz_long.py, schemathesis)",
        "compose": "Compose stack on podman (`make test-compose`)",
    }
    compose_md = ROOT / "bench" / "out" / "compose.md"  # written by tests/compose/conftest.py
    if compose_md.is_file():
        rep.sections.setdefault("compose", compose_md.read_text())
    if "train" not in args.skip and "10m" not in args.train_args and "train" in rep.sections:
        rep.sections["train"] += (
            "\n\nNote: this run used `--sizes small` (ml-latest-small). The synthetic "
            "10M-rating size (`BENCH_TRAIN_ARGS='--sizes small,10m'`) did not fit this run's "
            "time budget on the shared 2-core machine.\n"
        )
    for key, title in titles.items():
        if key in rep.sections:
            body = rep.sections[key]
            body = _demote(body) if key in ("train", "catalog", "recs", "loader") else body
            lines += ["", f"## {title}", "", body.strip()]
    REPORT.write_text("\n".join(lines) + "\n")
    say(f"wrote {REPORT.relative_to(ROOT)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--skip", default="", help=f"comma-separated steps to skip: {','.join(STEPS)}")
    p.add_argument("--quick", action="store_true", help="shorter load and fuzz runs")
    p.add_argument("--train-args", default=os.environ.get("BENCH_TRAIN_ARGS", "--sizes small"))
    p.add_argument("--rates", default=None, help="load rates, req/s (default 2,5,10,20)")
    args = p.parse_args()
    args.skip = {s for s in args.skip.split(",") if s}
    args.rates = [
        float(r) for r in (args.rates or ("2,5" if args.quick else "2,5,10,20")).split(",")
    ]
    args.load_seconds = 20.0 if args.quick else 45.0
    args.fuzz_examples = 15 if args.quick else 50
    OUT.mkdir(parents=True, exist_ok=True)
    host = machine()
    rep = Report()
    if "train" not in args.skip:
        run_script(
            "train",
            [PY, "bench/bench_train.py", *shlex.split(args.train_args)],
            OUT / "train.md",
            3600,
            rep,
        )
    if "catalog" not in args.skip:
        run_script("catalog", [PY, "bench/bench_catalog.py"], OUT / "catalog.md", 1800, rep)
    if "recs" not in args.skip:
        run_script("recs", [PY, "bench/bench_recs.py"], OUT / "recs.md", 1800, rep)
    if "loader" not in args.skip:
        run_script("loader", [PY, "bench/bench_loader.py"], OUT / "loader.md", 2400, rep)
    if "stack" not in args.skip:
        run_stack_benches(rep, args)
    for name in ("train", "catalog", "recs", "loader"):
        table = OUT / f"{name}.md"
        if name in args.skip and table.exists():
            rep.sections[name] = f"_Not re-run (--skip); the last table:_\n\n{table.read_text()}"
    write_report(rep, host, args)
    return 0 if all(s.ok for s in rep.steps) else 1


if __name__ == "__main__":
    sys.exit(main())
