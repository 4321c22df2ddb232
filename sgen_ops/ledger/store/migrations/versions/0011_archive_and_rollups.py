"""The archive's catalogue and the statistics' rollups

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-01

``archive_runs``, ``archive_files`` and ``archive_deletions``: the catalogue of the Parquet archive (see
docs/archive.md): each run, each file (a job is archived exactly when its file's row is here) and the
archived jobs deleted since their file was written. ``rollup_marks`` (one row, 'rollups'),
``rollup_pending_attempts``, ``event_counts`` and ``attempt_histograms``: throughput counts and run-time
and queue-wait histograms per hour and per day, rolled up from job_events and attempts by id; ``archived_hours``:
the hours (per account) of events and attempt starts that have left for the archive, which a window can no longer
cut exactly. The marks start at 0: the first roll-up pass counts a ledger's existing history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sgen_ops.ledger.store.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TIME = sgen_ops.ledger.store.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "archive_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", _TIME(), nullable=False),
        sa.Column("finished_at", _TIME(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("cutoff", _TIME(), nullable=False),
        sa.Column("oldest", _TIME(), nullable=True),
        sa.Column("newest", _TIME(), nullable=True),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("ledger_jobs_before", sa.BigInteger(), nullable=True),
        sa.Column("ledger_jobs_after", sa.BigInteger(), nullable=True),
        sa.Column("ledger_bytes_before", sa.BigInteger(), nullable=True),
        sa.Column("ledger_bytes_after", sa.BigInteger(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_archive_runs"),
    )
    op.create_table(
        "archive_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("min_id", sa.Integer(), nullable=False),
        sa.Column("max_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["archive_runs.id"], name="fk_archive_files_run_id_archive_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_archive_files"),
        sa.UniqueConstraint("path", name="uq_archive_files_path"),
    )
    op.create_index("ix_archive_files_run_id", "archive_files", ["run_id"])
    op.create_index("ix_archive_files_day", "archive_files", ["day"])
    op.create_index("ix_archive_files_min_id_max_id", "archive_files", ["min_id", "max_id"])
    op.create_table(
        "archive_deletions",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("deleted_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["archive_files.id"], name="fk_archive_deletions_file_id_archive_files",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name="pk_archive_deletions"),
    )
    op.create_index("ix_archive_deletions_file_id", "archive_deletions", ["file_id"])

    marks = op.create_table(
        "rollup_marks",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("events_through", sa.BigInteger(), nullable=False),
        sa.Column("attempts_through", sa.BigInteger(), nullable=False),
        sa.Column("rolled_at", _TIME(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_rollup_marks"),
    )
    op.bulk_insert(marks, [{"name": "rollups", "events_through": 0, "attempts_through": 0, "rolled_at": None}])
    op.create_table(
        "rollup_pending_attempts",
        sa.Column("attempt_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_rollup_pending_attempts"),
    )
    op.create_table(
        "event_counts",
        sa.Column("span", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket", _TIME(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("span", "bucket", "task", "account", "state", name="pk_event_counts"),
    )
    op.create_table(
        "attempt_histograms",
        sa.Column("span", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket", _TIME(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("bins", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("span", "bucket", "task", "account", "kind", name="pk_attempt_histograms"),
    )
    op.create_table(
        "archived_hours",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("bucket", _TIME(), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("kind", "bucket", "account", name="pk_archived_hours"),
    )


def downgrade() -> None:
    for table in ("archived_hours", "attempt_histograms", "event_counts", "rollup_pending_attempts", "rollup_marks",
                  "archive_deletions", "archive_files", "archive_runs"):
        op.drop_table(table)
