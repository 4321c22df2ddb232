"""A seeded stack for the notebook, runbook and browser tests: the demo data (operators ops-admin,
ops-editor, ops-viewer, acme-viewer; schedules; jobs that succeed, retry and dead-letter) after a worker
burst, plus a job in every other state. Notebooks run in kernels started by this process, so the stack's
settings go into this process's environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

import sgen_ops
from sgen_ops.ledger.store import ActivityEntry, Job
from worker import demo

from ..conftest import Stack

ADMIN = "ops-admin"
# For tests of the notebook and runbook machinery, where the ledger's backend makes no difference.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Seeded:
    """The stack, a hub on it, an administrator's Operations and the ids of the extra jobs."""

    stack: Stack
    hub: sgen_ops.Hub
    admin: Any
    failed: list[int]
    queued: int
    cancelled: int
    resolved: int

    def env(self, operator: str = ADMIN) -> dict[str, str]:
        """The environment of a subprocess (CLI, nbval, Voila) on this stack, acting as ``operator``."""
        return {**self.stack.env(), "SGEN_OPS_OPERATOR": operator}

    def states(self) -> dict[int, str]:
        """Every job id in the ledger and its state."""
        with self.hub.ledger.read() as session:
            return dict(session.execute(select(Job.id, Job.state)).all())

    def activity(self) -> list[tuple[str, str, int | None]]:
        """The Activity Log as (operator, action, target id) triples, oldest first."""
        with self.hub.ledger.read() as session:
            stmt = select(ActivityEntry.operator, ActivityEntry.action, ActivityEntry.target_id)
            return [(op, action, target) for op, action, target in session.execute(stmt.order_by(ActivityEntry.id))]

    def dead_letters(self, **filters: Any) -> set[int]:
        return {r.id for r in self.admin.list_jobs(state="dead-letter", per_page=10_000, **filters).items}


def seed(stack: Stack, jobs: int = 60) -> Seeded:
    hub = stack.hub()
    demo.seed(hub, jobs=jobs)
    failed = [hub.enqueue("test.nodl", {"n": n}, account="acme") for n in range(3)]
    # Dead letters of two more causes, whatever the demo's seed gives.
    for n in range(3):
        hub.enqueue("test.secret", {"credentials": {"api_key": f"key-{n}-secret"}}, account="initech")
    for n in range(2):
        hub.enqueue("test.boom", {"n": n}, account="globex", max_attempts=1)
    queued = hub.enqueue("test.ok", {"later": True}, account="globex", delay=3600)
    cancelled = hub.enqueue("test.ok", {"cancel": True}, account="globex", delay=3600)
    hub.work(burst=True)
    admin = hub.as_operator(ADMIN)
    admin.cancel(cancelled)
    resolved = failed.pop()
    admin.resolve(resolved, "handled by hand in the test")
    return Seeded(stack, hub, admin, failed, queued, cancelled, resolved)


@pytest.fixture
def seeded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    """The seeded stack, with this process's environment pointing at it (kernels inherit it)."""
    s = seed(stack)
    for key, value in s.env().items():
        if key.startswith("SGEN_OPS_") or key == "PYTHONPATH":
            monkeypatch.setenv(key, value)
    return s
