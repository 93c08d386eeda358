"""Drive the Compose stack on podman: the API socket, base images, docker-compose, health checks.

Why podman: the CI machines have no Docker engine, but Debian's podman runs the very images and
docker-compose.yml users run, through its Docker-compatible API socket (../shared/CONTAINERS.md
has the facts this relies on). Everything here talks to that socket or to 127.0.0.1.

Podman without systemd never runs health checks on its own, so `Stack.wait_healthy` is the
scheduler: it runs `podman healthcheck run` for each container at the container's own interval
(as Docker's daemon would), and fails naming the service - with its logs - that exits non-zero,
turns unhealthy or is not healthy in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support import ROOT

CONTAINERS_CONF = ROOT / "scripts" / "podman" / "containers.conf"
BASE_IMAGES_SCRIPT = ROOT / "scripts" / "podman" / "base_images.sh"
OVERRIDE = ROOT / "tests" / "compose" / "docker-compose.test.yml"
PYTHON_BASE = "localhost/movierec-base/python:bookworm"
NGINX_BASE = "localhost/movierec-base/nginx:bookworm"
TOOLS = ("podman", "docker-compose", "debootstrap")
ONESHOTS = ("data", "mongo-init", "initial-model")


# Seconds per step of this run, filled by the fixtures and the tests, written to
# bench/out/compose.md at teardown. Here, not in conftest.py: pytest imports a conftest under
# its own module name, so a dict defined there and imported by a test would be a second copy.
TIMINGS: dict[str, float] = {}


class StackError(AssertionError):
    """A step of the Compose stack failed; the message names the service and has its logs."""


def unavailable_reason() -> str | None:
    """Why the Compose stack cannot run here (None when it can)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (.ci/run installs them)"
    if os.geteuid() != 0:
        return "the podman Compose test runs as root (rootful podman, debootstrap)"
    return None


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and r.returncode != 0:
        raise StackError(f"podman {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


class ApiService:
    """`podman system service --time=0 unix://SOCKET`, started and stopped by us."""

    def __init__(self, socket_path: Path, log: Path) -> None:
        self.socket_path = socket_path
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 30) -> ApiService:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                env=podman_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"podman system service exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.socket_path))
                return self
            time.sleep(0.2)
        self.stop()
        raise StackError(f"podman API socket {self.socket_path} not answering after {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def build_base_images(work_dir: Path, timeout: float = 1800) -> float:
    """scripts/podman/base_images.sh (reuses images that exist); returns seconds taken."""
    t0 = time.monotonic()
    r = subprocess.run(
        [str(BASE_IMAGES_SCRIPT), str(work_dir)],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise StackError(f"base images failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return time.monotonic() - t0


@dataclass
class Container:
    id: str
    name: str
    service: str
    state: str  # running, exited, created, ...
    exit_code: int
    health: str  # "" when the container has no health check


@dataclass
class Stack:
    """One Compose project (a unique name) of docker-compose.yml + the test override."""

    api: ApiService
    env_extra: dict[str, str]
    log_dir: Path
    project: str = field(default_factory=lambda: f"mrtest{uuid.uuid4().hex[:8]}")
    _last_check: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **podman_env(),
            "DOCKER_HOST": self.api.url,
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_HTTP_TIMEOUT": "600",
            **self.env_extra,
        }

    def argv(self, *args: str) -> list[str]:
        return [
            "docker-compose",
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(OVERRIDE),
            *args,
        ]

    def compose(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess:
        r = subprocess.run(
            self.argv(*args),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise StackError(
                f"docker-compose {' '.join(args)} failed ({r.returncode}):\n"
                f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            )
        return r

    def compose_bg(self, *args: str, log_name: str) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / log_name
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self.argv(*args), env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return proc, log

    def build(self, timeout: float = 3600) -> list[str]:
        """`docker-compose build` of one service per distinct image: services sharing an image
        (data, mongo-init, catalog, recommender; the Spark ones) share one `build:` section,
        so building each of them again would only re-send the context. Returns the services."""
        r = self.compose("config", timeout=120)
        first: dict[str, str] = {}
        for name, svc in yaml.safe_load(r.stdout)["services"].items():
            if "build" in svc:
                first.setdefault(svc["image"], name)
        self.compose("build", *first.values(), timeout=timeout)
        return list(first.values())

    def logs(self, service: str, tail: int = 60) -> str:
        r = self.compose("logs", "--no-color", f"--tail={tail}", service, check=False, timeout=60)
        return (r.stdout + r.stderr).strip()

    def fail(self, service: str, what: str) -> StackError:
        return StackError(
            f"service {service!r}: {what}\n--- docker-compose logs --tail=60 {service} ---\n"
            f"{self.logs(service)}"
        )

    def containers(self) -> list[Container]:
        r = podman(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--format",
            "{{.ID}}",
        )
        ids = r.stdout.split()
        if not ids:
            return []
        out = []
        for c in json.loads(podman("inspect", *ids).stdout):
            st = c["State"]
            health = st.get("Health") or st.get("Healthcheck") or {}
            has_check = bool((c.get("Config") or {}).get("Healthcheck"))
            out.append(
                Container(
                    id=c["Id"],
                    name=c["Name"].lstrip("/"),
                    service=c["Config"]["Labels"].get("com.docker.compose.service", "?"),
                    state=st["Status"],
                    exit_code=int(st.get("ExitCode") or 0),
                    health=(health.get("Status") or "starting") if has_check else "",
                )
            )
        return out

    def interval(self, cid: str) -> float:
        c = json.loads(podman("inspect", cid).stdout)[0]
        ns = ((c.get("Config") or {}).get("Healthcheck") or {}).get("Interval") or 10_000_000_000
        return max(1.0, ns / 1e9)

    def drive_health_checks(self) -> list[Container]:
        """Run each running container's health check when its interval is due (podman has no
        scheduler without systemd); fail on a one-shot that exited non-zero."""
        now = time.monotonic()
        cs = self.containers()
        for c in cs:
            if c.service in ONESHOTS and c.state == "exited" and c.exit_code != 0:
                raise self.fail(c.service, f"one-shot {c.name} exited with {c.exit_code}")
            if c.state != "running" or not c.health:
                continue
            first = self._last_check.setdefault(c.id, now)
            if now - first == 0 or now - self._last_check[c.id] >= self.interval(c.id):
                self._last_check[c.id] = now
                podman("healthcheck", "run", c.id, check=False, timeout=60)
        return self.containers()

    def up(self, *args: str, timeout: float) -> float:
        """`docker-compose up -d ARGS` while driving health checks; returns seconds until every
        service is up (one-shots exited 0, every health check healthy)."""
        t0 = time.monotonic()
        proc, log = self.compose_bg("up", "-d", "--no-build", *args, log_name="up.log")
        deadline = t0 + timeout
        try:
            while time.monotonic() < deadline:
                cs = self.drive_health_checks()
                for c in cs:
                    if c.health == "unhealthy":
                        raise self.fail(c.service, f"{c.name} is unhealthy")
                if proc.poll() is not None:
                    if proc.returncode != 0:
                        text = log.read_text(errors="replace")
                        raise self.fail(
                            self.blame(cs), f"docker-compose up failed:\n{text[-3000:]}"
                        )
                    pending = [
                        c
                        for c in cs
                        if (c.health and c.health != "healthy")
                        or (not c.health and c.state != "running" and c.service not in ONESHOTS)
                    ]
                    if not pending:
                        return time.monotonic() - t0
                time.sleep(1.0)
            cs = self.containers()
            waiting = [f"{c.service}({c.state},{c.health or '-'})" for c in cs]
            raise self.fail(self.blame(cs), f"stack not healthy after {timeout:.0f}s: {waiting}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
                if proc.poll() is None:
                    proc.kill()

    @staticmethod
    def blame(cs: list[Container]) -> str:
        """The service holding the start up: an unhealthy or still-starting daemon, else a
        one-shot still running, else a daemon that is not running."""
        for pending in (
            lambda c: c.health not in ("", "healthy"),
            lambda c: c.service in ONESHOTS and c.state == "running",
            lambda c: c.service not in ONESHOTS and c.state != "running",
        ):
            found = [c.service for c in cs if pending(c)]
            if found:
                return found[0]
        return "?"

    def running(self, service: str) -> list[Container]:
        return [c for c in self.containers() if c.service == service and c.state == "running"]

    def exec_python(self, container: str, code: str, timeout: float = 60) -> str:
        r = podman("exec", container, "python", "-c", code, timeout=timeout, check=False)
        if r.returncode != 0:
            raise StackError(f"exec in {container} failed:\n{r.stdout}\n{r.stderr[-2000:]}")
        return r.stdout

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {
            "containers": podman("ps", "-a", "-q", "--filter", label).stdout.split(),
            "volumes": podman("volume", "ls", "-q", "--filter", label).stdout.split(),
            "networks": [
                n
                for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith(f"{self.project}_")
            ],
        }
        found["volumes"] += [
            v
            for v in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
            if v.startswith(f"{self.project}_") and v not in found["volumes"]
        ]
        return {k: v for k, v in found.items() if v}

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300, check=False)
