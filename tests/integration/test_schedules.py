"""The schedule service on a real ledger and Redis: create, edit (pause and resume), run now, emitted jobs, the list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger import schedules
from sgen_ops.ledger.store import Job, Schedule, ScheduleTick

from ..conftest import Stack
from ..helpers import job_row

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers (shared with test_scheduler)


def create(hub: sgen_ops.Hub, *, now: datetime = T0, **fields: Any) -> int:
    with hub.ledger.write() as session:
        return schedules.create(hub, session, now=now, **fields).id


def edit(hub: sgen_ops.Hub, schedule_id: int, *, now: datetime, **changes: Any) -> dict[str, dict[str, Any]]:
    with hub.ledger.write() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        return schedules.edit(hub, session, schedule, changes, now=now)


def run_now(hub: sgen_ops.Hub, schedule_id: int, *, now: datetime, operator_id: int | None = None) -> int:
    with hub.ledger.write() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        job, deliveries = schedules.run_now(hub, session, schedule, now=now, originating_user_id=operator_id)
        job_id = job.id
    hub.book.send(deliveries)
    return job_id


def schedule_row(hub: sgen_ops.Hub, schedule_id: int) -> Schedule:
    with hub.ledger.read() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        return schedule


def ticks_of(hub: sgen_ops.Hub, schedule_id: int) -> list[tuple[str, datetime, int | None]]:
    """The schedule's emitted ticks in order: (kind, tick_at, job_id)."""
    with hub.ledger.read() as session:
        return [
            (t.kind, t.tick_at, t.job_id)
            for t in session.scalars(
                select(ScheduleTick).where(ScheduleTick.schedule_id == schedule_id).order_by(ScheduleTick.id)
            )
        ]


def jobs_of(hub: sgen_ops.Hub, schedule_id: int) -> list[Job]:
    with hub.ledger.read() as session:
        return list(session.scalars(select(Job).where(Job.schedule_id == schedule_id).order_by(Job.id)))


def row_counts(hub: sgen_ops.Hub) -> tuple[int, int, int]:
    """(schedules, schedule ticks, jobs) in the ledger."""
    with hub.ledger.read() as session:
        return tuple(  # type: ignore[return-value]
            int(session.scalar(select(func.count()).select_from(model)) or 0) for model in (Schedule, ScheduleTick, Job)
        )


# --------------------------------------------------------------------------- create


def test_create_a_cron_schedule_in_a_zone(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", cron="0 9 * * *", timezone="Europe/Paris", payload={"a": 1})
    s = schedule_row(hub, schedule_id)
    assert (s.task, s.cron, s.timezone, s.every_seconds, s.payload_template) == (
        "test.ok", "0 9 * * *", "Europe/Paris", None, {"a": 1},
    )
    assert s.enabled and s.last_run is None
    assert s.next_run == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert s.anchor_at == s.created_at == s.updated_at == T0
    # Defaults: the task's budget and priority apply at emission; retention is the settings' window.
    assert (s.max_attempts, s.priority, s.retention_days, s.account) == (None, "normal", None, None)
    assert row_counts(hub) == (1, 0, 0)


@pytest.mark.parametrize(
    ("every", "seconds"), [(90, 90.0), ("15m", 900.0), (timedelta(hours=1), 3600.0), ("1h30m", 5400.0)]
)
def test_create_an_interval_schedule_first_fires_one_interval_later(
    hub: sgen_ops.Hub, every: Any, seconds: float
) -> None:
    s = schedule_row(hub, create(hub, task="test.ok", every=every))
    assert (s.cron, s.every_seconds, s.timezone) == (None, seconds, "UTC")
    assert s.next_run == T0 + timedelta(seconds=seconds)


def test_create_a_paused_schedule(hub: sgen_ops.Hub) -> None:
    s = schedule_row(hub, create(hub, task="test.ok", every="5m", enabled=False))
    assert not s.enabled and s.next_run is None


def test_created_record_is_the_shape_the_activity_log_keeps(hub: sgen_ops.Hub) -> None:
    with hub.ledger.write() as session:
        schedule = schedules.create(
            hub, session, task="test.ok", every="5m", payload={"p": "{tick}"}, max_attempts=4, retention="30d",
            priority="high", account="acme", now=T0,
        )
        shape = schedules.record(schedule)
    assert shape == {
        "task": "test.ok", "cron": None, "every": "5m", "timezone": "UTC", "payload": {"p": "{tick}"},
        "max_attempts": 4, "retention": 30.0, "priority": "high", "account": "acme", "enabled": True,
        "next_run": T0 + timedelta(minutes=5),
    }


BAD_CREATE = [
    ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
    ({"cron": "0 9 * *"}, "it has 4 fields"),
    ({"cron": "0 9 * * *", "every": "5m"}, "give exactly one of cron= or every="),
    ({}, "give exactly one of cron= or every="),
    ({"every": 0.5}, "under the minimum of 1 second"),
    ({"every": 0}, "it must be at least 1 second"),
    ({"every": "soon"}, "invalid interval 'soon'"),
    ({"every": "5m", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"every": "5m", "task": "no.such.task"}, "unknown task 'no.such.task'; registered tasks: .*test.ok"),
    ({"every": "5m", "task": None}, "task None is not valid"),
    ({"every": "5m", "payload": {"s": {1, 2}}}, "payload is not JSON-serialisable"),
    ({"every": "5m", "payload": {"p": "{tick:%Q}"}}, "unknown directive '%Q'"),
    ({"every": "5m", "payload": {"p": "{tick:}"}}, "empty format"),
    ({"every": "5m", "priority": "urgent"}, "priority 'urgent' is not valid; allowed: high, normal, low"),
    ({"every": "5m", "max_attempts": 0}, "max_attempts 0 is not valid"),
    ({"every": "5m", "max_attempts": "3"}, "max_attempts '3' is not valid"),
    ({"every": "5m", "max_attempts": True}, "max_attempts True is not valid"),
    ({"every": "5m", "retention": 0}, "retention 0 is not valid"),
    ({"every": "5m", "retention": -3}, "retention -3 is not valid"),
    ({"every": "5m", "retention": "forever"}, "retention 'forever' is not valid"),
    ({"every": "5m", "account": ""}, "account '' is not valid"),
    ({"every": "5m", "enabled": "yes"}, "enabled 'yes' is not valid"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_CREATE, ids=[r for _, r in BAD_CREATE])
def test_bad_input_to_create_says_why_and_writes_nothing(
    hub: sgen_ops.Hub, fields: dict[str, Any], reason: str
) -> None:
    fields = {"task": "test.ok", **fields}
    with pytest.raises(sgen_ops.ValidationError, match=reason):
        create(hub, **fields)
    assert row_counts(hub) == (0, 0, 0)


# --------------------------------------------------------------------------- edit


def test_edit_returns_before_and_after_of_the_changed_fields(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="5m", payload={"p": 1})
    later = T0 + timedelta(minutes=7)
    change = edit(hub, schedule_id, now=later, every="10m", payload={"p": 2}, priority="normal", max_attempts=5)
    # priority was already normal: not a change.
    assert change == {
        "before": {"every": "5m", "payload": {"p": 1}, "max_attempts": None, "next_run": T0 + timedelta(minutes=5)},
        "after": {"every": "10m", "payload": {"p": 2}, "max_attempts": 5, "next_run": later + timedelta(minutes=10)},
    }
    s = schedule_row(hub, schedule_id)
    # A new interval counts from the edit.
    assert (s.every_seconds, s.anchor_at, s.updated_at) == (600.0, later, later)


def test_edit_switches_between_interval_and_cron(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="5m")
    change = edit(hub, schedule_id, now=T0, cron="0 6 * * 1", timezone="America/New_York")
    assert change["after"]["cron"] == "0 6 * * 1" and change["after"]["every"] is None
    s = schedule_row(hub, schedule_id)
    assert (s.cron, s.every_seconds, s.timezone) == ("0 6 * * 1", None, "America/New_York")
    assert s.next_run == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)  # Monday 06:00 EDT (US summer time from 8 March)
    edit(hub, schedule_id, now=T0, every="1h")
    s = schedule_row(hub, schedule_id)
    assert (s.cron, s.every_seconds, s.next_run) == (None, 3600.0, T0 + timedelta(hours=1))


def test_a_time_zone_edit_moves_a_cron_schedules_next_run(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", cron="0 9 * * *")
    assert schedule_row(hub, schedule_id).next_run == datetime(2026, 3, 3, 9, tzinfo=UTC)
    edit(hub, schedule_id, now=T0, timezone="Asia/Tokyo")
    assert schedule_row(hub, schedule_id).next_run == datetime(2026, 3, 3, 0, tzinfo=UTC)  # 09:00 JST


def test_an_edit_that_changes_nothing_reports_nothing(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="5m", priority="high")
    before = schedule_row(hub, schedule_id)
    assert edit(hub, schedule_id, now=T0 + timedelta(hours=1), every=300, priority="high", enabled=True) == {
        "before": {},
        "after": {},
    }
    after = schedule_row(hub, schedule_id)
    assert (after.updated_at, after.next_run, after.anchor_at) == (before.updated_at, before.next_run, before.anchor_at)


def test_pause_and_resume_are_edits(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="1h")
    paused = edit(hub, schedule_id, now=T0 + timedelta(minutes=30), enabled=False)
    assert paused == {
        "before": {"enabled": True, "next_run": T0 + timedelta(hours=1)},
        "after": {"enabled": False, "next_run": None},
    }
    resumed = edit(hub, schedule_id, now=T0 + timedelta(hours=5, minutes=10), enabled=True)
    # The next fire after the resume, on the schedule's own grid: the paused ticks are not owed.
    assert resumed["after"] == {"enabled": True, "next_run": T0 + timedelta(hours=6)}


BAD_EDIT = [
    ({"colour": "red"}, "schedule field\\(s\\) colour cannot be edited; editable fields: task, cron, every, timezone"),
    ({"account": "other"}, "account cannot be edited"),
    ({}, "needs at least one field to change; editable fields: task, cron"),
    ({"cron": "0 9 * * * *"}, "it has 6 fields"),
    ({"cron": "0 9 * * *", "every": "5m"}, "give exactly one of cron= or every="),
    ({"every": None}, "give exactly one of cron= or every="),
    ({"every": "0.2s"}, "under the minimum of 1 second"),
    ({"timezone": "Europe/Pariss"}, "unknown time zone"),
    ({"task": "no.such.task"}, "unknown task 'no.such.task'"),
    ({"payload": {"p": "{tick:%Y-%}"}}, "lone '%'"),
    ({"payload": {"p": float("nan")}}, "not JSON-serialisable"),
    ({"priority": "asap"}, "priority 'asap' is not valid"),
    ({"max_attempts": -1}, "max_attempts -1 is not valid"),
    ({"retention": "0d"}, "retention '0d' is not valid"),
    ({"enabled": 0}, "enabled 0 is not valid"),
    # One bad field spoils the whole edit: the good ones are not applied either.
    ({"every": "10m", "priority": "asap"}, "priority 'asap' is not valid"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_EDIT, ids=[r for _, r in BAD_EDIT])
def test_bad_edits_say_why_and_change_nothing(hub: sgen_ops.Hub, changes: dict[str, Any], reason: str) -> None:
    schedule_id = create(hub, task="test.ok", every="5m", payload={"p": 1})
    with hub.ledger.read() as session:
        before = schedules.record(session.get(Schedule, schedule_id))  # type: ignore[arg-type]
    with pytest.raises(sgen_ops.ValidationError, match=reason):
        edit(hub, schedule_id, now=T0 + timedelta(hours=1), **changes)
    s = schedule_row(hub, schedule_id)
    assert schedules.record(s) == before
    assert (s.anchor_at, s.updated_at) == (T0, T0)


def test_edit_with_a_non_mapping_is_refused(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="5m")
    with hub.ledger.write() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        with pytest.raises(sgen_ops.ValidationError, match="editable fields"):
            schedules.edit(hub, session, schedule, ["every"], now=T0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- emitted jobs


def test_an_emitted_job_carries_the_schedules_settings_and_a_rendered_payload(hub: sgen_ops.Hub) -> None:
    operator_id = hub.add_operator("ada", "administrator")
    template = {
        "report": "sales", "period": "{tick:%G-W%V}", "day": "{tick:%Y-%m-%d}", "at": "{tick}",
        "from": "schedule {schedule_id}", "keep": "{other}", "n": 3, "rows": [{"at": "{tick:%H:%M}"}],
    }
    schedule_id = create(
        hub, task="test.flaky", cron="0 6 * * 1", timezone="Europe/Paris", payload=template, max_attempts=5,
        retention="30d", priority="high", account="acme",
    )
    [tick_job] = hub.tick(now=datetime(2026, 3, 9, 5, 0, tzinfo=UTC))  # Monday 06:00 in Paris
    manual_job = run_now(hub, schedule_id, now=datetime(2026, 3, 10, 23, 30, tzinfo=UTC), operator_id=operator_id)
    tick, manual = job_row(hub, tick_job), job_row(hub, manual_job)
    for job in (tick, manual):
        assert (job.task, job.schedule_id, job.max_attempts, job.priority, job.retention_days, job.account) == (
            "test.flaky", schedule_id, 5, "high", 30.0, "acme",
        )
        assert job.state == "queued"
    assert tick.payload == {
        "report": "sales", "period": "2026-W11", "day": "2026-03-09", "at": "2026-03-09T06:00:00+01:00",
        "from": f"schedule {schedule_id}", "keep": "{other}", "n": 3, "rows": [{"at": "06:00"}],
    }
    assert tick.originating_user_id is None and tick.created_at == datetime(2026, 3, 9, 5, 0, tzinfo=UTC)
    # A manual run is rendered for the time it was run, in the schedule's zone: already Wednesday in Paris.
    assert manual.payload["day"] == "2026-03-11" and manual.payload["at"] == "2026-03-11T00:30:00+01:00"
    assert manual.originating_user_id == operator_id


def test_defaults_come_from_the_task_and_settings(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.nodl", every="1m")
    [job_id] = hub.tick(now=T0 + timedelta(minutes=1))
    job = job_row(hub, job_id)
    # test.nodl declares max_attempts=1; retention None means the settings' window.
    assert (job.max_attempts, job.priority, job.retention_days, job.schedule_id) == (1, "normal", None, schedule_id)


def test_an_emitted_job_runs(hub: sgen_ops.Hub, stack: Stack) -> None:
    now = utcnow()
    schedule_id = create(hub, task="test.flaky", every="1h", payload={"succeed_on": 2}, now=now - timedelta(hours=2))
    [job_id] = hub.tick(now=now)
    hub.work()
    job = job_row(hub, job_id)
    assert (job.state, job.attempts, job.schedule_id) == ("succeeded", 2, schedule_id)
    assert stack.runs() == [f"{job_id}:1:1", f"{job_id}:1:2"]


def test_the_same_tick_cannot_be_emitted_twice(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="1h")
    tick_at = T0 + timedelta(hours=1)

    def emit(now: datetime) -> None:
        with hub.ledger.write() as session:
            schedule = session.get(Schedule, schedule_id)
            assert schedule is not None
            schedules.emit(hub, session, schedule, tick_at=tick_at, kind="tick", now=now)

    emit(tick_at)
    with pytest.raises(IntegrityError):
        emit(tick_at + timedelta(seconds=1))
    assert row_counts(hub) == (1, 1, 1)
    # The same instant as a manual run is a different tick.
    run_now(hub, schedule_id, now=tick_at)
    assert [kind for kind, _, _ in ticks_of(hub, schedule_id)] == ["tick", "manual"]


def test_run_now_leaves_the_regular_ticks_alone(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="1h")
    manual = run_now(hub, schedule_id, now=T0 + timedelta(minutes=10))
    s = schedule_row(hub, schedule_id)
    assert (s.next_run, s.last_run) == (T0 + timedelta(hours=1), None)
    assert hub.tick(now=T0 + timedelta(minutes=59)) == []
    [regular] = hub.tick(now=T0 + timedelta(hours=1))
    assert ticks_of(hub, schedule_id) == [
        ("manual", T0 + timedelta(minutes=10), manual),
        ("tick", T0 + timedelta(hours=1), regular),
    ]
    s = schedule_row(hub, schedule_id)
    assert (s.next_run, s.last_run) == (T0 + timedelta(hours=2), T0 + timedelta(hours=1))


def test_run_now_works_on_a_paused_schedule_and_keeps_it_paused(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="1h", enabled=False)
    job_id = run_now(hub, schedule_id, now=T0 + timedelta(minutes=5))
    assert job_row(hub, job_id).schedule_id == schedule_id
    s = schedule_row(hub, schedule_id)
    assert (s.enabled, s.next_run, s.last_run) == (False, None, None)
    assert hub.tick(now=T0 + timedelta(days=1)) == []


# --------------------------------------------------------------------------- the list


def test_rows_show_each_schedule_with_its_next_fires_and_recent_runs(hub: sgen_ops.Hub) -> None:
    weekly = create(
        hub, task="test.ok", cron="0 6 * * 1", timezone="Europe/Paris", max_attempts=4, retention=30, account="acme",
    )
    warm = create(hub, task="test.nodl", every="5m", priority="low")
    paused = create(hub, task="test.ok", every="1h", enabled=False)
    first = hub.tick(now=T0 + timedelta(minutes=5))
    second = hub.tick(now=T0 + timedelta(minutes=10))
    manual = run_now(hub, warm, now=T0 + timedelta(minutes=11))
    now = T0 + timedelta(minutes=12)
    with hub.ledger.read() as session:
        frame = schedules.rows(hub, session, now=now)
        acme = schedules.rows(hub, session, account="acme", now=now)
        nobody = schedules.rows(hub, session, account="other", now=now)

    assert list(frame.columns) == list(schedules.COLUMNS)
    assert list(frame["id"]) == [weekly, warm, paused]
    rows = {r["id"]: r for r in frame.to_dict("records")}

    w = rows[weekly]
    assert (w["task"], w["cron"], w["timezone"], w["enabled"]) == ("test.ok", "0 6 * * 1", "Europe/Paris", True)
    assert pd.isna(w["every"]) and pd.isna(w["last_run"])
    assert (w["max_attempts"], w["retention"], w["priority"], w["account"]) == (4, 30.0, "normal", "acme")
    assert w["description"] == "cron '0 6 * * 1' (Europe/Paris)"
    assert w["next_run"] == datetime(2026, 3, 9, 5, tzinfo=UTC)
    assert w["next_fires"] == [datetime(2026, 3, d, 5, tzinfo=UTC) for d in (9, 16, 23)] + [
        datetime(2026, 3, 30, 4, tzinfo=UTC),  # summer time from 29 March
        datetime(2026, 4, 6, 4, tzinfo=UTC),
    ]
    assert w["recent_runs"] == []

    c = rows[warm]
    assert (c["every"], c["description"], c["priority"]) == ("5m", "every 5m", "low") and pd.isna(c["cron"])
    # Defaults resolved: the task's budget (test.nodl: 1) and the settings' retention window (7 days).
    assert (c["max_attempts"], c["retention"]) == (1, 7.0)
    assert c["last_run"] == T0 + timedelta(minutes=10)
    assert c["next_fires"] == [T0 + timedelta(minutes=m) for m in (15, 20, 25, 30, 35)]
    assert c["recent_runs"] == [
        (manual, "queued", T0 + timedelta(minutes=11), "manual"),
        (second[0], "queued", T0 + timedelta(minutes=10), "tick"),
        (first[0], "queued", T0 + timedelta(minutes=5), "tick"),
    ]

    p = rows[paused]
    assert (p["enabled"], p["next_fires"], p["description"]) == (False, [], "every 1h, paused")
    assert pd.isna(p["next_run"])

    assert list(acme["id"]) == [weekly]
    assert nobody.empty and list(nobody.columns) == list(schedules.COLUMNS)


def test_recent_runs_keep_the_last_five_and_show_job_states(hub: sgen_ops.Hub) -> None:
    now = utcnow()
    schedule_id = create(hub, task="test.ok", every="1m", now=now - timedelta(hours=1))
    job_ids = [run_now(hub, schedule_id, now=now - timedelta(minutes=10 - i)) for i in range(7)]
    hub.work()
    with hub.ledger.read() as session:
        [runs] = schedules.rows(hub, session, now=now)["recent_runs"]
    assert [(job_id, state) for job_id, state, _, _ in runs] == [(j, "succeeded") for j in reversed(job_ids[2:])]
