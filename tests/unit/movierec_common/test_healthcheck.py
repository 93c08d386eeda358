"""movierec_common.healthcheck: the containers' health-check command, against real sockets."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from movierec_common import healthcheck

from tests.support import free_port


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_healthy_http_and_tcp(server: int) -> None:
    assert healthcheck.main([f"http://127.0.0.1:{server}/readyz", f"tcp://127.0.0.1:{server}"]) == 0


def test_non_2xx_and_closed_port_are_unhealthy(server: int, capsys) -> None:
    assert healthcheck.main([f"http://127.0.0.1:{server}/not-ready"]) == 1
    assert "503" in capsys.readouterr().err
    closed = free_port()
    assert healthcheck.main([f"tcp://127.0.0.1:{closed}", "--timeout", "1"]) == 1
    # Every target must answer: one dead one makes the whole check fail.
    assert healthcheck.main([f"http://127.0.0.1:{server}/readyz", f"tcp://127.0.0.1:{closed}"]) == 1


@pytest.mark.parametrize("target", ["ftp://x/", "tcp://hostonly", "127.0.0.1:80"])
def test_malformed_targets_are_unhealthy_not_crashes(target: str) -> None:
    assert healthcheck.main([target]) == 1


def test_runs_as_a_module_with_space_free_arguments(server: int) -> None:
    # The exact argument vector docker-compose.yml uses (no argument contains a space).
    argv = [
        sys.executable,
        "-m",
        "movierec_common.healthcheck",
        f"http://127.0.0.1:{server}/readyz",
    ]
    assert not any(" " in a for a in argv[1:])
    assert subprocess.run(argv, timeout=30).returncode == 0
    with socket.socket() as s:  # sanity: the server really is listening
        s.connect(("127.0.0.1", server))
