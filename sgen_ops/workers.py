"""The RQ worker that serves the three priority queues, with ledger maintenance on RQ's schedule."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue, SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job as RQJob
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from rq.worker_pool import WorkerPool

from . import execution

if TYPE_CHECKING:
    from .stack import Stack

log = logging.getLogger(__name__)


# Redis going away: RQ's worker quits on these outside its dequeue; ours waits for Redis to come back.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, ConnectionError)
# The longest wait between two tries to reach Redis again.
MAX_BACKOFF = 5.0


class _Scheduler(RQScheduler):
    """RQ's scheduler process, which dies with the worker that forked it (a killed worker left it behind)."""

    def start(self) -> Any:
        self._worker_pid = os.getpid()
        return super().start()  # type: ignore[no-untyped-call]

    def work(self) -> None:
        execution.die_with_parent(self._worker_pid)
        super().work()  # type: ignore[no-untyped-call]


class _LedgerUpkeep(BaseWorker):
    """Ledger upkeep on its own interval, busy or idle: reap lost attempts, reconcile Redis with the ledger.
    A Redis outage is ridden out: the worker waits, with bounded backoff, and carries on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        hub = execution.current_hub()
        self.maintenance_interval = hub.settings.maintenance_interval
        execution.RUNTIME.name = self.name

    @property
    def dequeue_timeout(self) -> int:
        # RQ runs upkeep only before a blocking dequeue, which waits ~400 s on empty queues: an idle
        # worker wakes on the upkeep interval instead.
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with a scheduler process that dies with this worker."""
        self.scheduler = _Scheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            self.scheduler.release_locks()  # type: ignore[no-untyped-call]
            self.scheduler.register_death()

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except REDIS_DOWN as exc:
            self._ride_out(exc)
        hub = execution.current_hub()
        try:
            lost = hub.recover_lost()
            resent = hub.reconcile()
            if lost or resent:
                log.info("maintenance: %d lost attempts recovered, %d deliveries re-sent", lost, resent)
        except Exception:
            log.exception("ledger maintenance failed; will try again")

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self._ride_out(exc)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except REDIS_DOWN as exc:
            self._ride_out(exc)

    def execute_job(self, job: RQJob, queue: Queue) -> None:
        try:
            self.run_delivery(job, queue)
        except REDIS_DOWN as exc:
            # The ledger holds the attempt's outcome (or its claim, whose lease upkeep watches); what RQ
            # failed to note about the delivery it does not need.
            self._ride_out(exc)

    def run_delivery(self, job: RQJob, queue: Queue) -> None:
        super().execute_job(job, queue)

    def _ride_out(self, exc: BaseException) -> None:
        """Wait until Redis answers again, at most MAX_BACKOFF seconds between tries; a worker of the
        embedded stack follows its Redis to the address it has after a restart."""
        log.warning("worker %s lost Redis (%s); waiting for it to come back", self.name, exc)
        hub = execution.current_hub()
        delay = 0.2
        while not self._stop_requested:
            time.sleep(delay)
            try:
                hub.reattach_redis()
                self.connection.ping()
            except (*REDIS_DOWN, OSError, RuntimeError):
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            log.warning("worker %s reached Redis again; carrying on", self.name)
            return


class SgenWorker(_LedgerUpkeep, SimpleWorker):
    """Runs each attempt in the worker process itself (RQ's SimpleWorker): the default."""


class SgenForkWorker(_LedgerUpkeep, Worker):
    """Forks a work horse per attempt (RQ's Worker): isolation at the price of a fork per job.

    The worker claims each attempt, renews its lease and records its outcome on its own ledger
    connection; the horse only runs the handler (``execution.Handover``). A horse opening a database
    connection per job was most of what sgen-ops added to a fork; and a horse that dies is now seen
    at once, not when its lease runs out.
    """

    def run_delivery(self, job: RQJob, queue: Queue) -> None:
        job_id = execution.ledger_job_id(job)
        if job_id is None:
            super().run_delivery(job, queue)
            return
        hub = execution.current_hub()
        try:
            ctx = execution.claim(hub, job_id, job.id)
        except Exception:
            log.exception("could not claim job %s here; its work horse will try", job_id)
            super().run_delivery(job, queue)
            return
        self._horse_exit = "exit status 0"
        with execution.handed_over(hub, job.id, ctx) as handover:
            try:
                super().run_delivery(job, queue)
            except BaseException:
                # RQ stopped watching the horse (Redis went away, say): its outcome still counts.
                self._outlive_horse()
                raise
            finally:
                try:
                    execution.riding_out(lambda: execution.record_handed(hub, handover, self._horse_exit))
                except Exception:
                    # The attempt stays running: its lease runs out and ledger upkeep records it as worker-lost.
                    log.exception("could not record the outcome of job %s", job_id)

    def main_work_horse(self, job: RQJob, queue: Queue) -> None:
        execution.die_with_parent(self._worker_pid)
        super().main_work_horse(job, queue)

    def fork_work_horse(self, job: RQJob, queue: Queue) -> None:
        self._worker_pid = os.getpid()
        super().fork_work_horse(job, queue)

    def _outlive_horse(self) -> None:
        """Wait for a horse RQ left running, noting how it ended."""
        pid = self._horse_pid
        if not pid:
            return
        try:
            _pid, status, _rusage = os.wait4(pid, 0)
        except ChildProcessError:
            return
        self._horse_pid = 0
        self._horse_exit = _wait_status(status)

    def handle_work_horse_killed(self, job: RQJob, retpid: int, ret_val: int, rusage: Any) -> None:
        self._horse_exit = _wait_status(ret_val)
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]


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
) -> None:
    """Serve the queues: one worker in this process, or RQ's worker pool of ``concurrency`` processes."""
    execution.bind_hub(hub)
    n = concurrency or hub.settings.worker_concurrency
    queues = hub.transport.ordered_queues
    cls = WORKER_CLASSES[worker_class]
    if n <= 1:
        worker = cls(queues, connection=hub.redis, name=worker_name(hub.settings.queue_prefix))
        worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        return
    pool = WorkerPool(queues, connection=hub.redis, num_workers=n, worker_class=cls, serializer=JSONSerializer)
    pool.start(burst=burst, logging_level=logging_level)
