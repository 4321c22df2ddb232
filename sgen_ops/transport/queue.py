"""RQ transport: three priority queues, delayed delivery through RQ's scheduled jobs, removal.

RQ carries a ledger job id to a worker and nothing else; the ledger is the truth. Every delivery
gets its own RQ job id (``<prefix>-<ledger id>-<seq>``) so that a stale or duplicate delivery can be
told apart from the current one when a worker claims the attempt.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.utils import utcformat, utcparse
from rq.worker import BaseWorker

from ..core.tasks import PRIORITIES
from ..core.times import as_utc, utcnow
from . import rq as rq_internals

PERFORM = "sgen_ops.runtime.execution.perform"
# What deliveries sent before the package was split into layers name: still ledger deliveries to a worker.
PERFORMS = frozenset({PERFORM, "sgen_ops.execution.perform"})
# RQ keeps nothing of a finished delivery: the ledger holds results and history.
RESULT_TTL = 0
FAILURE_TTL = 7 * 86400
# Due deliveries are written by one script call per BATCH (RQ's own enqueue does the scheduled ones).
BATCH = 1000
# RQ job statuses of a delivery not yet taken by a worker (a stuck one RQ's own upkeep fails in time).
_WAITING_STATUSES = frozenset({JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value})
# A queue is read whole when looking for deliveries popped and never marked taken only up to this length;
# past it such a delivery is found once the queue is short again.
SNAPSHOT_DEPTH = 2000
# A delivery is judged popped-and-lost only if it was pushed this many seconds before the queues were read.
POP_GRACE = 10.0

@dataclass(frozen=True)
class _Snapshot:
    """The queues as ``Transport.held`` read them: when, their lengths, the deliveries of the short ones."""

    at: float
    lengths: dict[str, int]
    members: dict[str, set[str]]


@dataclass(frozen=True)
class Delivery:
    """One hand-over of a ledger job to RQ."""

    job_id: int
    rq_job_id: str
    priority: str
    at: datetime | None = None
    timeout: int | None = None


class Transport:
    def __init__(self, connection: redis.Redis, prefix: str) -> None:
        self.redis = connection
        self.prefix = prefix
        self.queues: dict[str, Queue] = {
            p: Queue(f"{prefix}-{p}", connection=connection, serializer=JSONSerializer) for p in PRIORITIES
        }
        self._scheduled_keys = {q.name: ScheduledJobRegistry(queue=q).key for q in self.queues.values()}
        # The push script of due deliveries per (priority, timeout): see _push_script.
        self._scripts: dict[tuple[str, int | None], Any] = {}

    @property
    def ordered_queues(self) -> list[Queue]:
        """high, normal, low: the order workers serve them in."""
        return [self.queues[p] for p in PRIORITIES]

    def rq_job_id(self, job_id: int, seq: int) -> str:
        head, tail = self.rq_job_id_around(seq)
        return f"{head}{job_id}{tail}"

    def rq_job_id_around(self, seq: int) -> tuple[str, str]:
        """What comes before and after the ledger id in an RQ job id: for SQL that makes the id itself."""
        return f"{self.prefix}-", f"-{seq}"

    def send(self, delivery: Delivery) -> None:
        self.send_many([delivery])

    def _rq_job(self, d: Delivery, status: JobStatus) -> RQJob:
        return self.queues[d.priority].create_job(
            PERFORM,
            args=(d.job_id,),
            job_id=d.rq_job_id,
            timeout=d.timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"ledger job {d.job_id}",
            status=status,
        )

    def send_many(self, deliveries: Iterable[Delivery]) -> None:
        """Hand deliveries to RQ; due ones go on their queue, later ones are scheduled.

        Due deliveries, one or many, take the script path (``_push_due``); scheduled ones go through
        RQ's own scheduling in one pipeline.
        """
        now = utcnow()
        due: list[Delivery] = []
        later: list[Delivery] = []
        for d in deliveries:
            (later if d.at is not None and as_utc(d.at) > now else due).append(d)
        if due:
            self._push_due(due)
        if not later:
            return
        with self.redis.pipeline() as pipe:
            for d in later:
                assert d.at is not None
                job = self._rq_job(d, JobStatus.SCHEDULED)
                job.save(pipeline=pipe)
                ScheduledJobRegistry(queue=self.queues[d.priority]).schedule(job, as_utc(d.at), pipeline=pipe)
            pipe.execute()

    def _push_due(self, deliveries: Sequence[Delivery]) -> None:
        """Write due deliveries as RQ's enqueue does (the job hash with status queued, no expiry, the id
        pushed on its queue), a thousand per server-side script call.

        The hash is RQ's own: the fields of a job RQ builds and prepares for its queue, with only what
        differs per delivery (its data, i.e. the ledger id, and description) filled in per job, and the
        time it was made per call. RQ's per-job Python work is what held RQ's own ``enqueue_many`` to a
        few thousand jobs a second here; building that job once per (priority, timeout), not per call,
        is what makes a single send cheaper than RQ's own enqueue.
        """
        groups: dict[tuple[str, int | None], list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault((d.priority, d.timeout), []).append(d)
        for (priority, timeout), group in groups.items():
            queue = self.queues[priority]
            dumps = queue.serializer.dumps
            script = self._push_script(priority, timeout)
            stamp = utcformat(rq_now())
            for lo in range(0, len(group), BATCH):
                chunk = group[lo : lo + BATCH]
                keys = [queue.key] + [RQJob.key_for(d.rq_job_id) for d in chunk]
                args: list[Any] = [stamp]
                for d in chunk:
                    args += [
                        d.rq_job_id,
                        zlib.compress(dumps((PERFORM, None, (d.job_id,), {}))),
                        f"ledger job {d.job_id}",
                    ]
                script(keys=keys, args=args)

    def _push_script(self, priority: str, timeout: int | None) -> Any:
        """The push script for due deliveries of this priority and timeout: RQ's job hash as RQ builds and
        prepares it for the queue, less its data and description (per job) and its times (per call),
        encoded as redis-py would send them and written into the script."""
        key = (priority, timeout)
        script = self._scripts.get(key)
        if script is None:
            template = self._rq_job(Delivery(0, "-", priority, None, timeout), JobStatus.QUEUED)
            script = self._scripts[key] = rq_internals.push_script(self.redis, self.queues[priority], template)
        return script

    def remove(self, rq_job_ids: Sequence[str | None]) -> None:
        """Withdraw deliveries (best effort): a stale one left behind could not claim anyway.

        Most withdrawn deliveries are long gone (a finished delivery keeps nothing in Redis), so one round
        trip first asks which still exist and where they were queued; only those are taken off their queue
        and its scheduled registry. (LREM reads the whole list: three per delivery, on queues that a bulk
        replay is filling, made withdrawing the slowest part of bulk triage.)
        """
        ids = [i for i in rq_job_ids if i]
        if not ids:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in ids:
                rq_internals.read_job_fields(pipe, rq_id, "origin")
            origins = [row[0] for row in pipe.execute()]
        live = [(rq_id, origin) for rq_id, origin in zip(ids, origins, strict=True) if origin is not None]
        if not live:
            return
        by_name = {q.name: q for q in self.queues.values()}
        with self.redis.pipeline() as pipe:
            for rq_id, origin in live:
                name = origin.decode() if isinstance(origin, bytes) else str(origin)
                queue = by_name.get(name)
                for q in [queue] if queue is not None else list(self.queues.values()):
                    pipe.lrem(q.key, 0, rq_id)
                    pipe.zrem(self._scheduled_keys[q.name], rq_id)
                pipe.delete(RQJob.key_for(rq_id))
            pipe.execute()

    def exists(self, rq_job_ids: Sequence[str | None]) -> list[bool]:
        """Whether Redis still holds each delivery (None never does)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in rq_job_ids:
                pipe.exists(RQJob.key_for(rq_id or "-"))
            found = pipe.execute()
        return [bool(rq_id) and bool(n) for rq_id, n in zip(rq_job_ids, found, strict=True)]

    def held(self, rq_job_ids: Sequence[str | None]) -> list[bool]:
        """Whether each delivery is still on its way to an attempt: waiting on a queue or scheduled, or
        taken by a worker that is still alive. A delivery taken by a worker that died before claiming its
        attempt is none, whether the worker had marked it taken (its registration lapses) or died between
        a blocking pop and that mark (its hash still says queued, but it is on no queue: see
        ``_on_no_queue``)."""
        snapshot = self._queue_snapshot()
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in rq_job_ids:
                rq_internals.read_job_fields(pipe, rq_id or "-", "status", "worker_name", "origin", "enqueued_at")
            found = pipe.execute()
        held = [False] * len(rq_job_ids)
        taken: list[tuple[int, str]] = []
        for i, (rq_id, (status, worker, origin, enqueued_at)) in enumerate(zip(rq_job_ids, found, strict=True)):
            state = status.decode() if isinstance(status, bytes) else status
            if not rq_id or state is None:
                continue
            if state == JobStatus.QUEUED.value:
                held[i] = not self._on_no_queue(snapshot, rq_id, origin, enqueued_at)
            elif state in _WAITING_STATUSES:
                held[i] = True
            elif state == JobStatus.STARTED.value and worker:
                taken.append((i, worker.decode() if isinstance(worker, bytes) else str(worker)))
        if taken:
            # A worker's key lives while it heartbeats; a killed worker's expires.
            with self.redis.pipeline(transaction=False) as pipe:
                for _i, worker in taken:
                    pipe.exists(BaseWorker.redis_worker_namespace_prefix + worker)
                alive = pipe.execute()
            for (i, _worker), ok in zip(taken, alive, strict=True):
                held[i] = bool(ok)
        return held

    def _queue_snapshot(self) -> _Snapshot:
        """The queues' lengths and, for those no longer than SNAPSHOT_DEPTH, their deliveries, read before the
        hashes they are compared with."""
        queues = self.ordered_queues
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue.key)
                pipe.lrange(queue.key, 0, SNAPSHOT_DEPTH - 1)
            found = pipe.execute()
        lengths = {q.name: int(found[2 * k]) for k, q in enumerate(queues)}
        members = {
            q.name: {v.decode() if isinstance(v, bytes) else str(v) for v in found[2 * k + 1]}
            for k, q in enumerate(queues)
        }
        return _Snapshot(time.time(), lengths, members)

    @staticmethod
    def _on_no_queue(snapshot: _Snapshot, rq_id: str, origin: Any, enqueued_at: Any) -> bool:
        """A delivery whose hash says queued but which is on no queue: its worker popped it and died before
        marking it taken. Told only where its queue was short enough to read whole, and only of a delivery
        older than POP_GRACE (one pushed or being marked meanwhile is not judged). Judging a live worker's
        delivery lost costs a spare delivery, never a second run: the re-send replaces the ledger's delivery
        id, so the worker's claim finds nothing."""
        name = origin.decode() if isinstance(origin, bytes) else origin
        if name not in snapshot.lengths or snapshot.lengths[name] > SNAPSHOT_DEPTH or rq_id in snapshot.members[name]:
            return False
        try:
            pushed = as_utc(utcparse(enqueued_at.decode() if isinstance(enqueued_at, bytes) else str(enqueued_at)))
        except (ValueError, TypeError):
            return False
        return pushed.timestamp() < snapshot.at - POP_GRACE

    def move_due(self) -> int:
        """Move scheduled deliveries whose time has come onto their queues (as RQ's scheduler does)."""
        moved = 0
        for queue in self.ordered_queues:
            registry = ScheduledJobRegistry(queue=queue)
            ids = registry.get_jobs_to_schedule()
            if not ids:
                continue
            jobs = RQJob.fetch_many(ids, connection=self.redis, serializer=JSONSerializer)
            with self.redis.pipeline() as pipe:
                for rq_id, job in zip(ids, jobs, strict=True):
                    if job is not None:
                        rq_internals.enqueue_job(queue, job, pipe)
                        moved += 1
                    registry.remove(rq_id, pipeline=pipe)
                pipe.execute()
        return moved

    def waiting(self) -> int:
        """Deliveries on the queues now (not counting scheduled ones)."""
        return sum(q.count for q in self.queues.values())

    def scheduled(self) -> int:
        return sum(ScheduledJobRegistry(queue=q).count for q in self.queues.values())

    def has_due_work(self) -> bool:
        if self.waiting():
            return True
        now = utcnow().timestamp()
        return any(self.redis.zcount(ScheduledJobRegistry(queue=q).key, 0, now) > 0 for q in self.queues.values())
