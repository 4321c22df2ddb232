"""Settings, read from the environment (``SGEN_OPS_*``) and ``sgen-ops.toml``.

Precedence: explicit arguments > environment > ``sgen-ops.toml`` (in the home, then the
working directory) > defaults. The defaults are the seed's Settings: a retry budget of 3,
a retention window of 7 days, and a per-environment worker concurrency.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ValidationError

ENV_PREFIX = "SGEN_OPS_"

DEFAULT_SENSITIVE_KEYS = ("password", "secret", "token", "api_key", "apikey", "authorization")


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".sgen-ops")
    database_url: str | None = None
    redis_url: str | None = None
    # Task modules imported on connect so that the registry knows every task.
    task_modules: tuple[str, ...] = ("worker.catalog",)
    default_max_attempts: int = 3
    retention_days: float = 7.0
    payload_max_bytes: int = 1024 * 1024
    # Payloads and templates nested deeper than this are refused (JSON walked by every reader).
    payload_max_depth: int = 64
    worker_concurrency: int = 2
    # A forking worker's work horse runs this many attempts, one after another, before a fresh horse is
    # forked (1: a fresh process per attempt, as RQ's Worker). A horse that dies takes only its current
    # attempt with it (recorded worker-lost); what a task leaves in memory lasts until the horse is replaced.
    horse_attempts: int = 1
    # A running attempt whose lease is not renewed for this long is recorded as worker-lost.
    worker_lost_after: float = 60.0
    # How often a long-running worker reaps lost attempts and reconciles Redis with the ledger.
    maintenance_interval: int = 30
    # Prefix of the RQ queue names (and of RQ job ids), so several stacks can share one Redis.
    queue_prefix: str = "sgen"
    sensitive_keys: tuple[str, ...] = DEFAULT_SENSITIVE_KEYS
    # Overrides of the capability map: {"editor": ["dismiss", ...]} replaces that role's list.
    capabilities: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Production ledgers upgrade on connect only when asked; an embedded ledger always does.
    auto_upgrade: bool = False
    # PostgreSQL: an enqueue returns once its commit is flushed to disk (the server's synchronous_commit),
    # as every ledger write does. An operator may set this false: enqueue transactions alone (single and
    # bulk) then commit without waiting for the WAL flush, which on the benchmark machine made a single
    # enqueue ~1.4x faster (0.58x -> 0.80x bare RQ). The price: if the PostgreSQL server crashes (the
    # server, not a client), enqueues acknowledged in the last moments before it (up to three times
    # wal_writer_delay, 0.6 s by default) are lost although their callers got ids and Redis may hold
    # their deliveries (which then find no job and run nothing), and their ids may be given out again.
    # The database stays consistent, and state changes of jobs stay durable. No effect on SQLite.
    enqueue_synchronous_commit: bool = True
    # Terminal jobs (succeeded, cancelled, resolved) whose last change is older than this leave the live ledger
    # for the archive (0: never); never sooner than the retention window (see ``archive_after_seconds``).
    archive_after_days: float = 30.0
    # Where the archive's Parquet files go: a local path or any fsspec URL (None: $SGEN_OPS_HOME/archive).
    archive_url: str | None = None
    # Seconds between the scheduler's archive runs (0: the scheduler does not archive).
    archive_interval: float = 3600.0

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400.0

    @property
    def archive_after_seconds(self) -> float:
        """How old a terminal job's last change must be before it is archived; 0: never. Raised to the
        retention window, so that no job leaves the default list's view by being archived."""
        if self.archive_after_days <= 0:
            return 0.0
        return max(self.archive_after_days, self.retention_days) * 86400.0

    @property
    def effective_archive_url(self) -> str:
        return self.archive_url or str(self.home / "archive")

    @property
    def is_embedded_db(self) -> bool:
        return self.database_url is None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'ledger.db').resolve()}"


_INT = {
    "default_max_attempts", "payload_max_bytes", "payload_max_depth", "worker_concurrency", "maintenance_interval",
    "horse_attempts",
}
_FLOAT = {"retention_days", "worker_lost_after", "archive_after_days", "archive_interval"}
_TUPLE = {"task_modules", "sensitive_keys"}
_BOOL = {"auto_upgrade", "enqueue_synchronous_commit"}


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in _INT:
            return int(value)
        if name in _FLOAT:
            return float(value)
        if name in _TUPLE:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(value)
        if name in _BOOL:
            if isinstance(value, str):
                return value.strip().lower() not in ("0", "false", "no", "off", "")
            return bool(value)
        if name == "home":
            return Path(value)
        if name == "capabilities":
            return {str(k): tuple(v) for k, v in dict(value).items()}
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"setting {name}={value!r} is not valid: {exc}") from exc
    return value


def _toml_settings(home: Path) -> dict[str, Any]:
    for candidate in (home / "sgen-ops.toml", Path("sgen-ops.toml")):
        if candidate.is_file():
            import tomllib  # only when there is a file to read: most processes are configured by environment

            with candidate.open("rb") as fh:
                data = tomllib.load(fh)
            return dict(data.get("sgen-ops", data))
    return {}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings in force: explicit overrides, then env, then sgen-ops.toml, then defaults."""
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ValidationError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    home_raw = explicit.get("home") or os.environ.get(ENV_PREFIX + "HOME") or ".sgen-ops"
    home = Path(home_raw).expanduser().resolve()
    values: dict[str, Any] = {}
    for name, value in _toml_settings(home).items():
        key = name.replace("-", "_")
        if key not in known:
            raise ValidationError(f"sgen-ops.toml: unknown setting {name!r}; known: {sorted(known)}")
        values[key] = _coerce(key, value)
    for name in known:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None and env != "":
            values[name] = _coerce(name, env)
    for name, value in explicit.items():
        values[name] = _coerce(name, value)
    values["home"] = home
    settings = replace(Settings(), **values)
    if settings.default_max_attempts < 1:
        raise ValidationError("default_max_attempts must be at least 1")
    if not (settings.archive_after_days >= 0 and settings.archive_interval >= 0):
        raise ValidationError("archive_after_days and archive_interval must be 0 (never) or more")
    if not settings.queue_prefix.replace("_", "").replace("-", "").isalnum():
        raise ValidationError("queue_prefix may contain only letters, digits, '_' and '-'")
    return settings
