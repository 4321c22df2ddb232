"""Settings: defaults from the seed, then sgen-ops.toml, then the environment, then arguments."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from sgen_ops import ValidationError
from sgen_ops.config import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SGEN_OPS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_follow_the_seed(tmp_path: Path) -> None:
    s = load_settings()
    assert s.default_max_attempts == 3
    assert s.retention_days == 7
    assert s.payload_max_bytes == 1024 * 1024
    assert s.home == (tmp_path / ".sgen-ops").resolve()
    assert s.effective_database_url == f"sqlite:///{tmp_path / '.sgen-ops' / 'ledger.db'}"
    assert s.is_embedded_db


def test_toml_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sgen-ops.toml").write_text(
        'default_max_attempts = 5\nretention_days = 30\ntask_modules = ["a", "b"]\n'
    )
    s = load_settings()
    assert (s.default_max_attempts, s.retention_days, s.task_modules) == (5, 30.0, ("a", "b"))
    monkeypatch.setenv("SGEN_OPS_DEFAULT_MAX_ATTEMPTS", "7")
    assert load_settings().default_max_attempts == 7
    assert load_settings(default_max_attempts=9).default_max_attempts == 9
    assert load_settings().retention_days == 30.0


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown settings"):
        load_settings(retry_budget=3)
    (tmp_path / "sgen-ops.toml").write_text("retry_budgett = 3\n")
    with pytest.raises(ValidationError, match="unknown setting 'retry_budgett'"):
        load_settings()


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGEN_OPS_RETENTION_DAYS", "a week")
    with pytest.raises(ValidationError, match="retention_days"):
        load_settings()


def test_enqueue_synchronous_commit_is_durable_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().enqueue_synchronous_commit is True
    monkeypatch.setenv("SGEN_OPS_ENQUEUE_SYNCHRONOUS_COMMIT", "false")
    assert load_settings().enqueue_synchronous_commit is False
    assert load_settings(enqueue_synchronous_commit=True).enqueue_synchronous_commit is True


def test_the_homes_toml_comes_before_the_working_directorys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "sgen-ops.toml").write_text("default_max_attempts = 4\nretention_days = 2\n")
    assert load_settings(home=home).default_max_attempts == 4
    (home / "sgen-ops.toml").write_text('[sgen-ops]\ndefault-max-attempts = 6\nqueue-prefix = "blue"\n')
    monkeypatch.setenv("SGEN_OPS_HOME", str(home))
    s = load_settings()
    # The first file found is the one read: the home's, whole.
    assert (s.home, s.default_max_attempts, s.queue_prefix, s.retention_days) == (home.resolve(), 6, "blue", 7.0)


def test_the_environment_spells_lists_and_flags_as_people_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGEN_OPS_TASK_MODULES", "worker.catalog, tests.tasks")
    monkeypatch.setenv("SGEN_OPS_SENSITIVE_KEYS", "password,pin")
    monkeypatch.setenv("SGEN_OPS_AUTO_UPGRADE", "yes")
    monkeypatch.setenv("SGEN_OPS_REDIS_URL", "")  # empty: not set
    s = load_settings()
    assert s.task_modules == ("worker.catalog", "tests.tasks")
    assert (s.sensitive_keys, s.auto_upgrade) == (("password", "pin"), True)
    assert s.redis_url is None
    assert load_settings(task_modules="a,b").task_modules == ("a", "b")
    assert load_settings(task_modules=["c"]).task_modules == ("c",)


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("DEFAULT_MAX_ATTEMPTS", "0", "a whole number, at least 1"),
    ("RETENTION_DAYS", "a week", "a number of days, 0 or more"),
    ("QUEUE_PREFIX", "my queue", "letters, digits, '_' and '-'"),
    ("AUTO_UPGRADE", "perhaps", "true or false"),
    ("WORKER_LOST_AFTER", "nan", "a number of seconds, more than 0"),
])
def test_a_bad_value_names_the_setting_and_what_is_allowed(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                           allowed: str) -> None:
    monkeypatch.setenv(f"SGEN_OPS_{name}", value)
    with pytest.raises(ValidationError) as info:
        load_settings()
    said = str(info.value)
    assert said.startswith(f"setting {name.lower()} = {value!r} is not valid (")
    assert f"allowed: {allowed} (an argument, SGEN_OPS_{name} or sgen-ops.toml)" in said


def test_a_broken_toml_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "sgen-ops.toml").write_text("default_max_attempts = \n")
    with pytest.raises(ValidationError, match=r"sgen-ops.toml is not valid TOML"):
        load_settings()
    (tmp_path / "sgen-ops.toml").write_text("default_max_attempts = 'three'\n")
    with pytest.raises(ValidationError, match="setting default_max_attempts = 'three' is not valid"):
        load_settings()


def test_settings_are_a_frozen_value(tmp_path: Path) -> None:
    s = load_settings(capabilities={"viewer": ["list_jobs"]})
    assert s.capabilities == {"viewer": ("list_jobs",)}
    assert dataclasses.replace(s, horse_attempts=3).horse_attempts == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.home = tmp_path  # type: ignore[misc]
