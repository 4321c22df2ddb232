"""Execution on real Redis and a real ledger: attempts, retries, dead letter, delays, priorities."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from sqlalchemy import select

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import JobEvent
from sgen_ops.transport.queue import Delivery

from ..conftest import Stack
from ..helpers import attempts_of, job_count, job_row

Work = Callable[[], None]


@pytest.fixture(params=["simple", "fork"])
def work(request: pytest.FixtureRequest, hub: sgen_ops.Hub) -> Work:
    """A burst of RQ's SimpleWorker, or of the forking Worker whose horses only run handlers."""
    return lambda: hub.work(worker_class=request.param)


def test_a_job_succeeds_with_one_attempt_in_history(hub: sgen_ops.Hub, work: Work, stack: Stack) -> None:
    job_id = hub.enqueue("test.ok", {"n": 1})
    assert job_row(hub, job_id).state == "queued"
    work()
    job = job_row(hub, job_id)
    assert (job.state, job.attempts, job.max_attempts) == ("succeeded", 1, 3)
    [attempt] = attempts_of(hub, job_id)
    assert attempt.exit == "succeeded" and attempt.finished_at is not None and attempt.worker
    assert attempt.finished_at >= attempt.started_at
    assert stack.runs() == [f"{job_id}:1:1"]


def test_fails_twice_then_succeeds_with_three_attempts(hub: sgen_ops.Hub, work: Work) -> None:
    job_id = hub.enqueue("test.flaky", {"succeed_on": 3})
    work()
    job = job_row(hub, job_id)
    assert job.state == "succeeded" and job.attempts == 3
    assert [a.exit for a in attempts_of(hub, job_id)] == ["failed", "failed", "succeeded"]
    assert [a.error_code for a in attempts_of(hub, job_id)] == ["flaky_error", "flaky_error", None]
    with hub.ledger.read() as session:
        moves = [
            (e.from_state, e.to_state)
            for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        ]
    assert moves == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
        ("failed", "retrying"),
        ("retrying", "queued"),
        ("queued", "running"),
        ("running", "failed"),
        ("failed", "retrying"),
        ("retrying", "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]


def test_exhausted_budget_goes_to_dead_letter_with_error(hub: sgen_ops.Hub, work: Work) -> None:
    job_id = hub.enqueue("test.flaky", {"succeed_on": 99})
    work()
    job = job_row(hub, job_id)
    assert job.state == "dead-letter"
    assert job.attempts == 3
    assert job.last_error_code == "flaky_error"
    assert job.last_error_detail == "attempt 3 failed on purpose"
    assert job.error_log is not None and job.error_log.count("Traceback") == 3
    assert job.lease_until is None


def test_max_attempts_given_at_enqueue_overrides_the_task_default(hub: sgen_ops.Hub, work: Work) -> None:
    job_id = hub.enqueue("test.flaky", {"succeed_on": 99}, max_attempts=1)
    work()
    assert (job_row(hub, job_id).state, job_row(hub, job_id).attempts) == ("dead-letter", 1)


def test_other_exceptions_use_their_class_name_as_code(hub: sgen_ops.Hub, work: Work) -> None:
    job_id = hub.enqueue("test.boom")
    work()
    job = job_row(hub, job_id)
    assert job.state == "dead-letter"
    assert job.last_error_code == "ValueError"
    assert job.last_error_detail == "kaboom: the handler broke"
    assert job.error_log is not None and "Traceback" in job.error_log and "ValueError: kaboom" in job.error_log


def test_a_task_may_opt_out_of_dead_lettering(hub: sgen_ops.Hub, work: Work) -> None:
    job_id = hub.enqueue("test.nodl")
    work()
    assert job_row(hub, job_id).state == "failed"


def test_backoff_schedules_the_retry_in_the_future(hub: sgen_ops.Hub, work: Work) -> None:
    before = utcnow()
    job_id = hub.enqueue("test.backoff")
    work()
    job = job_row(hub, job_id)
    assert job.state == "retrying" and job.attempts == 1
    assert job.scheduled_for >= before + timedelta(seconds=3600)
    assert hub.transport.scheduled() == 1 and hub.transport.waiting() == 0


def test_delay_is_not_run_early(hub: sgen_ops.Hub, work: Work, stack: Stack) -> None:
    job_id = hub.enqueue("test.ok", delay=timedelta(hours=1))
    work()
    job = job_row(hub, job_id)
    assert (job.state, job.attempts) == ("queued", 0)
    assert stack.runs() == []
    assert hub.transport.scheduled() == 1


def test_a_due_delay_runs(hub: sgen_ops.Hub, work: Work, stack: Stack) -> None:
    job_id = hub.enqueue("test.ok", delay=0.01)
    work()
    assert job_row(hub, job_id).state == "succeeded"


def test_priority_order_high_normal_low(hub: sgen_ops.Hub, work: Work, stack: Stack) -> None:
    low = hub.enqueue("test.ok", priority="low")
    normal = hub.enqueue("test.ok", priority="normal")
    high = hub.enqueue("test.ok", priority="high")
    low2 = hub.enqueue("test.ok", priority="low")
    high2 = hub.enqueue("test.ok", priority="high")
    work()
    order = [int(r.split(":")[0]) for r in stack.runs()]
    assert order == [high, high2, normal, low, low2]


def test_duplicate_and_stale_deliveries_run_once(hub: sgen_ops.Hub, work: Work, stack: Stack) -> None:
    job_id = hub.enqueue("test.ok")
    current = job_row(hub, job_id).rq_job_id
    assert current is not None
    # The same delivery twice on the queue, plus one with an id the ledger never issued.
    hub.transport.send(Delivery(job_id, current, "normal"))
    hub.transport.send(Delivery(job_id, f"{stack.prefix}-{job_id}-999", "high"))
    work()
    assert stack.runs() == [f"{job_id}:1:1"]
    assert job_row(hub, job_id).attempts == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "no.such.task"}, "unknown task 'no.such.task'; registered tasks:"),
        ({"task": "test.ok", "payload": {"when": object()}}, "payload is not JSON-serialisable"),
        ({"task": "test.ok", "payload": {"nan": float("nan")}}, "payload is not JSON-serialisable"),
        ({"task": "test.ok", "payload": {"blob": "x" * (1024 * 1024)}}, "the limit is 1048576 bytes"),
        ({"task": "test.ok", "priority": "urgent"}, "allowed: high, normal, low"),
        ({"task": "test.ok", "delay": -5}, "invalid delay -5: it is negative, it must be at least 0 seconds"),
        ({"task": "test.ok", "max_attempts": 0}, "give a whole number >= 1"),
    ],
)
def test_bad_input_is_refused_and_records_nothing(hub: sgen_ops.Hub, kwargs: dict, message: str) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by every backend's run
    task = kwargs.pop("task")
    with pytest.raises(sgen_ops.ValidationError, match=message.replace("(", r"\(")):
        hub.enqueue(task, **kwargs)
    assert job_count(hub) == 0
    assert hub.transport.waiting() == 0 and hub.transport.scheduled() == 0


def test_bulk_enqueue_is_all_or_nothing(hub: sgen_ops.Hub, work: Work, stack: Stack) -> None:
    with pytest.raises(sgen_ops.ValidationError):
        hub.enqueue_many("test.ok", [{"i": 1}, {"i": object()}])
    assert job_count(hub) == 0
    ids = hub.enqueue_many("test.ok", [{"i": i} for i in range(25)])
    assert len(set(ids)) == 25
    work()
    assert sorted(int(r.split(":")[0]) for r in stack.runs()) == sorted(ids)


def test_a_task_over_its_timeout_fails_with_exit_timeout(hub: sgen_ops.Hub, work: Work) -> None:
    job_id = hub.enqueue("test.hang")
    work()
    job = job_row(hub, job_id)
    assert (job.state, job.last_error_code) == ("dead-letter", "timeout")
    assert [a.exit for a in attempts_of(hub, job_id)] == ["timeout"]


def test_no_pickle_crosses_redis(hub: sgen_ops.Hub) -> None:
    import json
    import zlib

    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    rq_id = job_row(hub, job_id).rq_job_id
    raw = hub.redis.hget(f"rq:job:{rq_id}", "data")
    assert raw is not None
    func, _instance, args, kwargs = json.loads(zlib.decompress(raw))
    assert (func, args, kwargs) == ("sgen_ops.runtime.execution.perform", [job_id], {})


def test_rq_keeps_nothing_of_a_ledger_delivery_but_the_worker_statistics(
    hub: sgen_ops.Hub, work: Work, stack: Stack
) -> None:
    """RQ carries the id: what its worker would record per job (registries, results, execution records, the
    delivery's hash) the ledger holds, so none of it is left; the worker's counts are kept."""
    ok = [hub.enqueue("test.ok", {"n": n}) for n in range(4)]
    broken = hub.enqueue("test.boom")  # two failed attempts, then a dead letter: all in the ledger
    work()
    assert {job_row(hub, j).state for j in ok} == {"succeeded"}
    assert [a.exit for a in attempts_of(hub, broken)] == ["failed", "failed"]
    for queue in hub.transport.ordered_queues:
        assert queue.count == 0
        for registry in (StartedJobRegistry, FinishedJobRegistry, FailedJobRegistry):
            assert registry(queue=queue).count == 0, registry.__name__
    for pattern in ("rq:job:", "rq:results:", "rq:execution:", "rq:executions:"):
        assert list(hub.redis.scan_iter(match=f"{pattern}{stack.prefix}*")) == [], pattern
    [worker_key] = list(hub.redis.scan_iter(match=f"rq:worker:{stack.prefix}*"))
    counts = hub.redis.hmget(worker_key, "successful_job_count", "failed_job_count")
    assert [int(c or 0) for c in counts] == [4, 2]


def test_a_job_on_the_queues_that_is_no_ledger_delivery_gets_rqs_own_handling(hub: sgen_ops.Hub, work: Work) -> None:
    queue = hub.transport.queues["normal"]
    foreign = queue.enqueue("builtins.len", [1, 2, 3], result_ttl=600)
    work()
    foreign.refresh()
    assert foreign.get_status() == "finished"
    assert foreign.return_value() == 3
    assert FinishedJobRegistry(queue=queue).get_job_ids() == [foreign.id]


def test_a_worker_stopping_after_a_job_settles_its_delivery(hub: sgen_ops.Hub, stack: Stack) -> None:
    """The delivery a worker finished is settled with its next take; one that stops first settles it then."""
    from sgen_ops.runtime import execution
    from sgen_ops.runtime.workers import SgenWorker, worker_name

    first, second = hub.enqueue("test.ok"), hub.enqueue("test.ok")
    execution.bind_hub(hub)
    worker = SgenWorker(hub.transport.ordered_queues, connection=hub.redis, name=worker_name(stack.prefix))
    worker.work(burst=True, max_jobs=1)
    assert job_row(hub, first).state == "succeeded" and job_row(hub, second).state == "queued"
    assert not hub.redis.exists(f"rq:job:{job_row(hub, first).rq_job_id}")
    assert hub.redis.exists(f"rq:job:{job_row(hub, second).rq_job_id}")
    assert hub.redis.hget(worker.key, "successful_job_count") == b"1"
