"""Alembic environment: runs on the connection the Ledger hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from sgen_ops.ledger.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `sgen-ops db upgrade` or Ledger.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
