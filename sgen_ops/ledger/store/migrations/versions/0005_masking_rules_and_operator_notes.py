"""masking rules in the ledger, operator notes apart from the Activity Log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

``task_rules``: each task's sensitive paths, written by every process that registers the task, so that a
process that never imported it (a notebook, the API server) masks it as the worker does.

``operator_notes``: resolve notes and dead-letter reasons, stored as written. Activity Log entries refer
to them by id instead of holding the text: the log can never be edited, and free text may quote a secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sgen_ops.ledger.store.types import JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_rules",
        sa.Column("task", sa.String(200), primary_key=True),
        sa.Column("sensitive", JSONType, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task", name="pk_task_rules"),
    )
    op.create_table(
        "operator_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_type", sa.String(20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(50), nullable=False),
        sa.Column("operator", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_operator_notes"),
    )
    op.create_index("ix_operator_notes_target", "operator_notes", ["target_type", "target_id", "field"])


def downgrade() -> None:
    op.drop_index("ix_operator_notes_target", table_name="operator_notes")
    op.drop_table("operator_notes")
    op.drop_table("task_rules")
