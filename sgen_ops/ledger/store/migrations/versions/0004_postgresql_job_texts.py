"""searched text of jobs in its own table on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

PostgreSQL only (a no-op elsewhere). Migration 0002 put pg_trgm GIN indexes on three columns of ``jobs``.
Every change of a job's state is then an update PostgreSQL cannot make in place (``state`` and
``updated_at`` are indexed), so it added the row's trigrams to all three GIN indexes again, though the
text had not changed: requeueing 10,000 jobs took 2.6 s with them and 0.3 s without (measured on the
million-job benchmark ledger). The workers pay the same on every claim and every outcome.

Now the searched texts live in ``job_texts`` (one row per job, keyed by its id), with the trigram indexes:

* ``payload`` (the payload's JSON text, as ``CAST(payload AS TEXT)`` gives it), ``last_error_detail``
  and ``search_masked`` (the masked copy non-administrators search), copied from ``jobs``;
* kept in step by triggers on ``jobs``: a statement-level trigger after INSERT and after DELETE (one
  INSERT ... SELECT or DELETE per statement, from its transition table), a row-level trigger after
  an UPDATE OF those three columns only, when one of them really changed, so state changes cost nothing,
  and one after TRUNCATE (which fires no delete triggers);
* no foreign key: it would be checked on every enqueue and cascade row by row on every purge.

``query.text_condition`` searches ``jobs.id IN (SELECT job_id FROM job_texts WHERE ... ILIKE ...)``.
Without pg_trgm the table is made all the same, without its indexes (search then scans it).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("sgen_ops.migrations")

TABLE = "job_texts"
# Column of job_texts -> the expression of jobs it copies.
COPIED = {
    "payload": "CAST({row}.payload AS TEXT)",
    "last_error_detail": "{row}.last_error_detail",
    "search_masked": "{row}.search_masked",
}
# Migration 0002's indexes on jobs, and the expressions they were on.
OLD_INDEXES = {
    "ix_jobs_payload_trgm": "(CAST(payload AS TEXT))",
    "ix_jobs_last_error_detail_trgm": "last_error_detail",
    "ix_jobs_search_masked_trgm": "search_masked",
}
FUNCTIONS = ("sgen_job_texts_insert", "sgen_job_texts_delete", "sgen_job_texts_update", "sgen_job_texts_truncate")
TRIGGERS = ("job_texts_after_insert", "job_texts_after_delete", "job_texts_after_update", "job_texts_after_truncate")


def _select(row: str) -> str:
    return ", ".join(expression.format(row=row) for expression in COPIED.values())


def _trigram_schema() -> str | None:
    found = op.get_bind().execute(sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_trgm'")).scalar()
    return None if found is None else str(found)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    columns = ", ".join(COPIED)
    op.execute(
        f"CREATE TABLE {TABLE} (job_id integer PRIMARY KEY, payload text, last_error_detail text, "
        "search_masked text)"
    )
    op.execute(f"INSERT INTO {TABLE} (job_id, {columns}) SELECT jobs.id, {_select('jobs')} FROM jobs")
    for name in OLD_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    schema = _trigram_schema()
    if schema is None:
        log.warning("pg_trgm is not installed: text search will scan the %s table", TABLE)
    else:
        for column in COPIED:
            op.execute(f'CREATE INDEX ix_{TABLE}_{column}_trgm ON {TABLE} USING gin ({column} "{schema}".gin_trgm_ops)')
    changed = " OR ".join(f"old.{c} IS DISTINCT FROM new.{c}" for c in ("payload", "last_error_detail",
                                                                         "search_masked"))
    copied_new = ", ".join(f"{c} = {e.format(row='new')}" for c, e in COPIED.items())
    op.execute(f"""
        CREATE FUNCTION {FUNCTIONS[0]}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {TABLE} (job_id, {columns}) SELECT new_rows.id, {_select('new_rows')} FROM new_rows;
            RETURN NULL;
        END $$""")
    op.execute(f"""
        CREATE FUNCTION {FUNCTIONS[1]}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM {TABLE} WHERE job_id IN (SELECT old_rows.id FROM old_rows);
            RETURN NULL;
        END $$""")
    op.execute(f"""
        CREATE FUNCTION {FUNCTIONS[2]}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE {TABLE} SET {copied_new} WHERE job_id = new.id;
            RETURN NULL;
        END $$""")
    op.execute(f"""
        CREATE FUNCTION {FUNCTIONS[3]}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            TRUNCATE {TABLE};
            RETURN NULL;
        END $$""")
    op.execute(f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTIONS[0]}()")
    op.execute(f"CREATE TRIGGER {TRIGGERS[1]} AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTIONS[1]}()")
    op.execute(f"CREATE TRIGGER {TRIGGERS[2]} AFTER UPDATE OF {columns} ON jobs FOR EACH ROW "
               f"WHEN ({changed}) EXECUTE FUNCTION {FUNCTIONS[2]}()")
    op.execute(f"CREATE TRIGGER {TRIGGERS[3]} AFTER TRUNCATE ON jobs FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTIONS[3]}()")
    op.execute(f"ANALYZE {TABLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON jobs")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.execute(f"DROP TABLE IF EXISTS {TABLE}")
    schema = _trigram_schema()
    if schema is not None:
        for name, expression in OLD_INDEXES.items():
            op.execute(f'CREATE INDEX {name} ON jobs USING gin ({expression} "{schema}".gin_trgm_ops)')
