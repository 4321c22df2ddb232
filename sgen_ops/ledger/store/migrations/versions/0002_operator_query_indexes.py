"""indexes for the operator queries at a million jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

* ``ix_jobs_state_task_created_at``: list by state and task, newest first, and its exact count.
* ``ix_jobs_kept_updated_at`` and ``ix_jobs_kept_expiry`` (partial): the succeeded jobs still inside
  their retention window, the part of the default queue view that is not "every job that did not
  succeed"; ``query.list_page`` counts the view as the sum of its three disjoint parts, each answered
  from an index alone. The expiry index is an expression index (``updated_at`` plus the job's own
  ``retention_days``), written in each backend's SQL; other backends do without it.
* PostgreSQL only: pg_trgm GIN indexes on the searched text (payload as text, error detail, and the
  masked copy non-administrators search), so that ``text=`` finds substrings without reading every row.
  The extension is created in ``public`` when it is not installed yet; if it cannot be created the
  trigram indexes are left out (text search still works, by scanning).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("sgen_ops.migrations")

KEPT = "state = 'succeeded' AND retention_days IS NULL"
KEPT_OWN = "state = 'succeeded' AND retention_days IS NOT NULL"
EXPIRY = {
    "sqlite": "julianday(updated_at) + retention_days",
    "postgresql": "(updated_at + retention_days * interval '1 day')",
}
# The searched expressions exactly as ``query`` writes them (ILIKE on each, which pg_trgm's GIN opclass serves).
TRIGRAM = {
    "ix_jobs_payload_trgm": "(CAST(payload AS TEXT))",
    "ix_jobs_last_error_detail_trgm": "last_error_detail",
    "ix_jobs_search_masked_trgm": "search_masked",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_index("ix_jobs_state_task_created_at", "jobs", ["state", "task", "created_at"])
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
    if dialect == "postgresql":
        schema = _trigram_schema()
        if schema is None:
            log.warning("pg_trgm is not available: text search will scan the jobs table")
            return
        for name, expression in TRIGRAM.items():
            op.execute(f'CREATE INDEX {name} ON jobs USING gin ({expression} "{schema}".gin_trgm_ops)')


def _trigram_schema() -> str | None:
    """The schema pg_trgm is installed in, installing it in ``public`` if it is not there yet."""
    bind = op.get_bind()
    found = bind.execute(sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_trgm'")).scalar()
    if found is not None:
        return str(found)
    for statement in ("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public",
                      "CREATE EXTENSION IF NOT EXISTS pg_trgm"):
        try:
            with bind.begin_nested():
                bind.execute(sa.text(statement))
        except sa.exc.DBAPIError as exc:
            log.warning("could not create extension pg_trgm (%s)", exc.orig)
            continue
        return str(bind.execute(sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'")).scalar())
    return None


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for name in TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    if dialect in EXPIRY:
        op.drop_index("ix_jobs_kept_expiry", table_name="jobs")
    op.drop_index("ix_jobs_kept_updated_at", table_name="jobs")
    op.drop_index("ix_jobs_state_task_created_at", table_name="jobs")
