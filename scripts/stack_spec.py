"""Load scripts/stack.toml, the one description of MovieRec's processes, and render it.

Why a data file and not code in run_stack.py: the Procfile, `make run` and the Compose drift
test all read the same description, so a port, argument or setting changed in one place shows
up (or fails a test) everywhere. Run as a script it prints the Procfile honcho uses:

    python scripts/stack_spec.py --procfile > Procfile
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "scripts" / "stack.toml"
PROCFILE_PATH = ROOT / "Procfile"
PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


@dataclass(frozen=True)
class Port:
    env: str
    default: int


@dataclass(frozen=True)
class Service:
    name: str
    kind: str  # "daemon" | "oneshot"
    image: str  # "services" | "spark" | "frontend" | "mongo"
    command: tuple[str, ...]  # what Compose runs (empty: the image's own command)
    local_command: tuple[str, ...]  # what make run runs
    prepare: tuple[str, ...]  # a make-run-only step before the daemon starts
    group: str | None
    port: Port | None
    ui_port: Port | None
    health: tuple[str, ...]
    env: tuple[str, ...]


@dataclass(frozen=True)
class StackSpec:
    services: dict[str, Service]
    compose_values: dict[str, str] = field(default_factory=dict)

    def daemons(self, group: str | None = None) -> list[Service]:
        return [
            s
            for s in self.services.values()
            if s.kind == "daemon" and (group is None or s.group == group)
        ]

    def oneshots(self) -> list[Service]:
        return [s for s in self.services.values() if s.kind == "oneshot"]

    def env_names(self) -> set[str]:
        """Every setting some process reads: make run must set each of them."""
        return {name for s in self.services.values() for name in s.env}


def _port(raw: dict | None) -> Port | None:
    return Port(raw["env"], int(raw["default"])) if raw else None


def load_spec(path: Path = SPEC_PATH) -> StackSpec:
    raw = tomllib.loads(path.read_text())
    services: dict[str, Service] = {}
    for name, s in raw["services"].items():
        if s["kind"] not in ("daemon", "oneshot"):
            raise ValueError(f"{name}: kind must be daemon or oneshot, not {s['kind']!r}")
        if s["kind"] == "daemon" and s.get("group") not in ("infra", "apps"):
            raise ValueError(f"{name}: a daemon needs group = 'infra' or 'apps'")
        local = s.get("local", {})
        command = tuple(s.get("command", ()))
        local_command = tuple(local.get("command", command))
        if not local_command:
            raise ValueError(f"{name}: no command for make run")
        services[name] = Service(
            name=name,
            kind=s["kind"],
            image=s["image"],
            command=command,
            local_command=local_command,
            prepare=tuple(local.get("prepare", ())),
            group=s.get("group"),
            port=_port(s.get("port")),
            ui_port=_port(s.get("ui_port")),
            health=tuple(s.get("health", ())),
            env=tuple(s.get("env", ())),
        )
    return StackSpec(services=services, compose_values=dict(raw.get("compose", {})))


def placeholders(argv: tuple[str, ...] | list[str]) -> set[str]:
    return {m for arg in argv for m in PLACEHOLDER.findall(arg)}


def render(argv: tuple[str, ...] | list[str], values: dict[str, str]) -> list[str]:
    """Fill `{NAME}` placeholders; a missing value is a bug in the caller, so it raises."""
    missing = placeholders(argv) - values.keys()
    if missing:
        raise KeyError(f"no value for {sorted(missing)} in {list(argv)}")
    return [PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), arg) for arg in argv]


def _shell_word(arg: str) -> str:
    """Quote for /bin/sh but keep `${NAME}` expandable (double quotes, not single)."""
    if not PLACEHOLDER.search(arg):
        return shlex.quote(arg)
    literal = PLACEHOLDER.split(arg)
    out = []
    for i, part in enumerate(literal):
        if i % 2 == 1:
            out.append("${" + part + "}")
        else:
            out.append(re.sub(r'(["\\$`])', r"\\\1", part))
    return '"' + "".join(out) + '"'


def procfile_text(spec: StackSpec) -> str:
    lines = [
        "# Generated from scripts/stack.toml by `python scripts/stack_spec.py --procfile`;",
        "# do not edit (tests/unit/scripts/test_compose.py checks it is current). make run starts",
        "# the infra group first, then the apps group, with honcho:",
        "#   honcho -f Procfile start mongo spark-master spark-worker",
        "# ${NAME} values come from the environment scripts/run_stack.py prepares.",
    ]
    for s in spec.daemons():
        # exec: the shell honcho starts is replaced, so signals reach the process itself.
        lines.append(f"{s.name}: exec " + " ".join(_shell_word(a) for a in s.local_command))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procfile", action="store_true", help="print the Procfile")
    ap.add_argument("--write", action="store_true", help="write ./Procfile instead of printing")
    args = ap.parse_args(argv)
    text = procfile_text(load_spec())
    if args.write:
        PROCFILE_PATH.write_text(text)
        print(f"wrote {PROCFILE_PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
