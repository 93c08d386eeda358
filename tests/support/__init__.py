"""Helpers the test suites share: free ports, waiting for servers, and real server processes.

Everything here starts real things (a SecantusDB daemon, uvicorn, nginx, Spark) as child
processes on 127.0.0.1, so tests exercise the same code paths `make run` does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DATA_DIR = ROOT / "data" / "ml-latest-small"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code < 500:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s (last: {last})")


class ManagedProcess:
    """A child process in its own process group, so stop() also ends its children."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class MongoServer(ManagedProcess):
    """The embedded SecantusDB daemon on a fixed port and storage path, restartable in place."""

    def __init__(
        self,
        storage: Path,
        port: int | None = None,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
    ):
        """`extra_args` e.g. `--enable-test-commands` (server fail points, tests only)."""
        self.port = port or free_port()
        self.storage = storage
        super().__init__(
            [
                str(VENV_BIN / "secantusd-py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(storage),
                "--standalone",
                "--log-level",
                "WARNING",
                *extra_args,
            ],
            log_path=log_path,
        )

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> MongoServer:
        super().start()
        wait_port(self.port, timeout=30, proc=self.proc)
        return self


def start_nginx(
    prefix: Path, web_port: int, catalog_port: int, recs_port: int, log_path: Path
) -> ManagedProcess:
    """Debian's nginx with the config `make run` renders (scripts/nginx_conf.py), in front of
    APIs already listening on 127.0.0.1; everything nginx writes stays under `prefix`."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "nginx_conf.py"),
            "--listen",
            f"127.0.0.1:{web_port}",
            "--catalog",
            f"127.0.0.1:{catalog_port}",
            "--recs",
            f"127.0.0.1:{recs_port}",
            "--root",
            str(ROOT / "frontend" / "site"),
            "--prefix",
            str(prefix),
        ],
        check=True,
        capture_output=True,
    )
    return ManagedProcess(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], log_path=log_path
    ).start()
