"""API tokens and idempotency keys of the HTTP API

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

``api_tokens``: bearer tokens bound to one operator, stored as their SHA-256 only, with an optional expiry,
the time of revocation and of last use. ``idempotency_keys``: the first answer to a bulk write sent with an
``Idempotency-Key`` header, per operator and key, replayed for 24 hours. Both go with their operator.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sgen_ops.ledger.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name="fk_api_tokens_operator_id_operators", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_operator_id", "api_tokens", ["operator_id"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column(
            "response", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("created_at", sgen_ops.ledger.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name="fk_idempotency_keys_operator_id_operators", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_keys"),
        sa.UniqueConstraint("operator_id", "key", name="uq_idempotency_keys_operator_id_key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_api_tokens_operator_id", table_name="api_tokens")
    op.drop_table("api_tokens")
