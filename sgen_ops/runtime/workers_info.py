"""Workers and queues at a glance, read-only: the live RQ workers of a hub's queues and each priority
queue's depth, with the ledger's view of what waits longest and when a schedule last ticked.

``snapshot(hub)`` reads Redis (the workers' registrations and heartbeats, the queues and their scheduled
registries) and the ledger (jobs waiting, delayed and running and the oldest job due but not yet started, per
priority; the latest schedule tick emitted; the enabled schedules; the archive's summary). It changes nothing.
A worker is *stale* when its last heartbeat is older than its own time to live (a live RQ worker beats at
least that often, even idle), or when it was registered on this host by a process that no longer exists.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rq import Worker
from rq.registry import ScheduledJobRegistry
from rq.worker import BaseWorker
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from ..core.states import WAITING_VALUES, State
from ..core.tasks import PRIORITIES
from ..core.times import as_utc, utcnow
from ..ledger import archive
from ..ledger.archive import Summary
from ..ledger.schedules import TICK
from ..ledger.store import Job, Schedule, ScheduleTick

if TYPE_CHECKING:
    from ..ledger.stack import Stack


@dataclass(frozen=True)
class WorkerInfo:
    """One RQ worker serving the hub's queues."""

    name: str
    host: str
    pid: int | None
    state: str
    current_job: int | None
    current_task: str | None
    last_heartbeat: datetime | None
    started: datetime | None
    succeeded: int
    failed: int
    stale: bool
    stale_reason: str | None


@dataclass(frozen=True)
class QueueInfo:
    """One priority queue: jobs waiting (due now) and delayed (due later) and running per the ledger;
    deliveries ready and scheduled for later in Redis; the oldest due job's due time."""

    priority: str
    waiting: int
    delayed: int
    running: int
    ready: int
    scheduled: int
    oldest_due: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """What ``sgen-ops info`` and the Workers view show (``Operations.workers``, ``GET /api/workers``)."""

    at: datetime
    workers: list[WorkerInfo]
    queues: list[QueueInfo]
    last_schedule_tick: datetime | None
    enabled_schedules: int = 0
    # The archive's last run and totals: stack-wide, so given to operators of every account only.
    archive: Summary | None = None

    def oldest_wait_seconds(self, queue: QueueInfo) -> float | None:
        return None if queue.oldest_due is None else max(0.0, (self.at - queue.oldest_due).total_seconds())


def _process_gone(host: str, pid: int | None) -> bool:
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _state(worker: BaseWorker) -> str:
    state = str(worker.get_state())
    return "starting" if state == "?" else state  # registered, not yet polling


def _stale(worker: BaseWorker, now: datetime) -> str | None:
    if _process_gone(worker.hostname or "", worker.pid):
        return f"process {worker.pid} no longer runs on {worker.hostname}"
    beat = worker.last_heartbeat
    if beat is not None and (now - as_utc(beat)).total_seconds() > worker.worker_ttl:
        return f"no heartbeat for over {worker.worker_ttl} s"
    return None


def per_priority(session: Session, *conds: ColumnElement[bool], value: Any = None) -> dict[str, Any]:
    """``value`` (default: the count) of the jobs matching ``conds``, per priority."""
    value = func.count() if value is None else value
    return dict(session.execute(select(Job.priority, value).where(*conds).group_by(Job.priority)).all())


def due_now(now: datetime) -> ColumnElement[bool]:
    """The jobs waiting and due by ``now``."""
    return Job.state.in_(WAITING_VALUES) & (Job.scheduled_for <= now)


def last_schedule_tick(session: Session, *scope: ColumnElement[bool]) -> datetime | None:
    """When the scheduler last emitted a due tick (runs asked for by hand not counted), among the schedules
    ``scope`` selects."""
    found = session.scalar(
        select(func.max(ScheduleTick.emitted_at)).join(Schedule, Schedule.id == ScheduleTick.schedule_id)
        .where(ScheduleTick.kind == TICK, *scope)
    )
    return as_utc(found) if found else None


def live_workers(hub: Stack, now: datetime | None = None) -> tuple[WorkerInfo, ...]:
    """The RQ workers registered on the hub's queues, each with its current ledger job and why it looks stale."""
    now = now or utcnow()
    found: dict[str, BaseWorker] = {}
    for queue in hub.transport.queues.values():
        for worker in Worker.all(connection=hub.redis, queue=queue):
            found.setdefault(worker.name, worker)
    # What a worker runs is the ledger's: the attempts it claimed and has not finished.
    running: dict[str, tuple[int | None, str | None]] = {}
    if found:
        with hub.ledger.read() as session:
            for running_id, running_task, worker_name in session.execute(
                select(Job.id, Job.task, Job.worker)
                .where(Job.state == State.RUNNING.value, Job.worker.in_(list(found)))
                .order_by(Job.id)
            ):
                running.setdefault(str(worker_name), (running_id, running_task))
    workers = []
    for name, worker in sorted(found.items()):
        job_id, task = running.get(name, (None, None))
        reason = _stale(worker, now)
        workers.append(WorkerInfo(
            name=name, host=worker.hostname or "", pid=worker.pid, state=_state(worker),
            current_job=job_id, current_task=task,
            last_heartbeat=as_utc(worker.last_heartbeat) if worker.last_heartbeat else None,
            started=as_utc(worker.birth_date) if worker.birth_date else None,
            succeeded=int(worker.successful_job_count or 0), failed=int(worker.failed_job_count or 0),
            stale=reason is not None, stale_reason=reason,
        ))
    return tuple(workers)


def snapshot(
    hub: Stack,
    now: datetime | None = None,
    *,
    jobs: Sequence[ColumnElement[bool]] = (),
    schedules: Sequence[ColumnElement[bool]] = (),
    stack_wide: bool = True,
) -> Snapshot:
    """The hub's workers and queues now (read-only). Ledger counts are of the jobs ``jobs`` selects and the
    schedules ``schedules`` selects (an operator's account scope); a worker's current job outside them is not
    named. ``stack_wide``: the archive's summary too."""
    now = now or utcnow()
    queues = hub.transport.queues
    found = live_workers(hub, now)
    with hub.ledger.read() as session:
        carrying = [w.current_job for w in found if w.current_job is not None]
        visible = set(session.scalars(select(Job.id).where(Job.id.in_(carrying), *jobs))) if carrying else set()
        # Another account's job is not named to an operator bound to one account.
        workers = [w if w.current_job in visible else replace(w, current_job=None, current_task=None)
                   for w in found]
        waiting = Job.state.in_(WAITING_VALUES)
        due = per_priority(session, due_now(now), *jobs)
        oldest = per_priority(session, due_now(now), *jobs, value=func.min(Job.scheduled_for))
        later = per_priority(session, waiting, Job.scheduled_for > now, *jobs)
        # Running per the ledger: sgen-ops' workers keep no RQ started registry of their deliveries.
        running = per_priority(session, Job.state == State.RUNNING.value, *jobs)
        last_tick = last_schedule_tick(session, *schedules)
        enabled = session.scalar(
            select(func.count()).select_from(Schedule).where(Schedule.enabled.is_(True), *schedules))
    infos = [
        QueueInfo(
            priority=priority,
            waiting=int(due.get(priority, 0)),
            delayed=int(later.get(priority, 0)),
            running=int(running.get(priority, 0)),
            ready=queues[priority].count,
            scheduled=ScheduledJobRegistry(queue=queues[priority]).count,
            oldest_due=as_utc(oldest[priority]) if oldest.get(priority) is not None else None,
        )
        for priority in PRIORITIES
    ]
    summary = archive.summary(hub.ledger) if stack_wide else None
    return Snapshot(now, workers, infos, last_tick, int(enabled or 0), summary)
