"""Schedule operations on the request path: capabilities, account scoping, the Activity Log, bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import sgen_ops
from sgen_ops import AccessDenied, InvalidTransition, NotFound, ValidationError
from sgen_ops.ledger.store import Job, Schedule
from sgen_ops.surface.operations import Operations
from tests.integration.test_surface_fixtures import add_operators, log_entries

EVERYONE = {"administrator", "editor", "viewer"}
EDITORS = {"administrator", "editor"}
ADMINS = {"administrator"}

Call = Callable[[Operations, int], Any]

# operation -> (roles allowed, the call on an existing, enabled schedule), from seed 000's map.
SCHEDULE_MATRIX: dict[str, tuple[set[str], Call]] = {
    "create_schedule": (ADMINS, lambda ops, s: ops.create_schedule("test.ok", every="15m", payload={"n": 1})),
    "edit_schedule": (ADMINS, lambda ops, s: ops.edit_schedule(s, cron="0 9 * * *")),
    "pause_schedule": (ADMINS, lambda ops, s: ops.pause_schedule(s)),
    "resume_schedule": (
        ADMINS,
        lambda ops, s: (
            ops.hub.as_operator("administrator").pause_schedule(s) if ops.role == "administrator" else None,
            ops.resume_schedule(s),
        ),
    ),
    "run_schedule_now": (EDITORS, lambda ops, s: ops.run_schedule_now(s)),
    "list_schedules": (EVERYONE, lambda ops, s: ops.list_schedules()),
    "preview_schedule": (EVERYONE, lambda ops, s: ops.preview_schedule(cron="*/5 * * * *")),
}


def schedule_state(hub: sgen_ops.Hub) -> dict[str, Any]:
    with hub.ledger.read() as session:
        rows = {
            s.id: {c.key: getattr(s, c.key) for c in Schedule.__mapper__.column_attrs}
            for s in session.scalars(select(Schedule))
        }
        jobs = session.scalar(select(func.count()).select_from(Job))
    return {"schedules": rows, "jobs": jobs, "entries": len(log_entries(hub))}


@pytest.mark.parametrize("operation", sorted(SCHEDULE_MATRIX))
def test_schedule_role_matrix(hub: sgen_ops.Hub, operation: str) -> None:
    allowed, call = SCHEDULE_MATRIX[operation]
    ops = add_operators(hub)
    for role in sorted(ops, key=lambda r: r in allowed):
        schedule_id = ops["administrator"].create_schedule("test.ok", every="1h")
        before = schedule_state(hub)
        if role not in allowed:
            with pytest.raises(AccessDenied, match=rf"{role}.*may not {operation}; allowed for: "):
                call(ops[role], schedule_id)
            assert schedule_state(hub) == before, f"{role} was refused {operation} but something changed"
            continue
        call(ops[role], schedule_id)
        if operation not in ("list_schedules", "preview_schedule"):
            new = [e for e in log_entries(hub)[before["entries"] :] if e.operator == role]
            assert operation in {e.action for e in new}


def test_create_edit_pause_resume_run_now_are_audited_with_before_and_after(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    sid = admin.create_schedule("test.ok", cron="0 6 * * 1", payload={"period": "{tick:%G-W%V}"}, max_attempts=2)
    admin.edit_schedule(sid, cron="30 6 * * 1", priority="high")
    admin.pause_schedule(sid)
    admin.resume_schedule(sid)
    job_id = admin.run_schedule_now(sid)
    entries = [e for e in log_entries(hub) if e.target_type == "schedule"]
    assert [e.action for e in entries] == [
        "create_schedule",
        "edit_schedule",
        "pause_schedule",
        "resume_schedule",
        "run_schedule_now",
    ]
    created, edited, paused, resumed, ran = (e.change for e in entries)
    assert created["before"] is None
    assert created["after"]["cron"] == "0 6 * * 1" and created["after"]["max_attempts"] == 2
    assert edited["before"]["cron"] == "0 6 * * 1" and edited["after"]["cron"] == "30 6 * * 1"
    assert edited["before"]["priority"] == "normal" and edited["after"]["priority"] == "high"
    assert paused["before"]["enabled"] is True and paused["after"]["enabled"] is False
    assert resumed["after"]["enabled"] is True
    assert ran["after"] == {"job_id": job_id}
    assert all(e.target_id == sid for e in entries)
    with hub.ledger.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.schedule_id == sid and job.max_attempts == 2 and job.priority == "high"
        assert job.payload["period"].startswith("20")  # rendered, e.g. "2026-W47"


def test_pausing_twice_or_resuming_an_active_schedule_is_refused(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    sid = admin.create_schedule("test.ok", every="5m")
    with pytest.raises(InvalidTransition, match="not paused"):
        admin.resume_schedule(sid)
    admin.pause_schedule(sid)
    before = schedule_state(hub)
    with pytest.raises(InvalidTransition, match="already paused"):
        admin.pause_schedule(sid)
    assert schedule_state(hub) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "test.ok", "cron": "61 * * * *"}, "invalid cron expression"),
        ({"task": "test.ok", "cron": "* * * * *", "every": "5m"}, "exactly one of"),
        ({"task": "test.ok"}, "exactly one of"),
        ({"task": "test.ok", "every": 0.5}, "under the minimum of 1 second"),
        ({"task": "no.such", "every": "5m"}, "unknown task 'no.such'"),
        ({"task": "test.ok", "every": "5m", "payload": {"x": object()}}, "not JSON"),
    ],
)
def test_bad_schedules_are_refused_and_leave_nothing(hub: sgen_ops.Hub, kwargs: dict[str, Any], message: str) -> None:
    admin = add_operators(hub)["administrator"]
    before = schedule_state(hub)
    kwargs = dict(kwargs)  # the parameter is shared by every backend's run
    task = kwargs.pop("task")
    with pytest.raises(ValidationError, match=message):
        admin.create_schedule(task, **kwargs)
    assert schedule_state(hub) == before


def test_edit_with_an_unknown_field_names_the_editable_ones(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    sid = admin.create_schedule("test.ok", every="5m")
    before = schedule_state(hub)
    with pytest.raises(ValidationError, match="editable fields: task, cron, every"):
        admin.edit_schedule(sid, colour="red")
    assert schedule_state(hub) == before


def test_account_bound_operators_see_and_touch_only_their_schedules(hub: sgen_ops.Hub) -> None:
    everyone = add_operators(hub)
    acme = add_operators(hub, account="acme", suffix="-acme")
    theirs = everyone["administrator"].create_schedule("test.ok", every="5m", account="globex")
    mine = acme["administrator"].create_schedule("test.ok", every="5m")
    assert set(acme["viewer"].list_schedules()["id"]) == {mine}
    assert set(everyone["viewer"].list_schedules()["id"]) == {theirs, mine}
    before = schedule_state(hub)
    for call in (
        lambda: acme["administrator"].edit_schedule(theirs, every="10m"),
        lambda: acme["administrator"].pause_schedule(theirs),
        lambda: acme["editor"].run_schedule_now(theirs),
    ):
        with pytest.raises(NotFound, match=f"schedule {theirs} not found"):
            call()
    with pytest.raises(AccessDenied, match="bound to account 'acme'"):
        acme["administrator"].create_schedule("test.ok", every="5m", account="globex")
    assert schedule_state(hub) == before
    job_id = acme["editor"].run_schedule_now(mine)
    assert acme["viewer"].list_jobs().items[0].id == job_id


def test_ticks_follow_edits_and_pauses_through_the_surface(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    sid = admin.create_schedule("test.ok", every="10m")
    start = datetime.now(UTC)
    assert hub.tick(now=start + timedelta(minutes=11))  # one tick due
    admin.pause_schedule(sid)
    assert hub.tick(now=start + timedelta(hours=5)) == []
    admin.resume_schedule(sid)
    assert admin.list_schedules().set_index("id").loc[sid, "enabled"]
