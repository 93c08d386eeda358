"""`make run`: start the whole MovieRec stack on this machine, and stop all of it on Ctrl-C.

What it starts is described once, in scripts/stack.toml (rendered into ./Procfile); this file
only decides the order and the local values:

1. infra, with honcho: the embedded MongoDB (SecantusDB; skipped when MONGO_URL is set), a
   Spark standalone master and one worker (pyspark's own spark-class);
2. the one-shot steps: the MovieLens data check, mongo-init (skipped when this database was
   already initialised), the first model (skipped when MODEL_DIR has a CURRENT version);
3. apps, with honcho: catalog API, recommender API, the trainer worker, nginx;
4. waits for /healthz and /readyz of each, then prints the URL and logins.

Every child runs in its own session (honcho puts each Procfile process in one too), so on
SIGINT/SIGTERM/SIGHUP this script stops the groups in reverse order, waits, and kills whatever
is left, so nothing keeps running or holds a port after Ctrl-C.

Once up, it supervises like Compose's `restart: unless-stopped`: each service runs under its
own honcho, and a service that exits is started again after a back-off (1 s, doubling to 30 s,
back to 1 s once it has run for a minute); only a signal stops the stack. A signal sent to
`make` alone (not to its process group) is noticed too: make catches SIGINT/SIGHUP/SIGTERM and
then waits for its recipe, so a parent `make` that stops catching one of them has received it.
State lives in VAR_DIR (./var): the database files, the models, the generated secrets, nginx's
runtime files, Spark's scratch.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from movierec_trainer.session import SPARK_DAEMON_JAVA_OPTS
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

try:  # imported as scripts.run_stack by the tests, run as scripts/run_stack.py by make
    from scripts.ensure_model import active_version
    from scripts.stack_spec import PROCFILE_PATH, ROOT, StackSpec, load_spec, render
except ImportError:  # pragma: no cover - the script path puts scripts/ itself on sys.path
    from ensure_model import active_version
    from stack_spec import PROCFILE_PATH, ROOT, StackSpec, load_spec, render

VENV_BIN = Path(sys.executable).parent
SECRET_NAMES = ("JWT_SECRET", "ADMIN_PASSWORD", "DEMO_PASSWORD", "API_KEY", "SPARK_AUTH_SECRET")
# Settings some service reads that make run leaves at the service's own default unless the
# caller's environment (or .env) sets them; honcho passes the environment through.
PASSTHROUGH = frozenset(
    {"JWT_TTL_SECONDS", "POPULARITY_PRIOR_WEIGHT", "SIGNUP_MAX_PER_CLIENT", "SNAPSHOT_PAUSE_RATIO"}
)
INFRA_WAIT_S = 120.0
# The embedded MongoDB-wire server reads every stored document when it opens (SecantusDB
# 0.7's Storage._scan_max_nat_seq recovers its record counter by walking each document
# table): an empty store opens in about a second, the 8.5 GB of a 25M-rating import took
# 102-115 s (~12-14 s per GB). A fixed 60 s wait made every make run on such a store fail.
MONGO_OPEN_FLOOR_S = 60.0
MONGO_OPEN_SECONDS_PER_GB = 30.0  # about twice the measured rate
WAIT_HEARTBEAT_S = 30.0  # a line every this often while a wait goes on
GRACE_S = 30.0
RESTART_FIRST_S = 1.0  # back-off before restarting a crashed service, doubled per crash ...
RESTART_MAX_S = 30.0  # ... up to this, and reset once the service ran RESTART_RESET_S
RESTART_RESET_S = 60.0
FATAL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Printed once everything answers; tests/e2e and bench/run_all.py wait for this exact line.
READY_LINE = "MovieRec is up."
# honcho SIGKILLs a process 5 s after SIGTERM; the embedded database flushing its files and
# the trainer finishing its ALS iteration need longer, so its grace period is raised.
HONCHO_MAIN = (
    f"import sys, honcho.manager, honcho.command; honcho.manager.KILL_WAIT = {GRACE_S}; "
    "sys.exit(honcho.command.main())"
)


class StackSettings(BaseSettings):
    """make run's own knobs; every one is an environment variable (see .env.example)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    var_dir: Path = Field(ROOT / "var", description="State: database, models, secrets, logs.")
    data_dir: Path = Field(ROOT / "data" / "ml-latest-small", description="MovieLens CSVs.")
    movierec_host: str = Field("127.0.0.1", description="Interface every process binds to.")
    movierec_http_port: int = 8080
    catalog_port: int = 8001
    recommender_port: int = 8002
    mongo_port: int = 27017
    mongo_url: str | None = Field(None, description="External MongoDB; skips the embedded one.")
    mongo_db: str = "movierec"
    spark_master_port: int = 7077
    spark_ui_port: int = 8090
    spark_worker_ui_port: int = 8081
    spark_worker_cores: int = 1
    spark_worker_memory: str = "2g"
    admin_username: str = "admin"
    admin_password: str | None = None
    demo_password: str | None = None
    jwt_secret: str | None = None
    api_keys: str | None = Field(None, description="JSON list; default: one generated key.")
    log_level: str = "INFO"
    log_json: bool = False
    startup_timeout: float = Field(300.0, description="Seconds to wait for health after start.")


# ------------------------------------------------------------------------------------------
# configuration


def generate_secrets() -> dict[str, str]:
    return {
        "JWT_SECRET": secrets.token_hex(32),
        "ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "DEMO_PASSWORD": secrets.token_urlsafe(9),
        "API_KEY": secrets.token_urlsafe(24),
        "SPARK_AUTH_SECRET": secrets.token_hex(32),
    }


def load_secrets(var_dir: Path) -> dict[str, str]:
    """Generate the local secrets once and keep them in VAR_DIR (gitignored, mode 0600)."""
    path = var_dir / "secrets.env"
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    missing = [n for n in SECRET_NAMES if not values.get(n)]
    if missing:
        fresh = generate_secrets()
        values.update({n: fresh[n] for n in missing})
        var_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# Generated by make run on first start; delete to regenerate.\n")
            f.writelines(f"{n}={values[n]}\n" for n in SECRET_NAMES)
        os.replace(tmp, path)
    return values


def setting_source(s: StackSettings, field: str) -> str | None:
    """Where a make run setting came from: "environment", ".env", or None (not set)."""
    if field not in s.model_fields_set or getattr(s, field) is None:
        return None
    return "environment" if os.environ.get(field.upper()) else ".env"


def resolve_api_keys(s: StackSettings, secret: dict[str, str]) -> tuple[str, str]:
    """The API_KEYS value the services get, and a sentence on where it came from.

    An unset or empty list (`.env.example` ships `API_KEYS=[]`) means the generated API_KEY of
    var/secrets.env, so the key make run points to always works. A non-empty list is used as
    given (then the generated key is not accepted, and the sentence says so). Raises
    StartupError when API_KEYS is not a JSON list of non-empty strings.
    """
    source = setting_source(s, "api_keys")
    if source is None:
        return json.dumps([secret["API_KEY"]]), "API_KEY in var/secrets.env"
    try:
        keys = json.loads(s.api_keys or "")
    except ValueError:
        keys = None
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise StartupError(
            f'API_KEYS (from {source}) must be a JSON list of strings, e.g. ["key1", "key2"]'
        )
    if not keys:
        return json.dumps([secret["API_KEY"]]), (
            f"API_KEY in var/secrets.env (API_KEYS from {source} is an empty list)"
        )
    return json.dumps(keys), (
        f"API_KEYS from {source} ({len(keys)} key(s)); the API_KEY in var/secrets.env is NOT "
        "accepted"
    )


def ignored_dotenv_settings(dotenv: dict[str, str | None], values: dict[str, str]) -> list[str]:
    """Settings in .env that make run sets itself to something else (Compose-only values).

    make run passes every value of `values` to its processes, so a .env line for one of those
    names that is not one of make run's own knobs (StackSettings) has no effect; they are
    reported, never silently dropped. Secret-looking values are not repeated.
    """
    own = {name.upper() for name in StackSettings.model_fields}
    ignored = []
    for key, value in dotenv.items():
        if not value or key in own or key not in values or value == values[key]:
            continue
        secret = any(w in key for w in ("SECRET", "PASSWORD", "KEY"))
        shown = "(hidden)" if secret else f"{value!r}"
        ignored.append(f"{key}={shown} (make run uses {values[key]!r})")
    return ignored


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


def mongo_url(s: StackSettings) -> str:
    return s.mongo_url or f"mongodb://{s.movierec_host}:{s.mongo_port}/?directConnection=true"


def trusted_proxies(host: str) -> list[str]:
    """Where make run's nginx connects to the APIs from: loopback, or the bind address."""
    nets = ["127.0.0.1/32", "::1/128"]
    if host not in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::"):
        nets.append(host)
    return nets


def build_env(s: StackSettings, secret: dict[str, str]) -> dict[str, str]:
    """The values of every setting and Procfile placeholder, for every process make run starts."""
    host = s.movierec_host
    var = s.var_dir.resolve()
    spark_master = f"spark://{host}:{s.spark_master_port}"
    values = {
        "VAR_DIR": str(var),
        "BIND_HOST": host,
        "DATA_DIR": str(s.data_dir.resolve()),
        "MODEL_DIR": str(var / "models"),
        "MONGO_PORT": str(s.mongo_port),
        "MONGO_URL": mongo_url(s),
        "MONGO_DB": s.mongo_db,
        "JWT_SECRET": s.jwt_secret or secret["JWT_SECRET"],
        "API_KEYS": resolve_api_keys(s, secret)[0],
        "ADMIN_USERNAME": s.admin_username,
        "ADMIN_PASSWORD": s.admin_password or secret["ADMIN_PASSWORD"],
        "DEMO_ACCOUNTS": "1",
        "DEMO_PASSWORD": s.demo_password or secret["DEMO_PASSWORD"],
        "CATALOG_HOST": host,
        "CATALOG_PORT": str(s.catalog_port),
        # nginx sets X-Forwarded-For; without this every browser shares nginx's address and
        # with it the catalog's per-client login failure limit.
        "TRUST_FORWARDED_FOR": "true",
        # ... from our nginx only, which connects from the interface the APIs listen on.
        "TRUSTED_PROXIES": json.dumps(trusted_proxies(host)),
        "WORK_DIR": str(var / "trainer"),
        "RECOMMENDER_HOST": host,
        "RECOMMENDER_PORT": str(s.recommender_port),
        "SPARK_MASTER": spark_master,
        # Executors run on this machine, so they reach the driver on the same interface.
        "SPARK_DRIVER_HOST": host,
        "SPARK_DRIVER_BIND_ADDRESS": host,
        "SPARK_MASTER_HOST": host,
        "SPARK_MASTER_PORT": str(s.spark_master_port),
        "SPARK_UI_PORT": str(s.spark_ui_port),
        "SPARK_WORKER_UI_PORT": str(s.spark_worker_ui_port),
        "SPARK_WORKER_CORES": str(s.spark_worker_cores),
        "SPARK_WORKER_MEMORY": s.spark_worker_memory,
        "SPARK_WORKER_DIR": str(var / "spark" / "work"),
        "SPARK_LOCAL_DIRS": str(var / "spark" / "local"),
        "SPARK_CONF_DIR": str(var / "spark" / "conf"),
        # Shared secret of the Spark cluster: the trainer reads SPARK_AUTH_SECRET, the master
        # and worker _SPARK_AUTH_SECRET (from the environment, so it is never on a command
        # line); SPARK_DAEMON_JAVA_OPTS turns authentication on and the UI's kill button off.
        "SPARK_AUTH_SECRET": secret["SPARK_AUTH_SECRET"],
        "_SPARK_AUTH_SECRET": secret["SPARK_AUTH_SECRET"],
        "SPARK_DAEMON_JAVA_OPTS": SPARK_DAEMON_JAVA_OPTS,
        # Bind Spark's JVMs to the same interface, and stop its "loopback address" warning.
        "SPARK_LOCAL_IP": host,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "LOG_LEVEL": s.log_level,
        "LOG_JSON": "true" if s.log_json else "false",
        "MOVIEREC_HTTP_PORT": str(s.movierec_http_port),
        "LISTEN_PORT": f"{host}:{s.movierec_http_port}",
        "CATALOG_UPSTREAM": f"{host}:{s.catalog_port}",
        "RECOMMENDER_UPSTREAM": f"{host}:{s.recommender_port}",
        # Not "NGINX": nginx itself reads that variable (inherited sockets on binary upgrade).
        "NGINX_BIN": nginx_binary() or "nginx",
        "PYTHONUNBUFFERED": "1",
    }
    return values


# Spark's default console logging is INFO for every class; keep the deploy daemons' own
# lifecycle lines (worker registered, application started) and warnings, drop the rest.
SPARK_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %c{1}: %m%n%ex
logger.master.name = org.apache.spark.deploy.master.Master
logger.master.level = info
logger.worker.name = org.apache.spark.deploy.worker.Worker
logger.worker.level = info
# Known noise of a normal run, dropped by message so other lines of the same classes stay:
# the daemons' "RECEIVED SIGNAL TERM" (ERROR) on Ctrl-C, the scheduler's "task of very large
# size" (each ALS half-step ships its block of factors), Hadoop's native-library notice, ...
appender.console.filter.noise.type = RegexFilter
appender.console.filter.noise.regex = .*({NOISE}).*
appender.console.filter.noise.onMatch = DENY
appender.console.filter.noise.onMismatch = NEUTRAL
""".replace(
    "{NOISE}",
    "|".join(
        (
            "RECEIVED SIGNAL (TERM|INT|HUP)",
            "contains a task of very large size",
            "Unable to load native-hadoop library",
            # ALS checkpoints its factor RDDs locally on purpose (short lineage per iteration)
            "was locally checkpointed, its lineage has been truncated",
            # the master hearing from an executor of an application that just ended
            "Got status update for unknown executor",
        )
    ),
)


def write_spark_conf(conf_dir: Path) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "log4j2.properties").write_text(SPARK_LOG4J2)


def process_env(values: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **values}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


# ------------------------------------------------------------------------------------------
# processes


class StartupError(RuntimeError):
    """Something the person running make run has to fix; printed without a traceback."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    # Descendants observed while running, pid -> start time (so a reused pid is never killed).
    seen: dict[int, float] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0
    backoff: float = RESTART_FIRST_S
    restart_at: float | None = None  # when a crashed service is due to start again

    def snapshot(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.seen[p.pid] = p.create_time()

    def alive(self) -> bool:
        return self.proc.poll() is None


class Supervisor:
    """Owns every process make run starts; stop() leaves none of them running."""

    def __init__(self, env: dict[str, str], parent: ParentMake | None = None) -> None:
        self.env = env
        self.children: list[Child] = []
        self.parent = parent

    def check_parent(self) -> None:
        """Raise KeyboardInterrupt when the parent make was signalled (see ParentMake)."""
        why = self.parent.signalled() if self.parent else None
        if why:
            raise KeyboardInterrupt(why)

    def spawn(self, name: str, argv: list[str]) -> Child:
        proc = subprocess.Popen(argv, env=self.env, cwd=ROOT, start_new_session=True)
        child = Child(name, proc, argv=argv)
        self.children.append(child)
        return child

    def restart_crashed(self, now: float | None = None) -> None:
        """Start again every child that exited, each after its back-off (Compose's restart
        policy). Never raises for a crash: only a signal stops the stack once it is up."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            child.snapshot()
            if child.alive():
                continue
            if child.restart_at is None:
                ran = now - child.started
                if ran >= RESTART_RESET_S:
                    child.backoff = RESTART_FIRST_S
                child.restart_at = now + child.backoff
                say(
                    f"{child.name} exited (code {child.proc.returncode}) after {ran:.0f}s; "
                    f"restarting in {child.backoff:.0f}s"
                )
                child.backoff = min(child.backoff * 2, RESTART_MAX_S)
            elif now >= child.restart_at:
                child.proc = subprocess.Popen(
                    child.argv, env=self.env, cwd=ROOT, start_new_session=True
                )
                child.started, child.restart_at = now, None
                child.restarts += 1
                say(f"{child.name} restarted (restart {child.restarts})")

    def honcho(self, name: str, processes: list[str]) -> Child:
        argv = [sys.executable, "-c", HONCHO_MAIN, "-f", str(PROCFILE_PATH), "-e", os.devnull]
        return self.spawn(name, [*argv, "start", *processes])

    def run_oneshot(self, name: str, argv: list[str]) -> int:
        """Run a step to completion; on Ctrl-C stop() ends it together with the daemons."""
        child = self.spawn(name, argv)
        while child.proc.poll() is None:
            self.check_parent()
            time.sleep(0.5)
        self.children.remove(child)
        return int(child.proc.returncode)

    def check_alive(self) -> None:
        self.check_parent()
        for child in self.children:
            child.snapshot()
            if not child.alive():
                raise StartupError(
                    f"{child.name} stopped (exit code {child.proc.returncode}); "
                    "see its output above"
                )

    def stop(self, timeout: float = GRACE_S + 15) -> None:
        for child in reversed(self.children):
            child.snapshot()
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
                try:
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.proc.pid, signal.SIGKILL)
                    child.proc.wait(5)
        # honcho terminates its processes' groups itself; anything that escaped is killed here.
        leftovers = []
        for child in self.children:
            for pid, started in child.seen.items():
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(pid)
                    if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                        leftovers.append(p)
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(leftovers, timeout=5)
        self.children.clear()


# ------------------------------------------------------------------------------------------
# waiting


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_until(what: str, ok: Callable[[], bool], sup: Supervisor, timeout: float) -> None:
    """Poll ok() until it is true; StartupError past timeout seconds or if a child stops.
    Says it is still waiting every WAIT_HEARTBEAT_S, so a long wait is never silent."""
    start = time.monotonic()
    next_heartbeat = start + WAIT_HEARTBEAT_S
    while (now := time.monotonic()) < start + timeout:
        sup.check_alive()
        if ok():
            return
        if now >= next_heartbeat:
            say(f"still waiting for {what} ({now - start:.0f}s of at most {timeout:.0f}s)")
            next_heartbeat += WAIT_HEARTBEAT_S
        time.sleep(0.3)
    raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}")


def size_gb(directory: Path) -> float:
    """GiB of the files directly in `directory` (0 if it does not exist)."""
    if not directory.is_dir():
        return 0.0
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) / 2**30


def mongo_open_bound(store_gb: float) -> float:
    """Seconds to wait for the embedded server to open a store of `store_gb` GiB:
    MONGO_OPEN_FLOOR_S plus MONGO_OPEN_SECONDS_PER_GB per GiB (its open time grows with it)."""
    return MONGO_OPEN_FLOOR_S + MONGO_OPEN_SECONDS_PER_GB * store_gb


def spark_workers_alive(host: str, ui_port: int) -> bool:
    status, body = http_get(f"http://{host}:{ui_port}/json/")
    if status != 200:
        return False
    with contextlib.suppress(ValueError):
        return int(json.loads(body).get("aliveworkers", 0)) >= 1
    return False


class SparkWait:
    """Waits once for a Spark worker to register; a failure is a warning, not fatal."""

    def __init__(self, host: str, ui_port: int, sup: Supervisor) -> None:
        self.host, self.ui_port, self.sup = host, ui_port, sup
        self.result: bool | None = None

    def ready(self) -> bool:
        if self.result is None:
            try:
                wait_until(
                    "a Spark worker to register with the master",
                    lambda: spark_workers_alive(self.host, self.ui_port),
                    self.sup,
                    INFRA_WAIT_S,
                )
                self.result = True
                say("Spark master and worker ready")
            except StartupError as exc:
                self.result = False
                say(
                    f"WARNING Spark is not available ({exc}); a first model trains with "
                    "--engine local, retrains will fail until the cluster is up"
                )
        return self.result


def say(msg: str) -> None:
    """One line of make run's own output; bold only on a terminal (no escape codes in files)."""
    tag = "\033[1mmake run\033[0m" if sys.stdout.isatty() else "make run"
    print(f"{tag} | {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# steps


def check_ports(s: StackSettings) -> None:
    wanted = {
        "MOVIEREC_HTTP_PORT": s.movierec_http_port,
        "CATALOG_PORT": s.catalog_port,
        "RECOMMENDER_PORT": s.recommender_port,
        "SPARK_MASTER_PORT": s.spark_master_port,
        "SPARK_UI_PORT": s.spark_ui_port,
        "SPARK_WORKER_UI_PORT": s.spark_worker_ui_port,
    }
    if not s.mongo_url:
        wanted["MONGO_PORT"] = s.mongo_port
    busy = [f"{name}={port}" for name, port in wanted.items() if port_open(s.movierec_host, port)]
    if busy:
        raise StartupError(
            f"port(s) already in use on {s.movierec_host}: {', '.join(busy)}. Is another "
            "MovieRec running? Stop it, or choose other ports, e.g. "
            "MOVIEREC_HTTP_PORT=9080 CATALOG_PORT=9001 make run"
        )


def database_initialised(values: dict[str, str], marker: Path) -> bool:
    """True when this database was initialised by an earlier make run and still has movies."""
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except ValueError:
        return False
    if recorded != {"mongo_url": values["MONGO_URL"], "mongo_db": values["MONGO_DB"]}:
        return False
    from pymongo import MongoClient

    client: MongoClient = MongoClient(values["MONGO_URL"], serverSelectionTimeoutMS=5000)
    try:
        return client[values["MONGO_DB"]]["movies"].estimated_document_count() > 0
    except Exception:  # any failure means "not known to be initialised": run the init again
        return False
    finally:
        client.close()


def run_oneshots(
    spec: StackSpec, sup: Supervisor, values: dict[str, str], spark_ready: Callable[[], bool]
) -> None:
    marker = Path(values["VAR_DIR"]) / "state" / "mongo-init.json"
    for svc in spec.oneshots():
        argv = render(svc.local_command, values)
        if svc.name == "mongo-init" and database_initialised(values, marker):
            say(f"mongo-init: database {values['MONGO_DB']} already initialised; skipping")
            # The passwords may have changed since (.env, environment): the logins the banner
            # prints must work, as under Compose, where mongo-init runs on every start.
            say("mongo-init: bringing the admin and demo logins in line with their passwords")
            rc = sup.run_oneshot("mongo-init-accounts", [*argv, "--accounts-only"])
            if rc != 0:
                raise StartupError(f"mongo-init --accounts-only failed with exit code {rc}")
            continue
        # Only a first training needs the Spark cluster up; with a model, skip the wait.
        first_model = svc.name == "initial-model" and not active_version(Path(values["MODEL_DIR"]))
        if first_model and not spark_ready():
            i = argv.index("--spark-master")
            argv[i + 1] = ""  # ensure_model.py then trains with the local engine
        say(f"{svc.name}: {' '.join(argv)}")
        rc = sup.run_oneshot(svc.name, argv)
        if rc != 0:
            raise StartupError(f"{svc.name} failed with exit code {rc}")
        if svc.name == "mongo-init":
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(
                json.dumps({"mongo_url": values["MONGO_URL"], "mongo_db": values["MONGO_DB"]})
            )


def nginx_ready(values: dict[str, str]) -> str | None:
    """Why nginx cannot start (to be reported), or None when it can."""
    if not nginx_binary():
        return "nginx is not installed (sudo apt-get install -y nginx)"
    if not (ROOT / "scripts" / "nginx_conf.py").is_file():
        return "scripts/nginx_conf.py (the frontend's config renderer) is missing"
    if not (ROOT / "frontend" / "site" / "index.html").is_file():
        return "frontend/site/index.html is missing"
    return None


def banner(s: StackSettings, values: dict[str, str], with_nginx: bool) -> None:
    host = s.movierec_host

    def origin(field: str) -> str:
        where = setting_source(s, field)
        return f"   ({field.upper()} from {where})" if where else ""

    lines = ["", READY_LINE if with_nginx else "MovieRec APIs are up (no nginx, see above)."]
    if with_nginx:
        lines.append(f"  Web UI          http://{host}:{s.movierec_http_port}/")
    lines += [
        f"  Catalog API     http://{host}:{s.catalog_port}/docs",
        f"  Recommender API http://{host}:{s.recommender_port}/docs",
        f"  Spark master UI http://{host}:{s.spark_ui_port}/",
        f"  Admin login     {values['ADMIN_USERNAME']} / {values['ADMIN_PASSWORD']}"
        + origin("admin_password"),
        f"  Demo login      ml1 / {values['DEMO_PASSWORD']}   (any ml<userId> from MovieLens)"
        + origin("demo_password"),
        f"  API key         {resolve_api_keys(s, load_secrets(Path(values['VAR_DIR'])))[1]}",
        f"  Secrets         {Path(values['VAR_DIR']) / 'secrets.env'}",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def start(s: StackSettings, sup: Supervisor, values: dict[str, str], spec: StackSpec) -> None:
    host = s.movierec_host
    t0 = time.monotonic()
    for sub in ("models", "spark/work", "spark/local", "mongo", "state"):
        (Path(values["VAR_DIR"]) / sub).mkdir(parents=True, exist_ok=True)
    write_spark_conf(Path(values["SPARK_CONF_DIR"]))

    infra = [d.name for d in spec.daemons("infra") if not (d.name == "mongo" and s.mongo_url)]
    say(f"starting {', '.join(infra)}" + (f" (MongoDB at {s.mongo_url})" if s.mongo_url else ""))
    for name in infra:  # one honcho per service: a crash ends only that one (restarted later)
        sup.honcho(name, [name])
    if s.mongo_url:
        say("using the external MongoDB from MONGO_URL")
    else:
        storage = Path(values["VAR_DIR"]) / "mongo"
        store_gb = size_gb(storage)
        bound = mongo_open_bound(store_gb)
        if store_gb >= 1.0:
            say(
                f"the embedded MongoDB reads every stored document when it opens "
                f"({store_gb:.1f} GB in {storage}): allowing it {bound:.0f}s"
            )
        wait_until(
            f"MongoDB on port {s.mongo_port}", lambda: port_open(host, s.mongo_port), sup, bound
        )
    say(f"MongoDB ready in {time.monotonic() - t0:.1f}s")
    spark = SparkWait(host, s.spark_ui_port, sup)
    run_oneshots(spec, sup, values, spark.ready)

    apps = [d for d in spec.daemons("apps")]
    why_not = nginx_ready(values)
    if why_not:
        say(f"WARNING not starting nginx: {why_not}; the APIs still run")
        apps = [d for d in apps if d.name != "nginx"]
    else:
        nginx = spec.services["nginx"]
        rc = sup.run_oneshot("nginx-config", render(nginx.prepare, values))
        if rc != 0:
            raise StartupError(f"rendering the nginx config failed (exit code {rc})")
    say(f"starting {', '.join(d.name for d in apps)}")
    for d in apps:
        sup.honcho(d.name, [d.name])
    for d in apps:
        if not (d.port and d.health):
            continue
        port = int(values[d.port.env])
        for path in d.health:
            url = f"http://{host}:{port}{path}"
            wait_until(
                f"{d.name} {url}", lambda u=url: http_get(u)[0] == 200, sup, s.startup_timeout
            )
        say(f"{d.name} healthy")
    spark.ready()  # the trainer worker needs it for retrains; started at the same time
    say(f"all healthy in {time.monotonic() - t0:.1f}s")
    banner(s, values, with_nginx=not why_not)


def report_dotenv(values: dict[str, str]) -> None:
    """Say which .env settings make run cannot honour (it sets them itself)."""
    path = ROOT / ".env"
    if not path.is_file():
        return
    from dotenv import dotenv_values

    ignored = ignored_dotenv_settings(dict(dotenv_values(path)), values)
    if ignored:
        say(
            "WARNING .env settings make run does not use (they are for Docker Compose; make run "
            "sets them itself): " + "; ".join(ignored)
        )


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def caught_signals(pid: int) -> set[int] | None:
    """The signals process `pid` has a handler for (Linux /proc SigCgt), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                mask = int(line.split()[1], 16)
                return {sig for sig in FATAL_SIGNALS if mask & (1 << (sig - 1))}
    except (OSError, ValueError):
        return None
    return None


class ParentMake:
    """Notices a signal sent to the `make` that runs this script. GNU make, on SIGINT, SIGHUP
    or SIGTERM, resets that signal to its default and waits for its recipe (it forwards only
    SIGTERM): so a parent make that stops catching one of them has received it."""

    def __init__(self) -> None:
        self.pid = os.getppid()
        self.watched: set[int] = set()
        with contextlib.suppress(psutil.Error):
            if psutil.Process(self.pid).name() in ("make", "gmake"):
                self.watched = caught_signals(self.pid) or set()

    def signalled(self) -> str | None:
        if not self.watched:
            return None
        now = caught_signals(self.pid)
        if now is None:  # make itself is gone
            return "parent make exited"
        lost = self.watched - now
        return f"make received {signal.Signals(min(lost)).name}" if lost else None


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="scripts/run_stack.py",
        description="make run: start the whole MovieRec stack on this machine (embedded MongoDB, "
        "Spark master + worker, both APIs, the trainer worker, nginx); Ctrl-C stops all of it. "
        "Settings are environment variables or lines in ./.env (see README, Configuration).",
    ).parse_args(argv)
    os.chdir(ROOT)
    if shutil.which("java") is None:
        print(
            "error: Java 17+ is required for Spark. Install it, e.g. "
            "'sudo apt-get install -y openjdk-17-jre-headless', then re-run make run.",
            file=sys.stderr,
        )
        return 1
    s = StackSettings()
    spec = load_spec()
    try:
        values = build_env(s, load_secrets(s.var_dir))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    report_dotenv(values)
    sup = Supervisor(process_env(values), ParentMake())
    # SIGINT too: a job started in the background by a non-interactive shell inherits it
    # ignored (Python then installs no handler), and Ctrl-C / kill -INT must still stop it.
    for sig in FATAL_SIGNALS:
        signal.signal(sig, _raise_interrupt)
    rc = 0
    try:
        check_ports(s)
        start(s, sup, values, spec)
        while True:
            sup.check_parent()
            sup.restart_crashed()
            time.sleep(0.5)
    except KeyboardInterrupt as exc:
        say(f"stopping ({exc or 'SIGINT'}) ...")
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        # A second Ctrl-C while stopping must not leave half the stack running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sup.stop()
        say("stopped; nothing left running")
    return rc


if __name__ == "__main__":
    sys.exit(main())
