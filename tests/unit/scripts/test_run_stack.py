"""make run and a `.env` written for Docker: what make run prints works, and what it cannot
honour is reported (scripts/run_stack.py)."""

from __future__ import annotations

import json
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
