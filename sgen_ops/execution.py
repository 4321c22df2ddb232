"""One attempt: claim it on the ledger, run the task's handler, record the outcome, decide what next.

``perform`` is the function RQ calls with a ledger job id. The claim is a compare-and-set on the
ledger row (state waiting *and* the RQ delivery id current), so a duplicate or stale delivery never
runs an attempt twice; the outcome is written only if the attempt still owns the row.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rq import get_current_job
from rq.timeouts import JobTimeoutException
from sqlalchemy import select

from .errors import JobCancelled, TaskError
from .jobs import touch_lease
from .states import WAITING, State
from .store import Attempt, Job, Ledger, utcnow
from .tasks import find_task

if TYPE_CHECKING:
    from .hub import Hub

ERROR_EXCERPT = 500

_hub: Hub | None = None
_hub_pid: int | None = None
worker_name: str = f"{socket.gethostname()}.{os.getpid()}"


def bind_hub(hub: Hub) -> None:
    """Make ``hub`` the one that ``perform`` uses in this process."""
    global _hub, _hub_pid
    _hub, _hub_pid = hub, os.getpid()


def current_hub() -> Hub:
    """The hub of this process; after a fork, the inherited one drops its parent's connections."""
    global _hub_pid
    if _hub is None:
        from .hub import connect

        bind_hub(connect())
    elif _hub_pid != os.getpid():
        _hub.after_fork()
        _hub_pid = os.getpid()
    assert _hub is not None
    return _hub


class _Heartbeat:
    """One daemon thread per process renewing the leases of the attempts it is running."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[Ledger, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, job_id: int, ledger: Ledger, lease_seconds: float) -> None:
        with self._lock:
            self._running[job_id] = (ledger, lease_seconds)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="sgen-ops-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, job_id: int) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                running = dict(self._running)
            lease = min((s for _, s in running.values()), default=30.0)
            time.sleep(max(0.2, lease / 3))
            by_ledger: dict[int, tuple[Ledger, list[int], float]] = {}
            with self._lock:
                for job_id, (ledger, seconds) in self._running.items():
                    entry = by_ledger.setdefault(id(ledger), (ledger, [], seconds))
                    entry[1].append(job_id)
            for ledger, ids, seconds in by_ledger.values():
                # A missed renewal is retried on the next beat.
                with contextlib.suppress(Exception):
                    touch_lease(ledger, ids, utcnow() + timedelta(seconds=seconds))


_heartbeat = _Heartbeat()


@dataclass
class TaskContext:
    """What a handler gets besides its payload."""

    job_id: int
    task: str
    attempt: int
    run: int
    max_attempts: int
    account: str | None
    schedule_id: int | None
    payload: Any
    _ledger: Ledger = field(repr=False)

    def checkpoint(self) -> None:
        """A safe stop point: raises JobCancelled if an operator cancelled this job."""
        with self._ledger.read() as session:
            flagged = session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if flagged:
            raise JobCancelled(f"job {self.job_id} was cancelled by an operator")


def perform(job_id: int) -> dict[str, Any]:
    """RQ's entry point: run the next attempt of ledger job ``job_id`` if this delivery owns it."""
    rq_job = get_current_job()
    return run_attempt(current_hub(), int(job_id), rq_job.id if rq_job else None)


def run_attempt(hub: Hub, job_id: int, rq_job_id: str | None) -> dict[str, Any]:
    book, ledger = hub.book, hub.ledger
    now = utcnow()
    with ledger.write() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.state not in WAITING or job.rq_job_id != rq_job_id or job.cancel_requested:
            return {"job_id": job_id, "outcome": "skipped"}
        if job.state == State.RETRYING:
            book.move(session, job, State.QUEUED, now)
        ready_at = job.scheduled_for
        book.move(session, job, State.RUNNING, now)
        job.attempts += 1
        job.worker = worker_name
        job.lease_until = now + timedelta(seconds=hub.settings.worker_lost_after)
        session.add(
            Attempt(
                job_id=job.id,
                task=job.task,
                run=job.run,
                number=job.attempts,
                ready_at=ready_at,
                started_at=now,
                worker=worker_name,
            )
        )
        ctx = TaskContext(
            job_id=job.id,
            task=job.task,
            attempt=job.attempts,
            run=job.run,
            max_attempts=job.max_attempts,
            account=job.account,
            schedule_id=job.schedule_id,
            payload=job.payload,
            _ledger=ledger,
        )

    outcome, code, detail, log_text = "succeeded", "", "", None
    spec = find_task(ctx.task)
    _heartbeat.add(job_id, ledger, hub.settings.worker_lost_after)
    try:
        if spec is None:
            raise TaskError("unknown_task", f"no handler is registered for task {ctx.task!r} in this worker")
        spec.handler(ctx, ctx.payload)
    except JobCancelled:
        outcome = "cancelled"
    except TaskError as exc:
        outcome, code, detail, log_text = "failed", exc.code, exc.detail or exc.code, traceback.format_exc()
    except JobTimeoutException as exc:
        outcome, code, detail, log_text = "timeout", "timeout", str(exc), traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - any handler error fails the attempt, never the worker
        outcome, code = "failed", type(exc).__name__
        detail, log_text = str(exc) or type(exc).__name__, traceback.format_exc()
    finally:
        _heartbeat.discard(job_id)
    return record_outcome(hub, ctx, outcome, code, detail, log_text)


def record_outcome(
    hub: Hub, ctx: TaskContext, outcome: str, code: str, detail: str, log_text: str | None
) -> dict[str, Any]:
    book = hub.book
    now = utcnow()
    delivery = None
    with hub.ledger.write() as session:
        job = session.get(Job, ctx.job_id, with_for_update=True)
        if job is None or job.state != State.RUNNING or job.run != ctx.run or job.attempts != ctx.attempt:
            # The attempt lost its lease and was recorded as worker-lost meanwhile.
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        attempt = session.scalars(
            select(Attempt).where(Attempt.job_id == job.id, Attempt.run == job.run, Attempt.number == job.attempts)
        ).one()
        attempt.finished_at = now
        attempt.exit = outcome
        if outcome in ("succeeded", "cancelled"):
            job.lease_until = None
            stop = outcome == "cancelled" or job.cancel_requested
            book.move(session, job, State.CANCELLED if stop else State.SUCCEEDED, now)
        else:
            attempt.error_code = code[:100]
            attempt.error = detail[:ERROR_EXCERPT]
            delivery = book.after_failed_attempt(session, job, now, code, detail, log_text)
        state = job.state
    if delivery:
        book.send([delivery])
    return {"job_id": ctx.job_id, "outcome": outcome, "state": state}
