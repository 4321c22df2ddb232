"""Job state changes through one place: a trigger on jobs.state writes every job_events row

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

``job_state_paths`` lists every state change a write may make with the events it records (the state
machine of ``sgen_ops.core.states`` as it stood at this revision, one row per step). A trigger on the insert of
a job records its first state, and a trigger on a change of ``jobs.state`` looks the change up: listed, it
writes its events at the row's ``updated_at``; not listed, the write is refused. No caller inserts a state
event itself, so none can change a state without its event.

On PostgreSQL the first states of a whole statement's inserts are recorded at once (a statement trigger
with its transition table: one INSERT for a COPY of many jobs); a state change is a row trigger that
fires only when the state differs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLE = "job_state_paths"
PATH_COLUMNS = ("from_state", "to_state", "step", "step_from", "step_to")
# Frozen here as the state machine stood at this revision (sgen_ops.core.states.state_paths()).
PATHS = [
    ('queued', 'cancelled', 1, 'queued', 'cancelled'),
    ('queued', 'dead-letter', 1, 'queued', 'dead-letter'),
    ('queued', 'running', 1, 'queued', 'running'),
    ('running', 'cancelled', 1, 'running', 'cancelled'),
    ('running', 'failed', 1, 'running', 'failed'),
    ('running', 'succeeded', 1, 'running', 'succeeded'),
    ('retrying', 'cancelled', 1, 'retrying', 'cancelled'),
    ('retrying', 'dead-letter', 1, 'retrying', 'dead-letter'),
    ('retrying', 'queued', 1, 'retrying', 'queued'),
    ('retrying', 'resolved', 1, 'retrying', 'resolved'),
    ('succeeded', 'queued', 1, 'succeeded', 'queued'),
    ('failed', 'dead-letter', 1, 'failed', 'dead-letter'),
    ('failed', 'queued', 1, 'failed', 'queued'),
    ('failed', 'resolved', 1, 'failed', 'resolved'),
    ('failed', 'retrying', 1, 'failed', 'retrying'),
    ('dead-letter', 'queued', 1, 'dead-letter', 'queued'),
    ('dead-letter', 'resolved', 1, 'dead-letter', 'resolved'),
    ('retrying', 'running', 1, 'retrying', 'queued'),
    ('retrying', 'running', 2, 'queued', 'running'),
    ('running', 'retrying', 1, 'running', 'failed'),
    ('running', 'retrying', 2, 'failed', 'retrying'),
    ('running', 'dead-letter', 1, 'running', 'failed'),
    ('running', 'dead-letter', 2, 'failed', 'dead-letter'),
]
REFUSED = "sgen-ops: the state machine does not allow this state change"
EVENT_COLUMNS = "job_id, task, account, from_state, to_state, at"
TRIGGERS = ("jobs_state_event_after_insert", "jobs_state_event_after_update")
PG_FUNCTIONS = ("jobs_state_event_first", "jobs_state_event_change")
STEPS = (
    f"SELECT new.id, new.task, new.account, p.step_from, p.step_to, new.updated_at FROM {TABLE} AS p "
    "WHERE p.from_state = old.state AND p.to_state = new.state ORDER BY p.step"
)


def upgrade() -> None:
    paths = op.create_table(
        TABLE,
        sa.Column("from_state", sa.String(20), nullable=False),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_from", sa.String(20), nullable=False),
        sa.Column("step_to", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("from_state", "to_state", "step"),
    )
    op.bulk_insert(paths, [dict(zip(PATH_COLUMNS, row, strict=True)) for row in PATHS])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {PG_FUNCTIONS[0]}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO job_events ({EVENT_COLUMNS})
                SELECT n.id, n.task, n.account, NULL, n.state, n.created_at FROM new_rows AS n ORDER BY n.id;
                RETURN NULL;
            END $$""")
        op.execute(f"""
            CREATE FUNCTION {PG_FUNCTIONS[1]}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO job_events ({EVENT_COLUMNS}) {STEPS};
                IF NOT FOUND THEN
                    RAISE EXCEPTION '{REFUSED}: % -> % (job %)', old.state, new.state, new.id
                        USING ERRCODE = 'check_violation';
                END IF;
                RETURN NULL;
            END $$""")
        op.execute(f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTIONS[0]}()")
        op.execute(f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE OF state ON jobs FOR EACH ROW "
                   f"WHEN (old.state IS DISTINCT FROM new.state) EXECUTE FUNCTION {PG_FUNCTIONS[1]}()")
        return
    first = (f"INSERT INTO job_events ({EVENT_COLUMNS}) "
             "VALUES (new.id, new.task, new.account, NULL, new.state, new.created_at);")
    refuse = (f"SELECT RAISE(ABORT, '{REFUSED}') WHERE NOT EXISTS "
              f"(SELECT 1 FROM {TABLE} AS p WHERE p.from_state = old.state AND p.to_state = new.state);")
    op.execute(f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON jobs BEGIN {first} END")
    op.execute(f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE OF state ON jobs WHEN old.state IS NOT new.state "
               f"BEGIN {refuse} INSERT INTO job_events ({EVENT_COLUMNS}) {STEPS}; END")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON jobs" if postgresql else ""))
    if postgresql:
        for function in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table(TABLE)
