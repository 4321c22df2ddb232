"""Helpers for the Jobs-surface tests: operators, jobs driven into every state by the real machinery,
and before/after views of the ledger. The tests here check the helpers themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select, update

import sgen_ops
from sgen_ops.core.states import ALL_STATES
from sgen_ops.ledger.store import ActivityEntry, Attempt, Job
from sgen_ops.runtime import execution
from sgen_ops.surface.operations import Operations

ROLES = ("administrator", "editor", "viewer")
# The state each helper of ``Jobs`` produces, except running (see ``running_job``).
DRIVEN_STATES = tuple(s for s in ALL_STATES if s != "running")

SECRET_PAYLOAD: dict[str, Any] = {
    "credentials": {"api_key": "sk-live-51HxQ", "user": "bob"},
    "rows": [{"card": "4111111111111111", "id": 1}, {"card": "5500005555555559", "id": 2}],
    "headers": {"X-Trace": "trace-9c1f-secret", "Accept": "application/json-secret"},
    "password": "hunter2-pass",
    "region": "eu-west-1",
}
SECRET_VALUES = ("sk-live-51HxQ", "4111111111111111", "5500005555555559", "trace-9c1f-secret", "hunter2-pass")


def add_operators(hub: sgen_ops.Hub, account: str | None = None, suffix: str = "") -> dict[str, Operations]:
    """One operator per role (names ``<role><suffix>``), as Operations keyed by role."""
    out = {}
    for role in ROLES:
        name = f"{role}{suffix}"
        hub.add_operator(name, role, account=account)
        out[role] = hub.as_operator(name)
    return out


class Jobs:
    """Puts jobs into each state through enqueue, the in-process worker and administrator operations."""

    def __init__(self, hub: sgen_ops.Hub, admin: Operations) -> None:
        self.hub = hub
        self.admin = admin

    def make(self, state: str, account: str | None = None) -> int:
        return self.make_all([state], account)[state]

    def make_all(self, states: Any = DRIVEN_STATES, account: str | None = None) -> dict[str, int]:
        """One job in each of ``states`` (not running), with a single burst of the worker."""
        wanted = set(states)
        hub = self.hub
        ids: dict[str, int] = {}
        # Queued in an hour, so that no burst of the worker in the test picks it up.
        if "queued" in wanted:
            ids["queued"] = hub.enqueue("test.ok", {"n": 1}, account=account, delay=3600)
        ran = {
            "retrying": ("test.backoff", None),  # fails; next try in an hour
            "succeeded": ("test.ok", {"n": 2}),
            "failed": ("test.nodl", None),  # budget of one, no dead letter
            "dead-letter": ("test.boom", None),  # two immediate failures
            "resolved": ("test.boom", None),
        }
        for state, (task, payload) in ran.items():
            if state in wanted:
                ids[state] = hub.enqueue(task, payload, account=account)
        if "cancelled" in wanted:
            ids["cancelled"] = hub.enqueue("test.ok", {"n": 3}, account=account, delay=3600)
        hub.work()
        if "cancelled" in wanted:
            self.admin.cancel(ids["cancelled"])
        if "resolved" in wanted:
            self.admin.resolve(ids["resolved"], note="handled by hand")
        for state, job_id in ids.items():
            assert job_row(hub, job_id)["state"] == state, f"could not drive a job into {state}"
        return ids


@contextmanager
def running_job(
    hub: sgen_ops.Hub, account: str | None = None, seconds: float = 120.0, checkpoints: bool = True
) -> Iterator[int]:
    """A test.slow job running in a thread through the worker's own claim-and-run path.

    On exit the job is flagged for cancellation (if nobody did) so that it stops at its next checkpoint;
    without checkpoints it runs its ``seconds`` to the end.
    """
    job_id = hub.enqueue("test.slow", {"seconds": seconds, "checkpoints": checkpoints}, account=account)
    execution.bind_hub(hub)
    rq_id = job_row(hub, job_id)["rq_job_id"]
    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(execution.run_attempt(hub, job_id, rq_id)), name=f"run-{job_id}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while job_row(hub, job_id)["state"] != "running":
        assert thread.is_alive() and time.monotonic() < deadline, f"job {job_id} never started: {outcome}"
        time.sleep(0.02)
    try:
        yield job_id
    finally:
        with hub.ledger.write() as session:
            session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        thread.join(60)
        assert not thread.is_alive(), f"job {job_id} did not stop at its checkpoint"


def job_row(hub: sgen_ops.Hub, job_id: int) -> dict[str, Any]:
    """Every column of the job's row (or {} if it is gone)."""
    with hub.ledger.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            return {}
        return {c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs}


def ledger_state(hub: sgen_ops.Hub) -> dict[str, Any]:
    """Everything an operation could change in the ledger: jobs, attempt count, the Activity Log size.

    Leaves out lease_until, which the worker's heartbeat renews on its own while a job runs. This hub's
    queued views are appended first, so that their batch never lands between two snapshots.
    """
    hub.view_log.flush()
    with hub.ledger.read() as session:
        jobs = {
            j.id: {c.key: getattr(j, c.key) for c in Job.__mapper__.column_attrs if c.key != "lease_until"}
            for j in session.scalars(select(Job))
        }
        attempts = session.scalar(select(func.count()).select_from(Attempt))
        entries = session.scalar(select(func.count()).select_from(ActivityEntry))
    return {"jobs": jobs, "attempts": attempts, "entries": entries}


def log_entries(hub: sgen_ops.Hub) -> list[ActivityEntry]:
    """The Activity Log as a reader in this process sees it: this hub's queued views appended first."""
    hub.view_log.flush()
    with hub.ledger.read() as session:
        return list(session.scalars(select(ActivityEntry).order_by(ActivityEntry.id)))


# -- the helpers themselves ---------------------------------------------------------------------
def test_jobs_reach_every_state(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    ids = Jobs(hub, ops["administrator"]).make_all()
    assert {s: job_row(hub, i)["state"] for s, i in ids.items()} == {s: s for s in DRIVEN_STATES}
    assert job_row(hub, ids["retrying"])["scheduled_for"] > job_row(hub, ids["retrying"])["updated_at"]


def test_running_job_runs_until_flagged(hub: sgen_ops.Hub, stack: Any) -> None:
    with running_job(hub) as job_id:
        assert job_row(hub, job_id)["state"] == "running"
    assert job_row(hub, job_id)["state"] == "cancelled"
    assert stack.runs() == [f"{job_id}:1:1"]


@pytest.mark.parametrize("state", ["queued", "failed"])
def test_make_single_state(hub: sgen_ops.Hub, state: str) -> None:
    ops = add_operators(hub, suffix="-x")
    job_id = Jobs(hub, ops["administrator"]).make(state, account="acme")
    assert job_row(hub, job_id)["account"] == "acme"
