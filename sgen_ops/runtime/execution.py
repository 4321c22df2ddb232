"""One attempt: claim it on the ledger, run the task's handler, record the outcome, decide what next.

``perform`` is the function RQ calls with a ledger job id. The claim is a compare-and-set on the
ledger row (state waiting *and* the RQ delivery id current), so a duplicate or stale delivery never
runs an attempt twice; the outcome is written only if the attempt still owns the row.

Attempts are fenced (docs/fencing.md): every write an attempt makes names it by (job, run, attempt), so an
attempt recorded lost can write nothing more; the worker stops a run whose lease it could not renew before the
lease ends (``Leases``); every ledger write of the worker waits out an outage (``riding_out``).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rq import get_current_job
from rq.timeouts import JobTimeoutException
from sqlalchemy import Engine, event

from ..core.backoff import ride_out
from ..core.states import WAITING, State
from ..core.tasks import find_task
from ..core.times import utcnow
from ..errors import AttemptFenced, JobCancelled, TaskError, Unavailable
from ..ledger import statements as sql
from ..ledger.jobs import renew_leases
from ..ledger.store import JOBS, Ledger
from ..ledger.store.db import driver_error, unavailable
from ..ledger.store.types import UTCDateTime
from ..transport.queue import PERFORMS

if TYPE_CHECKING:
    from ..ledger.stack import Stack

log = logging.getLogger(__name__)


def bind_hub(hub: Stack) -> None:
    """Make ``hub`` the one that ``perform`` uses in this process."""
    RUNTIME.bind(hub)


def current_hub() -> Stack:
    """The hub of this process's worker runtime (see ``WorkerRuntime.hub``)."""
    return RUNTIME.hub()


# A worker that leaves because its attempt's lease ran out under it exits with this status (EX_TEMPFAIL): its pool
# or supervisor starts another.
EXIT_FENCED = 75


class Reach:
    """When this process last failed to reach the ledger. Upkeep recovers lost attempts only after a whole lease
    of reachable ledger (docs/fencing.md), counted from the process's start or its last failure."""

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.failed_at: float | None = None

    def failed(self) -> None:
        self.since = self.failed_at = time.monotonic()

    def steady_for(self) -> float:
        """Seconds since the ledger last failed this process (or since it started)."""
        return time.monotonic() - self.since

    def failed_within(self, seconds: float) -> bool:
        return self.failed_at is not None and time.monotonic() - self.failed_at < seconds


@dataclass(eq=False)
class Lease:
    """One running attempt's lease, as its worker holds it. ``confirmed`` is the monotonic time at which the last
    renewal (or the claim) that the ledger confirmed was sent: the lease it wrote ends ``seconds`` later or after.
    The attempt is fenced (checkpoints raise) at ``seconds - 2 margin`` after it, and its run is ended
    (``on_fence``) at ``seconds - margin``; the margin is a tenth of the lease."""

    job_id: int
    run: int
    attempt: int
    ledger: Ledger
    seconds: float
    confirmed: float
    on_fence: Callable[[str], None] | None = None
    fenced: str | None = None  # why the attempt may no longer run, once it may not
    ended: bool = False  # the run was ended (on_fence called)

    @property
    def token(self) -> tuple[int, int, int]:
        return self.job_id, self.run, self.attempt

    @property
    def margin(self) -> float:
        return self.seconds / 10

    @property
    def fence_at(self) -> float:
        return self.confirmed + self.seconds - 2 * self.margin

    @property
    def end_at(self) -> float:
        return self.confirmed + self.seconds - self.margin


class Leases:
    """The leases of the attempts this process runs: a renewer thread renews them every third of the shortest
    lease (each renewal names the attempt, so a lost one renews nothing), and a watchdog thread, which does no
    I/O, fences and ends the attempts whose lease could not be renewed in time (docs/fencing.md)."""

    def __init__(self) -> None:
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._watch = threading.Event()
        self._threads: tuple[threading.Thread, threading.Thread] | None = None
        self._pid = 0
        self._interval = float("inf")

    @staticmethod
    def interval(lease_seconds: float) -> float:
        return max(0.2, lease_seconds / 3)

    def add(self, ctx: TaskContext, ledger: Ledger, seconds: float,
            on_fence: Callable[[str], None] | None = None) -> Lease:
        lease = Lease(ctx.job_id, ctx.run, ctx.attempt, ledger, seconds, ctx.claimed or time.monotonic(), on_fence)
        ctx.lease = lease
        with self._lock:
            self._held[ctx.job_id] = lease
            alive = self._threads is not None and all(t.is_alive() for t in self._threads)
            if not alive or self._pid != os.getpid():
                self._pid = os.getpid()
                self._wake, self._watch = threading.Event(), threading.Event()
                self._interval = self.interval(seconds)
                self._threads = (
                    threading.Thread(target=self._renew_loop, name="sgen-ops-lease-renewer", daemon=True),
                    threading.Thread(target=self._watch_loop, name="sgen-ops-lease-watchdog", daemon=True),
                )
                for thread in self._threads:
                    thread.start()
            elif self.interval(seconds) < self._interval:
                self._wake.set()
        self._watch.set()
        return lease

    def discard(self, lease: Lease | None) -> None:
        """The run is over (its handler returned, or its horse ended): nothing to renew or fence any more."""
        if lease is None:
            return
        with self._lock:
            if self._held.get(lease.job_id) is lease:
                del self._held[lease.job_id]

    def held(self, lease: Lease) -> bool:
        with self._lock:
            return self._held.get(lease.job_id) is lease

    def _renew_loop(self) -> None:
        last = time.monotonic()
        while True:
            with self._lock:
                shortest = min((lease.seconds for lease in self._held.values()), default=30.0)
                self._interval = self.interval(shortest)
                wake = self._wake
            remaining = last + self._interval - time.monotonic()
            if remaining > 0:
                wake.wait(remaining)
                wake.clear()
                continue
            last = time.monotonic()
            by_ledger: dict[int, tuple[Ledger, list[Lease]]] = {}
            with self._lock:
                for lease in self._held.values():
                    by_ledger.setdefault(id(lease.ledger), (lease.ledger, []))[1].append(lease)
            for ledger, leases in by_ledger.values():
                self._renew(ledger, leases)

    def _renew(self, ledger: Ledger, leases: list[Lease]) -> None:
        sent = time.monotonic()
        seconds = min(lease.seconds for lease in leases)
        try:
            renewed = renew_leases(ledger, [lease.token for lease in leases], utcnow() + timedelta(seconds=seconds))
        except Unavailable:
            RUNTIME.reach.failed()  # a missed renewal is tried at the next beat; the watchdog keeps the bound
            return
        except Exception:
            log.exception("could not renew the leases of jobs %s", [lease.job_id for lease in leases])
            return
        for lease in leases:
            if lease.job_id in renewed:
                lease.confirmed = max(lease.confirmed, sent)
            elif self.held(lease):
                # The ledger no longer holds the attempt: recorded lost meanwhile, another attempt may run now.
                self.fence(lease, f"the ledger recorded attempt {lease.attempt} of job {lease.job_id} lost "
                                  "meanwhile", end=True)
        self._watch.set()

    def _watch_loop(self) -> None:
        while True:
            now = time.monotonic()
            soonest = now + 60.0
            due: list[tuple[Lease, bool]] = []
            with self._lock:
                for lease in self._held.values():
                    if lease.ended:
                        continue
                    if lease.fenced is None and now >= lease.fence_at:
                        due.append((lease, now >= lease.end_at))
                    elif lease.fenced is not None and now >= lease.end_at:
                        due.append((lease, True))
                    else:
                        soonest = min(soonest, lease.fence_at if lease.fenced is None else lease.end_at)
            for lease, end in due:
                waited = now - lease.confirmed
                self.fence(lease, f"its worker could not renew the lease of attempt {lease.attempt} of job "
                                  f"{lease.job_id} for {waited:.1f} s (the ledger was unreachable; "
                                  f"worker_lost_after={lease.seconds:g}s)", end=end)
            if due:
                continue
            self._watch.wait(max(0.0, soonest - time.monotonic()))
            self._watch.clear()

    def fence(self, lease: Lease, reason: str, *, end: bool) -> None:
        """The attempt may no longer run: its checkpoints raise from now on; with ``end`` its run is ended."""
        if not self.held(lease):
            return
        if lease.fenced is None:
            lease.fenced = reason
            log.warning("fenced job %d: %s", lease.job_id, reason)
        if end and not lease.ended:
            lease.ended = True
            if lease.on_fence is not None:
                lease.on_fence(reason)


# After a failure to reach the ledger, checkpoints skip their read for this long.
CHECKPOINT_QUIET = 1.0


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
    # Monotonic time at which the claim was sent; the attempt's lease runs from it.
    claimed: float = field(default=0.0, repr=False)
    lease: Lease | None = field(default=None, repr=False)

    def checkpoint(self) -> None:
        """A safe stop point: raises JobCancelled if an operator cancelled this job, AttemptFenced if this attempt
        may no longer run (its lease could not be renewed in time, or the ledger recorded it lost). While the
        ledger is unreachable it checks nothing and returns: the handler goes on, its lease decides."""
        if self.lease is not None and self.lease.fenced:
            raise AttemptFenced(self.lease.fenced)
        if RUNTIME.reach.failed_within(CHECKPOINT_QUIET):
            return  # the ledger failed a moment ago: not asked again at every checkpoint of a tight loop
        try:
            with self._ledger.read() as session:
                row = session.execute(sql.CHECKPOINT_CORE, {"p_id": self.job_id}).first()
        except Unavailable:
            RUNTIME.reach.failed()
            return
        if row is None or row.state != State.RUNNING or row.run != self.run or row.attempts != self.attempt:
            raise AttemptFenced(f"attempt {self.attempt} of job {self.job_id} is no longer the job's attempt: the "
                                "ledger recorded it lost meanwhile")
        if row.cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled by an operator")


def perform(job_id: int) -> dict[str, Any]:
    """The function a delivery names: run the next attempt of ledger job ``job_id`` if this delivery owns
    it. sgen-ops' own workers run deliveries without RQ's job machinery (``sgen_ops.runtime.workers``); this is
    what a stock RQ worker on the same queues calls."""
    rq_job = get_current_job()
    return run_attempt(RUNTIME.hub(), int(job_id), rq_job.id if rq_job else None)


def claim(hub: Stack, job_id: int, rq_job_id: str | None) -> TaskContext | None:
    """Take the next attempt of a job if this delivery owns it (one short transaction)."""
    fast = RUNTIME.hot_path(hub.ledger)
    if fast is not None:
        return fast.claim(hub, job_id, rq_job_id)
    return _claim_core(hub, job_id, rq_job_id)


def _claim_core(hub: Stack, job_id: int, rq_job_id: str | None) -> TaskContext | None:
    """``claim`` on any SQLAlchemy backend, through Core."""
    sent = time.monotonic()
    now = utcnow()
    with hub.ledger.write_conn() as conn:
        row = conn.execute(sql.CLAIM_READ_CORE, {"p_id": job_id}).first()
        if row is None or row.state not in WAITING or row.rq_job_id != rq_job_id or row.cancel_requested:
            return None
        if row.paused:
            # Its task or queue is paused: it stays waiting, no attempt counted; resuming re-sends it.
            return None
        number = row.attempts + 1
        lease = now + timedelta(seconds=hub.settings.worker_lost_after)
        claimed = conn.execute(
            sql.CLAIM_CORE,
            {
                "p_id": job_id,
                "p_state": row.state,
                "p_rq": rq_job_id,
                "p_attempts": number,
                "p_worker": RUNTIME.name,
                "p_now": now,
                "p_lease": lease,
            },
        )
        if claimed.rowcount != 1:
            return None
        conn.execute(
            sql.ADD_ATTEMPT_CORE,
            {
                "job_id": job_id,
                "task": row.task,
                "run": row.run,
                "number": number,
                "ready_at": row.scheduled_for,
                "started_at": now,
                "worker": RUNTIME.name,
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
        claimed=sent,
    )


def ledger_job_id(rq_job: Any) -> int | None:
    """The ledger job id an RQ delivery carries, or None if it is not a delivery of ``perform``."""
    if rq_job.func_name not in PERFORMS or len(rq_job.args) != 1:
        return None
    try:
        return int(rq_job.args[0])
    except (TypeError, ValueError):
        return None


def run_attempt(
    hub: Stack,
    job_id: int,
    rq_job_id: str | None,
    time_limit: AbstractContextManager[Any] | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_wait: Callable[[BaseException], None] | None = None,
) -> dict[str, Any]:
    """Claim, run and record one attempt in this process; ``time_limit`` bounds the handler alone. The claim and
    the outcome wait out an outage of the ledger (``riding_out``): the claim until ``should_stop()``, the outcome
    until the ledger answers. ``on_wait`` hears each failed try (a worker keeps its registration alive there)."""
    ctx = riding_out(lambda: claim(hub, job_id, rq_job_id), f"claiming job {job_id}", should_stop, on_wait)
    if ctx is None:
        return {"job_id": job_id, "outcome": "skipped"}
    lease = RUNTIME.leases.add(ctx, hub.ledger, hub.settings.worker_lost_after, RUNTIME.end_run_in_process)
    try:
        outcome = run_handler(ctx, time_limit)
    finally:
        RUNTIME.leases.discard(lease)
    return riding_out(lambda: record_outcome(hub, ctx, *outcome), f"recording job {job_id}'s outcome",
                      on_wait=on_wait)


T = TypeVar("T")


def riding_out(
    write: Callable[[], T],
    what: str = "a ledger write",
    should_stop: Callable[[], bool] | None = None,
    on_wait: Callable[[BaseException], None] | None = None,
) -> T:
    """Run ``write``, trying again with backoff while the ledger is unreachable (``Unavailable``: an outage, a
    restart, a failover, a terminated backend), until it answers or ``should_stop()``: a claim or an outcome the
    handler produced is not given up at the first error. A write that did commit before its connection dropped
    is a no-op the second time (compare-and-set)."""

    def waiting(exc: BaseException) -> None:
        RUNTIME.reach.failed()
        if on_wait is not None:
            on_wait(exc)

    return ride_out(write, retry_on=Unavailable, what=f"worker {RUNTIME.name}: {what}", should_stop=should_stop,
                    on_wait=waiting, logger=log)


Outcome = tuple[str, str, str, str | None]


def run_handler(ctx: TaskContext, time_limit: AbstractContextManager[Any] | None = None) -> Outcome:
    """Run the task's handler for a claimed attempt: (outcome, error code, detail, traceback).
    ``time_limit`` (the worker's death penalty) is entered around the handler alone, so that a timeout
    firing as the handler returns is still the handler's timeout."""
    spec = find_task(ctx.task)
    try:
        with time_limit if time_limit is not None else contextlib.nullcontext():
            if spec is None:
                raise TaskError("unknown_task", f"no handler is registered for task {ctx.task!r} in this worker")
            spec.handler(ctx, ctx.payload)
    except JobCancelled:
        return "cancelled", "", "", None
    except AttemptFenced as exc:
        return "fenced", "worker-lost", str(exc), None
    except TaskError as exc:
        return "failed", exc.code, exc.detail or exc.code, traceback.format_exc()
    except JobTimeoutException as exc:
        return "timeout", "timeout", str(exc), traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - any handler error fails the attempt, never the worker
        return "failed", type(exc).__name__, str(exc) or type(exc).__name__, traceback.format_exc()
    return "succeeded", "", "", None


# -- a forking worker: the worker claims and records, its work horse runs the handler ----------------
class Handover:
    """One attempt handed from a forking worker to its work horse.

    The worker claims the attempt and renews its lease on its own warm ledger connection; the horse,
    forked with this object in memory, runs only the handler and writes the outcome to a file the two
    share (a file, not a pipe, so a long traceback never blocks the horse); the worker then records it.
    A horse that ends without writing an outcome (killed, out of memory, crashed interpreter) is
    recorded as worker-lost at once instead of after the lease runs out.
    """

    def __init__(self, rq_job_id: str, ctx: TaskContext | None) -> None:
        self.rq_job_id = rq_job_id
        self.ctx = ctx
        self.fenced: str | None = None  # why the worker ended the horse's run, if it did
        self.fd = RUNTIME.outcome_file()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)

    def run_in_horse(self, job_id: int, time_limit: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
        ctx = self.ctx
        if ctx is None or ctx.job_id != job_id:
            return {"job_id": job_id, "outcome": "skipped"}
        outcome = run_handler(ctx, time_limit)
        write_all(self.fd, json.dumps(outcome).encode())
        return {"job_id": job_id, "outcome": outcome[0]}

    def message(self, timeout: float) -> bytes:
        """The attempt, with its time limit in seconds, as a message to a horse that is already running
        (``from_message`` reads it)."""
        ctx = self.ctx
        assert ctx is not None
        fields = {
            "job_id": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt, "run": ctx.run,
            "max_attempts": ctx.max_attempts, "account": ctx.account, "schedule_id": ctx.schedule_id,
            "payload": ctx.payload,
        }
        return json.dumps({"rq_job_id": self.rq_job_id, "timeout": timeout, "ctx": fields}).encode()

    @classmethod
    def from_message(cls, data: bytes, ledger: Ledger, fd: int) -> tuple[Handover, float]:
        """In a running horse: the attempt its worker sent, its outcome to go to ``fd``; and its time limit."""
        found = json.loads(data)
        handover = cls.__new__(cls)
        handover.fenced = None
        handover.rq_job_id = str(found["rq_job_id"])
        handover.ctx = TaskContext(**found["ctx"], _ledger=ledger)
        handover.fd = fd
        return handover, float(found["timeout"])

    def outcome(self) -> Outcome | None:
        """What the horse wrote, or None if it wrote nothing whole."""
        size = os.fstat(self.fd).st_size
        if not size:
            return None
        try:
            outcome, code, detail, log_text = json.loads(os.pread(self.fd, size, 0))
        except ValueError:
            return None
        return str(outcome), str(code), str(detail), log_text


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, death_signal: int = signal.SIGKILL) -> None:
    """In a work horse: die when the worker that forked it dies, so that a killed worker never leaves a
    horse running its attempt beside the retry (Linux: PR_SET_PDEATHSIG; elsewhere the check below). A process
    that must clean up on its way out (RQ's scheduler releasing its locks) asks for SIGTERM instead."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
    # The worker may have died before the signal was armed.
    if os.getppid() != parent_pid:
        os._exit(1)


@contextlib.contextmanager
def handed_over(
    hub: Stack, rq_job_id: str, ctx: TaskContext | None, on_fence: Callable[[str], None] | None = None
) -> Iterator[Handover]:
    """Make ``ctx`` the attempt the next forked horse runs, with its lease renewed from this process; when the
    lease cannot be renewed in time ``on_fence`` ends the horse's run (``Handover.fenced`` says why)."""
    handover = Handover(rq_job_id, ctx)
    if ctx is not None:

        def fence(reason: str) -> None:
            handover.fenced = reason
            if on_fence is not None:
                on_fence(reason)

        RUNTIME.leases.add(ctx, hub.ledger, hub.settings.worker_lost_after, fence)
    RUNTIME.handover = handover
    try:
        yield handover
    finally:
        RUNTIME.handover = None
        if ctx is not None:
            RUNTIME.leases.discard(ctx.lease)


def record_handed(hub: Stack, handover: Handover, horse_exit: str) -> dict[str, Any] | None:
    """Record what the horse reported; a horse that reported nothing lost its attempt."""
    ctx = handover.ctx
    if ctx is None:
        return None
    outcome = handover.outcome()
    if outcome is None:
        if handover.fenced:
            detail = f"fenced: {handover.fenced}; worker {RUNTIME.name} ended its work horse ({horse_exit})"
        else:
            detail = f"the work horse of worker {RUNTIME.name} ended without an outcome ({horse_exit})"
        return record_outcome(hub, ctx, "fenced", "worker-lost", detail, None)
    return record_outcome(hub, ctx, *outcome)


def record_outcome(
    hub: Stack, ctx: TaskContext, outcome: str, code: str, detail: str, log_text: str | None
) -> dict[str, Any]:
    """Write the attempt's outcome if the attempt still holds the job (its fencing token); decide what comes next.
    An attempt the ledger recorded lost meanwhile is ``superseded``: its outcome is refused."""
    if outcome in ("succeeded", "cancelled"):
        return _record_stop(hub, ctx, outcome)
    if outcome == "fenced":
        if not detail.startswith("fenced") and not detail.startswith("the work horse"):
            detail = f"fenced: {detail}"
        lost = hub.book.record_lost(ctx.job_id, ctx.run, ctx.attempt, detail)
        return {"job_id": ctx.job_id, "outcome": "worker-lost" if lost else "superseded"}
    state = hub.book.record_failure(ctx.job_id, ctx.run, ctx.attempt, outcome, code, detail, log_text)
    if state is None:
        return {"job_id": ctx.job_id, "outcome": "superseded"}
    return {"job_id": ctx.job_id, "outcome": outcome, "state": state}


def _record_stop(hub: Stack, ctx: TaskContext, outcome: str) -> dict[str, Any]:
    """The common case, kept to one short transaction: the attempt ended without error."""
    fast = RUNTIME.hot_path(hub.ledger)
    if fast is not None:
        return fast.record_stop(ctx, outcome)
    return _record_stop_core(hub, ctx, outcome)


def _record_stop_core(hub: Stack, ctx: TaskContext, outcome: str) -> dict[str, Any]:
    """``_record_stop`` on any SQLAlchemy backend, through Core."""
    now = utcnow()
    with hub.ledger.write_conn() as conn:
        row = conn.execute(sql.STOP_READ_CORE, {"p_id": ctx.job_id}).first()
        if row is None or row.state != State.RUNNING or row.run != ctx.run or row.attempts != ctx.attempt:
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        # A task without checkpoints runs to completion and is then marked cancelled.
        target = State.CANCELLED if outcome == "cancelled" or row.cancel_requested else State.SUCCEEDED
        conn.execute(sql.STOP_CORE, {"p_id": ctx.job_id, "p_state": target.value, "p_now": now})
        conn.execute(
            sql.FINISH_ATTEMPT_CORE,
            {"p_id": ctx.job_id, "p_run": ctx.run, "p_number": ctx.attempt, "p_now": now, "p_exit": outcome},
        )
    return {"job_id": ctx.job_id, "outcome": outcome, "state": target.value}


# -- the hot path on SQLite and PostgreSQL ---------------------------------------------------------
# Per attempt the worker writes two short transactions (claim, record). Through SQLAlchemy each
# statement costs more in Python (execution context, events, result set-up) than in the database, and
# a pooled checkout on PostgreSQL adds a pre-ping round trip. On the two tested backends the hot path
# therefore runs fixed SQL on one DBAPI connection per process, kept for the hot path alone:
#
# * SQLite: BEGIN IMMEDIATE, the same compare-and-set statements as the Core path (the record is one
#   UPDATE ... RETURNING where SQLite >= 3.35), COMMIT; the connection gets the engine's PRAGMAs.
# * PostgreSQL: each transaction is ONE statement in autocommit mode, its writes chained as
#   data-modifying CTEs (lock and compare-and-set the job row, insert its attempt): one
#   round trip instead of six.
#
# Other backends use the Core statements. Every variant is in sgen_ops/ledger/statements.py, side by side. Both
# paths write the same rows; the state-change events are the ledger trigger's (migration 0007) on every path.

_RUN, _OK, _CANCELLED = State.RUNNING.value, State.SUCCEEDED.value, State.CANCELLED.value


def _sqlite_version() -> tuple[int, ...]:
    """The SQLite library's version; its driver is imported on a SQLite ledger only."""
    import sqlite3

    return sqlite3.sqlite_version_info


class HotPath:
    """The worker's claim and record on one DBAPI connection of this process, held across attempts.

    The connection comes from the engine's pool (so it gets the engine's connect-time set-up) and is
    given back closed when the engine is disposed. After a fork the child leaves the parent's connection
    alone and opens its own. A lock keeps threads of one process (tests run attempts in threads) from
    sharing the connection at the same time. A dropped connection is replaced and the transaction tried
    once more: nothing of it was committed, and if the commit itself was lost, the compare-and-set
    makes the second try a no-op.
    """

    def __init__(self, engine: Engine) -> None:
        # Weakly: the registry below is keyed by the engine, which must stay collectable.
        self._engine = weakref.ref(engine)
        self.dialect = engine.dialect
        self.dialect_url = engine.url
        self.postgres = self.dialect.name == "postgresql"
        self.returning = not self.postgres and _sqlite_version() >= (3, 35, 0)
        processor = UTCDateTime().dialect_impl(self.dialect).bind_processor(self.dialect)
        self._time: Callable[[Any], Any] = processor if processor is not None else (lambda v: v)
        payload_type = JOBS.c.payload.type.dialect_impl(self.dialect)
        loads = payload_type.result_processor(self.dialect, None)
        self._payload: Callable[[Any], Any] = loads if loads is not None else (lambda v: v)
        self._fairy: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        event.listen(engine, "engine_disposed", self._disposed)

    # -- the connection ---------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._pid != os.getpid():
            self._forked()
        if self._fairy is None:
            engine = self._engine()
            if engine is None:
                raise RuntimeError("the ledger's engine is gone")
            fairy = engine.raw_connection()
            if self.postgres:
                cast(Any, fairy.dbapi_connection).autocommit = True
            self._fairy = fairy
        return self._fairy

    def _forked(self) -> None:
        # The parent's connection is the parent's: keep a reference so that it is never reset or
        # returned to a pool from here, and start afresh.
        if self._fairy is not None:
            _INHERITED.append(self._fairy)
        self._fairy, self._pid, self._lock = None, os.getpid(), threading.Lock()

    def _drop(self, *, close: bool) -> None:
        fairy, self._fairy = self._fairy, None
        if fairy is None:
            return
        if not close:
            _INHERITED.append(fairy)
            return
        with contextlib.suppress(Exception):
            fairy.dbapi_connection.rollback()
        with contextlib.suppress(Exception):
            fairy.invalidate()

    def _disposed(self, engine: Engine) -> None:
        if self._pid != os.getpid():
            self._forked()
        else:
            self._drop(close=True)

    def _run(self, work: Callable[[Any], Any]) -> Any:
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            for attempt in (1, 2):
                dbapi = None
                try:
                    dbapi = self._connection().dbapi_connection
                    return work(dbapi)
                except self.dialect.loaded_dbapi.Error as exc:
                    # A connection refused, or one that dropped: nothing of the transaction was committed (or, if
                    # its commit's answer was lost, the compare-and-set makes the next try a no-op).
                    lost = dbapi is None or self.dialect.is_disconnect(exc, dbapi, None)
                    self._drop(close=True)
                    if lost and attempt == 1 and dbapi is not None:
                        continue
                    error = driver_error(self.dialect, exc, invalidated=lost)
                    raise (unavailable(error, self.dialect_url) or error) from exc
                except BaseException:
                    self._drop(close=True)
                    raise
        raise AssertionError("unreachable")

    # -- claim --------------------------------------------------------------------------------
    def claim(self, hub: Stack, job_id: int, rq_job_id: str | None) -> TaskContext | None:
        sent = time.monotonic()
        now = utcnow()
        lease = now + timedelta(seconds=hub.settings.worker_lost_after)
        worker = RUNTIME.name
        if self.postgres:
            params = {"id": job_id, "rq": rq_job_id, "worker": worker, "now": self._time(now),
                      "lease": self._time(lease)}

            def pg(dbapi: Any) -> Any:
                with dbapi.cursor() as cur:
                    cur.execute(sql.PG_CLAIM, params)
                    return cur.fetchone()

            row = self._run(pg)
            if row is None:
                return None
            task, payload, number, run, max_attempts, account, schedule_id = row
        else:
            found: list[Any] = []

            def lite(dbapi: Any) -> bool:
                cur = dbapi.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    r = cur.execute(sql.SQLITE_CLAIM_READ, (job_id,)).fetchone()
                    if r is None or r[0] not in WAITING or r[9] != rq_job_id or r[10] or r[11]:
                        dbapi.rollback()
                        return False
                    _state, task, _p, attempts, _run, _m, _a, _s, ready_at = r[:9]
                    at = self._time(now)
                    cur.execute(sql.SQLITE_CLAIM,
                                (attempts + 1, worker, at, self._time(lease), job_id, r[0], rq_job_id))
                    if cur.rowcount != 1:
                        dbapi.rollback()
                        return False
                    cur.execute(sql.SQLITE_ADD_ATTEMPT, (job_id, task, _run, attempts + 1, ready_at, at, worker))
                    dbapi.commit()
                    found.append(r)
                    return True
                except BaseException:
                    dbapi.rollback()
                    raise
                finally:
                    cur.close()

            if not self._run(lite):
                return None
            r = found[0]
            task, payload, number, run, max_attempts, account, schedule_id = (
                r[1], r[2], r[3] + 1, r[4], r[5], r[6], r[7])
        return TaskContext(
            job_id=job_id,
            task=task,
            attempt=number,
            run=run,
            max_attempts=max_attempts,
            account=account,
            schedule_id=schedule_id,
            payload=self._payload(payload),
            _ledger=hub.ledger,
            claimed=sent,
        )

    # -- record -------------------------------------------------------------------------------
    def record_stop(self, ctx: TaskContext, outcome: str) -> dict[str, Any]:
        now = self._time(utcnow())
        cancelled = outcome == "cancelled"
        if self.postgres:
            params = {"id": ctx.job_id, "run": ctx.run, "number": ctx.attempt, "now": now, "exit": outcome,
                      "cancelled": cancelled}

            def pg(dbapi: Any) -> str | None:
                with dbapi.cursor() as cur:
                    cur.execute(sql.PG_STOP, params)
                    row = cur.fetchone()
                return None if row is None else str(row[0])

            target = self._run(pg)
        else:

            def lite(dbapi: Any) -> str | None:
                cur = dbapi.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    if self.returning:
                        row = cur.execute(
                            sql.SQLITE_STOP_RETURNING, (int(cancelled), now, ctx.job_id, ctx.run, ctx.attempt)
                        ).fetchone()
                        if row is None:
                            dbapi.rollback()
                            return None
                        state = str(row[0])
                    else:
                        row = cur.execute(sql.SQLITE_STOP_READ, (ctx.job_id,)).fetchone()
                        if row is None or row[0] != _RUN or row[1] != ctx.run or row[2] != ctx.attempt:
                            dbapi.rollback()
                            return None
                        state = _CANCELLED if cancelled or row[3] else _OK
                        cur.execute(sql.SQLITE_STOP, (state, now, ctx.job_id))
                    cur.execute(sql.SQLITE_FINISH, (now, outcome, ctx.job_id, ctx.run, ctx.attempt))
                    dbapi.commit()
                    return state
                except BaseException:
                    dbapi.rollback()
                    raise
                finally:
                    cur.close()

            target = self._run(lite)
        if target is None:
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        return {"job_id": ctx.job_id, "outcome": outcome, "state": target}


# Connections inherited from a parent process: referenced so that they are never reset from the child.
_INHERITED: list[Any] = []
_HOT_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg", "psycopg2")}


def hot_path(ledger: Ledger) -> HotPath | None:
    """The fixed-SQL hot path for this ledger's engine, or None where the Core path is used."""
    return RUNTIME.hot_path(ledger)


class WorkerRuntime:
    """The state of a process that runs attempts, in one object: its hub, its worker's name, the leases of its
    attempts (renewed and fenced), how long the ledger has been reachable, the attempt handed to a work horse,
    the outcome file it shares with its horses, and the hot path per ledger engine. RQ calls ``perform`` as a
    plain function, so a process has one runtime (``RUNTIME``); the worker names it and binds its hub.

    ``connect`` makes a hub from the environment for a process that was given none (a pool's worker); the
    hub module hands it down, so nothing here imports the hub.
    """

    def __init__(self, connect: Callable[[], Stack] | None = None) -> None:
        self.connect = connect
        self.name = f"{socket.gethostname()}.{os.getpid()}"
        self.leases = Leases()
        self.reach = Reach()
        # A worker process (``sgen-ops worker``) leaves when a running handler outlives its lease; a process
        # that runs attempts in-line for its caller (``hub.work()``) cannot.
        self.leave_on_fence = False
        self.handover: Handover | None = None
        self._hub: Stack | None = None
        self._hub_pid: int | None = None
        self._outcome_fd: tuple[int, int] | None = None  # (pid, fd)
        self._hot: weakref.WeakKeyDictionary[Engine, HotPath | None] = weakref.WeakKeyDictionary()

    def bind(self, hub: Stack) -> None:
        self._hub, self._hub_pid = hub, os.getpid()

    def end_run_in_process(self, reason: str) -> None:
        """The run of an attempt in this process outlived its lease (its checkpoints were not reached, or it
        ignored AttemptFenced): a worker process leaves (its pool or supervisor starts another), so that no
        other attempt of the job ever runs beside it; elsewhere it can only be reported."""
        if self.leave_on_fence:
            log.critical("worker %s leaves: %s; the run is still inside its handler and must not go on beside a "
                         "retry", self.name, reason)
            logging.shutdown()
            os._exit(EXIT_FENCED)
        log.error("worker %s: %s; the run is still inside its handler and cannot be stopped in this process",
                  self.name, reason)

    def hub(self) -> Stack:
        """The bound hub; after a fork, the inherited one drops its parent's connections first."""
        if self._hub is None:
            if self.connect is None and "sgen_ops.hub" not in sys.modules:
                # A process that imported the runtime alone (RQ importing ``perform``): ``import sgen_ops`` no
                # longer loads the hub, whose module hands ``connect`` down when it is loaded.
                importlib.import_module("sgen_ops.hub")
            if self.connect is None:
                raise RuntimeError("no hub is bound in this process: call sgen_ops.connect() first")
            self.bind(self.connect())
        elif self._hub_pid != os.getpid():
            self._hub.after_fork()
            self._hub_pid = os.getpid()
        assert self._hub is not None
        return self._hub

    def outcome_file(self) -> int:
        """This process's outcome file (anonymous, in memory where the platform allows), made once."""
        if self._outcome_fd is None or self._outcome_fd[0] != os.getpid():
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("sgen-ops-outcome", os.MFD_CLOEXEC)
            else:  # pragma: no cover - platforms without memfd
                with tempfile.TemporaryFile() as file:
                    fd = os.dup(file.fileno())
            self._outcome_fd = (os.getpid(), fd)
        return self._outcome_fd[1]

    def hot_path(self, ledger: Ledger) -> HotPath | None:
        """The fixed-SQL hot path for this ledger's engine, or None where the Core path is used."""
        engine = ledger.engine
        try:
            return self._hot[engine]
        except KeyError:
            pass
        dialect = engine.dialect
        fast = HotPath(engine) if dialect.driver in _HOT_DRIVERS.get(dialect.name, ()) else None
        self._hot[engine] = fast
        return fast


RUNTIME = WorkerRuntime()
