"""Migration 0010 from the revision before it: a ledger with jobs at 0008 gains the page-cost indexes (and
loses the two of 0002 they replace), answers the same totals and dead-letter groups, and its counts then
read the new indexes; down again, the ledger is as it was."""

from __future__ import annotations

from alembic import command

import sgen_ops
from sgen_ops.ledger.store.db import alembic_config

from ..helpers import bring_to
from .test_surface_fixtures import Jobs, add_operators

ADDED = {
    "ix_jobs_account_state_created_at", "ix_jobs_state_error_code_created_at", "ix_jobs_account_task_created_at",
    "ix_jobs_account_error_code_created_at", "ix_jobs_kept", "ix_jobs_kept_account", "ix_jobs_kept_task",
    "ix_jobs_kept_error_code", "ix_jobs_kept_created_at", "ix_jobs_kept_own", "ix_jobs_dead_letters",
    "ix_jobs_account_dead_letters",
}
GONE = {"ix_jobs_kept_updated_at", "ix_jobs_kept_expiry"}


def _indexes(hub: sgen_ops.Hub) -> set[str]:
    """The names of the jobs table's indexes (SQLAlchemy's reflection leaves expression indexes out)."""
    sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
           if hub.ledger.engine.dialect.name == "sqlite"
           else "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs' AND schemaname = current_schema()")
    with hub.ledger.engine.connect() as conn:
        return set(conn.exec_driver_sql(sql).scalars())


def _migrate(hub: sgen_ops.Hub, revision: str) -> None:
    with hub.ledger.engine.begin() as conn:
        if revision == "head":
            command.upgrade(alembic_config(conn), revision)
        else:
            command.downgrade(alembic_config(conn), revision)


def test_0010_from_0008_with_jobs_in_every_state(hub: sgen_ops.Hub) -> None:
    everyone = add_operators(hub)
    admin, acme = everyone["administrator"], add_operators(hub, account="acme", suffix="-acme")["viewer"]
    _migrate(hub, "0008")
    assert hub.ledger.current_revision() == "0008"
    assert not ADDED & _indexes(hub) and _indexes(hub) >= GONE
    jobs = Jobs(hub, admin)
    for account in ("acme", "globex"):
        jobs.make_all(account=account)
        jobs.make("dead-letter", account=account)
    own = hub.book.prepare("test.ok", {"n": 1}, account="acme", retention_days=1.0)
    [own_id] = hub.book.create([own])
    bring_to(hub, own_id, "succeeded")

    def answers() -> list[object]:
        return [
            *((ops.list_jobs(**f).total, [r.id for r in ops.list_jobs(**f).items])
              for ops in (admin, acme) for f in ({}, {"state": "dead-letter"}, {"task": "test.ok"},
                                                 {"error_code": "ValueError"}, {"state": "succeeded"})),
            admin.dead_letter_groups()[["task", "error_code", "count"]].to_dict("records"),
            acme.dead_letter_groups()[["task", "error_code", "count"]].to_dict("records"),
        ]

    before = answers()
    _migrate(hub, "head")
    assert _indexes(hub) >= ADDED and not GONE & _indexes(hub)
    assert answers() == before
    assert admin.list_jobs().total > 0 and admin.list_jobs().total_is_exact
    _migrate(hub, "0008")
    assert not ADDED & _indexes(hub) and _indexes(hub) >= GONE
    assert answers() == before
    hub.ledger.upgrade()
