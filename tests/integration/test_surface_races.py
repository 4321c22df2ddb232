"""Operators racing each other and the worker: the ledger's row lock decides, and the loser is told."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sgen_ops
from sgen_ops import InvalidTransition
from sgen_ops.runtime import execution
from tests.helpers import race
from tests.integration.test_surface_fixtures import Jobs, add_operators, job_row, log_entries


def test_two_replays_of_one_dead_letter_make_one_new_run(
    hub: sgen_ops.Hub, make_hub: Callable[..., sgen_ops.Hub], stack: Any
) -> None:
    ops = add_operators(hub)
    jobs = Jobs(hub, ops["administrator"])
    other = make_hub().as_operator("administrator")
    for _ in range(3):
        job_id = jobs.make("dead-letter")
        results = race(lambda j=job_id: ops["administrator"].replay(j), lambda j=job_id: other.replay(j))
        losers = [r for r in results if isinstance(r, Exception)]
        assert results.count(None) == 1 and len(losers) == 1, results
        assert isinstance(losers[0], InvalidTransition) and "it is queued" in str(losers[0])
        hub.work()
        assert job_row(hub, job_id)["run"] == 2
        assert [r for r in stack.runs() if r.startswith(f"{job_id}:2:")] == [f"{job_id}:2:1", f"{job_id}:2:2"]
        assert [e.action for e in log_entries(hub) if e.target_id == job_id] == ["replay"]


def test_cancel_racing_a_worker_claim_is_one_or_the_other(
    hub: sgen_ops.Hub, make_hub: Callable[..., sgen_ops.Hub], stack: Any
) -> None:
    add_operators(hub)
    editor = make_hub().as_operator("editor")
    execution.bind_hub(hub)
    outcomes = set()
    for _ in range(8):
        job_id = hub.enqueue("test.slow", {"seconds": 0.2})
        rq_id = job_row(hub, job_id)["rq_job_id"]
        claimed, cancelled = race(
            lambda j=job_id, r=rq_id: execution.run_attempt(hub, j, r), lambda j=job_id: editor.cancel(j)
        )
        assert cancelled is None, cancelled
        row = job_row(hub, job_id)
        assert row["state"] == "cancelled"
        ran = [r for r in stack.runs() if r.startswith(f"{job_id}:")]
        [entry] = [e for e in log_entries(hub) if e.target_id == job_id]
        if claimed["outcome"] == "skipped":
            # Cancelled before the worker claimed it: it never started.
            assert (ran, row["attempts"], entry.change["before"]["state"]) == ([], 0, "queued")
        else:
            # The worker claimed it first: the cancel only flagged it, and the run stopped as cancelled: at its
            # next checkpoint, or (when the cancel landed after the handler's last checkpoint, as under load)
            # when it returned, its success recorded as the cancel.
            assert (claimed["state"], row["attempts"], len(ran)) == ("cancelled", 1, 1)
            assert claimed["outcome"] in ("cancelled", "succeeded")
            assert entry.change == {"task": "test.slow", "before": {"state": "running", "cancel_requested": False},
                                    "after": {"state": "running", "cancel_requested": True}}
        outcomes.add(claimed["outcome"])
    assert outcomes <= {"skipped", "cancelled", "succeeded"}
