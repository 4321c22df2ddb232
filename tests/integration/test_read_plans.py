"""Every operator read costs a page (docs/totals.md): each statement the views and the API run for a list
(default view, by state, task, error code, date range, deep by keyset), a job's detail, the dead-letter
groups and the state chips' counts is planned by the backend itself (``EXPLAIN``) and must read the history
through indexes only: no scan of a history table, no sort or gathering of every match before the page's
limit. The indexes of migration 0010 must be the ones the counts use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import sgen_ops
from sgen_ops.core.states import ALL_STATES
from sgen_ops.core.times import utcnow
from sgen_ops.ledger import plans

from .test_list_counts import ledger_rows  # noqa: F401 - the fixture: 120 jobs in every state
from .test_surface_fixtures import add_operators


def _plans(hub: sgen_ops.Hub, read: Callable[[], Any]) -> tuple[list[tuple[str, list[str]]], set[str]]:
    """The plan of every statement ``read`` runs, and the indexes they use."""
    engine = hub.ledger.engine
    with plans.captured(engine) as seen:
        read()
    assert seen, "the read ran no statement"
    planned = [(s.sql, plans.explain(engine, s)) for s in seen]
    return planned, set().union(*(plans.indexes_used(p) for _, p in planned))


def _reads(ops: Any, deep_after: int) -> dict[str, Callable[[], Any]]:
    now = utcnow()
    return {
        "default view": lambda: ops.list_jobs(),
        "by state": lambda: ops.list_jobs(state="failed"),
        "dead letters": lambda: ops.list_jobs(state="dead-letter"),
        "by task": lambda: ops.list_jobs(task="test.ok"),
        "by error code": lambda: ops.list_jobs(error_code="timeout"),
        "by date range": lambda: ops.list_jobs(since=now - timedelta(days=3), until=now - timedelta(days=1)),
        "deep, by keyset": lambda: ops.list_jobs(after_id=deep_after),
        "deep dead letters, by keyset": lambda: ops.list_jobs(state="dead-letter", after_id=deep_after),
        "detail": lambda: ops.get_job(deep_after),
        "dead-letter groups": lambda: ops.dead_letter_groups(),
        "state chips": lambda: [ops.list_jobs(state=s, per_page=1).total for s in ALL_STATES],
    }


@pytest.mark.parametrize("who", ["administrator", "editor of one account"])
def test_every_operator_read_uses_indexes_only(hub: sgen_ops.Hub, ledger_rows: list[dict[str, Any]],  # noqa: F811
                                               who: str) -> None:
    ops = (add_operators(hub)["administrator"] if who == "administrator"
           else add_operators(hub, account="acme", suffix="-acme")["editor"])
    deep_after = next(r["id"] for r in ledger_rows if r["account"] == "acme" and r["state"] == "dead-letter")
    dialect = hub.ledger.engine.dialect.name
    used: dict[str, set[str]] = {}
    for name, read in _reads(ops, deep_after).items():
        planned, used[name] = _plans(hub, read)
        wrong = [(sql, steps, plans.history_reads(steps, dialect, sql)) for sql, steps in planned
                 if plans.history_reads(steps, dialect, sql)]
        assert not wrong, f"{name} ({who}) reads the history: {wrong}"
    if dialect != "sqlite":
        return  # PostgreSQL weighs indexes by the table's size: on a test's few rows any index will do
    account = who != "administrator"
    # The counts come from the indexes made for them (SQLite chooses by the WHERE terms alone).
    assert ("ix_jobs_account_state_created_at" if account else "ix_jobs_state_created_at") in used["by state"]
    assert ("ix_jobs_account_dead_letters" if account else "ix_jobs_dead_letters") in used["dead-letter groups"]
    assert "ix_jobs_state_error_code_created_at" in used["by error code"] or (
        account and "ix_jobs_account_state_created_at" in used["by error code"])
    assert {"pk_jobs", "rowid"} & used["detail"]
    if account:
        assert "ix_jobs_account_state_created_at" in used["default view"]


def test_a_large_view_is_counted_from_the_succeeded_jobs_index(hub: sgen_ops.Hub) -> None:
    """Past the unfinished jobs, the default view's count reads the partial index of the succeeded jobs
    inside the retention window: for every account, one account, one task, one error code (SQLite, whose
    choice does not depend on how many rows there are; bench/queries.py records PostgreSQL's at scale)."""
    if hub.ledger.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL weighs indexes by the table's size")
    admin = add_operators(hub)["administrator"]
    ids = hub.enqueue_many("test.ok", [{"n": i} for i in range(3)], account="acme", delay=3600)
    from ..helpers import bring_to

    for job_id in ids:
        bring_to(hub, job_id, "succeeded")
    for ops, filters, index in (
        (admin, {}, "ix_jobs_kept"),
        (admin.within("acme"), {}, "ix_jobs_kept_account"),
        (admin, {"task": "test.ok"}, "ix_jobs_kept_task"),
        (admin, {"error_code": "timeout"}, "ix_jobs_kept_error_code"),
    ):
        planned, used = _plans(hub, lambda ops=ops, filters=filters: ops.list_jobs(**filters))
        assert index in used, (filters, planned)
        dialect = hub.ledger.engine.dialect.name
        assert not [s for sql, s in planned if plans.history_reads(s, dialect, sql)], planned
