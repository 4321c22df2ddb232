"""Settings, read with pydantic-settings from arguments, the environment (``SGEN_OPS_*``) and ``sgen-ops.toml``.

Precedence: explicit arguments > environment > ``sgen-ops.toml`` (in the home, then the working directory:
the first found) > defaults. The defaults are the seed's Settings: a retry budget of 3, a retention window of
7 days, and a per-environment worker concurrency.

``Settings`` is the frozen result every layer is handed; each field says what values it allows (its
metadata). ``load_settings`` builds a pydantic-settings model from those fields on first use, so that a
process that never loads settings never imports pydantic, and refuses a bad value with a ``ValidationError``
naming the setting, where it can be set, and what is allowed.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ValidationError

ENV_PREFIX = "SGEN_OPS_"
TOML_NAME = "sgen-ops.toml"

DEFAULT_SENSITIVE_KEYS = ("password", "secret", "token", "api_key", "apikey", "authorization")


def allows(words: str, **constraints: Any) -> dict[str, Any]:
    """A setting's metadata: what it allows, in words, and pydantic's constraints on it (``ge=1``...)."""
    return {"allowed": words, "constraints": constraints}


@dataclass(frozen=True)
class Settings:
    home: Path = field(default=Path(".sgen-ops"), metadata=allows("a directory"))
    database_url: str | None = field(default=None, metadata=allows("a SQLAlchemy URL such as postgresql://user@host/db"))
    redis_url: str | None = field(default=None, metadata=allows("a Redis URL such as redis://host:6379/0"))
    # Task modules imported on connect so that the registry knows every task.
    task_modules: tuple[str, ...] = field(default=("worker.catalog",),
                                          metadata=allows("module names, comma-separated (a list in toml)"))
    default_max_attempts: int = field(default=3, metadata=allows("a whole number, at least 1", ge=1))
    retention_days: float = field(default=7.0,
                                  metadata=allows("a number of days, 0 or more", ge=0, allow_inf_nan=False))
    payload_max_bytes: int = field(default=1024 * 1024, metadata=allows("a whole number of bytes, at least 1", ge=1))
    # Payloads and templates nested deeper than this are refused (JSON walked by every reader).
    payload_max_depth: int = field(default=64, metadata=allows("a whole number, at least 1", ge=1))
    worker_concurrency: int = field(default=2, metadata=allows("a whole number of processes, at least 1", ge=1))
    # A forking worker's work horse runs this many attempts, one after another, before a fresh horse is
    # forked (1: a fresh process per attempt, as RQ's Worker). A horse that dies takes only its current
    # attempt with it (recorded worker-lost); what a task leaves in memory lasts until the horse is replaced.
    horse_attempts: int = field(default=1, metadata=allows("a whole number, at least 1", ge=1))
    # A running attempt whose lease is not renewed for this long is recorded as worker-lost.
    worker_lost_after: float = field(default=60.0,
                                     metadata=allows("a number of seconds, more than 0", gt=0, allow_inf_nan=False))
    # How often a long-running worker reaps lost attempts and reconciles Redis with the ledger.
    maintenance_interval: int = field(default=30, metadata=allows("a whole number of seconds, at least 1", ge=1))
    # Prefix of the RQ queue names (and of RQ job ids), so several stacks can share one Redis.
    queue_prefix: str = field(default="sgen",
                              metadata=allows("letters, digits, '_' and '-'", pattern=r"^[A-Za-z0-9_-]+$"))
    sensitive_keys: tuple[str, ...] = field(default=DEFAULT_SENSITIVE_KEYS,
                                            metadata=allows("key patterns, comma-separated (a list in toml)"))
    # Overrides of the capability map: {"editor": ["dismiss", ...]} replaces that role's list.
    capabilities: dict[str, tuple[str, ...]] = field(
        default_factory=dict, metadata=allows("a table of role = [operations] in toml: [capabilities] editor = [...]"))
    # Production ledgers upgrade on connect only when asked; an embedded ledger always does.
    auto_upgrade: bool = field(default=False, metadata=allows("true or false"))
    # PostgreSQL: an enqueue returns once its commit is flushed to disk (the server's synchronous_commit),
    # as every ledger write does. An operator may set this false: enqueue transactions alone (single and
    # bulk) then commit without waiting for the WAL flush, which on the benchmark machine made a single
    # enqueue ~1.4x faster (0.58x -> 0.80x bare RQ). The price: if the PostgreSQL server crashes (the
    # server, not a client), enqueues acknowledged in the last moments before it (up to three times
    # wal_writer_delay, 0.6 s by default) are lost although their callers got ids and Redis may hold
    # their deliveries (which then find no job and run nothing), and their ids may be given out again.
    # The database stays consistent, and state changes of jobs stay durable. No effect on SQLite.
    enqueue_synchronous_commit: bool = field(default=True, metadata=allows("true or false"))
    # Terminal jobs (succeeded, cancelled, resolved) whose last change is older than this leave the live ledger
    # for the archive (0: never); never sooner than the retention window (see ``archive_after_seconds``).
    archive_after_days: float = field(default=30.0, metadata=allows("a number of days, 0 (never) or more", ge=0,
                                                                    allow_inf_nan=False))
    # Where the archive's Parquet files go: a local path or any fsspec URL (None: $SGEN_OPS_HOME/archive).
    archive_url: str | None = field(default=None, metadata=allows("a directory or an fsspec URL such as s3://bucket/prefix"))
    # Seconds between the scheduler's archive runs (0: the scheduler does not archive).
    archive_interval: float = field(default=3600.0, metadata=allows("a number of seconds, 0 (never) or more", ge=0,
                                                                    allow_inf_nan=False))

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


def _listed(value: Any) -> Any:
    """A list setting given as text: comma-separated names."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value


def _toml_settings(home: Path) -> tuple[Path | None, dict[str, Any]]:
    """The first ``sgen-ops.toml`` found (in the home, then the working directory) and its settings: the
    ``[sgen-ops]`` table, or the whole file; ``-`` in a key reads as ``_``."""
    for candidate in (home / TOML_NAME, Path(TOML_NAME)):
        if candidate.is_file():
            import tomllib  # only when there is a file to read: most processes are configured by environment

            try:
                with candidate.open("rb") as fh:
                    data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValidationError(f"{candidate} is not valid TOML: {exc}") from None
            table = data.get("sgen-ops", data)
            return candidate, {str(k).replace("-", "_"): v for k, v in table.items()}
    return None, {}


@functools.cache
def _model() -> Any:
    """The pydantic-settings model of ``Settings``' fields: their types, defaults and constraints; its sources
    are the arguments, then the environment, then ``sgen-ops.toml``."""
    from typing import Annotated

    from pydantic import BeforeValidator, Field, create_model
    from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

    class TomlFile(PydanticBaseSettingsSource):
        """``sgen-ops.toml`` of the home the arguments or the environment chose (``home`` is always given)."""

        def __init__(self, settings_cls: type[BaseSettings], home: Path) -> None:
            super().__init__(settings_cls)
            self.path, self.values = _toml_settings(home)
            unknown = sorted(set(self.values) - {f.name for f in fields(Settings)})
            if unknown:
                raise ValidationError(
                    f"{self.path}: unknown setting {unknown[0]!r}; known: {sorted(f.name for f in fields(Settings))}"
                )

        def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
            return self.values.get(field_name), field_name, False

        def __call__(self) -> dict[str, Any]:
            return dict(self.values)

    class Sources(BaseSettings):
        model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid",
                                          frozen=True)

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any, dotenv_settings: Any,
            file_secret_settings: Any,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, TomlFile(settings_cls, init_settings.init_kwargs["home"])

    hints = typing.get_type_hints(Settings)
    definitions: dict[str, Any] = {}
    for f in fields(Settings):
        hint = hints[f.name]
        if hint == tuple[str, ...]:
            # Comma-separated in the environment, not JSON.
            hint = Annotated[hint, NoDecode, BeforeValidator(_listed)]
        meta: Mapping[str, Any] = f.metadata
        default: dict[str, Any] = (
            {"default_factory": f.default_factory} if f.default is MISSING else {"default": f.default})
        definitions[f.name] = (hint, Field(description=meta.get("allowed") or None, **default,
                                           **meta.get("constraints", {})))
    return create_model("SettingsSources", __base__=Sources, **definitions)


def _refusal(errors: list[Any]) -> str:
    """pydantic's errors in this project's words: the setting, what was wrong, what is allowed, where it is set."""
    allowed = {f.name: f.metadata.get("allowed") for f in fields(Settings)}
    said = []
    for error in errors:
        name = str(error["loc"][0]) if error.get("loc") else "settings"
        said.append(
            f"setting {name} = {error.get('input')!r} is not valid ({error['msg']}); allowed: "
            f"{allowed.get(name) or 'see the README'} (an argument, {ENV_PREFIX}{name.upper()} or {TOML_NAME})"
        )
    return "; ".join(said)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings in force: explicit overrides, then env, then sgen-ops.toml, then defaults."""
    from pydantic import ValidationError as Invalid

    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ValidationError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    # The home decides which sgen-ops.toml is read, so it comes from the arguments or the environment only.
    home_raw = explicit.get("home") or os.environ.get(ENV_PREFIX + "HOME") or ".sgen-ops"
    explicit["home"] = Path(home_raw).expanduser().resolve()
    try:
        loaded = _model()(**explicit)
    except Invalid as exc:
        raise ValidationError(_refusal(exc.errors())) from None
    return Settings(**{f.name: getattr(loaded, f.name) for f in fields(Settings)})


# -- a client of the API ------------------------------------------------------------------------------------
# Here rather than in the views' session, so that a command (`sgen-ops worker` among them) asks without
# importing the views' libraries.
API_URL_VARIABLE = "SGEN_OPS_API_URL"


def served_only() -> str | None:
    """The API's URL when this process reaches the stack only through it: ``SGEN_OPS_API_URL`` set, and no
    stack named here (no ``SGEN_OPS_HOME``, no database URL in the environment or ``sgen-ops.toml``, no
    embedded home in the working directory). None otherwise. Nothing is then written under the working
    directory: what a command keeps goes to ``client_home()``."""
    url = os.environ.get(API_URL_VARIABLE, "").strip()
    if not url or os.environ.get("SGEN_OPS_HOME", "").strip():
        return None
    settings = load_settings()
    return None if settings.database_url or settings.home.exists() else url


def client_home() -> Path:
    """Where a client of the API keeps what it makes (a runbook's executed copies, a report): the user's data
    folder (``$XDG_DATA_HOME/sgen-ops``, default ``~/.local/share/sgen-ops``), never the working directory."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".local" / "share") / "sgen-ops"
