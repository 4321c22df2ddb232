"""Workers and queues at a glance, read-only: the live RQ workers of a hub's queues and each priority
queue's depth, with the ledger's view of what waits longest and when a schedule last ticked.

``snapshot(hub)`` reads Redis (the workers' registrations and heartbeats, the queues and their scheduled
and started registries) and the ledger (the oldest job due but not yet started, per priority; the latest
schedule tick emitted). It changes nothing. A worker is *stale* when its last heartbeat is older than its
own time to live (a live RQ worker beats at least that often, even idle), or when it was registered on
this host by a process that no longer exists.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
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
    """One priority queue: deliveries ready and scheduled for later in Redis, jobs running per the ledger; the
    oldest due job's wait."""

    priority: str
    ready: int
    scheduled: int
    running: int
    oldest_due: datetime | None


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    workers: tuple[WorkerInfo, ...]
    queues: tuple[QueueInfo, ...]
    last_schedule_tick: datetime | None

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


def snapshot(hub: Stack, now: datetime | None = None) -> Snapshot:
    """The hub's workers and queues now (read-only)."""
    now = now or utcnow()
    queues = hub.transport.queues
    workers = live_workers(hub, now)
    with hub.ledger.read() as session:
        due = per_priority(session, due_now(now), value=func.min(Job.scheduled_for))
        # Running per the ledger: sgen-ops' workers keep no RQ started registry of their deliveries.
        running = per_priority(session, Job.state == State.RUNNING.value)
        last_tick = last_schedule_tick(session)
    infos = tuple(
        QueueInfo(
            priority=priority,
            ready=queues[priority].count,
            scheduled=ScheduledJobRegistry(queue=queues[priority]).count,
            running=running.get(priority, 0),
            oldest_due=as_utc(due[priority]) if due.get(priority) is not None else None,
        )
        for priority in PRIORITIES
    )
    return Snapshot(now, workers, infos, last_tick)
