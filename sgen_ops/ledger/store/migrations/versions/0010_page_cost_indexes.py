"""indexes so that every operator read costs a page, not the history

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01

A page is read by walking an index in created_at order, and a total is counted up to a cap
(``query.COUNT_CAP``) as ranges of indexes whose entries all match (docs/totals.md). These indexes make
that so for the filters of the views and the API, for operators of every account and operators bound to
one (the API narrows every request to one account):

* pages: ``ix_jobs_account_state_created_at``, ``ix_jobs_account_task_created_at``,
  ``ix_jobs_account_error_code_created_at``, ``ix_jobs_state_error_code_created_at``: an account's jobs by
  state, task or error code, and jobs by state and error code, newest first. The first and last also count
  the unfinished part of the default view (``state IN (...)``), with task, error code, account and
  ``replayed_as_id`` in each entry for the other filters.
* the succeeded part of the default view (partial: succeeded jobs under the global retention), a range of
  ``updated_at`` after one equality: ``ix_jobs_kept`` (none), ``ix_jobs_kept_account``, ``ix_jobs_kept_task``,
  ``ix_jobs_kept_error_code``; ``ix_jobs_kept_created_at`` for a date range; ``ix_jobs_kept_own`` for the
  jobs with their own retention, by expiry (PostgreSQL leaves the state of 0002's indexes out of the range,
  as their predicate implies it, so an index whose range column leads is needed there).
* 0002's ``ix_jobs_kept_updated_at`` and ``ix_jobs_kept_expiry`` go: they lead with ``state``, which
  PostgreSQL leaves out of an index range when the index's predicate implies it, so it walked each of them
  whole; ``ix_jobs_kept`` and ``ix_jobs_kept_own`` lead with their range column instead.
* ``ix_jobs_dead_letters``, ``ix_jobs_account_dead_letters`` (partial: the live dead letters): the
  dead-letter groups by task and error code (none as ''), found by a skip scan, each counted from its range.

Dialect variants, side by side: on SQLite every partial index leads with ``state`` (its planner, without
statistics, prefers an index whose leading columns equalities constrain: without it, it would walk every
succeeded job through ``(state, ...)``); on PostgreSQL the statistics of the expiry expression (``CREATE
STATISTICS``, PostgreSQL 14 and later) let the planner see how few jobs are inside their own retention.

Every one of these is written on each change of a job's row (the plain ones) or once when a job succeeds
or is dead-lettered (the partial ones): the price of reads that stay flat as the history grows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

KEPT = "state = 'succeeded' AND retention_days IS NULL"
KEPT_OWN = "state = 'succeeded' AND retention_days IS NOT NULL"
LIVE_DEAD_LETTER = "state = 'dead-letter' AND replayed_as_id IS NULL"
ERROR_CODE_KEY = "coalesce(last_error_code, '')"

EXPIRY = {
    "sqlite": "julianday(updated_at) + retention_days",
    "postgresql": "(updated_at + retention_days * interval '1 day')",
}

# Migration 0002's indexes of the succeeded part of the view, replaced by ix_jobs_kept and ix_jobs_kept_own.
REPLACED = ("ix_jobs_kept_updated_at", "ix_jobs_kept_expiry")

PLAIN = {
    "ix_jobs_account_state_created_at": ["account", "state", "created_at", "task", "last_error_code",
                                         "replayed_as_id"],
    "ix_jobs_state_error_code_created_at": ["state", "last_error_code", "created_at", "account", "replayed_as_id"],
    "ix_jobs_account_task_created_at": ["account", "task", "created_at"],
    "ix_jobs_account_error_code_created_at": ["account", "last_error_code", "created_at"],
}
PARTIAL = {
    "ix_jobs_kept": (KEPT, ["updated_at", "created_at", "account", "task", "last_error_code"]),
    "ix_jobs_kept_account": (KEPT, ["account", "updated_at", "task", "last_error_code", "created_at"]),
    "ix_jobs_kept_task": (KEPT, ["task", "updated_at", "account", "last_error_code", "created_at"]),
    "ix_jobs_kept_error_code": (KEPT, ["last_error_code", "updated_at", "account", "task", "created_at"]),
    "ix_jobs_kept_created_at": (KEPT, ["created_at", "updated_at", "account", "task", "last_error_code"]),
    "ix_jobs_kept_own": (KEPT_OWN, ["{expiry}", "account", "task", "last_error_code", "created_at", "updated_at",
                                   "retention_days"]),
    # The expression's column in the entry too: PostgreSQL reads an index alone only for columns it holds.
    "ix_jobs_dead_letters": (LIVE_DEAD_LETTER, ["task", ERROR_CODE_KEY, "updated_at", "created_at",
                                                "last_error_code"]),
    "ix_jobs_account_dead_letters": (LIVE_DEAD_LETTER, ["account", "task", ERROR_CODE_KEY, "updated_at",
                                                        "created_at", "last_error_code"]),
}


EXPIRY_STATISTICS = "jobs_own_expiry"


def _column(name: str, dialect: str) -> str | sa.TextClause:
    if name == "{expiry}":
        return sa.text(EXPIRY[dialect])
    return sa.text(name) if "(" in name else name


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in REPLACED:
        op.drop_index(name, "jobs")
    for name, columns in PLAIN.items():
        op.create_index(name, "jobs", columns)
    for name, (where, columns) in PARTIAL.items():
        if "{expiry}" in columns and dialect not in EXPIRY:
            continue
        if dialect == "sqlite":
            columns = ["state", *columns]
        op.create_index(name, "jobs", [_column(c, dialect) for c in columns], sqlite_where=sa.text(where),
                        postgresql_where=sa.text(where))
    if dialect == "postgresql":
        if int(op.get_bind().execute(sa.text("SHOW server_version_num")).scalar_one()) >= 140000:
            op.execute(f"CREATE STATISTICS IF NOT EXISTS {EXPIRY_STATISTICS} ON ({EXPIRY['postgresql']}) FROM jobs")
        op.execute("ANALYZE jobs")  # the planner weighs the new indexes with fresh statistics


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"DROP STATISTICS IF EXISTS {EXPIRY_STATISTICS}")
    for name in [*PARTIAL, *PLAIN][::-1]:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.create_index(
        "ix_jobs_kept_updated_at", "jobs", ["state", "updated_at", "task", "account", "retention_days"],
        sqlite_where=sa.text(KEPT), postgresql_where=sa.text(KEPT),
    )
    if dialect in EXPIRY:
        op.create_index(
            "ix_jobs_kept_expiry", "jobs",
            ["state", sa.text(EXPIRY[dialect]), "task", "account", "retention_days", "updated_at"],
            sqlite_where=sa.text(KEPT_OWN), postgresql_where=sa.text(KEPT_OWN),
        )
