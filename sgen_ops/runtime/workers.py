"""The RQ worker that serves the three priority queues, with ledger maintenance on RQ's schedule."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import logging
import math
import os
import random
import select
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from rq import Queue, SimpleWorker, Worker
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.worker import BaseWorker

from ..core.backoff import ride_out
from ..errors import Unavailable
from ..transport.reach import REDIS_DOWN
from ..transport.rq import DeliveryWorker, PromptWorkerPool, RidingScheduler, StopRequested
from . import execution

if TYPE_CHECKING:
    from redis.client import PubSubWorkerThread

    from ..ledger.stack import Stack

log = logging.getLogger(__name__)


# A worker without a live scheduler process tries for RQ's scheduler locks this often (RQ: every maintenance
# interval), and waits for work at most this long between tries, so that when the worker running the scheduler
# dies its locks (released by its scheduler process on the way out) are taken within about a second.
SCHEDULER_STANDBY_EVERY = 1.0


class _Scheduler(RidingScheduler):
    """RQ's scheduler process (riding out Redis restarts: ``sgen_ops.transport.rq``), ending with the worker that
    forked it: it gets SIGTERM when its worker dies, and releases its locks on the way out, so that another
    worker's scheduler takes over at once instead of after the locks' minute-long expiry."""

    def on_start(self, worker_pid: int) -> None:
        execution.die_with_parent(worker_pid, signal.SIGTERM)


# The worker's own Redis housekeeping (heartbeat, suspension check) at most this often; RQ's worker does
# both before and after every job. A worker's key lives worker_ttl + 60 s (480 s by default).
HOUSEKEEPING_EVERY = 1.0
# Outcomes counted as RQ's failed-job statistic of the worker; skipped deliveries count as neither.
_FAILED = frozenset({"failed", "timeout", "worker-lost"})
_COUNTED = frozenset({"succeeded", "cancelled"}) | _FAILED


class _LedgerUpkeep(DeliveryWorker):
    """An RQ worker whose transport bookkeeping is the ledger's, with ledger upkeep on its own interval.

    RQ is the transport: a delivery carries a ledger job id. What RQ's worker writes about every job (execution
    records, the started and finished registries, the job's status changes, its result, the worker's statistics
    in their own round trips) duplicates what the ledger records durably, so on sgen-ops' deliveries this worker
    keeps only what the transport needs (``DeliveryWorker``): taking a delivery marks its hash with this worker
    and shows RQ's tools which job it runs (one script call, which also settles the previous delivery: its hash
    deleted, the worker's statistics counted); the attempt is claimed, run and recorded on the ledger. A job
    that is not a ledger delivery still gets RQ's own handling. Upkeep, busy or idle: reap lost attempts,
    reconcile Redis with the ledger. A Redis outage is ridden out: the worker waits, with bounded
    backoff, and carries on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        # A worker starting while Redis or the ledger is down waits for them.
        ride_out(lambda: super(_LedgerUpkeep, self).__init__(*args, **kwargs), retry_on=REDIS_DOWN,
                 what="worker starting: Redis", logger=log)
        hub = ride_out(execution.current_hub, retry_on=Unavailable, what="worker starting: the ledger", logger=log)
        self.maintenance_interval = hub.settings.maintenance_interval
        execution.RUNTIME.name = self.name
        self._last_heartbeat = float("-inf")
        self._last_suspension_check = float("-inf")

    @property
    def should_run_maintenance_tasks(self) -> bool:
        # The first upkeep waits for the first job, or for the queues to be found empty: a claim needs none
        # (it is a compare-and-set on the ledger), and the worker starts on its first job sooner.
        return self.upkeep_started and bool(super().should_run_maintenance_tasks)

    @property
    def dequeue_timeout(self) -> int:
        # RQ runs upkeep only before a blocking dequeue, which waits ~400 s on empty queues: an idle
        # worker wakes on the upkeep interval instead.
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))

    scheduler_class = _Scheduler

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        ride_out(lambda: super(_LedgerUpkeep, self).bootstrap(*args, **kwargs), retry_on=REDIS_DOWN,
                 what="worker starting: Redis", logger=log)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except REDIS_DOWN as exc:
            self.ride_out_redis(exc)
        hub = execution.current_hub()
        runtime = execution.RUNTIME
        try:
            lost = 0
            # Only after a whole lease of reachable ledger: live workers first renew what an outage let lapse.
            if runtime.reach.steady_for() >= hub.settings.worker_lost_after:
                lost = hub.recover_lost()
            resent = hub.reconcile()
            if lost or resent:
                log.info("maintenance: %d lost attempts recovered, %d deliveries re-sent", lost, resent)
        except Unavailable as exc:
            runtime.reach.failed()
            log.warning("worker %s: upkeep skipped: %s", self.name, exc)
        except REDIS_DOWN as exc:
            log.warning("worker %s: upkeep skipped: Redis is unreachable (%s)", self.name, exc)
        except Exception:
            log.exception("ledger maintenance failed; will try again")

    def check_for_suspension(self, burst: bool) -> None:
        at = time.monotonic()
        if at - self._last_suspension_check < HOUSEKEEPING_EVERY:
            return
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self.ride_out_redis(exc)
        self._last_suspension_check = time.monotonic()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        at = time.monotonic()
        if timeout is None and at - self._last_heartbeat < HOUSEKEEPING_EVERY:
            return
        try:
            super().heartbeat(timeout)
            self.keep_scheduler()
        except REDIS_DOWN as exc:
            self.ride_out_redis(exc)
        self._last_heartbeat = at

    def _keep_registered(self, _exc: BaseException | None = None) -> None:
        """While waiting for the ledger: keep this worker's registration in Redis alive."""
        at = time.monotonic()
        if at - self._last_heartbeat < HOUSEKEEPING_EVERY:
            return
        with contextlib.suppress(*REDIS_DOWN):
            super().heartbeat()
            self._last_heartbeat = at

    # -- stopping at once (issue 25; docs/worker-exit.md) ----------------------------------------
    def unsubscribe(self) -> None:
        """RQ's, without waiting for the pubsub thread: its running flag is cleared before UNSUBSCRIBE is sent,
        so the reply wakes the thread's read and it ends at once, closing its pubsub. RQ sends first and then
        waits (redis-py 8.2: for as long as the thread sleeps, up to RQ's 60 s; earlier: up to 1 s)."""
        thread, pubsub = self.pubsub_thread, self.pubsub
        if thread is None or pubsub is None:
            return
        self.pubsub_thread = None
        stop_without_waiting(thread)
        if thread.is_alive():  # else it has ended and closed its pubsub
            with contextlib.suppress(*REDIS_DOWN):
                pubsub.unsubscribe()
            # The reply wakes the thread's read and it ends at once; wait for that (at most a second, as RQ
            # before redis-py 8.2), so that the worker's teardown never closes the connection under its read
            # ("I/O operation on closed file", which RQ's handler raises again in the thread).
            thread.join(timeout=1.0)

    # -- running deliveries ---------------------------------------------------------------------
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        job_id = execution.ledger_job_id(job)
        if job_id is None:
            # Not a ledger delivery: RQ's own handling, bookkeeping and all, of the whole job.
            try:
                job.refresh()
                super().execute_job(job, queue)
            except REDIS_DOWN as exc:
                self.ride_out_redis(exc)
            return
        started = time.monotonic()
        outcome = "skipped"
        try:
            outcome = str(self.run_attempt(job, queue, job_id).get("outcome", "skipped"))
        except (SystemExit, KeyboardInterrupt, StopRequested):
            raise
        except Unavailable as exc:
            # Asked to stop while waiting for the ledger: the job stays waiting, and reconcile sends it again.
            log.warning("worker %s stopped waiting for delivery %s of job %s: %s", self.name, job.id, job_id, exc)
        except Exception:
            # The ledger keeps the truth: a claim that never happened leaves the job waiting (upkeep sends
            # it again), an outcome never recorded leaves a lease that upkeep records as lost.
            log.exception("worker %s could not run delivery %s of job %s", self.name, job.id, job_id)
        finally:
            # Settled with the next take (one round trip fewer per job), or when the worker stops.
            statistic = ""
            if outcome in _COUNTED:
                statistic = "failed_job_count" if outcome in _FAILED else "successful_job_count"
            self.delivery_done(job.id, statistic, time.monotonic() - started)
        self.log.info("Worker %s: job %s (delivery %s): %s", self.name, job_id, job.id, outcome)

    def run_attempt(self, job: RQJob, queue: Queue, job_id: int) -> dict[str, Any]:
        """Claim, run and record the attempt a delivery leads to; the handler runs within the job's timeout. The
        claim waits out an outage of the ledger until the worker is asked to stop, the outcome until it answers."""
        return execution.run_attempt(execution.current_hub(), job_id, job.id, self.time_limit(job),
                                     should_stop=self._stopping, on_wait=self._keep_registered)

    def _stopping(self) -> bool:
        return self.stop_requested

    def job_timeout(self, job: RQJob) -> float:
        """The seconds a delivery's handler may run: its timeout, or RQ's default where it sets none."""
        return job.timeout or self.queue_class.DEFAULT_TIMEOUT

    def time_limit(self, job: RQJob) -> Any:
        """RQ's death penalty for the job's timeout."""
        return self._time_limit(self.job_timeout(job), job.id)

    def _time_limit(self, timeout: float, rq_job_id: str) -> Any:
        return self.death_penalty_class(math.ceil(timeout), JobTimeoutException, job_id=rq_job_id)

    def ride_out_redis(self, exc: BaseException) -> None:
        """Wait until Redis answers again (the one backoff helper); a worker of the embedded stack follows its
        Redis to the address it has after a restart. Upkeep then runs at once: Redis may be back empty, and the
        deliveries it lost are sent again now rather than a maintenance interval later."""
        hub = execution.current_hub()

        def reach() -> None:
            hub.reattach_redis()
            self.connection.ping()

        log.warning("worker %s lost Redis (%s)", self.name, exc)
        with contextlib.suppress(*REDIS_DOWN, OSError, RuntimeError):
            ride_out(reach, retry_on=(*REDIS_DOWN, OSError, RuntimeError), what=f"worker {self.name}: Redis",
                     should_stop=self._stopping, logger=log)
            self.last_cleaned_at = None


class SgenWorker(_LedgerUpkeep, SimpleWorker):
    """Runs each attempt in the worker process itself (RQ's SimpleWorker): the default."""


class SgenForkWorker(_LedgerUpkeep, Worker):
    """Runs attempts in work horses it forks (RQ's Worker): a horse that crashes takes only its attempt.

    The worker claims each attempt, renews its lease and records its outcome on its own ledger
    connection; the horse only runs the handler, within the job's timeout, and hands the outcome back
    (``execution.Handover``), touching neither Redis nor the database. The horse says on a pipe when its
    outcome is written, so the worker records it and goes on while the horse's process is still being
    torn down (reaped later); a pipe closed without that word is a horse that died, recorded at once, not
    when its lease runs out. A horse dies with its worker.

    By default every attempt gets a fresh horse (``horse_attempts`` = 1), as with RQ's Worker. With
    ``horse_attempts`` N > 1 a horse runs up to N attempts, each sent to it over a pipe, before it is
    replaced: no fork per attempt, the same isolation from crashes, none between the attempts one horse ran.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.horse_attempts = max(1, int(execution.current_hub().settings.horse_attempts))
        self._exiting: list[int] = []  # horses that are done and ending
        self._reported_fd = -1  # in a horse: where to say an outcome is written
        self._next_fd = -1  # in a horse: where the next attempt comes from
        self._horse_in = -1  # in the worker: where to send the running horse its next attempt
        self._horse_out = -1  # in the worker: where the running horse says an outcome is written
        self._horse_ran = 0  # attempts the running horse has been given
        self._worker_ends = (-1, -1)  # the worker's ends of a new horse's pipes

    def run_attempt(self, job: RQJob, queue: Queue, job_id: int) -> dict[str, Any]:
        self._reap()
        hub = execution.current_hub()
        ctx = execution.riding_out(lambda: execution.claim(hub, job_id, job.id), f"claiming job {job_id}",
                                   self._stopping, self._keep_registered)
        if ctx is None:
            return {"job_id": job_id, "outcome": "skipped"}
        self._horse_exit = "no work horse started"
        recorded: dict[str, Any] | None = None
        with execution.handed_over(hub, job.id, ctx, self._end_horse) as handover:
            try:
                if not self.horse_pid or self._horse_ran >= self.horse_attempts or not self._sent(
                    handover.message(self.job_timeout(job))
                ):
                    self._start_horse(job, queue)
                self._horse_exit = "exit status 0"
                self._horse_ran += 1
                self._await_horse(job)
            except BaseException:
                # A cold shutdown or an error while waiting: the horse's outcome still counts.
                self._outlive_horse()
                raise
            finally:
                # The run is over: nothing to renew or fence while its outcome waits for the ledger.
                execution.RUNTIME.leases.discard(ctx.lease)
                recorded = execution.riding_out(lambda: execution.record_handed(hub, handover, self._horse_exit),
                                                f"recording job {job_id}'s outcome", on_wait=self._keep_registered)
        return recorded or {"job_id": job_id, "outcome": "skipped"}

    def _end_horse(self, reason: str) -> None:
        """The attempt's lease could not be renewed in time: its horse is killed before the lease ends, so no
        other attempt of the job ever runs beside it (called from the lease watchdog's thread)."""
        pid = self.horse_pid
        if pid:
            log.warning("worker %s kills work horse %d: %s", self.name, pid, reason)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _start_horse(self, job: RQJob, queue: Queue) -> None:
        """Fork a horse for this attempt (the attempt is in its memory); with room for more, it then waits
        for the next ones on a pipe."""
        self._let_horse_go()
        out_r, self._reported_fd = os.pipe()
        in_r, in_w = os.pipe() if self.horse_attempts > 1 else (-1, -1)
        self._next_fd = in_r
        self._worker_ends = (out_r, in_w)  # closed in the horse, so that it sees the end of its pipe
        try:
            self.fork_work_horse(job, queue)
        except BaseException:
            for fd in (out_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (self._reported_fd, in_r):
                if fd >= 0:
                    os.close(fd)
            self._reported_fd = self._next_fd = -1
        self._horse_out, self._horse_in, self._horse_ran = out_r, in_w, 0

    def _sent(self, message: bytes) -> bool:
        """Send the running horse its next attempt; False if it is gone (it ended while waiting)."""
        try:
            execution.write_all(self._horse_in, len(message).to_bytes(8, "big") + message)
        except OSError:
            self._outlive_horse()
            return False
        return True

    def _let_horse_go(self) -> None:
        """Let the running horse end (it reads the end of its pipe and exits); it is reaped later."""
        for fd in (self._horse_in, self._horse_out):
            if fd >= 0:
                os.close(fd)
        self._horse_in = self._horse_out = -1
        if self.horse_pid:
            self._exiting.append(self.horse_pid)
            self.horse_pid = 0

    def main_work_horse(self, job: RQJob, queue: Queue) -> None:
        execution.die_with_parent(self._worker_pid)
        handover = execution.RUNTIME.handover
        if handover is None or handover.rq_job_id != job.id:
            super().main_work_horse(job, queue)  # not a ledger delivery: RQ's horse
            return
        for fd in self._worker_ends:
            if fd >= 0:
                os.close(fd)
        random.seed()
        self.setup_work_horse_signals()  # type: ignore[no-untyped-call]
        self.become_horse()
        try:
            handover.run_in_horse(execution.ledger_job_id(job) or 0, self.time_limit(job))
            os.write(self._reported_fd, b"1")
            for _ in range(self.horse_attempts - 1):
                message = _read_message(self._next_fd)
                if message is None:
                    break
                handover, timeout = execution.Handover.from_message(
                    message, execution.current_hub().ledger, handover.fd
                )
                execution.RUNTIME.handover = handover
                assert handover.ctx is not None
                handover.run_in_horse(handover.ctx.job_id, self._time_limit(timeout, handover.rq_job_id))
                os.write(self._reported_fd, b"1")
        except BaseException:  # noqa: BLE001 - a horse ends with its exit status, whatever happened
            os._exit(1)
        os._exit(0)

    def fork_work_horse(self, job: RQJob, queue: Queue) -> None:
        self._worker_pid = os.getpid()
        super().fork_work_horse(job, queue)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        # What the worker has built so far is never collected: a horse's garbage collector then leaves the
        # pages it shares with the worker alone, and fewer of them are copied on write.
        gc.freeze()

    def _await_horse(self, job: RQJob) -> None:
        """Wait for the horse to report the outcome, keeping this worker's registration alive. A horse
        that ends without reporting is waited for, to note how it ended; past the job's timeout and a
        minute's grace (its own alarm did not end it) it is killed. RQ's monitor, without the per-job
        records of RQ's failure handling: the ledger records how the attempt ended."""
        started = time.monotonic()
        timeout = self.job_timeout(job)
        while True:
            ready, _, _ = select.select([self._horse_out], [], [], self.job_monitoring_interval)
            if ready:
                if not os.read(self._horse_out, 1):
                    self._outlive_horse()
                elif self._horse_ran >= self.horse_attempts:
                    self._let_horse_go()
                return
            if timeout != -1 and time.monotonic() - started > timeout + 60:
                self.heartbeat(self.job_monitoring_interval + 60)
                self.kill_horse()
                self._outlive_horse()
                return
            self.heartbeat(self.job_monitoring_interval + 60)

    def _outlive_horse(self) -> None:
        """Wait for the running horse to end, noting how it ended."""
        pid = self.horse_pid
        for fd in (self._horse_in, self._horse_out):
            if fd >= 0:
                os.close(fd)
        self._horse_in = self._horse_out = -1
        if not pid:
            return
        try:
            _pid, status, _rusage = os.wait4(pid, 0)
        except ChildProcessError:
            return
        self.horse_pid = 0
        self._horse_exit = _wait_status(status)

    def _reap(self, *, wait: bool = False) -> None:
        """Collect the horses that are done and have ended since (all of them with ``wait``)."""
        still = []
        for pid in self._exiting:
            try:
                done, _status = os.waitpid(pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                continue
            if not done:
                still.append(pid)
        self._exiting = still

    def teardown(self) -> None:
        if not self.is_horse:
            self._let_horse_go()
            self._reap(wait=True)
        super().teardown()


def stop_without_waiting(thread: PubSubWorkerThread) -> None:
    """Clear a pubsub thread's running flag and return: redis-py 8.2's ``stop`` joins the thread unless given a
    timeout, earlier versions take none and never wait."""
    if "timeout" in inspect.signature(thread.stop).parameters:
        thread.stop(timeout=0)  # type: ignore[call-arg]  # redis-py 8.2 and later
    else:
        thread.stop()


def _read_message(fd: int) -> bytes | None:
    """A length-prefixed message from ``fd``, or None at its end."""
    head = _read_exactly(fd, 8)
    return None if head is None else _read_exactly(fd, int.from_bytes(head, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _wait_status(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    if status is not None and os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


WORKER_CLASSES: dict[str, type[BaseWorker]] = {"simple": SgenWorker, "fork": SgenForkWorker}


def worker_name(prefix: str) -> str:
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def run(
    hub: Stack,
    *,
    burst: bool = False,
    concurrency: int | None = None,
    logging_level: str = "INFO",
    worker_class: str = "simple",
    horse_attempts: int | None = None,
) -> None:
    """Serve the queues: one worker in this process, or RQ's worker pool of ``concurrency`` processes.
    ``horse_attempts`` overrides the setting of that name for this run's forking workers."""
    if horse_attempts is not None:
        hub.settings = dataclasses.replace(hub.settings, horse_attempts=horse_attempts)
    execution.bind_hub(hub)
    n = concurrency or hub.settings.worker_concurrency
    queues = hub.transport.ordered_queues
    cls = WORKER_CLASSES[worker_class]
    if n <= 1:
        worker = cls(queues, connection=hub.redis, name=worker_name(hub.settings.queue_prefix))
        if burst:
            # What RQ's scheduler would do once for a burst, without its locks and registration.
            hub.transport.move_due()
        worker.work(burst=burst, with_scheduler=not burst, logging_level=logging_level)
        return
    pool = PromptWorkerPool(queues, connection=hub.redis, num_workers=n, worker_class=cls, serializer=JSONSerializer)
    pool.start(burst=burst, logging_level=logging_level)
