"""docker-compose.yml is valid, and it runs what `make run` runs.

There is no Docker engine here, so the deployment is checked statically: Debian's
docker-compose validates the file, and the drift tests compare every Compose service with
scripts/stack.toml, the description `make run` (scripts/run_stack.py, ./Procfile) starts from.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings

from scripts import run_stack
from scripts.docker_requirements import filtered
from scripts.stack_spec import PROCFILE_PATH, load_spec, placeholders, procfile_text, render
from tests.support import ROOT, free_port

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SPEC = load_spec()
REQUIRED_SECRETS = {
    "JWT_SECRET": "x" * 32,
    "ADMIN_PASSWORD": "admin-password-for-tests",
    "SPARK_AUTH_SECRET": "s" * 32,
}


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def docker_compose(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    # An empty env file, so a developer's own .env cannot make these checks pass or fail.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    base = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [exe, "--env-file", str(empty), "-f", str(COMPOSE_FILE), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


# --- validation ------------------------------------------------------------------------------


def test_compose_config_is_valid(tmp_path: Path) -> None:
    r = docker_compose(tmp_path, REQUIRED_SECRETS, "config", "-q")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_compose_refuses_to_start_without_each_secret(tmp_path: Path, secret: str) -> None:
    env = {k: v for k, v in REQUIRED_SECRETS.items() if k != secret}
    r = docker_compose(tmp_path, env, "config", "-q")
    assert r.returncode != 0
    assert secret in r.stderr


def test_compose_resolves_replicas_and_defaults(tmp_path: Path) -> None:
    r = docker_compose(tmp_path, {**REQUIRED_SECRETS, "RECOMMENDER_REPLICAS": "3"}, "config")
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)["services"]
    assert resolved["recommender"]["deploy"]["replicas"] == 3
    assert resolved["spark-worker"]["deploy"]["replicas"] == 2
    assert resolved["catalog"]["environment"]["JWT_SECRET"] == REQUIRED_SECRETS["JWT_SECRET"]


# --- drift: compose vs scripts/stack.toml ---------------------------------------------------


def test_compose_has_exactly_the_services_make_run_knows() -> None:
    assert set(services()) == set(SPEC.services)


@pytest.mark.parametrize("name", [n for n, s in SPEC.services.items() if s.command])
def test_command_matches_make_run(name: str) -> None:
    svc = SPEC.services[name]
    expected = render(svc.command, SPEC.compose_values)
    assert services()[name]["command"] == expected


@pytest.mark.parametrize("name", sorted(SPEC.services))
def test_environment_names_match_make_run(name: str) -> None:
    env = services()[name].get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    assert set(env) == set(SPEC.services[name].env)


def test_make_run_sets_every_setting_and_placeholder() -> None:
    s = run_stack.StackSettings(_env_file=None)
    values = run_stack.build_env(s, run_stack.generate_secrets())
    needed = set(SPEC.env_names()) - run_stack.PASSTHROUGH
    for svc in SPEC.services.values():
        needed |= placeholders(svc.local_command) | placeholders(svc.prepare)
    assert needed <= set(values), sorted(needed - set(values))
    # The Procfile's ${NAME}s are all provided too.
    commands = [ln for ln in PROCFILE_PATH.read_text().splitlines() if not ln.startswith("#")]
    procfile_names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", "\n".join(commands)))
    assert procfile_names <= set(values)


@pytest.mark.parametrize("name", [n for n, s in SPEC.services.items() if s.port])
def test_ports_match_make_run(name: str) -> None:
    svc = SPEC.services[name]
    c = services()[name]
    port = str(svc.port.default)
    exposed = {str(p) for p in c.get("expose", [])}
    published = {str(p).rsplit(":", 1)[-1] for p in c.get("ports", [])}
    assert port in exposed | published
    # Services that read their port from the environment get the contract port under compose.
    env = c.get("environment", {})
    if svc.port.env in svc.env:
        assert env[svc.port.env] == port
    if name == "nginx":
        assert env["LISTEN_PORT"] == port
        assert env["CATALOG_UPSTREAM"] == f"catalog:{SPEC.services['catalog'].port.default}"
        rec_port = SPEC.services["recommender"].port.default
        assert env["RECOMMENDER_UPSTREAM"] == f"recommender:{rec_port}"


def test_only_nginx_and_the_spark_ui_are_published() -> None:
    published = {n: c["ports"] for n, c in services().items() if c.get("ports")}
    assert set(published) == {"nginx", "spark-master"}
    assert published["nginx"] == ["${MOVIEREC_HTTP_BIND:-0.0.0.0}:${MOVIEREC_HTTP_PORT:-8080}:8080"]
    ui = SPEC.services["spark-master"].ui_port
    assert published["spark-master"][0].endswith(f":{ui.default}")


def test_procfile_is_rendered_from_the_spec() -> None:
    assert PROCFILE_PATH.read_text() == procfile_text(SPEC), (
        "Procfile is stale: python scripts/stack_spec.py --write"
    )


# --- deployment properties ------------------------------------------------------------------


@pytest.mark.parametrize("name", [s.name for s in SPEC.daemons()])
def test_daemons_have_health_checks_restart_and_memory_limits(name: str) -> None:
    c = services()[name]
    assert c["restart"] == "unless-stopped"
    assert c["deploy"]["resources"]["limits"]["memory"]
    test = " ".join(c["healthcheck"]["test"])
    svc = SPEC.services[name]
    if svc.health and svc.port:
        port = svc.port.default
        assert any(f":{port}{path}" in test for path in svc.health), test


@pytest.mark.parametrize("name", [s.name for s in SPEC.oneshots()])
def test_oneshots_do_not_restart_and_are_awaited(name: str) -> None:
    assert services()[name]["restart"] == "no"
    waiting = [
        n
        for n, c in services().items()
        if c.get("depends_on", {}).get(name, {}).get("condition")
        == "service_completed_successfully"
    ]
    assert waiting, f"nothing waits for {name} to complete"


def test_every_dependency_has_a_condition() -> None:
    for name, c in services().items():
        deps = c.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with conditions"
        for dep, cond in deps.items():
            assert cond["condition"] in {"service_healthy", "service_completed_successfully"}, (
                name,
                dep,
            )
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services()[dep], (name, dep)


def test_model_volume_modes() -> None:
    def model_mount(name: str) -> str:
        mounts = [v for v in services()[name]["volumes"] if v.split(":")[1] == "/models"]
        assert len(mounts) == 1, name
        return mounts[0]

    assert model_mount("recommender").endswith(":ro")
    for rw in ("trainer", "initial-model", "catalog"):
        assert not model_mount(rw).endswith(":ro"), rw
    assert "models" in compose()["volumes"]
    assert "mongo-data" in compose()["volumes"]


def test_scalable_services_have_no_fixed_names_or_published_ports() -> None:
    for name in ("recommender", "spark-worker"):
        c = services()[name]
        assert "replicas" in c["deploy"]
        assert "container_name" not in c and "hostname" not in c and "ports" not in c


def test_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE_FILE.read_text()
    for secret in REQUIRED_SECRETS:
        refs = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert refs, secret
        assert all(r.startswith(":?") for r in refs), (secret, refs)


# --- documentation --------------------------------------------------------------------------


def env_example_names() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def test_every_compose_variable_is_documented() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    missing = used - env_example_names()
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_every_make_run_setting_is_documented() -> None:
    names = {n.upper() for n in run_stack.StackSettings.model_fields}
    missing = names - env_example_names()
    assert not missing, f".env.example does not document {sorted(missing)}"


def _settings_classes() -> list[type[BaseSettings]]:
    found: list[type[BaseSettings]] = []
    packages = (
        "movierec_common",
        "catalog_api",
        "recommender_api",
        "movierec_init",
        "movierec_trainer",
    )
    for pkg_name in packages:
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:
            continue
        for mod in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
            leaf = mod.name.rsplit(".", 1)[-1]
            if leaf not in ("settings", "config"):
                continue
            module = importlib.import_module(mod.name)
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, BaseSettings)
                    and obj is not BaseSettings
                    and obj.__module__ == module.__name__
                ):
                    found.append(obj)
    return found


def test_every_service_setting_is_documented() -> None:
    classes = _settings_classes()
    assert classes, "no settings classes found"
    missing = {
        f"{cls.__name__}.{field}"
        for cls in classes
        for field in cls.model_fields
        if field.upper() not in env_example_names()
    }
    assert not missing, f".env.example does not document {sorted(missing)}"


# --- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["services/Dockerfile", "spark/Dockerfile"])
def test_images_are_slim_multistage_pinned_and_non_root(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert bases and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), bases
    # requirements (the pinned list), build (the virtualenv), runtime (what ships)
    assert len(re.findall(r"^FROM ", text, re.M)) == 3
    assert "COPY --from=build /opt/venv /opt/venv" in text
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER movierec", runtime, re.M)
    for tool in ("gcc", "build-essential", "openjdk-17-jdk", "pip install"):
        assert tool not in runtime, tool


def test_spark_image_has_java_17_and_the_projects_pyspark() -> None:
    text = (ROOT / "spark/Dockerfile").read_text()
    assert "openjdk-17-jre-headless" in text
    spark_reqs = filtered(ROOT / "pyproject.toml", {"secantusdb", "honcho", "psutil"})
    api_reqs = filtered(ROOT / "pyproject.toml", {"pyspark", "secantusdb", "honcho", "psutil"})
    assert any(r.startswith("pyspark==") for r in spark_reqs)
    assert not any(r.startswith("pyspark") for r in api_reqs)
    assert all("==" in r for r in spark_reqs), "every runtime dependency is pinned"
    assert "--exclude secantusdb honcho psutil" in text
    assert (
        "--exclude pyspark secantusdb honcho psutil" in (ROOT / "services/Dockerfile").read_text()
    )


def test_third_party_images_are_pinned() -> None:
    for name, c in services().items():
        image = c["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
    assert re.fullmatch(r"mongo:\d+\.\d+\.\d+", services()["mongo"]["image"])


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    lines = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "var", ".env"} <= lines


def test_readme_configuration_table_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = {n for n in env_example_names() if f"`{n}`" not in table}
    assert not missing, f"README's configuration table lacks {sorted(missing)}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert [ln.split()[:2] for ln in first_block.strip().splitlines()] == [
        ["make", "run"],
        ["make", "test"],
    ]


# --- make run's own configuration -------------------------------------------------------------


def test_make_run_generates_secrets_once_and_privately(tmp_path: Path) -> None:
    first = run_stack.load_secrets(tmp_path)
    assert set(first) == set(run_stack.SECRET_NAMES)
    assert len(first["JWT_SECRET"]) >= 64 and len(set(first.values())) == len(first)
    assert (tmp_path / "secrets.env").stat().st_mode & 0o777 == 0o600
    assert run_stack.load_secrets(tmp_path) == first


def test_make_run_uses_an_external_mongo_url_as_given(tmp_path: Path) -> None:
    url = "mongodb://db.example:27017/?directConnection=true"
    s = run_stack.StackSettings(_env_file=None, var_dir=tmp_path, mongo_url=url, mongo_port=1)
    values = run_stack.build_env(s, run_stack.generate_secrets())
    assert values["MONGO_URL"] == url
    local = run_stack.build_env(
        run_stack.StackSettings(_env_file=None, var_dir=tmp_path, mongo_port=12345),
        run_stack.generate_secrets(),
    )
    assert local["MONGO_URL"] == "mongodb://127.0.0.1:12345/?directConnection=true"
    assert local["DEMO_ACCOUNTS"] == "1"


def test_make_run_refuses_busy_ports_with_the_variable_to_change(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        free = {n: free_port() for n in ("movierec_http_port", "recommender_port", "mongo_port")}
        s = run_stack.StackSettings(
            _env_file=None,
            var_dir=tmp_path,
            catalog_port=port,
            spark_master_port=free_port(),
            spark_ui_port=free_port(),
            spark_worker_ui_port=free_port(),
            **free,
        )
        with pytest.raises(run_stack.StartupError, match=f"CATALOG_PORT={port}"):
            run_stack.check_ports(s)


@pytest.mark.parametrize(
    "name", [n for n, s in SPEC.services.items() if s.command[:2] and s.command[1].endswith(".py")]
)
def test_scripts_run_in_a_container_are_copied_into_its_image(name: str) -> None:
    svc = SPEC.services[name]
    script = svc.command[1]
    dockerfile = {"services": "services/Dockerfile", "spark": "spark/Dockerfile"}[svc.image]
    text = (ROOT / dockerfile).read_text()
    assert (ROOT / script).is_file()
    assert f"COPY {script} /app/{script}" in text
    assert re.search(r"^WORKDIR /app$", text.split("AS runtime", 1)[1], re.M)
    compose_image = services()[name]["image"]
    assert compose_image.startswith(f"movierec/{svc.image}:")


def env_example_values() -> dict[str, str]:
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.M)
    return {k: v.strip() for k, v in pairs if v.strip()}


def test_env_example_values_are_the_real_defaults() -> None:
    """An uncommented value in .env.example is the code's default, so copying the file
    changes nothing until someone edits a line."""
    documented = env_example_values()
    classes = [*_settings_classes(), run_stack.StackSettings]
    wrong = []
    for cls in classes:
        for name, info in cls.model_fields.items():
            value = documented.get(name.upper())
            simple = info.annotation in (str, int, float, bool) or (
                getattr(info.annotation, "__origin__", None) is Literal
            )
            if value is None or info.default_factory is not None or not simple:
                continue
            parsed = TypeAdapter(info.annotation).validate_python(value, strict=False)
            if parsed != info.default:
                wrong.append(
                    f"{name.upper()}={value} but {cls.__name__} defaults to {info.default}"
                )
    assert not wrong, wrong
