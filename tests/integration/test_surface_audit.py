"""The Activity Log as operators produce it: one entry per changed job with its before/after, none for
worker transitions, a hash chain that catches tampering, and appends that never fork under concurrency."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import delete, select, update

import sgen_ops
from sgen_ops.ledger import audit
from sgen_ops.ledger.store import ActivityEntry, Attempt, Job, OperatorNote
from sgen_ops.surface.operations import Operations
from tests.helpers import race, raised
from tests.integration.test_surface_fixtures import Jobs, add_operators, log_entries, running_job


@pytest.fixture
def ops(hub: sgen_ops.Hub) -> dict[str, Operations]:
    return add_operators(hub)


@pytest.fixture
def jobs(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> Jobs:
    return Jobs(hub, ops["administrator"])


def only_entry(hub: sgen_ops.Hub, since: int = 0) -> ActivityEntry:
    entries = [e for e in log_entries(hub) if e.id > since]
    assert len(entries) == 1, [(e.action, e.target_id) for e in entries]
    return entries[0]


def last_id(hub: sgen_ops.Hub) -> int:
    entries = log_entries(hub)
    return entries[-1].id if entries else 0


# (state to start from, the call, expected before, expected after, expected reason); "*" = any value
CASES: dict[str, tuple[str, Callable[[Operations, int], Any], dict[str, Any], dict[str, Any], str | None]] = {
    "rerun": ("failed", lambda o, j: o.rerun(j),
              {"state": "failed", "attempts": 1, "run": 1, "scheduled_for": "*"},
              {"state": "queued", "attempts": 0, "run": 2, "scheduled_for": "*"}, None),
    "cancel": ("queued", lambda o, j: o.cancel(j), {"state": "queued"}, {"state": "cancelled"}, None),
    "retry_now": ("retrying", lambda o, j: o.retry_now(j),
                  {"state": "retrying", "scheduled_for": "*"}, {"state": "retrying", "scheduled_for": "*"}, None),
    "send_to_dead_letter": ("queued", lambda o, j: o.send_to_dead_letter(j, "bad feed"),
                            {"state": "queued", "dead_letter_reason": None},
                            {"state": "dead-letter", "dead_letter_reason": "*"}, "bad feed"),
    "replay": ("dead-letter", lambda o, j: o.replay(j),
               {"state": "dead-letter", "attempts": 2, "run": 1, "scheduled_for": "*"},
               {"state": "queued", "attempts": 0, "run": 2, "scheduled_for": "*"}, None),
    "resolve": ("failed", lambda o, j: o.resolve(j, "refunded by hand"),
                {"state": "failed", "resolution_note": None},
                {"state": "resolved", "resolution_note": "*"}, "refunded by hand"),
    "trigger": ("queued", lambda o, j: o.trigger(j),
                {"state": "queued", "scheduled_for": "*"}, {"state": "queued", "scheduled_for": "*"}, None),
    "update_job": ("queued", lambda o, j: o.update_job(j, priority="low", max_attempts=3),
                   {"state": "queued", "priority": "normal"}, {"state": "queued", "priority": "low"}, None),
}


def matches(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    return actual.keys() == expected.keys() and all(v == "*" or actual[k] == v for k, v in expected.items())


@pytest.mark.parametrize("action", sorted(CASES))
def test_each_write_logs_its_before_and_after(hub: sgen_ops.Hub, ops: Any, jobs: Jobs, action: str) -> None:
    state, call, before, after, reason = CASES[action]
    job_id = jobs.make(state, account="acme")
    mark = last_id(hub)
    call(ops["editor"] if action not in ("send_to_dead_letter", "replay") else ops["administrator"], job_id)
    entry = only_entry(hub, mark)
    assert (entry.action, entry.target_type, entry.target_id, entry.account) == (action, "job", job_id, "acme")
    assert entry.operator in ("editor", "administrator") and entry.at is not None
    assert entry.change["task"] and matches(entry.change["before"], before), entry.change["before"]
    assert matches(entry.change["after"], after), entry.change["after"]
    assert entry.reason is None  # operator-written text is kept as a note; the log holds its reference
    if reason is not None:
        [field] = [f for f in after if f != "state"]
        note_id = entry.change["note_id"]
        assert entry.change["after"][field] == {"note_id": note_id}
        with hub.ledger.read() as session:
            note = session.get(OperatorNote, note_id)
        assert note is not None and (note.text, note.operator, note.field, note.target_id) == (
            reason, entry.operator, field, job_id)
        shown = ops["administrator"].activity_log().iloc[-1]
        assert shown["reason"] == reason and shown["change"]["after"][field] == reason
    else:
        assert "note_id" not in entry.change
    if "scheduled_for" in before:
        assert entry.change["before"]["scheduled_for"] != entry.change["after"]["scheduled_for"]


def test_cancel_of_a_running_job_logs_the_flag(hub: sgen_ops.Hub, ops: Any) -> None:
    with running_job(hub) as job_id:
        ops["editor"].cancel(job_id)
    entry = only_entry(hub)
    assert entry.change["before"] == {"state": "running", "cancel_requested": False}
    assert entry.change["after"] == {"state": "running", "cancel_requested": True}


def test_edit_and_replay_logs_both_jobs(hub: sgen_ops.Hub, ops: Any, jobs: Jobs) -> None:
    job_id = jobs.make("dead-letter")
    new_id = ops["administrator"].edit_and_replay(job_id, {"v": 2})
    by_target = {e.target_id: e for e in log_entries(hub)}
    assert set(by_target) == {job_id, new_id}
    assert by_target[job_id].change["after"] == {"state": "dead-letter", "replayed_as_id": new_id}
    created = by_target[new_id].change
    assert created["before"] is None
    assert created["after"]["payload"] == {"v": 2} and created["after"]["replayed_from_id"] == job_id


@pytest.mark.parametrize("action", ["dismiss", "delete_job", "dismiss_dead_letters", "delete_jobs"])
def test_purges_keep_a_snapshot(hub: sgen_ops.Hub, ops: Any, jobs: Jobs, action: str) -> None:
    job_id = jobs.make("dead-letter", account="acme")
    admin = ops["administrator"]
    {
        "dismiss": lambda: admin.dismiss(job_id),
        "delete_job": lambda: admin.delete_job(job_id),
        "dismiss_dead_letters": lambda: admin.dismiss_dead_letters(),
        "delete_jobs": lambda: admin.delete_jobs(state="dead-letter"),
    }[action]()
    entry = only_entry(hub)
    assert (entry.action, entry.target_id, entry.account, entry.change["after"]) == (action, job_id, "acme", None)
    record = entry.change["before"]
    assert (record["id"], record["task"], record["state"], record["attempts"]) == (job_id, "test.boom",
                                                                                    "dead-letter", 2)
    assert record["last_error_detail"] == "kaboom: the handler broke" and "Traceback" in record["error_log"]
    assert [(a["run"], a["number"], a["exit"]) for a in record["attempt_history"]] == [(1, 1, "failed"),
                                                                                       (1, 2, "failed")]
    assert "rq_job_id" not in record and "search_masked" not in record


def test_worker_transitions_never_write_to_the_log(hub: sgen_ops.Hub, ops: Any) -> None:
    for task, payload in [("test.ok", None), ("test.flaky", {"succeed_on": 2}), ("test.boom", None),
                          ("test.nodl", None), ("test.backoff", None)]:
        hub.enqueue(task, payload)
    hub.work()
    assert log_entries(hub) == []
    job_id = hub.enqueue("test.boom")
    hub.work()
    ops["administrator"].replay(job_id)
    hub.work()  # two more failed attempts and a dead letter, all by the worker
    assert [e.action for e in log_entries(hub)] == ["replay"]


def test_reads_and_refusals_write_nothing(hub: sgen_ops.Hub, ops: Any, jobs: Jobs) -> None:
    job_id = jobs.make("succeeded")
    admin = ops["administrator"]
    admin.list_jobs()
    admin.get_job(job_id)
    admin.throughput()
    admin.activity_log()
    admin.verify_audit()
    ops["editor"].list_jobs(text="x")
    with pytest.raises(sgen_ops.InvalidTransition):
        admin.cancel(job_id)
    with pytest.raises(sgen_ops.AccessDenied):
        ops["viewer"].rerun(job_id)
    assert log_entries(hub) == []


# -- the hash chain -----------------------------------------------------------------------------
def write_some(hub: sgen_ops.Hub, ops: Any, n: int = 5) -> list[int]:
    job_id = hub.enqueue("test.ok", delay=3600)
    for i in range(n):
        ops["editor"].update_job(job_id, max_attempts=i + 2)
    return [e.id for e in log_entries(hub)]


def test_intact_chain_verifies(hub: sgen_ops.Hub, ops: Any) -> None:
    assert ops["administrator"].verify_audit() == audit.VerifyResult(True, 0, None, "the Activity Log is empty")
    ids = write_some(hub, ops)
    result = ops["administrator"].verify_audit()
    assert (result.ok, result.checked, result.first_bad_id) == (True, 5, None)
    assert ids == [1, 2, 3, 4, 5] and result.last_hash == log_entries(hub)[-1].hash
    with pytest.raises(sgen_ops.AccessDenied):
        ops["editor"].verify_audit()


@pytest.mark.parametrize(
    ("tamper", "bad", "words"),
    [
        (update(ActivityEntry).where(ActivityEntry.id == 3).values(operator="someone-else"), 3, "altered"),
        (update(ActivityEntry).where(ActivityEntry.id == 4).values(change={"task": "x"}), 4, "altered"),
        (update(ActivityEntry).where(ActivityEntry.id == 2).values(reason="added later"), 2, "altered"),
        (update(ActivityEntry).where(ActivityEntry.id == 5).values(prev_hash="0" * 64), 5, "does not chain"),
        (delete(ActivityEntry).where(ActivityEntry.id == 3), 3, "removed"),
        (delete(ActivityEntry).where(ActivityEntry.id == 1), 1, "removed"),
    ],
)
def test_tampering_is_caught(hub: sgen_ops.Hub, ops: Any, tamper: Any, bad: int, words: str) -> None:
    write_some(hub, ops)
    with hub.ledger.write() as session:
        session.execute(tamper)
    result = audit.verify(hub.ledger)
    assert (result.ok, result.first_bad_id) == (False, bad)
    assert words in result.message and str(bad) in result.message


def test_removed_entry_with_the_rest_renumbered_is_caught(hub: sgen_ops.Hub, ops: Any) -> None:
    write_some(hub, ops)
    with hub.ledger.write() as session:
        session.execute(delete(ActivityEntry).where(ActivityEntry.id == 2))
        for old in (3, 4, 5):
            session.execute(update(ActivityEntry).where(ActivityEntry.id == old).values(id=old - 1))
    result = audit.verify(hub.ledger)
    assert (result.ok, result.first_bad_id) == (False, 2) and "removed" in result.message


def test_concurrent_appends_never_fork_the_chain(
    hub: sgen_ops.Hub, make_hub: Callable[..., sgen_ops.Hub], ops: Any
) -> None:
    job_id = hub.enqueue("test.ok", delay=3600)
    other = make_hub()
    viewers = [hub.as_operator("viewer"), other.as_operator("viewer")]

    def view(viewer: Operations) -> None:
        for _ in range(25):
            viewer.get_job(job_id)  # every non-administrator view appends an entry (each hub's view log, batched)

    assert raised(race(*(partial(view, v) for v in viewers))) == []
    other.view_log.flush()  # the other process's views: appended within FLUSH_SECONDS, here at once
    entries = log_entries(hub)
    assert [e.id for e in entries] == list(range(1, 51))
    assert len({e.prev_hash for e in entries}) == 50
    assert audit.verify(hub.ledger).ok


def test_bulk_purge_snapshots_each_job_with_its_own_history(hub: sgen_ops.Hub, ops: Any) -> None:
    # Batches of two over five dead letters: the attempt histories are read for a batch at once, and the jobs
    # and their attempts deleted together, so a history filed under the wrong job would show here.
    admin = ops["administrator"]
    dead = [hub.enqueue("test.boom", {"n": n}) for n in range(5)]
    kept = hub.enqueue("test.ok", {"n": "kept"})
    hub.work()
    admin.replay(dead[2])
    hub.work()  # dead[2] dies again: four attempts over two runs
    since = last_id(hub)
    assert admin.dismiss_dead_letters(task="test.boom", batch_size=2) == 5
    entries = {e.target_id: e for e in log_entries(hub) if e.id > since}
    assert sorted(entries) == sorted(dead)
    for n, job_id in enumerate(dead):
        record = entries[job_id].change["before"]
        assert (record["id"], record["payload"]) == (job_id, {"n": n})
        runs = [(a["run"], a["number"]) for a in record["attempt_history"]]
        assert runs == ([(1, 1), (1, 2), (2, 1), (2, 2)] if n == 2 else [(1, 1), (1, 2)])
    with hub.ledger.read() as session:
        left = session.execute(select(Attempt.job_id)).scalars().all()
        jobs_left = session.execute(select(Job.id).where(Job.id.in_([*dead, kept]))).scalars().all()
    assert set(left).isdisjoint(dead) and kept in left
    assert jobs_left == [kept]
    assert admin.verify_audit().ok
