"""The audit's ignore list: every accepted vulnerability carries a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.audit import IGNORE_FILE, load_ignores


def test_shipped_ignore_list_is_valid() -> None:
    ignores = load_ignores(IGNORE_FILE)
    assert all(len(reason) >= 20 for reason in ignores.values())


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ignore.toml"
    bad.write_text('[[ignore]]\nid = "PYSEC-2099-1"\nreason = "meh"\n')
    with pytest.raises(SystemExit, match="needs an id and a reason"):
        load_ignores(bad)
    good = tmp_path / "ok.toml"
    good.write_text(
        '[[ignore]]\nid = "PYSEC-2099-1"\nreason = "only the CLI uses it, not a request path"\n'
    )
    assert list(load_ignores(good)) == ["PYSEC-2099-1"]
