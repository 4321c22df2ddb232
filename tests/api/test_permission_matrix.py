"""Every operation as every role, against the README's "Who may do what" table (read from the README, so the
two cannot drift): in process and over HTTP (the remote client, whose refusals must come back as 403), on the
backend the suite runs on (SQLite, and PostgreSQL with SGEN_OPS_TEST_DATABASE_URL). A refused call changes
nothing; an allowed write is in the Activity Log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

import sgen_ops
from sgen_ops import AccessDenied
from sgen_ops.core.permissions import PERMISSIONS
from sgen_ops.surface.declarations import OPERATIONS
from tests.integration.test_surface_fixtures import add_operators, job_row, ledger_state, log_entries
from tests.integration.test_surface_schedules import schedule_state
from tests.unit.test_permissions import readme_permissions

from .conftest import Api

Call = Callable[[Any, Any], Any]

# operation -> (what the call needs: a job in a state, a schedule, a pause, or nothing; the call on it)
CALLS: dict[str, tuple[str | None, Call]] = {
    "list_jobs": (None, lambda ops, t: ops.list_jobs(state="queued")),
    "get_job": ("succeeded", lambda ops, t: ops.get_job(t)),
    "history": (None, lambda ops, t: ops.history(state="succeeded")),
    "archive_runs": (None, lambda ops, t: ops.archive_runs()),
    "dead_letter_groups": (None, lambda ops, t: ops.dead_letter_groups()),
    "paused": (None, lambda ops, t: ops.paused()),
    "workers": (None, lambda ops, t: ops.workers()),
    "list_schedules": (None, lambda ops, t: ops.list_schedules()),
    "preview_schedule": (None, lambda ops, t: ops.preview_schedule(cron="*/5 * * * *")),
    "throughput": (None, lambda ops, t: ops.throughput()),
    "throughput_series": (None, lambda ops, t: ops.throughput_series()),
    "run_time_percentiles": (None, lambda ops, t: ops.run_time_percentiles()),
    "activity_log": (None, lambda ops, t: ops.activity_log()),
    "verify_audit": (None, lambda ops, t: ops.verify_audit()),
    "rerun": ("failed", lambda ops, t: ops.rerun(t)),
    "cancel": ("queued", lambda ops, t: ops.cancel(t)),
    "retry_now": ("retrying", lambda ops, t: ops.retry_now(t)),
    "trigger": ("queued", lambda ops, t: ops.trigger(t)),
    "update_job": ("queued", lambda ops, t: ops.update_job(t, priority="high", max_attempts=5,
                                                           scheduled_for=timedelta(hours=1))),
    "update_job_payload": ("queued", lambda ops, t: ops.update_job(t, payload={"n": 2})),
    "resolve": ("failed", lambda ops, t: ops.resolve(t, "fixed upstream")),
    "send_to_dead_letter": ("failed", lambda ops, t: ops.send_to_dead_letter(t, "broken feed")),
    "replay": ("dead-letter", lambda ops, t: ops.replay(t)),
    "edit_and_replay": ("dead-letter", lambda ops, t: ops.edit_and_replay(t, {"fixed": True})),
    "dismiss": ("dead-letter", lambda ops, t: ops.dismiss(t)),
    "delete_job": ("succeeded", lambda ops, t: ops.delete_job(t)),
    "delete_jobs": ("failed", lambda ops, t: ops.delete_jobs(task="test.nodl")),
    "replay_dead_letters": ("dead-letter", lambda ops, t: ops.replay_dead_letters(task="test.boom")),
    "dismiss_dead_letters": ("dead-letter", lambda ops, t: ops.dismiss_dead_letters(task="test.boom")),
    "enqueue": (None, lambda ops, t: ops.enqueue("test.ok", {"n": 1}, delay=3600)),
    "create_schedule": (None, lambda ops, t: ops.create_schedule("test.ok", every="15m")),
    "edit_schedule": ("schedule", lambda ops, t: ops.edit_schedule(t, cron="0 9 * * *")),
    "pause_schedule": ("schedule", lambda ops, t: ops.pause_schedule(t)),
    "resume_schedule": ("paused schedule", lambda ops, t: ops.resume_schedule(t)),
    "run_schedule_now": ("schedule", lambda ops, t: ops.run_schedule_now(t)),
    "pause_task": ("active task", lambda ops, t: ops.pause_task("test.ok")),
    "resume_task": ("paused task", lambda ops, t: ops.resume_task("test.ok")),
    "pause_queue": ("active queue", lambda ops, t: ops.pause_queue("low")),
    "resume_queue": ("paused queue", lambda ops, t: ops.resume_queue("low")),
}
# Writes the Activity Log records, under the action it records them as.
LOGGED = {**{a: a for a in OPERATIONS}, "enqueue": "enqueue", "create_schedule": "create_schedule",
          "update_job_payload": "update_job"}


def test_every_operation_is_walked() -> None:
    assert set(CALLS) == set(PERMISSIONS) == set(readme_permissions())


# How a job reaches each state a call needs (the queued one waits an hour, out of every burst's way).
_DRIVEN = {"succeeded": ("test.ok", {"n": 2}), "failed": ("test.nodl", None), "retrying": ("test.backoff", None),
           "dead-letter": ("test.boom", None)}
# Bulk writes act on every job their filter matches: each allowed call needs a job of its own, made just before.
_BULK = {"delete_jobs", "replay_dead_letters", "dismiss_dead_letters"}


def _jobs(hub: sgen_ops.Hub, state: str, count: int) -> list[int]:
    """``count`` jobs in ``state``, with one burst of the worker."""
    if state == "queued":
        return [hub.enqueue("test.ok", {"n": 1}, delay=3600) for _ in range(count)]
    task, payload = _DRIVEN[state]
    ids = [hub.enqueue(task, payload) for _ in range(count)]
    hub.work()
    assert {job_row(hub, i)["state"] for i in ids} == {state}
    return ids


def _target(hub: sgen_ops.Hub, admin: Any, needs: str | None, pool: list[int]) -> Any:
    """A target in the state the call needs: a job from ``pool``, or a schedule or pause made (or put back) by an
    administrator."""
    if needs is None:
        return None
    if needs in ("schedule", "paused schedule"):
        schedule_id = admin.create_schedule("test.ok", every="1h")
        if needs == "paused schedule":
            admin.pause_schedule(schedule_id)
        return schedule_id
    if needs.startswith(("paused ", "active ")):
        state, kind = needs.split()
        name = "test.ok" if kind == "task" else "low"
        if (name in admin.paused()["name"].tolist()) != (state == "paused"):
            getattr(admin, f"{'pause' if state == 'paused' else 'resume'}_{kind}")(name)
        return name
    return pool[0] if pool else None


def _state(hub: sgen_ops.Hub) -> Any:
    return ledger_state(hub), schedule_state(hub), hub.as_operator("administrator").paused().to_dict("records")


# The action a refusal names: a viewer's update_job with a payload is refused as update_job already.
REFUSED_AS = {"update_job_payload": "update_job(_payload)?"}


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_each_role_may_do_what_the_readme_says(hub: sgen_ops.Hub, api: Api, operation: str) -> None:
    allowed = readme_permissions()[operation][1]
    needs, call = CALLS[operation]
    local = add_operators(hub)
    admin = local["administrator"]
    statuses: list[int] = []
    remote = {role: api.remote(role) for role in local}
    for client in remote.values():
        client._http.event_hooks["response"] = [lambda answer: statuses.append(answer.status_code)]
    refused = rf"\(({'|'.join(local)})\) may not {REFUSED_AS.get(operation, operation)}[:;]"
    # Jobs for the calls made in one burst of the worker (a refused call changes nothing: it shares the next).
    single = needs in _DRIVEN or needs == "queued"
    pool = _jobs(hub, needs, 2 * len(allowed) + 1) if single and operation not in _BULK else []
    for via, ops in (("process", local), ("http", remote)):
        # Refused roles first, so that an allowed bulk operation cannot hide a refused one's change.
        for role in sorted(ops, key=lambda r: r in allowed):
            if operation in _BULK and role in allowed:
                pool = _jobs(hub, needs, 1)  # type: ignore[arg-type]
            target = _target(hub, admin, needs, pool)
            if role in allowed and pool:
                pool = pool[1:] or pool  # the next allowed call gets a fresh job
            before = _state(hub)
            del statuses[:]
            if role not in allowed:
                with pytest.raises(AccessDenied, match=refused):
                    call(ops[role], target)
                assert _state(hub) == before, f"{role} was refused {operation} {via} but something changed"
                if via == "http":
                    assert statuses[-1] == httpx.codes.FORBIDDEN
                continue
            call(ops[role], target)
            if operation in LOGGED:
                new = [(e.operator, e.action) for e in log_entries(hub)[before[0]["entries"]:]]
                assert (role, LOGGED[operation]) in new, f"{role}'s {operation} {via} is not logged: {new}"


def test_an_editors_refusal_says_why_in_plain_words(hub: sgen_ops.Hub, api: Api) -> None:
    ops = add_operators(hub)
    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    reason = "only administrators can change what a job runs; you are signed in as an editor"
    with pytest.raises(AccessDenied, match=reason):
        ops["editor"].update_job(job_id, payload={"n": 2}, priority="high")
    answer = api.http("editor").patch(f"/api/jobs/{job_id}", json={"payload": {"n": 2}})
    assert answer.status_code == 403 and reason in answer.json()["detail"]
    # The same job's priority, time and budget are the editor's to change.
    assert api.http("editor").patch(f"/api/jobs/{job_id}", json={"priority": "high"}).status_code == 204


def test_the_capabilities_setting_grants_a_payload_change(make_hub: Callable[..., sgen_ops.Hub]) -> None:
    from sgen_ops.core.permissions import DEFAULT_CAPABILITIES

    editor = sorted(a for a, roles in DEFAULT_CAPABILITIES.items() if "editor" in roles)
    hub = make_hub(capabilities={"editor": [*editor, "update_job_payload"]})
    ops = add_operators(hub)
    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    ops["editor"].update_job(job_id, payload={"n": 2})
    assert ops["administrator"].get_job(job_id).payload == {"n": 2}
