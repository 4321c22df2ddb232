"""The ledger's tables: jobs, attempt history, state-change events, operators, schedules, Activity Log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    # None: the operator sees every account.
    account: Mapped[str | None] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Schedule(Base):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    every_seconds: Mapped[float | None] = mapped_column(Float)
    payload_template: Mapped[Any] = mapped_column(JSONType, nullable=True)
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    retention_days: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    account: Mapped[str | None] = mapped_column(String(100), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    anchor_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_run: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScheduleTick(Base):
    """One emission of a schedule. The unique key makes 'never the same tick twice' a property of the data."""

    __tablename__ = "schedule_ticks"
    __table_args__ = (UniqueConstraint("schedule_id", "kind", "tick_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # "tick" or "manual"
    tick_at: Mapped[datetime] = mapped_column(UTCDateTime)
    job_id: Mapped[int | None] = mapped_column(Integer)
    emitted_at: Mapped[datetime] = mapped_column(UTCDateTime)


_KEPT = "state = 'succeeded' AND retention_days IS NULL"
_KEPT_OWN = "state = 'succeeded' AND retention_days IS NOT NULL"
_LIVE_DEAD_LETTER = "state = 'dead-letter' AND replayed_as_id IS NULL"
_ERROR_CODE_KEY = "coalesce(last_error_code, '')"
_KEPT_INDEXES = (
    ("ix_jobs_kept", ("updated_at", "created_at", "account", "task", "last_error_code")),
    ("ix_jobs_kept_account", ("account", "updated_at", "task", "last_error_code", "created_at")),
    ("ix_jobs_kept_task", ("task", "updated_at", "account", "last_error_code", "created_at")),
    ("ix_jobs_kept_error_code", ("last_error_code", "updated_at", "account", "task", "created_at")),
    ("ix_jobs_kept_created_at", ("created_at", "updated_at", "account", "task", "last_error_code")),
)
_DEAD_LETTER_INDEXES: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("ix_jobs_dead_letters", ("task", text(_ERROR_CODE_KEY), "updated_at", "created_at", "last_error_code")),
    ("ix_jobs_account_dead_letters", ("account", "task", text(_ERROR_CODE_KEY), "updated_at", "created_at",
                                      "last_error_code")),
)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_created_at", "state", "created_at"),
        Index("ix_jobs_task_created_at", "task", "created_at"),
        Index("ix_jobs_account_created_at", "account", "created_at"),
        Index("ix_jobs_error_code_created_at", "last_error_code", "created_at"),
        Index("ix_jobs_state_scheduled_for", "state", "scheduled_for"),
        # Migration 0002: the operator queries at a million jobs (see its docstring).
        Index("ix_jobs_state_task_created_at", "state", "task", "created_at"),
        # Migration 0010: every page and every count of the views and the API ranges of one index each
        # (docs/totals.md); the migration lists why each is there.
        *(Index(name, *columns) for name, columns in (
            ("ix_jobs_account_state_created_at", ("account", "state", "created_at", "task", "last_error_code",
                                                  "replayed_as_id")),
            ("ix_jobs_state_error_code_created_at", ("state", "last_error_code", "created_at", "account",
                                                     "replayed_as_id")),
            ("ix_jobs_account_task_created_at", ("account", "task", "created_at")),
            ("ix_jobs_account_error_code_created_at", ("account", "last_error_code", "created_at")),
        )),
        # The partial ones lead with state on SQLite (see migration 0010).
        *(Index(name, "state", *columns, sqlite_where=text(_KEPT)).ddl_if(dialect="sqlite")
          for name, columns in _KEPT_INDEXES),
        *(Index(name, *columns, postgresql_where=text(_KEPT)).ddl_if(dialect="postgresql")
          for name, columns in _KEPT_INDEXES),
        Index("ix_jobs_kept_own", "state", text("julianday(updated_at) + retention_days"), "account", "task",
              "last_error_code", "created_at", "updated_at", "retention_days",
              sqlite_where=text(_KEPT_OWN)).ddl_if(dialect="sqlite"),
        Index("ix_jobs_kept_own", text("(updated_at + retention_days * interval '1 day')"), "account", "task",
              "last_error_code", "created_at", "updated_at", "retention_days",
              postgresql_where=text(_KEPT_OWN)).ddl_if(dialect="postgresql"),
        *(Index(name, "state", *columns, sqlite_where=text(_LIVE_DEAD_LETTER)).ddl_if(dialect="sqlite")
          for name, columns in _DEAD_LETTER_INDEXES),
        *(Index(name, *columns, postgresql_where=text(_LIVE_DEAD_LETTER)).ddl_if(dialect="postgresql")
          for name, columns in _DEAD_LETTER_INDEXES),
        Index("ix_jobs_payload_trgm", text("(CAST(payload AS TEXT)) gin_trgm_ops"),
              postgresql_using="gin").ddl_if(dialect="postgresql"),
        Index("ix_jobs_last_error_detail_trgm", text("last_error_detail gin_trgm_ops"),
              postgresql_using="gin").ddl_if(dialect="postgresql"),
        Index("ix_jobs_search_masked_trgm", text("search_masked gin_trgm_ops"),
              postgresql_using="gin").ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    originating_user_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id", ondelete="SET NULL"))
    account: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error_code: Mapped[str | None] = mapped_column(String(100))
    last_error_detail: Mapped[str | None] = mapped_column(Text)
    error_log: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    # Set by an operator's cancel of a running job; honoured at the task's next checkpoint.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Run number: a re-run or replay starts a new run with a fresh attempt counter.
    run: Mapped[int] = mapped_column(Integer, default=1)
    # The RQ job currently carrying this ledger job; only that delivery may claim an attempt.
    rq_job_id: Mapped[str | None] = mapped_column(String(200))
    enqueue_seq: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retention_days: Mapped[float | None] = mapped_column(Float)
    replayed_from_id: Mapped[int | None] = mapped_column(Integer)
    replayed_as_id: Mapped[int | None] = mapped_column(Integer)
    dead_letter_reason: Mapped[str | None] = mapped_column(Text)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # Payload and error text with the masking rule applied: what non-administrators may search.
    search_masked: Mapped[str | None] = mapped_column(Text)


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("job_id", "run", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(200))
    run: Mapped[int] = mapped_column(Integer, default=1)
    number: Mapped[int] = mapped_column(Integer)
    # When the job became due; started_at - ready_at is the queue wait.
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # succeeded | failed | timeout | cancelled | worker-lost (None while running)
    exit: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))


class JobEvent(Base):
    """A state change with its time: throughput over a window counts these, exact after re-runs."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_at_to_state_task", "at", "to_state", "task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign key: events outlive a dismissed (purged) job so that counts stay exact.
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    task: Mapped[str] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(100))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActivityEntry(Base):
    """The Activity Log: append-only, each entry chaining the hash of the one before."""

    __tablename__ = "activity_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    operator: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int | None] = mapped_column(Integer)
    account: Mapped[str | None] = mapped_column(String(100), index=True)
    change: Mapped[Any] = mapped_column(JSONType, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class TaskRule(Base):
    """A task's masking rule as the processes that register the task declare it, so that a process that
    never imported the task still masks it (migration 0005)."""

    __tablename__ = "task_rules"

    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    sensitive: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OperatorNote(Base):
    """Text an operator wrote (a resolve note, a dead-letter reason), stored as written, apart from the
    Activity Log, whose entries refer to it by id: the log, which can never be edited, so never holds
    free text that might quote a secret, and the text is shown to each reader as the resolver allows
    (migration 0005)."""

    __tablename__ = "operator_notes"
    __table_args__ = (Index("ix_operator_notes_target", "target_type", "target_id", "field"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_type: Mapped[str] = mapped_column(String(20))
    # No foreign key: a note outlives a dismissed (purged) job, as its Activity Log entries do.
    target_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(50))
    operator: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    # True when, as written, it quoted a sensitive value of its job: hidden whole from other non-administrators.
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token of the HTTP API, bound to one operator (migration 0006). Only the token's SHA-256 is
    kept: the token itself is shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """The first answer to a write sent with an ``Idempotency-Key`` header (migration 0006), replayed to
    the same operator's repeats of it for 24 hours. ``status`` is None while the first request runs."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("operator_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Pause(Base):
    """A paused task or priority queue (migration 0008): its waiting jobs are not claimed until it is
    resumed. ``kind`` is "task" (``name`` a task) or "queue" (``name`` a priority)."""

    __tablename__ = "pauses"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paused_by: Mapped[str] = mapped_column(String(200))


class ArchiveRun(Base):
    """One run of the archiver (migration 0011): when, up to which cutoff, what it moved and where, and the
    ledger's size before and after. ``state``: running, done, or interrupted (killed; found by the next run)."""

    __tablename__ = "archive_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20))
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    # The range of last changes (updated_at) of the jobs it moved.
    oldest: Mapped[datetime | None] = mapped_column(UTCDateTime)
    newest: Mapped[datetime | None] = mapped_column(UTCDateTime)
    jobs: Mapped[int] = mapped_column(Integer, default=0)
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # SHA-256 over its files' paths and SHA-256s, in path order.
    checksum: Mapped[str | None] = mapped_column(String(64))
    ledger_jobs_before: Mapped[int | None] = mapped_column(BigInteger)
    ledger_jobs_after: Mapped[int | None] = mapped_column(BigInteger)
    ledger_bytes_before: Mapped[int | None] = mapped_column(BigInteger)
    ledger_bytes_after: Mapped[int | None] = mapped_column(BigInteger)
    host: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)


class ArchiveFile(Base):
    """A Parquet file of the archive (migration 0011). A job is archived exactly when the row of its file is
    here: the row is written in the transaction that deletes the job from the ledger."""

    __tablename__ = "archive_files"
    __table_args__ = (Index("ix_archive_files_min_id_max_id", "min_id", "max_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("archive_runs.id"), index=True)
    # Relative to archive_url.
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    jobs: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    min_id: Mapped[int] = mapped_column(Integer)
    max_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArchiveDeletion(Base):
    """An archived job deleted by ``delete_job`` (migration 0011): left out of every read from then on, and
    dropped from its file when the file is next rewritten (then this row goes too)."""

    __tablename__ = "archive_deletions"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("archive_files.id", ondelete="CASCADE"), index=True)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RollupMark(Base):
    """How far the rollups have counted (migration 0011): every event and attempt id up to these marks is
    in ``event_counts`` / ``attempt_histograms`` (an attempt unfinished then waits in
    ``rollup_pending_attempts``). Its one row is the lock that keeps roll-ups and archive deletes apart."""

    __tablename__ = "rollup_marks"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    events_through: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts_through: Mapped[int] = mapped_column(BigInteger, default=0)
    rolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RollupPendingAttempt(Base):
    """An attempt whose id is rolled up but which had not finished then (migration 0011)."""

    __tablename__ = "rollup_pending_attempts"

    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class EventCount(Base):
    """Events reaching a counted state per bucket (``span`` seconds: 3600 or 86400), task, account ('' for
    none) and state (migration 0011)."""

    __tablename__ = "event_counts"

    span: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    account: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class AttemptHistogram(Base):
    """A log-bucketed histogram of run times or queue waits (``kind``: run, wait) of the finished attempts
    started in a bucket, per task and account, and over every account (``rollups.ALL_ACCOUNTS``) (migration
    0011); ``bins`` packed as ``rollups.pack``."""

    __tablename__ = "attempt_histograms"

    span: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    account: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(4), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    bins: Mapped[bytes] = mapped_column(LargeBinary)


class ArchivedHour(Base):
    """An hour (per account, '' for none) some of whose events (``kind`` "event") or attempt starts ("attempt")
    have left for the archive (migration 0011): a window ending inside it counts it whole."""

    __tablename__ = "archived_hours"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    account: Mapped[str] = mapped_column(String(100), primary_key=True)


# The tables as Core sees them, for the statements written without the ORM.
JOBS = cast(Table, Job.__table__)
ATTEMPTS = cast(Table, Attempt.__table__)
EVENTS = cast(Table, JobEvent.__table__)
ACTIVITY_LOG = cast(Table, ActivityEntry.__table__)
PAUSES = cast(Table, Pause.__table__)
EVENT_COUNTS = cast(Table, EventCount.__table__)
