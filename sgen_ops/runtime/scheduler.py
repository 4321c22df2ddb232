"""The scheduler: emits every due schedule tick, exactly once however many schedulers run; beside the ticks it
keeps the statistics' rollups up (every minute) and runs the archive (every ``archive_interval``, hourly by
default), in a thread of their own so that a long archive run never delays a tick.

Exactly once is a property of the data, not of timing or locks: each tick is emitted in its own write
transaction that inserts a ``ScheduleTick`` row under the unique key (schedule, kind, tick time). A second
scheduler that decided on the same tick fails that insert, rolls back, and skips it. After downtime a
schedule emits at most one catch-up tick, its latest due fire time, never the whole backlog.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
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

__all__ = ["due_schedule_ids", "run_forever", "tick", "upkeep"]

log = logging.getLogger(__name__)
# Seconds between roll-up passes of the statistics.
ROLLUP_EVERY = 60.0


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


def upkeep(hub: Stack, stop: threading.Event, *, rollup_every: float = ROLLUP_EVERY,
           archive_every: float | None = None) -> None:
    """Roll the statistics up every ``rollup_every`` seconds and run the archive every ``archive_every`` (default:
    the ``archive_interval`` setting; 0: never), the first run at once, until ``stop`` is set. Another
    scheduler's archive run in progress is left to finish (this one skips its turn)."""
    from ..ledger import archive, rollups

    every = hub.settings.archive_interval if archive_every is None else archive_every
    next_archive = time.monotonic()
    while not stop.is_set():
        try:
            rollups.roll(hub.ledger)
            if every > 0 and time.monotonic() >= next_archive:
                next_archive = time.monotonic() + every
                archive.run(hub.ledger, hub.settings, wait=False, stop=stop)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("roll-up or archive run failed, retrying later: %s: %s", type(exc).__name__, exc)
        stop.wait(min(rollup_every, every) if every > 0 else rollup_every)


def run_forever(hub: Stack, interval: float = 1.0, *, stop: threading.Event | None = None,
                rollup_every: float = ROLLUP_EVERY, archive_every: float | None = None) -> None:
    """Run a scheduler pass every ``interval`` seconds until SIGTERM, SIGINT or ``stop`` is set, with ``upkeep``
    (roll-ups and archive runs) in a thread beside it.

    A pass that fails on the ledger or Redis (a restart, a network blip) is logged and retried at the next
    pass; any number of schedulers may run side by side.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValidationError(f"interval {interval!r} is not valid; give seconds > 0 between scheduler passes")
    stop = stop if stop is not None else threading.Event()
    restore = _stop_on_signals(stop)
    log.info("scheduler running, a pass every %gs", interval)
    keeper = threading.Thread(target=upkeep, args=(hub, stop), name="sgen-upkeep", daemon=True,
                              kwargs={"rollup_every": rollup_every, "archive_every": archive_every})
    keeper.start()
    try:
        while not stop.is_set():
            try:
                tick(hub)
            except (SQLAlchemyError, redis.RedisError, OSError) as exc:
                log.warning("scheduler pass failed, retrying in %gs: %s: %s", interval, type(exc).__name__, exc)
            stop.wait(interval)
    finally:
        stop.set()
        restore()
        keeper.join(60)  # an archive run stops between batches
    log.info("scheduler stopped")
