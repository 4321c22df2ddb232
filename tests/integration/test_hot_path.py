"""The worker's fixed-SQL hot path (SQLite, PostgreSQL) against the Core path it replaces: the same rows,
the same events, the same compare-and-set; and its own connection's life (fork, dispose, lost link)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Attempt, Job, JobEvent
from sgen_ops.runtime import execution

from ..helpers import job_row


def _claim_and_stop(hub: sgen_ops.Hub, job_id: int, *, core: bool, outcome: str = "succeeded") -> dict[str, Any]:
    rq_id = job_row(hub, job_id).rq_job_id
    ctx = (execution._claim_core if core else execution.claim)(hub, job_id, rq_id)
    assert ctx is not None
    stop = execution._record_stop_core if core else execution._record_stop
    return stop(hub, ctx, outcome)


def _trace(hub: sgen_ops.Hub, job_id: int) -> dict[str, Any]:
    """What a claim and a record leave behind, without ids, times and worker names."""
    with hub.ledger.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        events = [(e.from_state, e.to_state, e.task, e.account)
                  for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]
        attempts = [(a.run, a.number, a.exit, a.error_code, a.finished_at is not None, a.ready_at is not None,
                     a.worker is not None)
                    for a in session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.id))]
        row = (job.state, job.attempts, job.run, job.lease_until is None, job.worker is not None)
    return {"row": row, "events": events, "attempts": attempts}


def test_the_hot_path_is_used_on_the_tested_backends(hub: sgen_ops.Hub) -> None:
    assert execution.hot_path(hub.ledger) is not None


@pytest.mark.parametrize("outcome", ["succeeded", "cancelled"])
def test_hot_path_writes_what_the_core_path_writes(hub: sgen_ops.Hub, outcome: str) -> None:
    fast, core = (hub.enqueue("test.ok", {"n": i}, account="acme") for i in range(2))
    assert _claim_and_stop(hub, fast, core=False, outcome=outcome)["state"] == outcome
    assert _claim_and_stop(hub, core, core=True, outcome=outcome)["state"] == outcome
    assert _trace(hub, fast) == _trace(hub, core)


def test_a_retrying_job_is_claimed_through_queued_on_both_paths(hub: sgen_ops.Hub) -> None:
    ids = [hub.enqueue("test.ok", {"n": i}) for i in range(2)]
    with hub.ledger.write() as session:
        for job_id in ids:
            job = session.get(Job, job_id)
            assert job is not None
            # Each move written on its own: the ledger records each row change, in order.
            for state in ("running", "failed", "retrying"):
                hub.book.move(job, state, utcnow())
                job.attempts = 1
                session.flush()
            hub.book.next_delivery(job)
    for job_id, core in zip(ids, (False, True), strict=True):
        _claim_and_stop(hub, job_id, core=core)
    fast, slow = (_trace(hub, i) for i in ids)
    assert fast == slow
    assert fast["events"][-3:] == [("retrying", "queued", "test.ok", None), ("queued", "running", "test.ok", None),
                                   ("running", "succeeded", "test.ok", None)]
    assert fast["row"][:2] == ("succeeded", 2)


def test_a_stale_delivery_or_a_cancelled_job_is_not_claimed(hub: sgen_ops.Hub) -> None:
    job_id = hub.enqueue("test.ok")
    rq_id = job_row(hub, job_id).rq_job_id
    assert execution.claim(hub, job_id, "someone-else") is None
    assert execution.claim(hub, job_id, None) is None
    assert execution.claim(hub, 10**9, rq_id) is None
    with hub.ledger.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    assert execution.claim(hub, job_id, rq_id) is None
    assert job_row(hub, job_id).state == "queued" and job_row(hub, job_id).attempts == 0
    with hub.ledger.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=False))
    ctx = execution.claim(hub, job_id, rq_id)
    assert ctx is not None and ctx.attempt == 1
    # The same delivery again: the job is running now, the compare-and-set refuses it.
    assert execution.claim(hub, job_id, rq_id) is None


def test_a_record_after_the_attempt_lost_its_lease_is_superseded(hub: sgen_ops.Hub) -> None:
    job_id = hub.enqueue("test.ok")
    ctx = execution.claim(hub, job_id, job_row(hub, job_id).rq_job_id)
    assert ctx is not None
    with hub.ledger.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            lease_until=utcnow() - timedelta(seconds=1)))
    assert hub.recover_lost() == 1
    assert execution._record_stop(hub, ctx, "succeeded") == {"job_id": job_id, "outcome": "superseded"}
    assert job_row(hub, job_id).state == "retrying"
    with hub.ledger.read() as session:
        assert session.scalar(select(Attempt.exit).where(Attempt.job_id == job_id)) == "worker-lost"


def test_a_dropped_connection_is_replaced(hub: sgen_ops.Hub) -> None:
    first = hub.enqueue("test.ok")
    _claim_and_stop(hub, first, core=False)
    fast = execution.hot_path(hub.ledger)
    assert fast is not None and fast._fairy is not None
    fast._fairy.dbapi_connection.close()  # the server went away, say
    second = hub.enqueue("test.ok")
    assert _claim_and_stop(hub, second, core=False)["state"] == "succeeded"
    assert job_row(hub, second).attempts == 1


def test_disposing_the_engine_closes_the_hot_path_connection(hub: sgen_ops.Hub) -> None:
    job_id = hub.enqueue("test.ok")
    _claim_and_stop(hub, job_id, core=False)
    fast = execution.hot_path(hub.ledger)
    assert fast is not None and fast._fairy is not None
    hub.ledger.engine.dispose()
    assert fast._fairy is None
    other = hub.enqueue("test.ok")
    assert _claim_and_stop(hub, other, core=False)["state"] == "succeeded"


def test_a_forked_child_leaves_the_parents_connection_alone(hub: sgen_ops.Hub) -> None:
    job_id = hub.enqueue("test.ok")
    _claim_and_stop(hub, job_id, core=False)
    fast = execution.hot_path(hub.ledger)
    assert fast is not None
    parents = fast._fairy
    fast._pid = -1  # as a fork child sees it: another process's connection
    second = hub.enqueue("test.ok")
    assert _claim_and_stop(hub, second, core=False)["state"] == "succeeded"
    assert fast._fairy is not parents and parents in execution._INHERITED
    execution._INHERITED.remove(parents)
    parents.invalidate()
