"""RQ beyond its documented API, in one place: every private name of RQ that sgen-ops relies on, the Lua that
writes RQ's job and worker hashes field by field, the worker's way of taking deliveries, and RQ's scheduler
made to ride out Redis. Nothing else in sgen-ops touches an RQ private name (``tests/unit/test_rq_contained.py``).

Each piece says which RQ releases it was checked against, by reading their source: ``CHECKED`` is the range
``pyproject.toml`` allows, and CI runs the worker, fault and transport tests against its lowest and highest
release. Where releases differ (RQ 3.0 keeps what a worker runs in an execution index, RQ 2 in the worker's
hash) the difference is decided here once, from the installed release.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing.connection
import os
import time
import uuid
from typing import Any, cast

import redis
from rq import Queue
from rq import __version__ as RQ_RELEASE
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.logutils import setup_loghandlers
from rq.scheduler import RQScheduler
from rq.utils import as_text, now, utcformat
from rq.worker import BaseWorker, WorkerStatus
from rq.worker_pool import WorkerPool

try:  # rq 2.6-3.0
    from rq.exceptions import StopRequested
except ImportError:  # rq 2.0-2.5: defined beside the worker
    from rq.worker import StopRequested  # type: ignore[attr-defined,no-redef]

from ..core.backoff import ride_out
from .reach import REDIS_DOWN

log = logging.getLogger(__name__)

__all__ = [
    "CHECKED", "DeliveryWorker", "PromptWorkerPool", "RidingScheduler", "StopRequested", "enqueue_job", "push_script",
    "read_job_fields",
]

# The RQ releases this module was checked against (pyproject.toml's bounds).
CHECKED = ">=2.0,<3.1"
RQ_VERSION = tuple(int(p) for p in RQ_RELEASE.split(".")[:2] if p.isdigit())
# RQ 3.0 reads what a worker runs from its execution index (``rq:worker:<name>:executions``, a set of
# ``<job id>:<execution id>``, each an ``rq:execution:<job id>:<execution id>`` hash); RQ 2 from the
# ``current_job`` field of the worker's hash.
EXECUTION_INDEX = RQ_VERSION >= (3, 0)


# -- queues ------------------------------------------------------------------------------------------------
def prepare_for_queue(queue: Queue, job: RQJob) -> None:
    """What RQ's enqueue sets on a job before it saves it: the Redis version, origin, enqueue time, the
    queue's default timeout, status queued. Checked against rq 2.0-3.0: this is the body of
    ``Queue._prepare_for_queue`` of rq 2.8-3.0 (rq 2.7 has it with a pipeline argument, rq 2.0-2.6 inline in
    ``enqueue_job``), written out so that every release in range gets the same job hash."""
    job.redis_server_version = queue.get_redis_server_version()
    job.origin = queue.name
    job.enqueued_at = now()
    if job.timeout is None:
        job.timeout = queue._default_timeout  # rq 2.0-3.0: the queue's parsed default_timeout
    job._status = JobStatus.QUEUED  # rq 2.0-3.0: the status without a Redis write (set_status writes)


def enqueue_job(queue: Queue, job: RQJob, pipeline: Any) -> None:
    """Put an existing job on its queue within ``pipeline``, as RQ's scheduler does with a due job. Checked
    against rq 2.0-3.0: ``Queue._enqueue_job(job, pipeline=None, at_front=False)``."""
    queue._enqueue_job(job, pipeline=pipeline)


def read_job_fields(pipeline: Any, rq_job_id: str, *fields: str) -> None:
    """Queue on ``pipeline`` a read of named fields of RQ's job hash (their values, None where absent). Checked
    against rq 2.0-3.0: ``origin``, ``status``, ``worker_name``, ``enqueued_at`` as ``Job.to_dict`` writes them."""
    pipeline.hmget(RQJob.key_for(rq_job_id), *fields)


# The fields RQ's job hash shares across deliveries of one (priority, timeout) are written into the
# script itself (``push_script``), so a call carries only what differs. KEYS: the queue, then each job's
# hash. ARGV: the time, then (job id, data, description) per job. Checked against rq 2.0-3.0: a job
# hash as ``Job.to_dict`` writes it and ``Job.restore`` reads it, queued as ``Queue.enqueue_job`` does.
_PUSH_LUA = """
local fields = {%s}
local a = 2
for k = 2, #KEYS do
  redis.call('HSET', KEYS[k], 'data', ARGV[a + 1], 'description', ARGV[a + 2], unpack(fields))
  redis.call('PERSIST', KEYS[k])
  redis.call('RPUSH', KEYS[1], ARGV[a])
  a = a + 3
end
return #KEYS - 1
"""
# The fields of RQ's job hash that hold the time it was made: filled in afresh for every send.
_TIMESTAMPS = ("created_at", "enqueued_at")


def _lua_bytes(value: bytes) -> str:
    """A Lua string literal of any bytes (every byte as a decimal escape)."""
    return '"' + "".join(f"\\{b:03d}" for b in value) + '"'


def push_script(connection: redis.Redis, queue: Queue, template: RQJob) -> Any:
    """The script that writes due deliveries like ``template`` (a job of ``queue``) as RQ's enqueue does:
    RQ's job hash as RQ builds and prepares it, less its data and description (per job) and its times (per
    call), encoded as redis-py would send them and written into the script."""
    prepare_for_queue(queue, template)
    common = template.to_dict()
    common.pop("data")
    common.pop("description", None)
    if not set(_TIMESTAMPS) <= set(common):
        raise RuntimeError(f"RQ's job hash lacks {_TIMESTAMPS}: {sorted(common)}")
    encode = cast(Any, connection).get_encoder().encode
    fields = []
    for field, value in common.items():
        fields += [_lua_bytes(encode(field)), "ARGV[1]" if field in _TIMESTAMPS else _lua_bytes(encode(value))]
    return connection.register_script(_PUSH_LUA % ", ".join(fields))


# -- RQ's scheduler ----------------------------------------------------------------------------------------
class RidingScheduler(RQScheduler):
    """RQ's scheduler process, which rides out Redis restarts and can end with the worker that forked it
    (``on_start``: the worker sets it up in the scheduler's process). Checked against rq 2.0-3.0:
    ``RQScheduler.start`` forks a process running ``work``; ``_install_signal_handlers``, ``_stop_requested``,
    ``_process``, ``should_reacquire_locks``, ``acquire_locks(auto_start=)``, ``heartbeat``,
    ``enqueue_scheduled_jobs``, ``stop``; ``register_birth``/``register_death`` from rq 2.10 on."""

    def start(self) -> Any:
        self.worker_pid = os.getpid()
        return super().start()  # type: ignore[no-untyped-call]

    def birth(self) -> None:
        """Register in RQ's scheduler registry (rq 2.10-3.0; rq 2.0-2.9 keeps none)."""
        register = getattr(self, "register_birth", None)
        if register is not None:
            register()

    def death(self) -> None:
        register = getattr(self, "register_death", None)
        if register is not None:
            register()

    def on_start(self, worker_pid: int) -> None:
        """Called first in the scheduler's process, with the pid of the worker that started it."""

    def running(self) -> bool:
        """Whether this scheduler's process is alive (it holds RQ's scheduler locks)."""
        process = self._process
        return process is not None and process.is_alive()

    def work(self) -> None:
        self.on_start(self.worker_pid)
        self._install_signal_handlers()  # type: ignore[no-untyped-call]

        def stopping() -> bool:
            return bool(self._stop_requested)

        ride_out(self.birth, retry_on=REDIS_DOWN, what="RQ's scheduler: registering",
                 should_stop=stopping, logger=log)
        while not self._stop_requested:
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()  # type: ignore[no-untyped-call]
                self.heartbeat()  # type: ignore[no-untyped-call]
                self.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            except REDIS_DOWN:
                with contextlib.suppress(*REDIS_DOWN):
                    ride_out(self.connection.ping, retry_on=REDIS_DOWN, what="RQ's scheduler: Redis",
                             should_stop=stopping, logger=log)
                    # Redis may be back empty: the locks (and this scheduler's registration) are taken again.
                    self.birth()
                    self.acquire_locks()  # type: ignore[no-untyped-call]
                continue
            time.sleep(self.interval)
        with contextlib.suppress(*REDIS_DOWN):
            self.stop()  # type: ignore[no-untyped-call]


# -- RQ's worker pool ---------------------------------------------------------------------------------------
class PromptWorkerPool(WorkerPool):
    """RQ's worker pool, whose loop wakes the moment one of its worker processes ends instead of once a second:
    a burst pool exits with its last worker, not up to a second later.

    ``start`` is RQ's loop (checked against rq 2.0-3.0, whose ``WorkerPool.start`` differ only in the status a
    pool starts in) with its ``time.sleep(1)`` replaced by a wait on the worker processes' sentinels, at most
    one second; it relies on ``_burst``, ``Status``, ``start_workers``, ``_install_signal_handlers``,
    ``check_workers``, ``all_workers_have_stopped``, ``number_of_active_workers`` and ``worker_dict`` (a
    ``WorkerData`` per worker, its ``process`` a ``multiprocessing.Process``)."""

    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        self._burst = burst
        setup_loghandlers(logging_level, DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT,
                          name=WorkerPool.__module__)
        self.log.info("Starting worker pool %s with pid %d...", self.name, os.getpid())
        self.status = self.Status.STARTED
        self.start_workers(burst=burst, logging_level=logging_level)
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        while True:
            if self.status == self.Status.STOPPED:
                if self.all_workers_have_stopped():
                    self.log.info("All workers stopped, exiting...")
                    break
                self.log.info("Waiting for workers to shutdown...")
            else:
                self.check_workers(respawn=not burst)
                if burst and self.number_of_active_workers == 0:
                    self.log.info("All workers stopped, exiting...")
                    break
            self.until_a_worker_ends(1.0)

    def until_a_worker_ends(self, timeout: float) -> None:
        """Wait until one of the pool's worker processes ends, at most ``timeout`` seconds (a signal's handler
        runs meanwhile, as during a sleep)."""
        sentinels = [data.process.sentinel for data in list(self.worker_dict.values())]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout)
        else:
            time.sleep(timeout)


# -- taking deliveries: the worker's side of the transport -------------------------------------------------
# The fields of a delivery's hash a worker reads: what it carries (the function and the ledger id), where
# from, its timeout; a job that is not a ledger delivery is read whole before RQ handles it.
_FIELDS = ("data", "origin", "timeout", "description", "status")
# What RQ's own tools (``rq info``, rq-dashboard: ``Worker.get_current_job_id``) read to tell which job a
# worker runs, written by the same script call that takes a delivery (``running``) and cleared by the one
# that settles it (``settled``; ``idle`` when no delivery follows). ARGV of both scripts (after their own):
# the worker's name, the time as a Unix timestamp, the execution id (one per worker), the seconds an
# execution hash outlives its delivery's timeout (it expires then if its worker was killed), RQ's default
# timeout for a delivery that sets none. Checked against rq 2.0-2.12 (the ``current_job`` field of the
# worker's hash: ``set_current_job_id``, ``get_current_job_id``) and rq 3.0 (``Execution.save``/``restore``,
# the worker's execution index, ``get_current_executions``). On rq 3 the index is deleted with the delivery
# it names, so it has a time to live only once a heartbeat set one: a worker killed mid-delivery before its
# next heartbeat leaves its index (one small set; its worker key expires, so no tool lists it) rather than
# every delivery paying one more command to expire it.
if EXECUTION_INDEX:
    _RUNNING_LUA = """
local function running(wkey, ekey, id, name, stamp, eid, grace, timeout)
  local member = id .. ':' .. eid
  local ttl = tonumber(timeout)
  if not ttl or ttl < 0 then ttl = 31536000 end
  ttl = math.floor(ttl) + tonumber(grace)
  redis.call('HSET', EPREFIX .. member, 'id', eid, 'job_id', id, 'created_at', stamp, 'last_heartbeat', stamp,
             'worker_name', name)
  redis.call('EXPIRE', EPREFIX .. member, ttl)
  redis.call('SADD', ekey, member)
  redis.call('HSET', wkey, 'state', 'busy')
end
local function settled(ekey, jkey, id, eid)
  redis.call('DEL', jkey, EPREFIX .. id .. ':' .. eid, ekey)
end
local function idle(wkey)
  redis.call('HSET', wkey, 'state', 'idle')
end
"""
else:
    _RUNNING_LUA = """
local function running(wkey, ekey, id, name, stamp, eid, grace, timeout)
  redis.call('HSET', wkey, 'state', 'busy', 'current_job', id)
end
local function settled(ekey, jkey, id, eid)
  redis.call('DEL', jkey)
end
local function idle(wkey)
  redis.call('HSET', wkey, 'state', 'idle')
  redis.call('HDEL', wkey, 'current_job')
end
"""
# A delivery's hash marked taken by this worker, and the fields the worker reads (its status as now stored);
# nil if the hash is gone (removed meanwhile), as RQ's dequeue skips such an id.
_LUA_HEAD = (
    "local FIELDS = {" + ", ".join(f"'{f}'" for f in _FIELDS) + "}\n"
    "local EPREFIX = 'rq:execution:'\n" + _RUNNING_LUA + """
local function taken(jkey, name, at)
  local fields = redis.call('HMGET', jkey, unpack(FIELDS))
  if not (fields[1] or fields[2] or fields[5]) then return nil end
  redis.call('HSET', jkey, 'status', 'started', 'worker_name', name, 'started_at', at)
  fields[5] = 'started'
  return fields
end
"""
)
# Taking a delivery, in one round trip: pop the first waiting delivery of the queues in order, mark its
# job hash taken by this worker (so that ``Transport.held`` counts it while this worker lives), mark the
# worker busy with it, and return the delivery's fields. With ARGV[4] set, the delivery this worker finished
# last is settled first (its hash deleted, the worker's statistics counted: see
# ``DeliveryWorker.delivery_done``), and the worker marked idle only if no delivery follows. KEYS: the
# queues in order, then the worker's key, then its execution index. ARGV: the job key prefix, the worker's
# name, the time, the finished delivery's id or '', the statistic it counts towards or '', its seconds,
# then the running fields (see above).
_TAKE_LUA = _LUA_HEAD + """
local wkey, ekey = KEYS[#KEYS - 1], KEYS[#KEYS]
local settling = ARGV[4] ~= ''
if settling then
  settled(ekey, ARGV[1] .. ARGV[4], ARGV[4], ARGV[9])
  if ARGV[5] ~= '' then redis.call('HINCRBY', wkey, ARGV[5], 1) end
  redis.call('HINCRBYFLOAT', wkey, 'total_working_time', ARGV[6])
end
for i = 1, #KEYS - 2 do
  while true do
    local id = redis.call('LPOP', KEYS[i])
    if not id then break end
    local fields = taken(ARGV[1] .. id, ARGV[2], ARGV[3])
    if fields then
      running(wkey, ekey, id, ARGV[7], ARGV[8], ARGV[9], ARGV[10], fields[3] or ARGV[11])
      return {KEYS[i], id, fields}
    end
  end
end
if settling then idle(wkey) end
return false
"""
# The same marking for a delivery a blocking pop took. KEYS: the job's hash, the worker's key, its
# execution index. ARGV: the delivery's id, the time, then the running fields.
_MARK_LUA = _LUA_HEAD + """
local fields = taken(KEYS[1], ARGV[3], ARGV[2])
if not fields then return false end
running(KEYS[2], KEYS[3], ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], fields[3] or ARGV[7])
return fields
"""
# An execution hash outlives a killed worker by at most this long past its delivery's timeout.
_EXECUTION_GRACE = 120


class DeliveryWorker(BaseWorker):
    """The worker's side of the transport, on RQ's worker: taking deliveries (one script call per delivery,
    which also settles the previous one and shows RQ's tools which job the worker runs), the worker's state
    as RQ keeps it, its horse, its scheduler. The runtime's worker builds on it and supplies
    ``ride_out_redis`` (waiting for Redis), ``run_maintenance_tasks`` and what a delivery does.

    Checked against rq 2.0-3.0: ``BaseWorker._state``, ``_stop_requested``, ``_horse_pid``, ``_is_horse``,
    ``_start_scheduler(burst, logging_level, date_format, log_format)``,
    ``dequeue_job_and_maintain_ttl(timeout, max_idle_time)`` returning ``(job, queue)`` or None,
    ``Job.restore`` of a partial hash (missing fields keep their defaults)."""

    scheduler_class: type[RidingScheduler] = RidingScheduler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._take = self.connection.register_script(_TAKE_LUA)
        self._mark = self.connection.register_script(_MARK_LUA)
        self._by_key = {q.key: q for q in self.queues}
        self._job_prefix = self.job_class.redis_job_namespace_prefix
        self._execution_id = uuid.uuid4().hex
        self._finished: tuple[str, str, float] | None = None  # (delivery id, statistic, seconds)
        self._scheduling = False  # this worker keeps an RQ scheduler (not a burst)
        # The first upkeep waits for the first job, or for the queues to be found empty (see the runtime).
        self.upkeep_started = False

    # -- what RQ keeps on the worker --------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        """Whether a warm shutdown was asked for (RQ's signal handler sets it)."""
        return bool(self._stop_requested)

    @property
    def horse_pid(self) -> int:
        return int(self._horse_pid or 0)

    @horse_pid.setter
    def horse_pid(self, pid: int) -> None:
        self._horse_pid = pid

    def become_horse(self) -> None:
        """In a forked work horse: RQ's own checks (teardown, signal handling) now see a horse."""
        self._is_horse = True

    def set_state(self, state: str, pipeline: Any = None) -> None:
        # RQ sets the worker idle before every dequeue; taking and settling deliveries keep the stored
        # state current, so an unchanged state is not written again.
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def ride_out_redis(self, exc: BaseException) -> None:
        """Wait until Redis answers again (the runtime's worker does); by default Redis being away ends the work."""
        raise exc

    # -- RQ's scheduler ---------------------------------------------------------------------------------
    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with ``scheduler_class``: a scheduler process that rides out Redis."""
        self._scheduling = not burst
        self.scheduler = self.scheduler_class(
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
            self.scheduler.birth()
            self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            self.scheduler.release_locks()  # type: ignore[no-untyped-call]
            self.scheduler.death()

    def standby(self) -> bool:
        """Whether this worker keeps an RQ scheduler that is not running (another worker holds the locks)."""
        scheduler = self.scheduler
        if not self._scheduling or not isinstance(scheduler, RidingScheduler) or self.is_horse:
            return False
        return not scheduler.running()

    def keep_scheduler(self) -> None:
        """Take RQ's scheduler locks if their holder is gone, and start this worker's scheduler process."""
        if self.standby() and self.scheduler is not None:
            self.scheduler.acquire_locks(auto_start=True)

    # -- taking deliveries ------------------------------------------------------------------------------
    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[RQJob, Queue] | None:
        """Take the next delivery of the queues in order (see ``_TAKE_LUA``); with ``timeout`` None (burst)
        return None when they are empty, else wait for one up to ``timeout`` seconds at a time, running
        upkeep between waits, and give up after ``max_idle_time`` seconds idle."""
        self.procline("Listening on " + ",".join(self.queue_names()))  # type: ignore[no-untyped-call]
        idle_since = time.monotonic()
        while True:
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()  # type: ignore[no-untyped-call]
                taken = self._take_next()
                if taken is not None:
                    return taken
                if not self.upkeep_started:
                    self.upkeep_started = True
                    continue
                self.set_state(WorkerStatus.IDLE)
                if timeout is None:
                    return None
                wait = 1 if self.standby() else timeout
                if max_idle_time is not None:
                    left = max_idle_time - (time.monotonic() - idle_since)
                    if left <= 0:
                        return None
                    wait = max(1, min(wait, math.ceil(left)))
                popped = self.connection.blpop(self.queue_keys(), wait)
                if popped is None:
                    continue
                taken = self._mark_popped(*(as_text(v) for v in popped))
                if taken is not None:
                    return taken
            except REDIS_DOWN as exc:
                self.ride_out_redis(exc)

    def _running_args(self) -> list[Any]:
        return [self.name, repr(time.time()), self._execution_id, _EXECUTION_GRACE,
                int(self.queue_class.DEFAULT_TIMEOUT)]

    @property
    def _executions_key(self) -> str:
        return f"rq:worker:{self.name}:executions"

    def _take_next(self, queue_keys: list[str] | None = None) -> tuple[RQJob, Queue] | None:
        """Settle the delivery finished last and take the next one of ``queue_keys`` (default: this worker's
        queues in order), in one script call; with no queue keys it only settles."""
        done_id, statistic, seconds = self._finished or ("", "", 0.0)
        found = self._take(
            keys=[*(self.queue_keys() if queue_keys is None else queue_keys), self.key, self._executions_key],
            args=[self._job_prefix, self.name, utcformat(now()), done_id, statistic, repr(seconds),
                  *self._running_args()],
        )
        self._finished = None
        if not found:
            return None
        queue_key, rq_id, fields = found
        return self._taken(as_text(queue_key), as_text(rq_id), fields)

    def _mark_popped(self, queue_key: str, rq_id: str) -> tuple[RQJob, Queue] | None:
        fields = self._mark(keys=[self._job_prefix + rq_id, self.key, self._executions_key],
                            args=[rq_id, utcformat(now()), *self._running_args()])
        return self._taken(queue_key, rq_id, fields) if fields else None

    def _taken(self, queue_key: str, rq_id: str, fields: list[bytes]) -> tuple[RQJob, Queue]:
        job = self.job_class(rq_id, connection=self.connection, serializer=self.serializer)
        job.restore({k: v for k, v in zip(_FIELDS, fields, strict=True) if v is not None})
        queue = self._by_key[queue_key]
        self._state = WorkerStatus.BUSY  # the script stored it; a warm shutdown now waits for the attempt
        self.log.debug("Worker %s: %s: %s", self.name, queue.name, rq_id)
        return job, queue

    def delivery_done(self, rq_job_id: str, statistic: str, seconds: float) -> None:
        """A delivery is finished: it is settled with the next take (one round trip fewer per job), or when
        the worker stops. ``statistic``: RQ's worker statistic it counts towards, or ''."""
        self._finished = (rq_job_id, statistic, seconds)
        self._state = WorkerStatus.IDLE
        self.upkeep_started = True

    def settle_now(self) -> None:
        """Settle the delivery finished last right away, when stopping (every take settles it otherwise)."""
        if self._finished is not None:
            self._take_next(queue_keys=[])
            self._state = WorkerStatus.IDLE  # the script stored it

    def teardown(self) -> None:
        if not self.is_horse:
            with contextlib.suppress(*REDIS_DOWN):
                self.settle_now()
        super().teardown()  # type: ignore[no-untyped-call]
