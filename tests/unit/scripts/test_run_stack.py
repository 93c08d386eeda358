"""make run and a `.env` written for Docker: what make run prints works, and what it cannot
honour is reported (scripts/run_stack.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from scripts import run_stack

SECRET = {
    "JWT_SECRET": "j" * 64,
    "ADMIN_PASSWORD": "a",
    "DEMO_PASSWORD": "d",
    "API_KEY": "gen",
    "SPARK_AUTH_SECRET": "s" * 64,
}


def settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str
) -> run_stack.StackSettings:
    for name in ("API_KEYS", "ADMIN_PASSWORD", "DEMO_PASSWORD", "JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return run_stack.StackSettings(_env_file=None, var_dir=tmp_path)


def test_unset_or_empty_api_keys_mean_the_generated_key(monkeypatch, tmp_path) -> None:
    keys, where = run_stack.resolve_api_keys(settings(monkeypatch, tmp_path), SECRET)
    assert json.loads(keys) == ["gen"] and "var/secrets.env" in where
    keys, where = run_stack.resolve_api_keys(settings(monkeypatch, tmp_path, API_KEYS="[]"), SECRET)
    assert json.loads(keys) == ["gen"]
    assert "empty list" in where


def test_configured_api_keys_are_used_and_the_generated_one_is_said_not_to_work(
    monkeypatch, tmp_path
) -> None:
    s = settings(monkeypatch, tmp_path, API_KEYS='["k1", "k2"]')
    keys, where = run_stack.resolve_api_keys(s, SECRET)
    assert json.loads(keys) == ["k1", "k2"]
    assert "NOT accepted" in where and "environment" in where
    assert json.loads(run_stack.build_env(s, SECRET)["API_KEYS"]) == ["k1", "k2"]


@pytest.mark.parametrize("bad", ["key1", '{"a": 1}', '[""]', "[1]"])
def test_malformed_api_keys_stop_make_run_with_a_message(monkeypatch, tmp_path, bad) -> None:
    with pytest.raises(run_stack.StartupError, match="JSON list of strings"):
        run_stack.resolve_api_keys(settings(monkeypatch, tmp_path, API_KEYS=bad), SECRET)


def test_admin_password_from_the_environment_is_printed_with_its_source(
    monkeypatch, tmp_path, capsys
) -> None:
    s = settings(monkeypatch, tmp_path, ADMIN_PASSWORD="from-env-pw")
    values = run_stack.build_env(s, SECRET)
    assert values["ADMIN_PASSWORD"] == "from-env-pw"
    run_stack.banner(s, values, with_nginx=True)
    out = capsys.readouterr().out
    assert "admin / from-env-pw   (ADMIN_PASSWORD from environment)" in out
    assert "API key         API_KEY in var/secrets.env" in out


def test_compose_only_dotenv_values_are_reported_not_dropped(monkeypatch, tmp_path) -> None:
    s = settings(monkeypatch, tmp_path)
    values = run_stack.build_env(s, SECRET)
    dotenv = {
        "TRUST_FORWARDED_FOR": "false",  # make run sets true
        "DEMO_ACCOUNTS": "0",  # make run sets 1
        "MODEL_DIR": "/models",
        "CATALOG_HOST": values["CATALOG_HOST"],  # same value: nothing to say
        "ADMIN_PASSWORD": "x",  # make run's own knob: honoured
        "COOKIE_SECURE": "true",  # read by the catalog from .env itself: honoured
        "JWT_TTL_SECONDS": "",
    }
    ignored = run_stack.ignored_dotenv_settings(dotenv, values)
    names = [line.split("=", 1)[0] for line in ignored]
    assert names == ["TRUST_FORWARDED_FOR", "DEMO_ACCOUNTS", "MODEL_DIR"]
    assert "make run uses 'true'" in ignored[0]


def test_the_wait_for_the_embedded_mongodb_grows_with_its_store(tmp_path) -> None:
    """The embedded server reads every document when it opens (102-115 s for the 8.5 GB of a
    25M-rating import); a fixed 60 s wait failed every make run on such a store."""
    assert run_stack.size_gb(tmp_path / "absent") == 0.0
    assert run_stack.mongo_open_bound(run_stack.size_gb(tmp_path)) == run_stack.MONGO_OPEN_FLOOR_S
    (tmp_path / "secantus_documents_sh0.wt").touch()
    os.truncate(tmp_path / "secantus_documents_sh0.wt", 3 * 2**30)  # sparse: no disk used
    (tmp_path / "WiredTigerLog.0000000001").write_bytes(b"x" * 2**20)
    gb = run_stack.size_gb(tmp_path)
    assert 3.0 < gb < 3.01
    assert run_stack.mongo_open_bound(gb) > run_stack.MONGO_OPEN_FLOOR_S + 3 * 14
    assert run_stack.mongo_open_bound(8.5) >= 1.5 * 115


class _AliveSupervisor:
    def check_alive(self) -> None:
        pass


def test_a_long_wait_says_it_is_still_waiting_and_ends_at_its_bound(monkeypatch, capsys) -> None:
    monkeypatch.setattr(run_stack, "WAIT_HEARTBEAT_S", 0.2)
    ready_at = time.monotonic() + 0.8
    run_stack.wait_until("the thing", lambda: time.monotonic() >= ready_at, _AliveSupervisor(), 5)
    out = capsys.readouterr().out
    assert "still waiting for the thing (" in out and "of at most 5s)" in out
    with pytest.raises(run_stack.StartupError, match="timed out after 1s waiting for the thing"):
        run_stack.wait_until("the thing", lambda: False, _AliveSupervisor(), 1)
