"""No product module uses a private name (`_x`) of another product module.

A leading underscore says "only this module relies on it"; another module importing it (or
reaching it as `module._x`) couples the two behind the public interface's back (issue 15).
Scanned with `ast`: `from m import _x`, `from . import _x`, and `alias._x` where `alias` was
bound by an import from a product package. Dunder names (`__version__`) are not private.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = {
    "movierec_common": ROOT / "services/common/movierec_common",
    "catalog_api": ROOT / "services/catalog/catalog_api",
    "recommender_api": ROOT / "services/recommender/recommender_api",
    "movierec_trainer": ROOT / "spark/trainer/movierec_trainer",
    "movierec_init": ROOT / "mongo-init/movierec_init",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module a (possibly relative) `from ... import` names."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([target] if target else [])])


def _is_product(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def private_uses(package: str, root: Path, path: Path, base: Path = ROOT) -> list[str]:
    """`file:line: what` for every private name of another product module used in `path`."""
    module = _module_name(package, root, path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(base)
    hits: list[str] = []
    imported: dict[str, str] = {}  # local name -> the product module or object it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_product(alias.name):
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name
                if any(_private(part) for part in alias.name.split(".")[1:]):
                    hits.append(f"{rel}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node.level, node.module)
            if not _is_product(source):
                continue
            if source != module and any(_private(p) for p in source.split(".")[1:]):
                hits.append(f"{rel}:{node.lineno}: from {source} import ...")
            for alias in node.names:
                if _private(alias.name) and source != module:
                    hits.append(f"{rel}:{node.lineno}: from {source} import {alias.name}")
                imported[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and imported[node.value.id] != module
        ):
            hits.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr}")
    return hits


def _product_files() -> list[tuple[str, Path, Path]]:
    return [
        (package, root, path)
        for package, root in PACKAGES.items()
        for path in sorted(root.rglob("*.py"))
    ]


def test_every_product_package_is_scanned() -> None:
    files = _product_files()
    for package in PACKAGES:
        assert sum(1 for p, _, _ in files if p == package) >= 3, package


def test_the_scanner_finds_each_form(tmp_path: Path) -> None:
    root = tmp_path / "movierec_common"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "own.py").write_text("def _mine():\n    return 1\n\nx = _mine()\n")
    (root / "user.py").write_text(
        "from movierec_common.own import _mine\n"
        "from . import own\n"
        "from .own import _mine as m2\n"
        "import movierec_common.own as o\n"
        "import numpy as np\n"
        "own._mine(); o._mine(); np._private; own.__name__\n"
    )
    assert private_uses("movierec_common", root, root / "own.py", tmp_path) == []
    hits = private_uses("movierec_common", root, root / "user.py", tmp_path)
    assert [h.split(": ", 1)[1] for h in hits] == [
        "from movierec_common.own import _mine",
        "from movierec_common.own import _mine",
        "own._mine",
        "o._mine",
    ]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_private_name_of_another_module_is_used(package: str) -> None:
    hits = [
        hit
        for p, root, path in _product_files()
        if p == package
        for hit in private_uses(p, root, path)
    ]
    assert not hits, "private names used across modules:\n" + "\n".join(hits)
