"""Paused tasks and priority queues

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

``pauses``: one row per paused task (``kind`` "task") or priority queue (``kind`` "queue"), with when and by
whom. A worker's claim refuses a waiting job of a paused task or queue, so it stays waiting without an
attempt until resumed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import sgen_ops.ledger.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("paused_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("paused_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_pauses"),
    )


def downgrade() -> None:
    op.drop_table("pauses")
