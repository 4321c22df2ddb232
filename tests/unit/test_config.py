"""Settings: defaults from the seed, then sgen-ops.toml, then the environment, then arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgen_ops import ValidationError
from sgen_ops.config import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HOME", "DEFAULT_MAX_ATTEMPTS", "RETENTION_DAYS", "DATABASE_URL", "REDIS_URL", "TASK_MODULES"):
        monkeypatch.delenv(f"SGEN_OPS_{name}", raising=False)
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
