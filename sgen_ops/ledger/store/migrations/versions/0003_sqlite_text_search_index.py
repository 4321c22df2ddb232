"""text search index on SQLite (FTS5 trigram)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

SQLite only (a no-op elsewhere; PostgreSQL has migration 0002's pg_trgm indexes): ``jobs_fts``, an FTS5
table with the trigram tokenizer over the three texts ``query.job_conditions`` searches, as SQLite
stores them (the payload's JSON text, which is what ``CAST(payload AS TEXT)`` reads; the error detail;
the masked copy non-administrators search). It is an external-content table (``content='jobs'``): it
holds only the index, and ``rowid`` is the job's id.

Triggers keep it in step with ``jobs``: after an insert, after a delete, and after an update of those
columns only (``UPDATE OF``, and only when a value really changed), so the workers' state changes, which
never write them, cost nothing. Existing rows are indexed once by FTS5's 'rebuild' (70-85 s and 1.4 GB
for the million-job benchmark ledger, whose file grows from 2.2 to 3.5 GB).

What the insert trigger costs: FTS5 (SQLite 3.40) writes its pending terms out at the start of every
later statement of a transaction that has written to it, so rows inserted by an executemany, one
statement each, are indexed one segment per row: a bulk enqueue of 20,000 jobs went from 31,000 to
16,000 jobs/s. Inserted as multi-row statements (500 rows each) it costs 10% (32,000 to 29,000/s);
a single enqueue costs 35-60 microseconds more (14% in the enqueue benchmark).

A SQLite library without FTS5 or without the trigram tokenizer (before 3.34) gets no index: the upgrade
logs a warning and text search keeps scanning (``query`` makes the same check of the library).
"""

from __future__ import annotations

import logging
import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("sgen_ops.migrations")

TABLE = "jobs_fts"
# The searched columns of ``jobs``; the FTS5 columns carry the same names, as 'rebuild' reads them by name.
COLUMNS = ("payload", "last_error_detail", "search_masked")
TRIGGERS = ("jobs_fts_after_insert", "jobs_fts_after_delete", "jobs_fts_after_update")


def _values(prefix: str) -> str:
    return ", ".join(f"{prefix}.{c}" for c in COLUMNS)


def _statements() -> list[str]:
    cols = ", ".join(COLUMNS)
    add = f"INSERT INTO {TABLE} (rowid, {cols}) VALUES (new.id, {_values('new')});"
    # An external-content table forgets a row when told the values it indexed for it: the old ones.
    forget = f"INSERT INTO {TABLE} ({TABLE}, rowid, {cols}) VALUES ('delete', old.id, {_values('old')});"
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in ("id", *COLUMNS))
    return [
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5({cols}, content='jobs', content_rowid='id', tokenize='trigram')",
        f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON jobs BEGIN {add} END",
        f"CREATE TRIGGER {TRIGGERS[1]} AFTER DELETE ON jobs BEGIN {forget} END",
        f"CREATE TRIGGER {TRIGGERS[2]} AFTER UPDATE OF id, {cols} ON jobs WHEN {changed} BEGIN {forget} {add} END",
        f"INSERT INTO {TABLE} ({TABLE}) VALUES ('rebuild')",
    ]


def _trigram_available() -> bool:
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE VIRTUAL TABLE temp.sgen_trigram_probe USING fts5(t, tokenize='trigram')"))
            bind.execute(sa.text("DROP TABLE temp.sgen_trigram_probe"))
    except sa.exc.DBAPIError as exc:
        log.warning("SQLite %s has no FTS5 trigram tokenizer (%s): text search will scan the jobs table",
                    sqlite3.sqlite_version, exc.orig)
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _trigram_available():
        return
    for statement in _statements():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute(f"DROP TABLE IF EXISTS {TABLE}")
