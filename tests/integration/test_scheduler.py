"""The scheduler on a real ledger and Redis, with a moving clock: timing, DST, pause and resume, catch-up
without storms, exactly once across schedulers (threads and processes), and the long-running loop."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Schedule
from sgen_ops.runtime import scheduler

from ..conftest import Stack
from ..helpers import Process, job_count, job_row, wait_for
from .test_schedules import T0, create, edit, jobs_of, row_counts, run_now, schedule_row, ticks_of

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def tick_times(hub: sgen_ops.Hub, schedule_id: int, kind: str = "tick") -> list[datetime]:
    return [at for k, at, _ in ticks_of(hub, schedule_id) if k == kind]


# --------------------------------------------------------------------------- timing with a moving clock


def test_an_interval_schedule_ticks_on_its_grid(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="15m")
    assert hub.tick(now=T0 + 14 * MIN) == []
    [first] = hub.tick(now=T0 + 15 * MIN)
    assert hub.tick(now=T0 + 15 * MIN) == []  # the same pass again emits nothing
    assert hub.tick(now=T0 + 29 * MIN) == []
    [second] = hub.tick(now=T0 + 31 * MIN)  # a late pass emits the tick it missed, for its own time
    assert tick_times(hub, schedule_id) == [T0 + 15 * MIN, T0 + 30 * MIN]
    assert [j.id for j in jobs_of(hub, schedule_id)] == [first, second]
    s = schedule_row(hub, schedule_id)
    assert (s.last_run, s.next_run) == (T0 + 30 * MIN, T0 + 45 * MIN)


def test_a_cron_schedule_keeps_local_time_across_daylight_saving_changes(hub: sgen_ops.Hub) -> None:
    schedule_id = create(
        hub, task="test.ok", cron="0 9 * * *", timezone="Europe/Paris", payload={"at": "{tick}"},
        now=utc(2026, 3, 27, 12),
    )
    # Spring forward on Sunday 29 March 2026: 09:00 in Paris is 08:00 UTC before, 07:00 UTC after.
    emitted = []
    for now in (utc(2026, 3, 28, 7, 59), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 29, 8),
                utc(2026, 3, 30, 7)):
        emitted += hub.tick(now=now)
    assert tick_times(hub, schedule_id) == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]
    assert [job_row(hub, j).payload["at"] for j in emitted] == [
        "2026-03-28T09:00:00+01:00", "2026-03-29T09:00:00+02:00", "2026-03-30T09:00:00+02:00",
    ]
    # Fall back on Sunday 25 October 2026: 09:00 is 07:00 UTC on the Saturday, 08:00 UTC on the Sunday.
    assert len(hub.tick(now=utc(2026, 10, 24, 7))) == 1
    assert hub.tick(now=utc(2026, 10, 25, 7)) == []
    assert len(hub.tick(now=utc(2026, 10, 25, 8))) == 1
    assert tick_times(hub, schedule_id)[-2:] == [utc(2026, 10, 24, 7), utc(2026, 10, 25, 8)]


def test_a_cron_schedule_in_new_york_across_the_us_change(hub: sgen_ops.Hub) -> None:
    # US summer time begins on 8 March 2026, three weeks before Europe's.
    schedule_id = create(hub, task="test.ok", cron="30 8 * * 1-5", timezone="America/New_York", now=utc(2026, 3, 5))
    for day in range(5, 11):
        hub.tick(now=utc(2026, 3, day, 14))
    assert tick_times(hub, schedule_id) == [
        utc(2026, 3, 5, 13, 30), utc(2026, 3, 6, 13, 30), utc(2026, 3, 9, 12, 30), utc(2026, 3, 10, 12, 30),
    ]


# --------------------------------------------------------------------------- pause, resume, run now


def test_a_paused_schedule_emits_nothing_and_resuming_does_not_replay_the_pause(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", every="1h")
    [first] = hub.tick(now=T0 + HOUR)
    edit(hub, schedule_id, now=T0 + 90 * MIN, enabled=False)
    for hours in (2, 3, 4, 5):
        assert hub.tick(now=T0 + hours * HOUR) == []
    edit(hub, schedule_id, now=T0 + 5 * HOUR + 10 * MIN, enabled=True)
    assert schedule_row(hub, schedule_id).next_run == T0 + 6 * HOUR
    assert hub.tick(now=T0 + 5 * HOUR + 30 * MIN) == []  # the 2h..5h ticks were paused, not owed
    [second] = hub.tick(now=T0 + 6 * HOUR)
    assert tick_times(hub, schedule_id) == [T0 + HOUR, T0 + 6 * HOUR]
    assert [j.id for j in jobs_of(hub, schedule_id)] == [first, second]


def test_resuming_a_cron_schedule_after_a_long_pause(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", cron="0 * * * *")
    hub.tick(now=T0 + HOUR)
    edit(hub, schedule_id, now=T0 + HOUR, enabled=False)
    edit(hub, schedule_id, now=T0 + 72 * HOUR + 5 * MIN, enabled=True)
    assert hub.tick(now=T0 + 72 * HOUR + 30 * MIN) == []
    hub.tick(now=T0 + 73 * HOUR)
    assert tick_times(hub, schedule_id) == [T0 + HOUR, T0 + 73 * HOUR]


def test_run_now_between_ticks_leaves_the_next_tick_alone(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", cron="0 * * * *")
    hub.tick(now=T0 + HOUR)
    run_now(hub, schedule_id, now=T0 + HOUR + 20 * MIN)
    run_now(hub, schedule_id, now=T0 + HOUR + 40 * MIN)
    s = schedule_row(hub, schedule_id)
    assert (s.last_run, s.next_run) == (T0 + HOUR, T0 + 2 * HOUR)
    hub.tick(now=T0 + 2 * HOUR)
    assert tick_times(hub, schedule_id) == [T0 + HOUR, T0 + 2 * HOUR]
    assert tick_times(hub, schedule_id, "manual") == [T0 + HOUR + 20 * MIN, T0 + HOUR + 40 * MIN]
    assert len(jobs_of(hub, schedule_id)) == 4


# --------------------------------------------------------------------------- catch-up after downtime


@pytest.mark.parametrize(
    ("timing", "latest"),
    [({"every": "15m"}, T0 + 72 * HOUR), ({"every": "7m"}, T0 + 72 * HOUR - MIN),
     ({"cron": "*/10 * * * *"}, T0 + 72 * HOUR), ({"cron": "0 9 * * *", "timezone": "Asia/Tokyo"}, utc(2026, 3, 5))],
)
def test_after_downtime_one_catch_up_tick_the_latest_not_a_storm(
    hub: sgen_ops.Hub, timing: dict[str, Any], latest: datetime
) -> None:
    schedule_id = create(hub, task="test.ok", **timing)
    hub.tick(now=T0 + 20 * MIN)
    before = len(jobs_of(hub, schedule_id))
    # Three days without a scheduler: hundreds of ticks missed, one emitted.
    [caught_up] = hub.tick(now=T0 + 72 * HOUR + 2 * MIN)
    assert len(jobs_of(hub, schedule_id)) == before + 1
    assert tick_times(hub, schedule_id)[-1] == latest
    assert job_row(hub, caught_up).schedule_id == schedule_id
    s = schedule_row(hub, schedule_id)
    assert s.last_run == latest and s.next_run is not None and s.next_run > T0 + 72 * HOUR + 2 * MIN
    assert hub.tick(now=T0 + 72 * HOUR + 2 * MIN) == []


def test_a_never_ticked_schedule_catches_up_once_too(hub: sgen_ops.Hub) -> None:
    schedule_id = create(hub, task="test.ok", cron="0 9 * * *")
    hub.tick(now=T0 + 30 * 24 * HOUR)
    assert tick_times(hub, schedule_id) == [utc(2026, 4, 1, 9)]


def test_several_due_schedules_each_emit_one_tick_per_pass(hub: sgen_ops.Hub) -> None:
    ids = [create(hub, task="test.ok", every=f"{m}m") for m in (1, 2, 5)]
    emitted = hub.tick(now=T0 + 10 * MIN)
    assert len(emitted) == 3 and len(set(emitted)) == 3
    assert [tick_times(hub, i) for i in ids] == [[T0 + 10 * MIN]] * 3


# --------------------------------------------------------------------------- exactly once


def test_a_stale_scheduler_cannot_emit_a_tick_again(hub: sgen_ops.Hub) -> None:
    """The guarantee is in the data: even a scheduler acting on an outdated view of the schedule (here the
    row rewound to before the tick) fails on the tick's unique key and emits nothing."""
    schedule_id = create(hub, task="test.ok", every="1h")
    [job_id] = hub.tick(now=T0 + HOUR)
    with hub.ledger.write() as session:
        session.execute(
            update(Schedule).where(Schedule.id == schedule_id).values(last_run=None, next_run=T0 + HOUR)
        )
    assert hub.tick(now=T0 + HOUR) == []
    assert hub.tick(now=T0 + HOUR + 30 * MIN) == []
    assert [j.id for j in jobs_of(hub, schedule_id)] == [job_id]
    assert row_counts(hub) == (1, 1, 1)


def test_two_schedulers_ticking_the_same_time_never_emit_a_tick_twice(stack: Stack) -> None:
    hubs = [stack.hub(), stack.hub()]
    minutes = (1, 2, 3, 5, 1, 1)
    ids = [create(hubs[0], task="test.ok", every=f"{m}m") for m in minutes]
    results: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    for minute in range(1, 11):
        now = T0 + minute * MIN
        barrier = threading.Barrier(2)

        def run(i: int, now: datetime = now, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait(10)
                results[i].extend(hubs[i].tick(now=now))
            except BaseException as exc:  # noqa: BLE001 -- reported by the test thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    emitted = results[0] + results[1]
    assert len(emitted) == len(set(emitted))  # no job reported by both
    expected = {i: [T0 + m * MIN for m in range(1, 11) if m % n == 0] for i, n in zip(ids, minutes, strict=True)}
    assert {i: tick_times(hubs[0], i) for i in ids} == expected
    assert job_count(hubs[0]) == len(emitted) == sum(len(v) for v in expected.values())


@pytest.mark.slow
def test_two_scheduler_processes_racing_emit_each_tick_once(stack: Stack) -> None:
    hub = stack.hub()
    # Hourly from 65 minutes ago: every process, whenever it runs in the next 55 minutes, sees the same tick due.
    anchor = utcnow() - 65 * MIN
    ids = [create(hub, task="test.ok", every="1h", now=anchor) for _ in range(8)]
    stack.home.mkdir(parents=True, exist_ok=True)
    procs = [
        Process(
            [sys.executable, "-m", "sgen_ops.cli", "scheduler", "--once"],
            stack.env(),
            stack.home / f"scheduler-{i}.log",
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(120) == 0, p.output()
    reported: list[int] = []
    for p in procs:
        [line] = [ln for ln in p.output().splitlines() if ln.startswith('{"emitted"')]
        reported += json.loads(line)["emitted"]
    assert sorted(reported) == sorted({j.id for i in ids for j in jobs_of(hub, i)})
    assert [tick_times(hub, i) for i in ids] == [[anchor + HOUR]] * len(ids)
    assert job_count(hub) == len(ids)


# --------------------------------------------------------------------------- robustness and the loop


def test_a_schedule_whose_task_is_unknown_here_does_not_stop_the_others(hub: sgen_ops.Hub) -> None:
    good = create(hub, task="test.ok", every="1m")
    gone = create(hub, task="test.ok", every="1m")
    with hub.ledger.write() as session:
        session.execute(update(Schedule).where(Schedule.id == gone).values(task="retired.task"))
    [job_id] = hub.tick(now=T0 + MIN)
    assert job_row(hub, job_id).schedule_id == good
    # Its tick stays owed, and nothing half-written is left behind.
    assert tick_times(hub, gone) == [] and schedule_row(hub, gone).next_run == T0 + MIN


def test_run_forever_survives_ledger_and_redis_errors_and_stops_when_asked(
    hub: sgen_ops.Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    outcomes: list[Any] = [
        OperationalError("SELECT 1", {}, Exception("database is locked")),
        redis.ConnectionError("Connection refused"),
        [],
    ]
    calls: list[datetime | None] = []

    def fake_tick(h: sgen_ops.Hub, now: datetime | None = None) -> list[int]:
        calls.append(now)
        outcome = outcomes[len(calls) - 1]
        if len(calls) == len(outcomes):
            stop.set()
        if isinstance(outcome, BaseException):
            raise outcome
        return list(outcome)

    monkeypatch.setattr(scheduler, "tick", fake_tick)
    scheduler.run_forever(hub, interval=0.01, stop=stop)
    assert len(calls) == 3


def test_run_forever_refuses_a_bad_interval(hub: sgen_ops.Hub) -> None:
    with pytest.raises(sgen_ops.ValidationError, match="interval 0 is not valid"):
        scheduler.run_forever(hub, interval=0)


@pytest.mark.slow
def test_the_scheduler_process_emits_due_ticks_and_stops_cleanly_on_sigterm(stack: Stack) -> None:
    hub = stack.hub()
    schedule_id = create(hub, task="test.ok", every="1h", now=utcnow() - 61 * MIN)
    stack.home.mkdir(parents=True, exist_ok=True)
    proc = Process(
        [sys.executable, "-m", "sgen_ops.cli", "scheduler", "--interval", "0.2"],
        stack.env(),
        stack.home / "scheduler.log",
    )
    try:
        [job] = wait_for(lambda: jobs_of(hub, schedule_id), what="the scheduler to emit the due tick")
        wait_for(lambda: "emitted tick" in proc.output(), what="the scheduler to log the tick")
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.output()
    finally:
        proc.stop()
    out = proc.output()
    assert f"schedule {schedule_id}: emitted tick" in out and f"as job {job.id}" in out
    assert "scheduler stopped" in out
    hub.work()
    assert job_row(hub, job.id).state == "succeeded"


@pytest.mark.slow
def test_the_scheduler_process_stops_on_sigint(stack: Stack) -> None:
    stack.home.mkdir(parents=True, exist_ok=True)
    proc = Process(
        [sys.executable, "-m", "sgen_ops.cli", "scheduler", "--interval", "0.2"],
        stack.env(),
        stack.home / "scheduler.log",
    )
    try:
        wait_for(lambda: "scheduler running" in proc.output(), what="the scheduler to start")
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.output()
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()
