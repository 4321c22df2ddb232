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
from typing import TYPE_CHECKING, Any, cast

from rq import get_current_job
from rq.timeouts import JobTimeoutException
from sqlalchemy import Table, bindparam, insert, select, update

from .errors import JobCancelled, TaskError
from .jobs import touch_lease, transition
from .states import WAITING, State
from .store import Attempt, Job, JobEvent, Ledger, utcnow
from .store.types import UTCDateTime
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


JOBS = cast(Table, Job.__table__)
ATTEMPTS = cast(Table, Attempt.__table__)
EVENTS = cast(Table, JobEvent.__table__)


# The hot path's statements are built once: constructing them per attempt costs more than running them.
_CLAIM_READ = (
    select(
        JOBS.c.state,
        JOBS.c.task,
        JOBS.c.payload,
        JOBS.c.attempts,
        JOBS.c.run,
        JOBS.c.max_attempts,
        JOBS.c.account,
        JOBS.c.schedule_id,
        JOBS.c.scheduled_for,
        JOBS.c.rq_job_id,
        JOBS.c.cancel_requested,
    )
    .where(JOBS.c.id == bindparam("p_id"))
    .with_for_update()
)
_CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"), JOBS.c.state == bindparam("p_state"), JOBS.c.rq_job_id == bindparam("p_rq"))
    .values(
        state=State.RUNNING.value,
        attempts=bindparam("p_attempts"),
        worker=bindparam("p_worker"),
        updated_at=bindparam("p_now", type_=UTCDateTime),
        lease_until=bindparam("p_lease", type_=UTCDateTime),
    )
)
_STOP_READ = (
    select(JOBS.c.state, JOBS.c.run, JOBS.c.attempts, JOBS.c.cancel_requested)
    .where(JOBS.c.id == bindparam("p_id"))
    .with_for_update()
)
_STOP = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(state=bindparam("p_state"), lease_until=None, updated_at=bindparam("p_now", type_=UTCDateTime))
)
_FINISH_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("p_id"),
        ATTEMPTS.c.run == bindparam("p_run"),
        ATTEMPTS.c.number == bindparam("p_number"),
    )
    .values(finished_at=bindparam("p_now", type_=UTCDateTime), exit=bindparam("p_exit"))
)
_ADD_EVENTS = insert(EVENTS)
_ADD_ATTEMPT = insert(ATTEMPTS)


def claim(hub: Hub, job_id: int, rq_job_id: str | None) -> TaskContext | None:
    """Take the next attempt of a job if this delivery owns it (one short Core transaction)."""
    now = utcnow()
    with hub.ledger.write_conn() as conn:
        row = conn.execute(_CLAIM_READ, {"p_id": job_id}).first()
        if row is None or row.state not in WAITING or row.rq_job_id != rq_job_id or row.cancel_requested:
            return None
        events = []
        state = row.state
        if state == State.RETRYING:
            events.append(transition(job_id, row.task, row.account, state, State.QUEUED, now))
            state = State.QUEUED.value
        events.append(transition(job_id, row.task, row.account, state, State.RUNNING, now))
        number = row.attempts + 1
        lease = now + timedelta(seconds=hub.settings.worker_lost_after)
        claimed = conn.execute(
            _CLAIM,
            {
                "p_id": job_id,
                "p_state": row.state,
                "p_rq": rq_job_id,
                "p_attempts": number,
                "p_worker": worker_name,
                "p_now": now,
                "p_lease": lease,
            },
        )
        if claimed.rowcount != 1:
            return None
        conn.execute(_ADD_EVENTS, events)
        conn.execute(
            _ADD_ATTEMPT,
            {
                "job_id": job_id,
                "task": row.task,
                "run": row.run,
                "number": number,
                "ready_at": row.scheduled_for,
                "started_at": now,
                "worker": worker_name,
            },
        )
    return TaskContext(
        job_id=job_id,
        task=row.task,
        attempt=number,
        run=row.run,
        max_attempts=row.max_attempts,
        account=row.account,
        schedule_id=row.schedule_id,
        payload=row.payload,
        _ledger=hub.ledger,
    )


def run_attempt(hub: Hub, job_id: int, rq_job_id: str | None) -> dict[str, Any]:
    ctx = claim(hub, job_id, rq_job_id)
    if ctx is None:
        return {"job_id": job_id, "outcome": "skipped"}
    ledger = hub.ledger
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
    """Write the attempt's outcome if the attempt still owns the job; decide what comes next."""
    if outcome in ("succeeded", "cancelled"):
        return _record_stop(hub, ctx, outcome)
    book = hub.book
    now = utcnow()
    with hub.ledger.write() as session:
        job = session.get(Job, ctx.job_id, with_for_update=True)
        if job is None or job.state != State.RUNNING or job.run != ctx.run or job.attempts != ctx.attempt:
            # The attempt lost its lease and was recorded as worker-lost meanwhile.
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        session.execute(
            update(ATTEMPTS)
            .where(ATTEMPTS.c.job_id == job.id, ATTEMPTS.c.run == job.run, ATTEMPTS.c.number == job.attempts)
            .values(finished_at=now, exit=outcome, error_code=code[:100], error=detail[:ERROR_EXCERPT])
        )
        delivery = book.after_failed_attempt(session, job, now, code, detail, log_text)
        state = job.state
    if delivery:
        book.send([delivery])
    return {"job_id": ctx.job_id, "outcome": outcome, "state": state}


def _record_stop(hub: Hub, ctx: TaskContext, outcome: str) -> dict[str, Any]:
    """The common case, kept to one short Core transaction: the attempt ended without error."""
    now = utcnow()
    with hub.ledger.write_conn() as conn:
        row = conn.execute(_STOP_READ, {"p_id": ctx.job_id}).first()
        if row is None or row.state != State.RUNNING or row.run != ctx.run or row.attempts != ctx.attempt:
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        # A task without checkpoints runs to completion and is then marked cancelled.
        target = State.CANCELLED if outcome == "cancelled" or row.cancel_requested else State.SUCCEEDED
        event = transition(ctx.job_id, ctx.task, ctx.account, row.state, target, now)
        conn.execute(_STOP, {"p_id": ctx.job_id, "p_state": target.value, "p_now": now})
        conn.execute(
            _FINISH_ATTEMPT,
            {"p_id": ctx.job_id, "p_run": ctx.run, "p_number": ctx.attempt, "p_now": now, "p_exit": outcome},
        )
        conn.execute(_ADD_EVENTS, [event])
    return {"job_id": ctx.job_id, "outcome": outcome, "state": target.value}
