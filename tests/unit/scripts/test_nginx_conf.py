"""frontend/nginx.conf rendered by scripts/nginx_conf.py, checked by running Debian's nginx.

Two small HTTP servers stand in for the APIs and echo what nginx forwarded, so the test sees
the real routing, forwarded headers, caching, gzip, security headers and error pages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, ManagedProcess, free_port, wait_http

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SCRIPT = ROOT / "scripts" / "nginx_conf.py"
TEMPLATE = ROOT / "frontend" / "nginx.conf"

sys.path.insert(0, str(ROOT / "scripts"))
import nginx_conf  # noqa: E402

needs_nginx = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (`make system-check` installs it)"
)


class Echo(BaseHTTPRequestHandler):
    """Answers every request with JSON describing it, tagged with the upstream's name."""

    name = "?"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "upstream": self.name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "padding": "x" * 2000,  # big enough for gzip_min_length
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "private, max-age=7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _reply

    def log_message(self, *args: object) -> None:
        pass


def echo_server(name: str) -> ThreadingHTTPServer:
    handler = type(f"Echo_{name}", (Echo,), {"name": name})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def site(output_dir: Path) -> Iterator[Path]:
    # Under the repo's test-output (world-readable), not pytest's 0700 tmp dir: nginx started
    # as root serves files from unprivileged worker processes.
    root = output_dir / "nginx-unit" / uuid.uuid4().hex[:8]
    (root / "site" / "assets").mkdir(parents=True)
    (root / "site" / "index.html").write_text("<!doctype html><title>MovieRec shell</title>")
    (root / "site" / "assets" / "app.css").write_text("body{color:red}\n" * 200)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(site: Path) -> Iterator[dict]:
    catalog, recs = echo_server("catalog"), echo_server("recommender")
    port = free_port()
    prefix = site / "prefix"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--listen",
            f"127.0.0.1:{port}",
            "--catalog",
            f"127.0.0.1:{catalog.server_address[1]}",
            "--recs",
            f"127.0.0.1:{recs.server_address[1]}",
            "--root",
            str(site / "site"),
            "--prefix",
            str(prefix),
        ],
        check=True,
        capture_output=True,
    )
    proc = ManagedProcess(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        log_path=site / "nginx.out",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=20, proc=proc.proc)
        yield {"base": f"http://127.0.0.1:{port}", "catalog": catalog, "recs": recs}
    finally:
        proc.stop()
        for s in (catalog, recs):
            s.shutdown()
            s.server_close()


def test_placeholders_are_all_substituted() -> None:
    out = nginx_conf.render_server_block(
        TEMPLATE.read_text(),
        listen="8080",
        catalog="catalog:8001",
        recs="recommender:8002",
        static_root=Path("/srv/site"),
    )
    assert "${" not in out
    assert "listen 8080;" in out
    assert "server catalog:8001;" in out
    assert "server recommender:8002;" in out
    assert "root /srv/site;" in out


def test_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="NOPE"):
        nginx_conf.render_server_block(
            "listen ${LISTEN_PORT}; root ${NOPE};",
            listen="1",
            catalog="a:1",
            recs="b:2",
            static_root=Path("/x"),
        )


def test_template_uses_no_braced_nginx_variables() -> None:
    """envsubst in the nginx image would blank any ${var} it knows; only ours may be braced."""
    braced = set(re.findall(r"\$\{([A-Za-z_]+)\}", TEMPLATE.read_text()))
    assert braced == set(nginx_conf.PLACEHOLDERS)


@pytest.mark.parametrize(
    "bad",
    [
        ["--catalog", "no-port"],
        ["--recs", "host:port"],
        ["--listen", "eighty"],
    ],
)
def test_cli_rejects_bad_arguments(bad: list[str], tmp_path: Path) -> None:
    args = {
        "--listen": "8080",
        "--catalog": "127.0.0.1:8001",
        "--recs": "127.0.0.1:8002",
        "--root": str(ROOT / "frontend" / "site"),
        "--prefix": str(tmp_path / "p"),
    }
    args[bad[0]] = bad[1]
    res = subprocess.run(
        [sys.executable, str(SCRIPT), *[x for kv in args.items() for x in kv]],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert bad[0] in res.stderr


@needs_nginx
def test_rendered_config_passes_nginx_t(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    nginx_conf.main(
        [
            "--listen",
            str(free_port()),
            "--catalog",
            "127.0.0.1:1",
            "--recs",
            "127.0.0.1:2",
            "--root",
            str(ROOT / "frontend" / "site"),
            "--prefix",
            str(prefix),
        ]
    )
    conf = (prefix / "nginx.conf").read_text()
    assert f"pid {prefix.resolve() / 'nginx.pid'};" in conf
    assert "client_body_temp_path" in conf
    res = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


@needs_nginx
def test_static_shell_headers_and_spa_fallback(stack: dict) -> None:
    base = stack["base"]
    r = httpx.get(f"{base}/")
    assert r.status_code == 200
    assert "MovieRec shell" in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert r.headers["x-frame-options"] == "DENY"
    assert "server" not in r.headers or "/" not in r.headers["server"]  # no version leak

    deep = httpx.get(f"{base}/movies/42")
    assert deep.status_code == 200 and "MovieRec shell" in deep.text

    missing = httpx.get(f"{base}/assets/nope.js")
    assert missing.status_code == 404

    assert httpx.get(f"{base}/healthz").text == "ok\n"


@needs_nginx
def test_assets_cache_and_gzip(stack: dict) -> None:
    base = stack["base"]
    versioned = httpx.get(f"{base}/assets/app.css?v=abc123", headers={"Accept-Encoding": "gzip"})
    assert versioned.status_code == 200
    assert versioned.headers["content-type"].startswith("text/css")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["content-encoding"] == "gzip"
    assert versioned.headers["vary"] == "Accept-Encoding"

    plain = httpx.get(f"{base}/assets/app.css")
    assert plain.headers["cache-control"] == "no-cache"
    assert "etag" in plain.headers
    again = httpx.get(f"{base}/assets/app.css", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304


@needs_nginx
def test_api_routing_and_forwarded_headers(stack: dict) -> None:
    base = stack["base"]
    rid = "req-" + uuid.uuid4().hex
    r = httpx.get(f"{base}/api/recs/me?k=5", headers={"X-Request-ID": rid})
    body = r.json()
    assert body["upstream"] == "recommender"
    assert body["path"] == "/api/recs/me?k=5"
    assert body["headers"]["x-request-id"] == rid
    assert r.headers["x-request-id"] == rid
    assert "127.0.0.1" in body["headers"]["x-forwarded-for"]
    assert body["headers"]["host"].startswith("127.0.0.1")
    # The service's own caching decision passes through untouched, exactly once.
    assert r.headers.get_list("cache-control") == ["private, max-age=7"]
    assert "default-src 'self'" in r.headers["content-security-policy"]

    c = httpx.post(f"{base}/api/auth/login", json={"u": 1})
    cb = c.json()
    assert cb["upstream"] == "catalog"
    assert cb["path"] == "/api/auth/login"
    assert cb["method"] == "POST"
    minted = cb["headers"]["x-request-id"]
    assert len(minted) == 32 and int(minted, 16) >= 0

    gz = httpx.get(f"{base}/api/movies", headers={"Accept-Encoding": "gzip"})
    assert gz.json()["upstream"] == "catalog"
    assert gz.headers["content-encoding"] == "gzip"


@needs_nginx
def test_oversized_body_gets_json_413(stack: dict) -> None:
    r = httpx.post(
        f"{stack['base']}/api/auth/register",
        content=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


@needs_nginx
def test_upstream_down_gets_json_503(stack: dict) -> None:
    stack["recs"].shutdown()
    stack["recs"].server_close()
    r = httpx.get(f"{stack['base']}/api/recs/me")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == "service_unavailable"
    assert err["message"]
    # The catalog is unaffected.
    assert httpx.get(f"{stack['base']}/api/genres").json()["upstream"] == "catalog"


def test_world_readable_detects_private_parents(tmp_path: Path) -> None:
    private = tmp_path / "home"
    site = private / "site"
    site.mkdir(parents=True)
    tmp_path.chmod(0o755)
    site.chmod(0o755)
    private.chmod(0o700)
    assert not nginx_conf.world_readable(site)
    private.chmod(0o755)
    assert nginx_conf.world_readable(site) == all(
        p.stat().st_mode & 0o001 for p in tmp_path.parents
    )


@needs_nginx
@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (gettext-base) missing")
def test_docker_template_rendering_matches_make_run(tmp_path: Path) -> None:
    """The nginx image's entrypoint runs `envsubst "<defined vars>"` on the template; that
    output must equal ours and pass `nginx -t` inside an http block like the image's."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "HOSTNAME": "abc123",
        "NGINX_VERSION": "1.27.5",
        "LISTEN_PORT": str(free_port()),
        "CATALOG_UPSTREAM": "127.0.0.1:8001",
        "RECOMMENDER_UPSTREAM": "127.0.0.1:8002",
        "STATIC_ROOT": str(ROOT / "frontend" / "site"),
    }
    shell_format = " ".join("${" + k + "}" for k in env)
    rendered = subprocess.run(
        ["envsubst", shell_format],
        input=TEMPLATE.read_text(),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours = nginx_conf.render_server_block(
        TEMPLATE.read_text(),
        listen=env["LISTEN_PORT"],
        catalog=env["CATALOG_UPSTREAM"],
        recs=env["RECOMMENDER_UPSTREAM"],
        static_root=Path(env["STATIC_ROOT"]),
    )
    assert rendered == ours
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "events {}\nhttp {\n  default_type application/octet-stream;\n"
        f"  access_log {tmp_path / 'access.log'};\n{rendered}\n}}\n"
    )
    res = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


NOT_PAGES = (
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/redoc",
    "/anything.php",
    "/wp-login.php",
    "/.env",
    "/movies/abc",
    "/browse/extra",
    "/assets/nope.js",
    "/index.php?x=1",
)


@needs_nginx
@pytest.mark.parametrize("path", NOT_PAGES)
def test_paths_that_are_not_pages_answer_a_json_404(stack: dict, path: str) -> None:
    r = httpx.get(stack["base"] + path)
    assert r.status_code == 404, (path, r.text[:200])
    assert r.headers["content-type"].startswith("application/json"), path
    err = r.json()["error"]
    assert err["code"] == "not_found" and "/api/docs" in err["message"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]


@needs_nginx
@pytest.mark.parametrize(
    "path", ["/", "/browse", "/browse/", "/movies/42", "/ratings", "/admin", "/login", "/signup"]
)
def test_the_web_apps_pages_load_the_shell(stack: dict, path: str) -> None:
    r = httpx.get(stack["base"] + path)
    assert r.status_code == 200, path
    assert "MovieRec shell" in r.text and r.headers["content-type"].startswith("text/html")


@needs_nginx
def test_nginx_has_its_own_health_path(stack: dict) -> None:
    for path in ("/nginx-health", "/healthz"):
        r = httpx.get(stack["base"] + path)
        assert r.status_code == 200 and r.text == "ok\n"


@needs_nginx
@pytest.mark.parametrize(
    "public,upstream,path,prefix",
    [
        ("/api/docs", "catalog", "/docs", "/api"),
        ("/api/docs/assets/swagger-ui.css", "catalog", "/docs/assets/swagger-ui.css", "/api"),
        ("/api/docs/init.js", "catalog", "/docs/init.js", "/api"),
        ("/api/openapi.json", "catalog", "/openapi.json", "/api"),
        ("/api/recs/docs", "recommender", "/docs", "/api/recs"),
        (
            "/api/recs/docs/assets/swagger-ui-bundle.js",
            "recommender",
            "/docs/assets/swagger-ui-bundle.js",
            "/api/recs",
        ),
        ("/api/recs/openapi.json", "recommender", "/openapi.json", "/api/recs"),
        ("/api/movies?page=2", "catalog", "/api/movies?page=2", None),
        ("/api/recs/me", "recommender", "/api/recs/me", None),
    ],
)
def test_api_docs_are_published_under_api_with_their_prefix(
    stack: dict, public: str, upstream: str, path: str, prefix: str | None
) -> None:
    body = httpx.get(stack["base"] + public).json()
    assert body["upstream"] == upstream
    assert body["path"] == path
    assert body["headers"].get("x-forwarded-prefix") == prefix
