"""The scheduler: emits every due schedule tick, exactly once however many schedulers run.

Exactly once is a property of the data, not of timing or locks: each tick is emitted in its own write
transaction that inserts a ``ScheduleTick`` row under the unique key (schedule, kind, tick time). A second
scheduler that decided on the same tick fails that insert, rolls back, and skips it. After downtime a
schedule emits at most one catch-up tick, its latest due fire time, never the whole backlog.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..core.times import as_utc, utcnow
from ..errors import SgenOpsError, ValidationError
from ..ledger import schedules
from ..ledger.store import Schedule
from ..transport.queue import Delivery

if TYPE_CHECKING:
    from ..ledger.stack import Stack

__all__ = ["due_schedule_ids", "run_forever", "tick"]

log = logging.getLogger(__name__)


def due_schedule_ids(hub: Stack, now: datetime) -> list[int]:
    """Enabled schedules whose next run is at or before ``now``, the most overdue first."""
    with hub.ledger.read() as session:
        return list(
            session.scalars(
                select(Schedule.id)
                .where(Schedule.enabled.is_(True), Schedule.next_run.is_not(None), Schedule.next_run <= now)
                .order_by(Schedule.next_run, Schedule.id)
            )
        )


def tick(hub: Stack, now: datetime | None = None) -> list[int]:
    """One scheduler pass: emit each due schedule's tick; returns the new job ids.

    ``now`` (default: the clock) lets tests and backfills move time instead of waiting for it.
    """
    now = as_utc(now) if now is not None else utcnow()
    emitted = []
    for schedule_id in due_schedule_ids(hub, now):
        job_id = _tick_one(hub, schedule_id, now)
        if job_id is not None:
            emitted.append(job_id)
    return emitted


def _tick_one(hub: Stack, schedule_id: int, now: datetime) -> int | None:
    """Emit one schedule's due tick in its own transaction; None if there was nothing (left) to emit."""
    deliveries: list[Delivery] = []
    due: datetime | None = None
    try:
        with hub.ledger.write() as session:
            # Re-read inside the write: another scheduler or an operator may have changed it since.
            schedule = session.get(Schedule, schedule_id)
            if schedule is None or not schedule.enabled or schedule.next_run is None or schedule.next_run > now:
                return None
            timing = schedules.timing_of(schedule)
            due = timing.latest_due(schedule.last_run, now)
            following = timing.next_after(now)
            # next_run is the earliest tick still owed: ticks before it (e.g. while paused) are never emitted.
            if due is None or due < schedule.next_run:
                schedule.next_run = following
                return None
            job, deliveries = schedules.emit(hub, session, schedule, tick_at=due, kind=schedules.TICK, now=now)
            schedule.last_run = due
            schedule.next_run = following
            job_id = job.id
    except IntegrityError:
        when = due.isoformat() if due is not None else "?"
        log.info("schedule %d: tick %s was already emitted by another scheduler", schedule_id, when)
        return None
    except SgenOpsError as exc:
        # E.g. a task this process does not know: the tick stays owed and is emitted by a scheduler that does.
        log.error("schedule %d: cannot emit its tick: %s", schedule_id, exc)
        return None
    hub.book.send(deliveries)
    log.info("schedule %d: emitted tick %s as job %d", schedule_id, due.isoformat(), job_id)
    return job_id


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set ``stop`` on SIGTERM and SIGINT (main thread only); returns a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def run_forever(hub: Stack, interval: float = 1.0, *, stop: threading.Event | None = None) -> None:
    """Run a scheduler pass every ``interval`` seconds until SIGTERM, SIGINT or ``stop`` is set.

    A pass that fails on the ledger or Redis (a restart, a network blip) is logged and retried at the next
    pass; any number of schedulers may run side by side.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValidationError(f"interval {interval!r} is not valid; give seconds > 0 between scheduler passes")
    stop = stop if stop is not None else threading.Event()
    restore = _stop_on_signals(stop)
    log.info("scheduler running, a pass every %gs", interval)
    try:
        while not stop.is_set():
            try:
                tick(hub)
            except (SQLAlchemyError, redis.RedisError, OSError) as exc:
                log.warning("scheduler pass failed, retrying in %gs: %s: %s", interval, type(exc).__name__, exc)
            stop.wait(interval)
    finally:
        restore()
    log.info("scheduler stopped")
