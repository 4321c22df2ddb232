"""One state-change mechanism: the ledger's trigger on jobs.state records every change the state machine
allows, with its time, and refuses every other; no path of the code writes an event itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

import sgen_ops
from sgen_ops.core.states import THROUGH, TRANSITIONS, WAITING, State, state_paths
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Job, JobEvent
from sgen_ops.runtime import execution

from ..helpers import bring_to, job_row

ALLOWED = {(src, dst) for src, targets in TRANSITIONS.items() for dst in targets}
FORBIDDEN = [(src, dst) for src in State for dst in State if src != dst and (src, dst) not in ALLOWED
             and (src, dst) not in THROUGH]


def _events(hub: sgen_ops.Hub, job_id: int) -> list[tuple[str | None, str, str, str | None, object]]:
    with hub.ledger.read() as session:
        return [(e.from_state, e.to_state, e.task, e.account, e.at)
                for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]


def _job_at(hub: sgen_ops.Hub, state: State) -> int:
    """A job brought to ``state`` one move (one row write) at a time."""
    job_id = hub.enqueue("test.ok", account="acme", delay=3600)
    bring_to(hub, job_id, state)
    assert job_row(hub, job_id).state == state
    return job_id


def test_the_ledger_holds_the_state_machine_of_states_py(hub: sgen_ops.Hub) -> None:
    with hub.ledger.read() as session:
        rows = session.execute(text(
            "SELECT from_state, to_state, step, step_from, step_to FROM job_state_paths")).all()
    assert sorted(tuple(r) for r in rows) == sorted(state_paths())


def test_a_new_job_records_its_first_state(hub: sgen_ops.Hub) -> None:
    one = hub.enqueue("test.ok", account="acme")
    many = hub.enqueue_many("test.ok", [{"i": i} for i in range(3)], account="acme")
    for job_id in (one, *many):
        [(src, dst, task, account, at)] = _events(hub, job_id)
        assert (src, dst, task, account) == (None, "queued", "test.ok", "acme")
        assert at == job_row(hub, job_id).created_at


@pytest.mark.parametrize(("src", "dst"), sorted(ALLOWED), ids=lambda s: str(s))
@pytest.mark.parametrize("how", ["move", "sql"])
def test_every_allowed_change_records_one_event_at_its_time(hub: sgen_ops.Hub, src: State, dst: State,
                                                           how: str) -> None:
    job_id = _job_at(hub, src)
    before = _events(hub, job_id)
    at = utcnow() + timedelta(seconds=5)
    with hub.ledger.write() as session:
        if how == "move":
            job = session.get(Job, job_id)
            assert job is not None
            hub.book.move(job, dst, at)
        else:  # a caller writing SQL of its own gets its event all the same
            session.execute(text("UPDATE jobs SET state = :s WHERE id = :id"), {"s": dst.value, "id": job_id})
            session.execute(Job.__table__.update().where(Job.id == job_id).values(updated_at=at))
    after = _events(hub, job_id)
    assert after[:-1] == before
    src_, dst_, task, account, when = after[-1]
    assert (src_, dst_, task, account) == (src.value, dst.value, "test.ok", "acme")
    if how == "move":
        assert when == at


@pytest.mark.parametrize(("src", "dst"), sorted(THROUGH), ids=lambda s: str(s))
def test_a_change_through_an_intermediate_state_records_both_steps(hub: sgen_ops.Hub, src: State,
                                                                  dst: State) -> None:
    job_id = _job_at(hub, src)
    before = _events(hub, job_id)
    at = utcnow()
    with hub.ledger.write() as session:
        job = session.get(Job, job_id)
        assert job is not None
        # Two moves before one write, as a failed attempt's decision makes them.
        hub.book.move(job, THROUGH[(src, dst)], at)
        hub.book.move(job, dst, at)
    via = THROUGH[(src, dst)].value
    assert [e[:2] for e in _events(hub, job_id)[len(before):]] == [(src.value, via), (via, dst.value)]


@pytest.mark.parametrize(("src", "dst"), FORBIDDEN, ids=lambda s: str(s))
def test_every_other_change_is_refused_by_the_ledger(hub: sgen_ops.Hub, src: State, dst: State) -> None:
    job_id = _job_at(hub, src)
    before = _events(hub, job_id)
    with pytest.raises(IntegrityError, match="state machine does not allow"), hub.ledger.write() as session:
        session.execute(text("UPDATE jobs SET state = :s WHERE id = :id"), {"s": dst.value, "id": job_id})
    assert job_row(hub, job_id).state == src
    assert _events(hub, job_id) == before


@pytest.mark.parametrize("core", [False, True], ids=["hot-path", "core"])
@pytest.mark.parametrize("waiting", sorted(WAITING), ids=lambda s: str(s))
def test_the_worker_paths_record_through_the_trigger(hub: sgen_ops.Hub, core: bool, waiting: State) -> None:
    """Claim and record on both worker paths, from either waiting state; and the cancel flag: a running
    job whose operator cancelled it ends cancelled when its handler returns."""
    job_id = _job_at(hub, waiting)
    with hub.ledger.write() as session:
        job = session.get(Job, job_id)
        assert job is not None
        hub.book.next_delivery(job)
    rq_id = job_row(hub, job_id).rq_job_id
    ctx = (execution._claim_core if core else execution.claim)(hub, job_id, rq_id)
    assert ctx is not None
    hub.add_operator("canceller", "administrator")
    hub.as_operator("canceller").cancel(job_id)
    assert job_row(hub, job_id).cancel_requested
    stop = execution._record_stop_core if core else execution._record_stop
    assert stop(hub, ctx, "succeeded")["state"] == "cancelled"
    claim_steps = [("queued", "running")]
    if waiting == State.RETRYING:
        claim_steps.insert(0, ("retrying", "queued"))
    tail = [e[:2] for e in _events(hub, job_id)][-len(claim_steps) - 1:]
    assert tail == [*claim_steps, ("running", "cancelled")]
