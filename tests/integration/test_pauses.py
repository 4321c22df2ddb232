"""Pausing and resuming a task or a priority queue: a paused task's jobs stay queued, with no attempt,
until resumed; resuming delivers them. Audited, Administrator-only by default, on both claim paths."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

import sgen_ops
from sgen_ops import AccessDenied, InvalidTransition, ValidationError
from sgen_ops.ledger.store import ActivityEntry, Attempt, Pause
from sgen_ops.runtime import execution
from tests.integration.test_surface_fixtures import add_operators, job_row


def _attempts(hub: sgen_ops.Hub, job_id: int) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).select_from(Attempt).where(Attempt.job_id == job_id)) or 0)


def _entries(hub: sgen_ops.Hub) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).select_from(ActivityEntry)) or 0)


def _waits(hub: sgen_ops.Hub, job_id: int) -> bool:
    row = job_row(hub, job_id)
    return row["state"] == "queued" and row["attempts"] == 0 and _attempts(hub, job_id) == 0


def test_a_paused_tasks_jobs_stay_queued_until_resumed(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    before = hub.enqueue("test.ok", {"n": 0})  # its delivery is already on the queue when the pause comes
    admin.pause_task("test.ok")
    after = hub.enqueue("test.ok", {"n": 1})
    other = hub.enqueue("test.flaky", {"succeed_on": 1})
    hub.work(burst=True)
    assert _waits(hub, before) and _waits(hub, after)
    assert job_row(hub, other)["state"] == "succeeded"
    # Upkeep does not re-send what the pause holds (the refused deliveries are spent).
    assert hub.reconcile() == 0
    hub.work(burst=True)
    assert _waits(hub, before) and _waits(hub, after)

    admin.resume_task("test.ok")
    hub.work(burst=True)
    for job_id in (before, after):
        row = job_row(hub, job_id)
        assert (row["state"], row["attempts"], _attempts(hub, job_id)) == ("succeeded", 1, 1)
    assert hub.reconcile() == 0


def test_a_paused_queue_holds_only_its_priority(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    admin.pause_queue("high")
    high = hub.enqueue("test.ok", {"n": 1}, priority="high")
    normal = hub.enqueue("test.ok", {"n": 2})
    hub.work(burst=True)
    assert _waits(hub, high)
    assert job_row(hub, normal)["state"] == "succeeded"
    # Moved out of the paused queue, it runs.
    admin.update_job(high, priority="low")
    hub.work(burst=True)
    assert job_row(hub, high)["state"] == "succeeded"

    held = hub.enqueue("test.ok", {"n": 3}, priority="high")
    hub.work(burst=True)
    assert _waits(hub, held)
    admin.resume_queue("high")
    hub.work(burst=True)
    assert job_row(hub, held)["state"] == "succeeded"


def test_a_job_held_by_its_task_and_its_queue_waits_for_both(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    admin.pause_task("test.ok")
    admin.pause_queue("low")
    job_id = hub.enqueue("test.ok", priority="low")
    admin.resume_task("test.ok")
    hub.work(burst=True)
    assert _waits(hub, job_id)
    admin.resume_queue("low")
    hub.work(burst=True)
    assert job_row(hub, job_id)["state"] == "succeeded"


@pytest.mark.parametrize("core", [False, True], ids=["hot-path", "core"])
def test_both_claim_paths_refuse_a_paused_job(hub: sgen_ops.Hub, core: bool) -> None:
    assert execution.hot_path(hub.ledger) is not None
    admin = add_operators(hub)["administrator"]
    job_id = hub.enqueue("test.ok")
    rq_id = job_row(hub, job_id)["rq_job_id"]
    claim = execution._claim_core if core else execution.claim
    admin.pause_queue("normal")
    assert claim(hub, job_id, rq_id) is None
    assert _waits(hub, job_id)
    admin.resume_queue("normal")
    fresh = job_row(hub, job_id)["rq_job_id"]
    assert fresh != rq_id  # resuming sent a new delivery; the old one may no longer claim
    assert claim(hub, job_id, rq_id) is None
    ctx = claim(hub, job_id, fresh)
    assert ctx is not None and ctx.attempt == 1


def test_pauses_are_listed_and_audited(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    admin = ops["administrator"]
    admin.pause_task("test.ok")
    admin.pause_queue("low")
    listed = ops["viewer"].paused()
    assert listed[["kind", "name", "paused_by"]].values.tolist() == [
        ["task", "test.ok", "administrator"], ["queue", "low", "administrator"]]
    admin.resume_task("test.ok")
    admin.resume_queue("low")
    assert admin.paused().empty
    log = admin.activity_log()
    assert log["action"].tolist() == ["pause_task", "pause_queue", "resume_task", "resume_queue"]
    assert log["target_type"].tolist() == ["task", "queue", "task", "queue"]
    assert log["change"].tolist()[0] == {"task": "test.ok", "before": {"state": "active"},
                                         "after": {"state": "paused"}}
    assert log["change"].tolist()[3] == {"task": None, "priority": "low", "before": {"state": "paused"},
                                         "after": {"state": "active"}}
    assert admin.verify_audit().ok


def test_bad_input_and_repeats_are_refused_and_nothing_is_recorded(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    entries = _entries(hub)
    with pytest.raises(ValidationError, match=r"unknown task 'no.such'; registered tasks: .*test\.ok"):
        admin.pause_task("no.such")
    with pytest.raises(ValidationError, match=r"registered task name"):
        admin.pause_task(7)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"priority 'urgent' is not valid; allowed: high, normal, low"):
        admin.pause_queue("urgent")
    with pytest.raises(InvalidTransition, match=r"cannot resume_task task test\.ok: it is active"):
        admin.resume_task("test.ok")
    admin.pause_task("test.ok")
    with pytest.raises(InvalidTransition, match=r"cannot pause_task task test\.ok: it is paused"):
        admin.pause_task("test.ok")
    assert admin.paused()["name"].tolist() == ["test.ok"]
    assert _entries(hub) == entries + 1


def test_only_administrators_pause_unless_configured(make_hub: Callable[..., sgen_ops.Hub]) -> None:
    hub = make_hub()
    ops = add_operators(hub)
    for role in ("editor", "viewer"):
        for call in (lambda o: o.pause_task("test.ok"), lambda o: o.resume_task("test.ok"),
                     lambda o: o.pause_queue("high"), lambda o: o.resume_queue("high")):
            with pytest.raises(AccessDenied, match=rf"\({role}\) may not (pause|resume)_(task|queue); "
                                                   r"allowed for: administrator"):
                call(ops[role])
    bound = hub.add_operator("acme-admin", "administrator", account="acme")
    assert bound
    with pytest.raises(AccessDenied, match=r"holds for every account"):
        hub.as_operator("acme-admin").pause_task("test.ok")
    with hub.ledger.read() as session:
        assert session.scalar(select(func.count()).select_from(Pause)) == 0

    configured = make_hub(capabilities={"editor": ["list_jobs", "paused", "pause_task", "resume_task"]})
    configured.add_operator("erin", "editor")
    erin = configured.as_operator("erin")
    erin.pause_task("test.ok")
    assert erin.paused()["name"].tolist() == ["test.ok"]
    erin.resume_task("test.ok")
    with pytest.raises(AccessDenied):
        erin.pause_queue("high")
