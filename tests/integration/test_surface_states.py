"""Each operation against every job state: refused ones change nothing and log nothing; accepted ones
do what the seeds say. Plus bad input, which must be refused before anything is recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

import sgen_ops
from sgen_ops import InvalidTransition, NotFound, ValidationError
from sgen_ops.core.states import ALL_STATES
from sgen_ops.ledger.store import JobEvent
from sgen_ops.surface import operations as surface
from sgen_ops.surface.operations import Operations
from tests.integration.test_surface_fixtures import (
    Jobs,
    add_operators,
    job_row,
    ledger_state,
    log_entries,
    running_job,
)

ANY_BUT_RUNNING = set(ALL_STATES) - {"running"}

# operation -> (states the seeds let it act on, the call), written out independently of the code.
ACCEPTS: dict[str, tuple[set[str], Callable[[Operations, int], Any]]] = {
    "rerun": ({"failed", "succeeded", "dead-letter"}, lambda ops, j: ops.rerun(j)),
    "cancel": ({"queued", "retrying", "running"}, lambda ops, j: ops.cancel(j)),
    "retry_now": ({"retrying"}, lambda ops, j: ops.retry_now(j)),
    "send_to_dead_letter": ({"queued", "retrying", "failed"}, lambda ops, j: ops.send_to_dead_letter(j, "why")),
    "replay": ({"dead-letter"}, lambda ops, j: ops.replay(j)),
    "edit_and_replay": ({"dead-letter"}, lambda ops, j: ops.edit_and_replay(j, {"edited": 1})),
    "dismiss": ({"dead-letter"}, lambda ops, j: ops.dismiss(j)),
    "resolve": ({"failed", "retrying", "dead-letter"}, lambda ops, j: ops.resolve(j, "done by hand")),
    "trigger": ({"queued", "retrying"}, lambda ops, j: ops.trigger(j)),
    "update_job": ({"queued", "retrying"}, lambda ops, j: ops.update_job(j, max_attempts=5)),
    "delete_job": (ANY_BUT_RUNNING, lambda ops, j: ops.delete_job(j)),
}


@pytest.mark.parametrize("operation", sorted(ACCEPTS))
def test_operation_against_every_state(hub: sgen_ops.Hub, operation: str) -> None:
    accepted, call = ACCEPTS[operation]
    admin = add_operators(hub)["administrator"]
    ids = Jobs(hub, admin).make_all()
    with running_job(hub) as running:
        ids["running"] = running
        for state in sorted(set(ALL_STATES) - accepted):
            before = ledger_state(hub)
            with pytest.raises(InvalidTransition, match=rf"cannot {operation} job {ids[state]}: it is {state}"):
                call(admin, ids[state])
            assert ledger_state(hub) == before, f"{operation} on a {state} job changed something"
        for state in sorted(accepted):
            entries = ledger_state(hub)["entries"]
            call(admin, ids[state])
            assert ledger_state(hub)["entries"] > entries, f"{operation} on a {state} job was not logged"


# -- what each accepted operation does ------------------------------------------------------------
@pytest.fixture
def ops(hub: sgen_ops.Hub) -> dict[str, Operations]:
    return add_operators(hub)


@pytest.fixture
def jobs(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> Jobs:
    return Jobs(hub, ops["administrator"])


def runs_of(stack: Any, job_id: int) -> list[str]:
    return [r for r in stack.runs() if r.startswith(f"{job_id}:")]


def test_rerun_starts_a_fresh_run_that_the_worker_executes(hub: sgen_ops.Hub, stack: Any, ops: Any) -> None:
    job_id = hub.enqueue("test.flaky", {"succeed_on": 2})
    hub.work()
    assert job_row(hub, job_id)["state"] == "succeeded"
    ops["editor"].rerun(job_id)
    row = job_row(hub, job_id)
    assert (row["state"], row["attempts"], row["run"]) == ("queued", 0, 2)
    hub.work()
    assert runs_of(stack, job_id) == [f"{job_id}:1:1", f"{job_id}:1:2", f"{job_id}:2:1", f"{job_id}:2:2"]
    assert job_row(hub, job_id)["state"] == "succeeded"


def test_cancel_queued_job_never_runs(hub: sgen_ops.Hub, stack: Any, ops: Any) -> None:
    job_id = hub.enqueue("test.ok")
    waiting = hub.transport.waiting()
    ops["editor"].cancel(job_id)
    assert hub.transport.waiting() == waiting - 1  # the delivery was withdrawn
    hub.work()
    assert job_row(hub, job_id)["state"] == "cancelled" and runs_of(stack, job_id) == []


def test_cancel_running_job_stops_it_at_its_next_checkpoint(hub: sgen_ops.Hub, ops: Any) -> None:
    with running_job(hub) as job_id:
        ops["editor"].cancel(job_id)
        assert job_row(hub, job_id)["cancel_requested"] is True
    assert job_row(hub, job_id)["state"] == "cancelled"
    history = ops["administrator"].get_job(job_id).attempt_history
    assert [a.exit for a in history] == ["cancelled"]


def test_cancel_running_job_without_checkpoints_is_marked_cancelled_after(hub: sgen_ops.Hub, ops: Any) -> None:
    with running_job(hub, seconds=2, checkpoints=False) as job_id:
        ops["editor"].cancel(job_id)
        # The task cannot see the flag, so it is still running: a second cancel is refused.
        with pytest.raises(InvalidTransition, match="already requested"):
            ops["editor"].cancel(job_id)
    row = job_row(hub, job_id)
    assert (row["state"], row["attempts"]) == ("cancelled", 1)
    assert [a.exit for a in ops["administrator"].get_job(job_id).attempt_history] == ["succeeded"]


def test_retry_now_brings_the_retry_forward_without_using_budget(hub: sgen_ops.Hub, jobs: Jobs, ops: Any) -> None:
    job_id = jobs.make("retrying")
    before = job_row(hub, job_id)
    assert before["scheduled_for"] > datetime.now(UTC) + timedelta(minutes=30)
    ops["editor"].retry_now(job_id)
    after = job_row(hub, job_id)
    assert after["scheduled_for"] <= datetime.now(UTC)
    assert (after["attempts"], after["max_attempts"], after["state"]) == (1, 3, "retrying")
    assert after["rq_job_id"] != before["rq_job_id"]
    assert hub.transport.exists([before["rq_job_id"], after["rq_job_id"]]) == [False, True]
    hub.work()
    assert job_row(hub, job_id)["attempts"] == 2  # it ran now, as the second of its three attempts
    # Once due, there is nothing to bring forward.
    ops["editor"].update_job(job_id, scheduled_for=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(InvalidTransition, match="already due"):
        ops["editor"].retry_now(job_id)


def test_send_to_dead_letter_stops_the_job_with_its_reason(hub: sgen_ops.Hub, stack: Any, ops: Any) -> None:
    job_id = hub.enqueue("test.ok")
    ops["administrator"].send_to_dead_letter(job_id, reason="  feed is broken  ")
    hub.work()
    detail = ops["administrator"].get_job(job_id)
    assert (detail.state, detail.dead_letter_reason, detail.attempts) == ("dead-letter", "feed is broken", 0)
    assert runs_of(stack, job_id) == []


def test_replay_requeues_with_a_fresh_counter(hub: sgen_ops.Hub, stack: Any, jobs: Jobs, ops: Any) -> None:
    job_id = jobs.make("dead-letter")
    ops["administrator"].replay(job_id)
    row = job_row(hub, job_id)
    assert (row["state"], row["attempts"], row["run"]) == ("queued", 0, 2)
    hub.work()
    assert runs_of(stack, job_id)[-2:] == [f"{job_id}:2:1", f"{job_id}:2:2"]
    assert job_row(hub, job_id)["state"] == "dead-letter"


def test_edit_and_replay_creates_a_linked_new_job(hub: sgen_ops.Hub, stack: Any, ops: Any) -> None:
    job_id = hub.enqueue("test.flaky", {"succeed_on": 9}, account="acme", priority="high")
    hub.work()
    admin = ops["administrator"]
    new_id = admin.edit_and_replay(job_id, {"succeed_on": 1})
    original, new = admin.get_job(job_id), admin.get_job(new_id)
    assert (original.state, original.replayed_as_id, original.payload) == ("dead-letter", new_id, {"succeed_on": 9})
    assert (new.replayed_from_id, new.payload, new.account, new.priority) == (job_id, {"succeed_on": 1}, "acme", "high")
    assert new.originating_user == "administrator" and new.attempts == 0
    hub.work()
    assert admin.get_job(new_id).state == "succeeded"
    with pytest.raises(InvalidTransition, match=f"edited and replayed as job {new_id} and is kept for audit"):
        admin.edit_and_replay(job_id, {"succeed_on": 1})


def test_dismiss_purges_the_job_but_throughput_still_counts_it(hub: sgen_ops.Hub, jobs: Jobs, ops: Any) -> None:
    admin = ops["administrator"]
    job_id = jobs.make("dead-letter")
    admin.dismiss(job_id)
    assert job_row(hub, job_id) == {}
    with pytest.raises(NotFound):
        admin.get_job(job_id)
    assert ledger_state(hub)["attempts"] == 0
    assert admin.throughput().set_index("task").loc["test.boom", "dead_lettered"] == 1
    with pytest.raises(NotFound):
        admin.dismiss(job_id)


def test_resolve_needs_a_note_and_stops_retries(hub: sgen_ops.Hub, stack: Any, jobs: Jobs, ops: Any) -> None:
    job_id = jobs.make("retrying")
    before = ledger_state(hub)
    for note in ("", "   ", None):
        with pytest.raises(ValidationError, match="non-empty note"):
            ops["editor"].resolve(job_id, note)  # type: ignore[arg-type]
    assert ledger_state(hub) == before
    ops["editor"].resolve(job_id, "provider fixed it")
    detail = ops["editor"].get_job(job_id)
    assert (detail.state, detail.resolution_note) == ("resolved", "provider fixed it")
    assert hub.transport.exists([job_row(hub, job_id)["rq_job_id"]]) == [False]


def test_trigger_runs_a_delayed_job_now(hub: sgen_ops.Hub, stack: Any, ops: Any) -> None:
    job_id = hub.enqueue("test.ok", delay=3600)
    hub.work()
    assert runs_of(stack, job_id) == []
    ops["editor"].trigger(job_id)
    hub.work()
    assert runs_of(stack, job_id) == [f"{job_id}:1:1"]


def test_update_job_changes_the_mutable_fields(hub: sgen_ops.Hub, stack: Any, ops: Any) -> None:
    editor = ops["editor"]
    job_id = hub.enqueue("test.ok", {"v": 1}, delay=3600)
    later = datetime.now(UTC) + timedelta(hours=2)
    editor.update_job(job_id, priority="high", max_attempts=7, scheduled_for=later.isoformat())
    ops["administrator"].update_job(job_id, payload={"v": 2})  # what a job runs is the administrators' (issue 26)
    row = job_row(hub, job_id)
    assert (row["priority"], row["max_attempts"], row["payload"], row["scheduled_for"]) == ("high", 7, {"v": 2}, later)
    editor.update_job(job_id, scheduled_for=datetime.now(UTC) - timedelta(seconds=1))
    assert hub.transport.queues["high"].count == 1  # re-delivered, due now, on its new priority's queue
    hub.work()
    assert runs_of(stack, job_id) == [f"{job_id}:1:1"]


def test_update_job_payload_only_before_the_first_attempt(hub: sgen_ops.Hub, jobs: Jobs, ops: Any) -> None:
    job_id = jobs.make("retrying")
    before = ledger_state(hub)
    with pytest.raises(InvalidTransition, match="only before its first attempt"):
        ops["administrator"].update_job(job_id, payload={"x": 1})
    assert ledger_state(hub) == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"state": "succeeded"}, r"state cannot be changed; update_job changes only: priority, scheduled_for"),
        ({"task": "test.boom", "priority": "high"}, r"task cannot be changed"),
        ({}, r"at least one field"),
        ({"priority": "urgent"}, r"priority 'urgent' is not valid; allowed: high, normal, low"),
        ({"max_attempts": 0}, r"max_attempts 0 is not valid"),
        ({"scheduled_for": "tomorrow"}, r"scheduled_for='tomorrow' is not a time"),
        ({"payload": {"when": datetime.now(UTC)}}, r"payload is not JSON-serialisable"),
    ],
)
def test_update_job_bad_input(hub: sgen_ops.Hub, ops: Any, fields: dict[str, Any], message: str) -> None:
    job_id = hub.enqueue("test.ok", delay=3600)
    before = ledger_state(hub)
    with pytest.raises(ValidationError, match=message):
        ops["administrator" if "payload" in fields else "editor"].update_job(job_id, **fields)
    assert ledger_state(hub) == before


def test_edit_and_replay_rejects_a_payload_that_is_not_json(hub: sgen_ops.Hub, jobs: Jobs, ops: Any) -> None:
    job_id = jobs.make("dead-letter")
    before = ledger_state(hub)
    for payload in ({"fn": print}, {"n": float("nan")}, {1, 2}):
        with pytest.raises(ValidationError, match="not JSON-serialisable"):
            ops["administrator"].edit_and_replay(job_id, payload)
    assert ledger_state(hub) == before


def test_delete_job_and_delete_jobs(hub: sgen_ops.Hub, jobs: Jobs, ops: Any) -> None:
    admin = ops["administrator"]
    ids = jobs.make_all()
    extra = jobs.make_all(["failed", "succeeded"])
    admin.delete_job(ids["queued"])
    assert job_row(hub, ids["queued"]) == {}
    before = ledger_state(hub)
    assert admin.delete_jobs(dry_run=True, state=["failed", "succeeded"]) == 4
    assert ledger_state(hub) == before
    with running_job(hub) as running:
        assert admin.delete_jobs(state=["failed", "succeeded", "running"], batch_size=3) == 4
        assert job_row(hub, running)["state"] == "running"
    gone = {ids["failed"], ids["succeeded"], *extra.values()}
    assert all(job_row(hub, i) == {} for i in gone)
    assert job_row(hub, ids["dead-letter"])["state"] == "dead-letter"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({}, r"delete_jobs needs at least one filter"),
        ({"include_old_succeeded": True}, r"delete_jobs needs at least one filter"),
        ({"status": "failed"}, r"unknown filter\(s\) status; allowed filters: state, task"),
        ({"state": "broken"}, r"unknown state\(s\) broken; states are: queued, running"),
        ({"since": "last week"}, r"since='last week' is not a time"),
    ],
)
def test_delete_jobs_bad_filters(hub: sgen_ops.Hub, jobs: Jobs, ops: Any, filters: dict[str, Any], message: str) -> (
    None
):
    jobs.make_all(["failed", "succeeded"])
    before = ledger_state(hub)
    with pytest.raises(ValidationError, match=message):
        ops["administrator"].delete_jobs(**filters)
    assert ledger_state(hub) == before


@pytest.mark.parametrize("id_page", [20_000, 4], ids=["one-page", "pages-of-4"])
def test_bulk_triage_by_task_and_error_code(
    hub: sgen_ops.Hub, stack: Any, ops: Any, id_page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ids are read ahead in pages (of at least a batch), then changed a batch at a time.
    monkeypatch.setattr(surface, "_ID_PAGE", id_page)
    admin = ops["administrator"]
    boom = [hub.enqueue("test.boom") for _ in range(5)]
    secret = hub.enqueue("test.secret", {"credentials": {"api_key": "k-123"}})
    hub.work()
    assert admin.replay_dead_letters(error_code="ValueError", dry_run=True) == 5
    seen: list[tuple[int, int]] = []
    assert admin.replay_dead_letters(task="test.boom", batch_size=2, progress=lambda d, t: seen.append((d, t))) == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert {job_row(hub, i)["state"] for i in boom} == {"queued"}
    with hub.ledger.read() as session:  # each move is in the job's events, which throughput counts
        moves = session.execute(
            select(JobEvent.job_id, JobEvent.from_state, JobEvent.to_state).where(JobEvent.job_id.in_(boom))
            .order_by(JobEvent.id)
        ).all()
    assert {m.job_id: (m.from_state, m.to_state) for m in moves} == dict.fromkeys(boom, ("dead-letter", "queued"))
    assert sum((m.from_state, m.to_state) == ("dead-letter", "queued") for m in moves) == len(boom)
    assert job_row(hub, secret)["state"] == "dead-letter"
    assert [e.action for e in log_entries(hub)] == ["replay_dead_letters"] * 5
    assert admin.dismiss_dead_letters(error_code="auth_failed") == 1
    assert job_row(hub, secret) == {}
    assert admin.dismiss_dead_letters(task="test.boom") == 0  # they are queued now
    with pytest.raises(ValidationError, match="batch_size"):
        admin.replay_dead_letters(batch_size=0)


def test_ids_are_validated(hub: sgen_ops.Hub, ops: Any) -> None:
    for bad in ("7", 7.0, None, True):
        with pytest.raises(ValidationError, match=r"is not valid: .*give a whole number"):
            ops["administrator"].get_job(bad)  # type: ignore[arg-type]
