"""``GET /metrics``: the queue in Prometheus' text format, under names rq-exporter and Flower users know.

Read from the ledger and Redis at scrape time (kept for ``CACHE_SECONDS``, so that a fast scraper costs a
few queries every few seconds, not per scrape), except the operator actions this server answered, which it
counts as it answers them. No account and no job id is ever a label.

    sgen_ops_jobs{state, task}                     jobs in the ledger by state and task (rq_jobs)
    sgen_ops_dead_letters{task}                    jobs in the dead letter
    sgen_ops_attempts{task, outcome}               attempts in the ledger by how they ended
    sgen_ops_attempt_run_seconds{task}             run time of finished attempts (histogram)
    sgen_ops_queue_wait_seconds{task}              due -> started, of every attempt (histogram)
    sgen_ops_workers{state}                        RQ workers alive on this stack's queues (rq_workers)
    sgen_ops_oldest_queued_job_age_seconds         how long the longest-waiting due job has waited
    sgen_ops_job_state_changes_total{task, state}  jobs that became succeeded, failed, dead-letter or cancelled
                                                   since the start of this UTC hour (a counter restarting hourly)
    sgen_ops_last_schedule_tick_timestamp_seconds  when the scheduler last emitted a due tick (0: never)
    sgen_ops_schedule_tick_overdue_seconds         how long the most overdue tick of an enabled schedule has
                                                   waited to be emitted (0: none due)
    sgen_ops_operator_actions_total{action, result} operations served over HTTP, by result
    sgen_ops_http_requests_total{method, route, status}

Attempt counts and histograms are over the attempts the ledger holds: a dismissed or deleted job takes its
attempts with it, so they can go down (a scraper sees that as a counter reset). Rates of jobs finishing come
from ``sgen_ops_job_state_changes_total`` instead: it counts the ledger's state-change events of the current
hour only (an index range, whatever the history's size), so it never goes down within the hour, and restarts
from zero at each hour with its ``_created`` time, as a counter of a restarted process does; ``rate()`` and
``increase()`` read it across the restarts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Float, and_, case, cast, func, select

from ..core.states import State
from ..core.tasks import registered
from ..core.times import as_utc, utcnow
from ..hub import Hub
from ..ledger.query import epoch_seconds
from ..ledger.stats import COUNTED
from ..ledger.store import Attempt, Job, JobEvent, Schedule
from ..runtime.workers_info import last_schedule_tick

CACHE_SECONDS = 5.0
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# HTTP status -> the result label of an operator action.
RESULTS = {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "refused", 422: "invalid"}


class LedgerCollector(Collector):
    """The queue's state, read from the ledger and Redis when scraped."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or self._cached[0] < now:
                self._cached = (now + CACHE_SECONDS, list(self._read()))
            yield from self._cached[1]

    def _read(self) -> Iterator[Metric]:
        dialect = self.hub.ledger.engine.dialect.name
        with self.hub.ledger.read() as session:
            jobs = GaugeMetricFamily("sgen_ops_jobs", "Jobs in the ledger by state and task", labels=["state", "task"])
            dead = GaugeMetricFamily("sgen_ops_dead_letters", "Jobs in the dead letter by task", labels=["task"])
            by_state = select(Job.state, Job.task, func.count()).group_by(Job.state, Job.task)
            for state, task, n in session.execute(by_state):
                jobs.add_metric([state, task], int(n))
                if state == State.DEAD_LETTER.value:
                    dead.add_metric([task], int(n))
            yield jobs
            yield dead

            attempts = GaugeMetricFamily("sgen_ops_attempts", "Attempts in the ledger by task and outcome",
                                         labels=["task", "outcome"])
            for task, outcome, n in session.execute(
                select(Attempt.task, Attempt.exit, func.count()).group_by(Attempt.task, Attempt.exit)
            ):
                attempts.add_metric([task, outcome or "running"], int(n))
            yield attempts

            run = cast(epoch_seconds(Attempt.finished_at, dialect) - epoch_seconds(Attempt.started_at, dialect), Float)
            wait = cast(epoch_seconds(Attempt.started_at, dialect) - epoch_seconds(Attempt.ready_at, dialect), Float)
            yield self._histogram(session, "sgen_ops_attempt_run_seconds", "Run time of finished attempts", run,
                                  Attempt.finished_at.is_not(None))
            yield self._histogram(session, "sgen_ops_queue_wait_seconds", "Time from due to started, per attempt",
                                  wait, Attempt.ready_at.is_not(None))

            oldest = session.scalar(
                select(func.min(Job.scheduled_for)).where(Job.state == State.QUEUED.value,
                                                          Job.scheduled_for <= utcnow())
            )
            yield from self._state_changes(session)
            yield from self._schedule_ticks(session)
        age = GaugeMetricFamily("sgen_ops_oldest_queued_job_age_seconds",
                                "How long the longest-waiting due job has waited (0: none waiting)")
        age.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0)
        yield age
        yield self._workers()

    @staticmethod
    def _state_changes(session: Any) -> Iterator[Metric]:
        hour = utcnow().replace(minute=0, second=0, microsecond=0)
        family = CounterMetricFamily(
            "sgen_ops_job_state_changes",
            "Jobs that became succeeded, failed, dead-letter or cancelled since the start of this UTC hour, by task "
            "(restarts each hour: read it with rate() or increase())",
            labels=["task", "state"],
        )
        stmt = (select(JobEvent.task, JobEvent.to_state, func.count())
                .where(JobEvent.at >= hour, JobEvent.to_state.in_(COUNTED)).group_by(JobEvent.task, JobEvent.to_state))
        counts = {(task, state): int(n) for task, state, n in session.execute(stmt)}
        # Every registered task's series from zero, so that rate() sees a task's first change of the hour too.
        for task, state in sorted(counts.keys() | {(t, s) for t in registered() for s in COUNTED}):
            family.add_metric([task, state], counts.get((task, state), 0), created=hour.timestamp())
        yield family

    @staticmethod
    def _schedule_ticks(session: Any) -> Iterator[Metric]:
        now = utcnow()
        last = last_schedule_tick(session)
        tick = GaugeMetricFamily("sgen_ops_last_schedule_tick_timestamp_seconds",
                                 "When the scheduler last emitted a due schedule tick, in Unix time (0: never)")
        tick.add_metric([], last.timestamp() if last is not None else 0.0)
        yield tick
        owed = session.scalar(select(func.min(Schedule.next_run)).where(
            Schedule.enabled.is_(True), Schedule.next_run.is_not(None), Schedule.next_run <= now))
        overdue = GaugeMetricFamily("sgen_ops_schedule_tick_overdue_seconds",
                                    "How long the most overdue tick of an enabled schedule has waited to be emitted "
                                    "(0: none due)")
        overdue.add_metric([], max(0.0, (now - as_utc(owed)).total_seconds()) if owed is not None else 0.0)
        yield overdue

    @staticmethod
    def _histogram(session: Any, name: str, doc: str, value: Any, where: Any) -> HistogramMetricFamily:
        columns = [func.sum(case((value <= b, 1), else_=0)) for b in BUCKETS]
        stmt = select(Attempt.task, func.count(), func.coalesce(func.sum(value), 0.0), *columns)
        family = HistogramMetricFamily(name, doc, labels=["task"])
        for task, count, total, *cumulative in session.execute(stmt.where(and_(where)).group_by(Attempt.task)):
            buckets = [(str(b), int(c or 0)) for b, c in zip(BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", int(count)))
            family.add_metric([task], buckets, float(total or 0.0))
        return family

    def _workers(self) -> GaugeMetricFamily:
        from rq import Worker

        family = GaugeMetricFamily("sgen_ops_workers", "RQ workers alive on this stack's queues", labels=["state"])
        states: dict[str, str] = {}
        try:
            for queue in self.hub.transport.ordered_queues:
                for worker in Worker.all(queue=queue):
                    states[worker.name] = str(worker.get_state())
        except Exception:  # noqa: BLE001 - Redis away: no workers seen, rather than a failed scrape
            states = {}
        for state in sorted(set(states.values()) | {"busy", "idle"}):
            family.add_metric([state], sum(1 for s in states.values() if s == state))
        return family


class Metrics:
    """This server's registry: the ledger collector and the counters of what it answered."""

    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.ledger = LedgerCollector(hub)
        self.registry.register(self.ledger)
        self.actions = Counter("sgen_ops_operator_actions", "Operations served over HTTP by action and result",
                               ["action", "result"], registry=self.registry)
        self.requests = Counter("sgen_ops_http_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.registry)

    def answered(self, method: str, route: str, action: str | None, status: int) -> None:
        self.requests.labels(method, route, str(status)).inc()
        if action is not None:
            result = "ok" if status < 400 else RESULTS.get(status, "error")
            self.actions.labels(action, result).inc()

    def exposition(self) -> bytes:
        """The text format; with several server processes (``PROMETHEUS_MULTIPROC_DIR``) their counters summed."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            merged.register(self.ledger)
            return generate_latest(merged)
        return generate_latest(self.registry)
