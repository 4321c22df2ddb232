"""The enqueue path's batch writes against what the ORM and RQ's own enqueue write for the same job."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rq.job import Job as RQJob
from sqlalchemy import select

import sgen_ops
from sgen_ops.queue import Delivery
from sgen_ops.store import Job, JobEvent

from ..conftest import Stack
from ..helpers import job_row

TIMESTAMPS = {"created_at", "enqueued_at"}


def _columns(hub: sgen_ops.Hub, job_id: int) -> dict[str, Any]:
    job = job_row(hub, job_id)
    return {c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs}


def test_a_batch_insert_writes_what_the_orm_writes(hub: sgen_ops.Hub) -> None:
    payload = {"zeta": 1, "alpha": {"password": "hunter2", "n": [1, 2]}, "mid": "x"}
    kwargs: dict[str, Any] = {"account": "acme", "priority": "high", "max_attempts": 5}
    [orm_id] = hub.book.create([hub.book.prepare("test.ok", payload, **kwargs)])
    batch_ids = hub.enqueue_many("test.ok", [payload, payload], **kwargs)
    orm = _columns(hub, orm_id)
    for batch_id in batch_ids:
        batch = _columns(hub, batch_id)
        differ = {k for k in orm if orm[k] != batch[k]}
        assert differ <= {"id", "rq_job_id", "created_at", "updated_at", "scheduled_for"}, differ
        assert batch["rq_job_id"] == hub.transport.rq_job_id(batch_id, 1)
        assert list(batch["payload"]) == list(orm["payload"])  # key order as stored by the ORM path
        assert "hunter2" not in batch["search_masked"]
    with hub.ledger.read() as session:
        events = session.execute(
            select(JobEvent.job_id, JobEvent.task, JobEvent.account, JobEvent.from_state, JobEvent.to_state)
            .where(JobEvent.job_id.in_([orm_id, *batch_ids]))
            .order_by(JobEvent.job_id)
        ).all()
    assert [tuple(e) for e in events] == [(i, "test.ok", "acme", None, "queued") for i in (orm_id, *batch_ids)]


def test_a_batch_push_writes_the_hash_rqs_enqueue_writes(hub: sgen_ops.Hub, stack: Stack) -> None:
    transport = hub.transport
    ours = [Delivery(10_000 + i, f"{stack.prefix}-ours-{i}", "low", None, 30) for i in range(3)]
    transport.send_many(ours)  # three due deliveries: the batch path
    rq = Delivery(10_000, f"{stack.prefix}-rq-0", "low", None, 30)
    transport.send_many([rq])  # one: RQ's own enqueue
    reference = dict(hub.redis.hgetall(RQJob.key_for(rq.rq_job_id)))
    for d in ours:
        mine = hub.redis.hgetall(RQJob.key_for(d.rq_job_id))
        assert set(mine) == set(reference)
        for field, value in reference.items():
            if field.decode() not in TIMESTAMPS and field != b"description" and field != b"data":
                assert mine[field] == value, field
        fetched = RQJob.fetch(d.rq_job_id, connection=hub.redis, serializer=transport.queues["low"].serializer)
        assert (fetched.func_name, fetched.args, fetched.timeout) == ("sgen_ops.execution.perform", [d.job_id], 30)
        assert fetched.get_status() == "queued" and hub.redis.ttl(RQJob.key_for(d.rq_job_id)) == -1
    assert transport.queues["low"].get_job_ids() == [d.rq_job_id for d in ours] + [rq.rq_job_id]


def test_bulk_enqueues_at_once_never_share_an_id(make_hub: Any, stack: Stack) -> None:
    hubs = [make_hub() for _ in range(3)]
    got: list[list[int]] = []
    errors: list[BaseException] = []

    def bulk(h: sgen_ops.Hub) -> None:
        try:
            for _ in range(4):
                got.append(h.enqueue_many("test.ok", [{"i": i} for i in range(50)]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bulk, args=(h,)) for h in hubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    ids = [i for batch in got for i in batch]
    assert len(ids) == len(set(ids)) == 600
    assert hubs[0].transport.waiting() == 600
    with hubs[0].ledger.read() as session:
        assert set(session.scalars(select(Job.id))) == set(ids)


def test_an_empty_bulk_enqueue_records_nothing(hub: sgen_ops.Hub) -> None:
    assert hub.enqueue_many("test.ok", []) == []
    assert hub.transport.waiting() == 0


def test_rows_of_a_batch_must_share_their_columns(hub: sgen_ops.Hub) -> None:
    rows = hub.book.prepare_rows("test.ok", [{"a": 1}]) + hub.book.prepare_rows("test.ok", [{"b": 2}], account="x")
    with pytest.raises(ValueError, match="must share every column"):
        hub.book.create_rows(rows)
    assert hub.transport.waiting() == 0
