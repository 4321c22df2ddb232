"""initial ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sgen_ops.ledger.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "activity_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("operator", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target_type", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("account", sa.String(length=100), nullable=True),
        sa.Column(
            "change", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_log")),
    )
    with op.batch_alter_table("activity_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_activity_log_account"), ["account"], unique=False)
        batch_op.create_index(batch_op.f("ix_activity_log_at"), ["at"], unique=False)

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=True),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index("ix_job_events_at_to_state_task", ["at", "to_state", "task"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_events_job_id"), ["job_id"], unique=False)

    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("every_seconds", sa.Float(), nullable=True),
        sa.Column(
            "payload_template",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("retention_days", sa.Float(), nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("anchor_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("next_run", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("last_run", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_schedules_created_by_operators"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schedules_account"), ["account"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("scheduled_for", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("originating_user_id", sa.Integer(), nullable=True),
        sa.Column("account", sa.String(length=100), nullable=True),
        sa.Column("created_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("last_error_code", sa.String(length=100), nullable=True),
        sa.Column("last_error_detail", sa.Text(), nullable=True),
        sa.Column("error_log", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("rq_job_id", sa.String(length=200), nullable=True),
        sa.Column("enqueue_seq", sa.Integer(), nullable=False),
        sa.Column("lease_until", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("retention_days", sa.Float(), nullable=True),
        sa.Column("replayed_from_id", sa.Integer(), nullable=True),
        sa.Column("replayed_as_id", sa.Integer(), nullable=True),
        sa.Column("dead_letter_reason", sa.Text(), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("search_masked", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["originating_user_id"],
            ["operators.id"],
            name=op.f("fk_jobs_originating_user_id_operators"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedules.id"], name=op.f("fk_jobs_schedule_id_schedules"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_account_created_at", ["account", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_jobs_error_code_created_at", ["last_error_code", "created_at"], unique=False)
        batch_op.create_index("ix_jobs_state_created_at", ["state", "created_at"], unique=False)
        batch_op.create_index("ix_jobs_state_scheduled_for", ["state", "scheduled_for"], unique=False)
        batch_op.create_index("ix_jobs_task_created_at", ["task", "created_at"], unique=False)

    op.create_table(
        "schedule_ticks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("tick_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("emitted_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedules.id"], name=op.f("fk_schedule_ticks_schedule_id_schedules"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_ticks")),
        sa.UniqueConstraint("schedule_id", "kind", "tick_at", name=op.f("uq_schedule_ticks_schedule_id_kind_tick_at")),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("ready_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("started_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("exit", sa.String(length=20), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_attempts_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("job_id", "run", "number", name=op.f("uq_attempts_job_id_run_number")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempts_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attempts_started_at"), ["started_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_started_at"))
        batch_op.drop_index(batch_op.f("ix_attempts_job_id"))

    op.drop_table("attempts")
    op.drop_table("schedule_ticks")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_task_created_at")
        batch_op.drop_index("ix_jobs_state_scheduled_for")
        batch_op.drop_index("ix_jobs_state_created_at")
        batch_op.drop_index("ix_jobs_error_code_created_at")
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))
        batch_op.drop_index("ix_jobs_account_created_at")

    op.drop_table("jobs")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedules_account"))

    op.drop_table("schedules")
    op.drop_table("operators")
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_events_job_id"))
        batch_op.drop_index("ix_job_events_at_to_state_task")

    op.drop_table("job_events")
    with op.batch_alter_table("activity_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activity_log_at"))
        batch_op.drop_index(batch_op.f("ix_activity_log_account"))

    op.drop_table("activity_log")
