"""The fencing of attempts (docs/fencing.md), piece by piece, on both backends: every write of an attempt names it,
so an attempt the ledger recorded lost writes nothing more; the lease watchdog fences, then ends, a run whose lease
cannot be renewed; a checkpoint during an outage does not fail the handler; the ledger and the CLI name an
unreachable ledger in words. The unreachable ledger is a real one: a PostgreSQL URL on a port nothing listens on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger import statements
from sgen_ops.ledger.jobs import renew_leases
from sgen_ops.ledger.store import Job, Ledger
from sgen_ops.runtime import execution

from ..conftest import ROOT, Stack
from ..helpers import attempts_of, job_row, wait_for

from bench.pgcluster import NoServer, free_port, private_cluster  # isort: skip


def _dead_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"


def _claimed(hub: sgen_ops.Hub) -> execution.TaskContext:
    job_id = hub.enqueue("test.ok")
    ctx = execution.claim(hub, job_id, job_row(hub, job_id).rq_job_id)
    assert ctx is not None
    return ctx


def _recorded_lost(hub: sgen_ops.Hub, ctx: execution.TaskContext) -> None:
    with hub.ledger.write() as session:
        session.execute(update(Job).where(Job.id == ctx.job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert hub.recover_lost() == 1


def test_a_renewal_names_its_attempt(hub: sgen_ops.Hub) -> None:
    ctx, other = _claimed(hub), _claimed(hub)
    until = utcnow() + timedelta(minutes=5)
    assert renew_leases(hub.ledger, [(ctx.job_id, ctx.run, ctx.attempt), (other.job_id, 1, 1)], until) == {
        ctx.job_id, other.job_id}
    assert job_row(hub, ctx.job_id).lease_until == until
    _recorded_lost(hub, ctx)
    # The lost attempt renews nothing: the row has moved on (retrying, then a new attempt).
    assert renew_leases(hub.ledger, [(ctx.job_id, ctx.run, ctx.attempt)], until + timedelta(minutes=5)) == set()
    assert job_row(hub, ctx.job_id).lease_until is None
    # A wrong attempt number or run renews nothing either.
    assert renew_leases(hub.ledger, [(other.job_id, 1, 2), (other.job_id, 2, 1)], until) == set()


def test_the_renewal_variants_agree(hub: sgen_ops.Hub) -> None:
    """The reference (UPDATE ... RETURNING) against the variant of SQLite before 3.35 (UPDATE, then read)."""
    a, b = _claimed(hub), _claimed(hub)
    until = utcnow() + timedelta(minutes=1)
    tokens = [(a.job_id, a.run, a.attempt), (b.job_id, b.run, b.attempt + 1)]
    with hub.ledger.write_conn() as conn:
        returned = set(conn.execute(statements.renew_core(tokens, until)).scalars())
    with hub.ledger.write_conn() as conn:
        conn.execute(statements.renew_sqlite_without_returning(tokens, until))
        read = set(conn.execute(statements.holding_core(tokens)).scalars())
    assert returned == read == {a.job_id}


def test_an_attempt_recorded_lost_writes_nothing_more(hub: sgen_ops.Hub) -> None:
    ctx = _claimed(hub)
    _recorded_lost(hub, ctx)
    with pytest.raises(sgen_ops.AttemptFenced, match="recorded it lost"):
        ctx.checkpoint()
    for outcome in (("succeeded", "", "", None), ("cancelled", "", "", None), ("failed", "boom", "it broke", "tb"),
                    ("fenced", "worker-lost", "its lease ran out", None)):
        assert execution.record_outcome(hub, ctx, *outcome)["outcome"] == "superseded"
    assert job_row(hub, ctx.job_id).state == "retrying"
    assert [a.exit for a in attempts_of(hub, ctx.job_id)] == ["worker-lost"]


def test_a_fenced_attempt_is_recorded_lost_by_its_own_worker(hub: sgen_ops.Hub) -> None:
    ctx = _claimed(hub)
    done = execution.record_outcome(hub, ctx, "fenced", "worker-lost", "its lease could not be renewed", None)
    assert done["outcome"] == "worker-lost"
    [attempt] = attempts_of(hub, ctx.job_id)
    assert attempt.exit == "worker-lost" and attempt.error.startswith("fenced: its lease could not be renewed")
    assert job_row(hub, ctx.job_id).state == "retrying"


def _context(ledger: Ledger) -> execution.TaskContext:
    return execution.TaskContext(job_id=10**9, task="test.ok", attempt=1, run=1, max_attempts=1, account=None,
                                 schedule_id=None, payload=None, _ledger=ledger, claimed=time.monotonic())


def test_the_watchdog_fences_then_ends_a_run_whose_lease_cannot_be_renewed() -> None:
    ledger = Ledger(_dead_url())
    leases = execution.Leases()
    ctx = _context(ledger)
    seen: list[tuple[str, bool]] = []
    lease = leases.add(ctx, ledger, 1.5, lambda reason: seen.append((reason, ctx.lease is not None
                                                                      and ctx.lease.fenced is not None)))
    try:
        wait_for(lambda: seen, 30, "the watchdog to end the run")
        [(reason, fenced_first)] = seen
        assert fenced_first and "could not renew the lease" in reason
        assert lease.ended
        with pytest.raises(sgen_ops.AttemptFenced, match="could not renew the lease"):
            ctx.checkpoint()
    finally:
        leases.discard(lease)
        ledger.close()


def test_a_finished_run_is_never_fenced() -> None:
    ledger = Ledger(_dead_url())
    leases = execution.Leases()
    ctx = _context(ledger)
    seen: list[str] = []
    lease = leases.add(ctx, ledger, 1.5, seen.append)
    leases.discard(lease)  # the handler returned; its outcome may wait for the ledger as long as it takes
    time.sleep(2.0)
    assert seen == [] and lease.fenced is None
    ledger.close()


def test_a_checkpoint_during_an_outage_does_not_fail_the_handler() -> None:
    ledger = Ledger(_dead_url())
    try:
        ctx = _context(ledger)
        execution.RUNTIME.reach.failed_at = None  # the ledger has answered so far
        ctx.checkpoint()  # the ledger cannot be asked: the handler goes on
        assert execution.RUNTIME.reach.failed_within(5)
    finally:
        ledger.close()


def test_an_unreachable_ledger_is_named_in_words(stack: Stack) -> None:
    url = _dead_url()
    with pytest.raises(sgen_ops.Unavailable) as caught:
        stack.hub(database_url=url)
    port = url.split(":")[-1].split("/")[0]
    assert str(caught.value) == f"the ledger at 127.0.0.1:{port} is unreachable: connection refused"
    assert isinstance(caught.value, sgen_ops.SgenOpsError)
    assert (caught.value.service, caught.value.retry_after) == ("ledger", 5)


def test_the_cli_says_one_line_and_exits_69(stack: Stack) -> None:
    done = subprocess.run([sys.executable, "-m", "sgen_ops.cli", "jobs", "list", "--operator", "dana"], cwd=ROOT,
                          env=stack.env(database_url=_dead_url()), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 69
    [line] = done.stderr.splitlines()
    assert line.startswith("sgen-ops: the ledger at 127.0.0.1:") and line.endswith("unreachable: connection refused")


@pytest.mark.slow
def test_both_paths_ride_out_a_real_outage(stack: Stack) -> None:
    """The psycopg hot path and the Core path, in this process, against a private server stopped and started: a
    claim raises Unavailable (never a driver error) while it is down, and ``riding_out`` carries a claim and a
    record through to the server's return."""
    try:
        cluster = private_cluster()
        pg = cluster.__enter__()
    except NoServer as exc:
        pytest.skip(str(exc))
    try:
        hub = stack.hub(database_url=pg.url)
        jobs = {"core": hub.enqueue("test.ok"), "fast": hub.enqueue("test.ok")}
        rq_ids = {name: job_row(hub, job_id).rq_job_id for name, job_id in jobs.items()}
        claims = {"core": execution._claim_core, "fast": execution.claim}
        stops = {"core": execution._record_stop_core, "fast": execution._record_stop}
        pg.stop()
        for name, claim in claims.items():
            with pytest.raises(sgen_ops.Unavailable, match="connection refused"):
                claim(hub, jobs[name], rq_ids[name])
        results: dict[str, Any] = {}

        def ride(name: str) -> None:
            ctx = execution.riding_out(lambda: claims[name](hub, jobs[name], rq_ids[name]), "claiming")
            assert ctx is not None
            results[name] = execution.riding_out(lambda: stops[name](hub, ctx, "succeeded"), "recording")

        threads = [threading.Thread(target=ride, args=(name,)) for name in jobs]
        for t in threads:
            t.start()
        time.sleep(1.5)
        assert results == {}  # both still waiting for the ledger
        pg.start()
        for t in threads:
            t.join(60)
        assert results["core"]["state"] == results["fast"]["state"] == "succeeded"
        assert [job_row(hub, job_id).attempts for job_id in jobs.values()] == [1, 1]
    finally:
        if not pg.running:
            pg.start()
        for h in stack.hubs:
            h.close()
        stack.hubs.clear()
        cluster.__exit__(None, None, None)
