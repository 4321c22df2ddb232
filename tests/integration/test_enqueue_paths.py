"""The enqueue path's writes against what the ORM and RQ's own enqueue write for the same job: the batch
path, the single enqueue (on PostgreSQL one statement outside a transaction block), and the script that
writes RQ's job hash."""

from __future__ import annotations

import socket
import time
from functools import partial
from typing import Any

import pytest
from rq.job import Job as RQJob
from rq.job import JobStatus
from sqlalchemy import create_engine, func, select, text
from sqlalchemy import exc as sa_exc

import sgen_ops
from sgen_ops.ledger import query
from sgen_ops.ledger.store import Job, JobEvent, Ledger
from sgen_ops.transport.queue import PERFORM, Delivery

from ..conftest import Stack
from ..helpers import job_count, job_row, race, raised

TIMESTAMPS = {"created_at", "enqueued_at"}


def _columns(hub: sgen_ops.Hub, job_id: int) -> dict[str, Any]:
    job = job_row(hub, job_id)
    return {c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs}


def _events(hub: sgen_ops.Hub, job_ids: list[int]) -> list[tuple[Any, ...]]:
    with hub.ledger.read() as session:
        rows = session.execute(
            select(JobEvent.job_id, JobEvent.task, JobEvent.account, JobEvent.from_state, JobEvent.to_state,
                   JobEvent.at)
            .where(JobEvent.job_id.in_(job_ids))
            .order_by(JobEvent.job_id)
        ).all()
    return [tuple(e) for e in rows]


def _event_count(hub: sgen_ops.Hub) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).select_from(JobEvent)) or 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("options", [{}, {"enqueue_synchronous_commit": False}], ids=["durable", "relaxed"])
def test_a_batch_insert_writes_what_the_orm_writes(make_hub: Any, options: dict[str, Any]) -> None:
    hub = make_hub(**options)
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


def test_a_bulk_of_several_statements_writes_every_row_in_order(hub: sgen_ops.Hub) -> None:
    # SQLite inserts 500 rows per statement: 1,234 rows take three, the last one short.
    payloads = [{"i": i, "note": f"row-{i}"} for i in range(1234)]
    ids = hub.enqueue_many("test.ok", payloads, delay=3600)
    assert ids == list(range(ids[0], ids[0] + len(payloads)))
    with hub.ledger.read() as session:
        rows = session.execute(select(Job.id, Job.payload, Job.rq_job_id).where(Job.id.in_(ids)).order_by(Job.id)).all()
    assert [(r.id, r.payload, r.rq_job_id) for r in rows] == [
        (job_id, payload, hub.transport.rq_job_id(job_id, 1)) for job_id, payload in zip(ids, payloads, strict=True)
    ]
    assert [e[0] for e in _events(hub, ids)] == ids
    # The text search index took every row of every statement (on PostgreSQL, job_texts).
    with hub.ledger.read() as session:
        for i in (0, 499, 500, 1233):
            cond = query.text_condition(f"row-{i}", unmasked=True, dialect=hub.ledger.engine.dialect.name)
            assert list(session.scalars(select(Job.id).where(cond, Job.id.in_(ids)))) == [ids[i]]


@pytest.mark.parametrize("options", [{}, {"enqueue_synchronous_commit": False}], ids=["durable", "relaxed"])
def test_a_single_enqueue_writes_what_the_orm_writes(make_hub: Any, options: dict[str, Any]) -> None:
    hub = make_hub(**options)
    operator = hub.add_operator("ed", "editor")
    payload = {"zeta": 1, "alpha": {"password": "hunter2", "n": [1, 2]}, "mid": "x"}
    cases: list[dict[str, Any]] = [
        {},
        {"account": "acme", "priority": "high", "max_attempts": 5},
        {"account": "acme", "retention_days": 2.5, "originating_user_id": operator},
    ]
    for kwargs in cases:
        [orm_id] = hub.book.create([hub.book.prepare("test.ok", payload, **kwargs)])
        [single_id] = hub.book.create_rows(hub.book.prepare_rows("test.ok", [payload], **kwargs))
        orm, single = _columns(hub, orm_id), _columns(hub, single_id)
        differ = {k for k in orm if orm[k] != single[k]}
        assert differ <= {"id", "rq_job_id", "created_at", "updated_at", "scheduled_for"}, (kwargs, differ)
        assert single["rq_job_id"] == hub.transport.rq_job_id(single_id, 1)
        assert single["enqueue_seq"] == 1 and single["state"] == "queued"
        assert single["created_at"] == single["updated_at"] == single["scheduled_for"]
        assert list(single["payload"]) == list(orm["payload"])
        assert "hunter2" not in single["search_masked"]
        [orm_event], [single_event] = _events(hub, [orm_id]), _events(hub, [single_id])
        assert single_event[1:5] == orm_event[1:5] == ("test.ok", kwargs.get("account"), None, "queued")
        assert single_event[5] == single["created_at"]
    # Through the hub, and delayed: the same row, delivered to RQ's scheduled registry instead.
    job_id = hub.enqueue("test.ok", payload, delay=3600)
    job = job_row(hub, job_id)
    assert (job.rq_job_id, job.enqueue_seq) == (hub.transport.rq_job_id(job_id, 1), 1)
    assert (job.scheduled_for - job.created_at).total_seconds() == 3600
    assert hub.transport.scheduled() == 1 and hub.transport.waiting() == 2 * len(cases)


def test_single_enqueues_at_once_never_share_an_id(make_hub: Any) -> None:
    hubs = [make_hub() for _ in range(4)]

    def single(h: sgen_ops.Hub, k: int) -> list[int]:
        return [h.enqueue("test.ok", {"thread": k, "i": i}) for i in range(60)]

    results = race(*(partial(single, h, k) for k, h in enumerate(hubs)))
    assert not raised(results)
    got = [i for ids in results for i in ids]
    assert len(got) == len(set(got)) == 240
    hub = hubs[0]
    assert hub.transport.waiting() == 240
    with hub.ledger.read() as session:
        rows = session.execute(select(Job.id, Job.rq_job_id)).all()
    assert {r.id for r in rows} == set(got)
    assert all(r.rq_job_id == hub.transport.rq_job_id(r.id, 1) for r in rows)
    assert sorted(e[0] for e in _events(hub, got)) == sorted(got)  # one first event each


def test_a_single_enqueue_that_fails_in_the_database_leaves_nothing(hub: sgen_ops.Hub) -> None:
    # An originating operator that does not exist: the jobs insert fails on its foreign key, and the
    # event written by the same statement (PostgreSQL) or transaction (SQLite) must not stay behind.
    rows = hub.book.prepare_rows("test.ok", [{"i": 1}], originating_user_id=999_999)
    with pytest.raises(sa_exc.IntegrityError):
        hub.book.create_rows(rows)
    assert job_count(hub) == 0 and _event_count(hub) == 0
    assert hub.transport.waiting() == 0
    # The connection is fine afterwards, back in the pool as it was taken, and the failed statement's id
    # is simply skipped.
    if not hub.ledger.is_sqlite:
        fairy = hub.ledger.engine.raw_connection()
        try:
            assert fairy.dbapi_connection is not None and not fairy.dbapi_connection.autocommit
        finally:
            fairy.close()
    job_id = hub.enqueue("test.ok", {"i": 2})
    assert job_row(hub, job_id).rq_job_id == hub.transport.rq_job_id(job_id, 1)
    assert hub.transport.waiting() == 1


def test_a_single_enqueue_with_redis_down_is_kept_for_reconcile(make_hub: Any) -> None:
    down = make_hub(redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    job_id = down.enqueue("test.ok", {"i": 1})  # recorded; the delivery is refused and logged
    ids = down.enqueue_many("test.ok", [{"i": 2}, {"i": 3}])
    job = job_row(down, job_id)
    assert (job.state, job.rq_job_id) == ("queued", down.transport.rq_job_id(job_id, 1))
    assert len(_events(down, [job_id, *ids])) == 3
    up = make_hub()
    assert up.transport.waiting() == 0
    assert up.reconcile() == 3
    assert up.transport.waiting() == 3


def test_a_batch_push_writes_the_hash_rqs_enqueue_writes(hub: sgen_ops.Hub, stack: Stack) -> None:
    transport = hub.transport
    ours = [Delivery(10_000 + i, f"{stack.prefix}-ours-{i}", "low", None, 30) for i in range(3)]
    transport.send_many(ours[:2])  # due deliveries: the script path, in bulk
    time.sleep(0.01)
    hub.redis.script_flush()  # a restarted Redis has forgotten the script: it is loaded again
    transport.send_many(ours[2:])  # and alone, later: the shared fields are kept, the times are not
    rq = Delivery(10_000, f"{stack.prefix}-rq-0", "low", None, 30)
    transport.queues["low"]._enqueue_job(transport._rq_job(rq, JobStatus.QUEUED))  # RQ's own enqueue
    reference = dict(hub.redis.hgetall(RQJob.key_for(rq.rq_job_id)))
    stamps = [hub.redis.hget(RQJob.key_for(d.rq_job_id), "enqueued_at") for d in ours]
    assert stamps[0] == stamps[1] != stamps[2] and stamps[2] is not None and stamps[2] < reference[b"enqueued_at"]
    for d in ours:
        mine = hub.redis.hgetall(RQJob.key_for(d.rq_job_id))
        assert set(mine) == set(reference)
        for field, value in reference.items():
            if field.decode() not in TIMESTAMPS and field != b"description" and field != b"data":
                assert mine[field] == value, field
        fetched = RQJob.fetch(d.rq_job_id, connection=hub.redis, serializer=transport.queues["low"].serializer)
        assert (fetched.func_name, fetched.args, fetched.timeout) == (PERFORM, [d.job_id], 30)
        assert fetched.get_status() == "queued" and hub.redis.ttl(RQJob.key_for(d.rq_job_id)) == -1
    assert transport.queues["low"].get_job_ids() == [d.rq_job_id for d in ours] + [rq.rq_job_id]


def test_bulk_enqueues_at_once_never_share_an_id(make_hub: Any, stack: Stack) -> None:
    hubs = [make_hub() for _ in range(3)]

    def bulk(h: sgen_ops.Hub) -> list[int]:
        return [i for _ in range(4) for i in h.enqueue_many("test.ok", [{"i": i} for i in range(50)])]

    results = race(*(partial(bulk, h) for h in hubs))
    assert not raised(results)
    ids = [i for got in results for i in got]
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


@pytest.mark.parametrize("ping_after_idle", [3600.0, 0.0], ids=["socket-check", "ping"])
def test_an_enqueue_after_the_server_ended_the_pooled_connection_reconnects(
    hub: sgen_ops.Hub, ping_after_idle: float
) -> None:
    # A pooled connection back in the pool for less than ping_after_idle is handed out without a ping
    # unless its socket shows that the server ended it; either way the enqueue must not see it.
    if hub.ledger.is_sqlite:
        pytest.skip("a server connection")
    hub.ledger.ping_after_idle = ping_after_idle
    first = hub.enqueue("test.ok", {"i": 1})
    with hub.ledger.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = create_engine(hub.ledger.url)
    try:
        with admin.begin() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 5000)").scalar_one()
    finally:
        admin.dispose()
    second = hub.enqueue("test.ok", {"i": 2})
    assert second > first and job_count(hub) == 2 and hub.transport.waiting() == 2


def test_postgresql_sessions_run_without_jit_unless_asked(hub: sgen_ops.Hub) -> None:
    # The operator queries' cost estimates at a million jobs pass jit_above_cost; compiling cost more than it
    # saved. The URL's own options (here the test's search_path) are kept, and an explicit jit=on wins.
    if hub.ledger.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with hub.ledger.read() as session:
        assert session.scalar(text("SHOW jit")) == "off"
        assert session.scalar(text("SELECT current_schema()")) == hub.ledger.engine.url.query["options"].split("=")[-1]
    asked = Ledger(str(hub.ledger.engine.url.render_as_string(hide_password=False)),
                   connect_args={"options": "-c jit=on"})
    try:
        with asked.read() as session:
            assert session.scalar(text("SHOW jit")) == "on"
    finally:
        asked.close()
