"""The request path serves any declared operation, schedules included: capability, account scope,
masking and the Activity Log come from the declaration, not from the operation's own code."""

from __future__ import annotations

from typing import Any

import pytest

import sgen_ops
from sgen_ops import AccessDenied, NotFound
from sgen_ops.core.masking import MASK
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Schedule
from sgen_ops.surface import declarations as surface
from sgen_ops.surface.write import Write
from tests.integration.test_surface_fixtures import add_operators, log_entries


def add_schedule(hub: sgen_ops.Hub, account: str | None = None) -> int:
    now = utcnow()
    with hub.ledger.write() as session:
        schedule = Schedule(
            task="test.secret", every_seconds=60.0, payload_template={"credentials": {"api_key": "sk-sched-1"}},
            account=account, enabled=True, anchor_at=now, next_run=now, created_at=now, updated_at=now,
        )
        session.add(schedule)
        session.flush()
        return schedule.id


def _pause(w: Write, schedule: Schedule) -> None:
    schedule.enabled = False
    schedule.updated_at = w.now


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> surface.Operation:
    op = surface.Operation("pause_schedule", _pause, audits=("enabled", "payload_template"), target_type="schedule")
    monkeypatch.setitem(surface.OPERATIONS, op.action, op)  # type: ignore[arg-type]
    return op


def test_a_schedule_operation_runs_on_the_same_path(hub: sgen_ops.Hub, paused: Any) -> None:
    ops = add_operators(hub)
    acme = add_operators(hub, account="acme", suffix="-acme")["administrator"]
    schedule_id = add_schedule(hub, account="globex")
    with pytest.raises(AccessDenied, match="may not pause_schedule"):
        ops["editor"]._run("pause_schedule", schedule_id)
    with pytest.raises(NotFound, match=f"schedule {schedule_id} not found"):
        acme._run("pause_schedule", schedule_id)
    assert log_entries(hub) == []
    ops["administrator"]._run("pause_schedule", schedule_id)
    [entry] = log_entries(hub)
    assert (entry.action, entry.target_type, entry.target_id, entry.account) == ("pause_schedule", "schedule",
                                                                                 schedule_id, "globex")
    assert entry.change == {"task": "test.secret", "before": {"enabled": True}, "after": {"enabled": False}}


def test_schedule_entries_are_masked_for_non_administrators(
    hub: sgen_ops.Hub, paused: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = add_operators(hub)
    schedule_id = add_schedule(hub)

    policy = sgen_ops.core.permissions.Policy({"editor": ["edit_schedule"]})
    monkeypatch.setattr(ops["editor"].resolver, "policy", policy)
    ops["editor"].edit_schedule(schedule_id, payload={"credentials": {"api_key": "sk-sched-2"}, "region": "eu"})
    [entry] = log_entries(hub)
    assert entry.change["after"]["payload"] == {"credentials": {"api_key": MASK}, "region": "eu"}
    assert "sk-sched" not in str(entry.change)


def test_job_detail_names_the_schedule_that_emitted_it(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    schedule_id = add_schedule(hub)
    job = hub.book.prepare("test.ok", schedule_id=schedule_id)
    job_id = hub.book.create([job])[0]
    detail = ops["viewer"].get_job(job_id)
    assert detail.schedule_id == schedule_id
    assert detail.schedule is not None
    assert (detail.schedule["id"], detail.schedule["task"], detail.schedule["every"]) == (schedule_id, "test.secret",
                                                                                         60.0)
    assert ops["viewer"].get_job(hub.enqueue("test.ok")).schedule is None
