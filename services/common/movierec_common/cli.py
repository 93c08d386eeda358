"""Command lines of the long-running programs: `--help` without side effects.

Every MovieRec program is configured by environment variables (pydantic-settings, read once),
so its command line has few or no options. `settings_parser` builds an argparse parser whose
`--help` lists those variables with their defaults, parsed before any settings are read, any
connection is made or any server starts.
"""

from __future__ import annotations

import argparse

from pydantic import SecretStr
from pydantic_settings import BaseSettings


def settings_epilog(settings_cls: type[BaseSettings]) -> str:
    """One line per environment variable of `settings_cls`: NAME (default: ...) description."""
    lines = ["environment variables (also read from ./.env):"]
    for name, field in settings_cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if default is None:
            shown = "unset"
        elif isinstance(default, SecretStr) or "secret" in name or "password" in name:
            shown = "secret"
        else:
            shown = str(default)
        desc = f"  {field.description}" if field.description else ""
        lines.append(f"  {name.upper()} (default: {shown}){desc}")
    return "\n".join(lines)


def settings_parser(
    prog: str, description: str, settings_cls: type[BaseSettings]
) -> argparse.ArgumentParser:
    """A parser for `prog` whose --help documents `settings_cls`' environment variables."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings_epilog(settings_cls),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
