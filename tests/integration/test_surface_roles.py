"""Who may do what, and to which account's jobs: the role x operation and cross-account matrices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

import sgen_ops
from sgen_ops import AccessDenied, NotFound
from sgen_ops.surface.operations import Operations
from tests.integration.test_surface_fixtures import Jobs, add_operators, job_row, ledger_state, log_entries
from tests.integration.test_surface_schedules import SCHEDULE_MATRIX
from tests.unit.test_permissions import readme_permissions

# The product spec's capability map (seed 000's, and what every other operation counts as), written out here
# independently of the code under test, and checked against the README's "Who may do what" table.
EVERYONE = {"administrator", "editor", "viewer"}
EDITORS = {"administrator", "editor"}
ADMINS = {"administrator"}

Call = Callable[[Operations, int], Any]

def _resumed(ops: Operations, kind: str, name: str) -> Any:
    """Resume ``name``, paused first (unless it is) by a role that may pause (a refused role is refused before
    any lookup), through the public surface so that it runs the same on a remote client; answers the pauses
    left."""
    if ops.can(f"pause_{kind}") and name not in ops.paused()["name"].tolist():
        getattr(ops, f"pause_{kind}")(name)
    getattr(ops, f"resume_{kind}")(name)
    return ops.paused()


# operation -> (roles allowed, state of the job it needs or None, the call)
MATRIX: dict[str, tuple[set[str], str | None, Call]] = {
    "list_jobs": (EVERYONE, None, lambda ops, j: ops.list_jobs()),
    "dead_letter_groups": (EVERYONE, None, lambda ops, j: ops.dead_letter_groups()),
    "get_job": (EVERYONE, "succeeded", lambda ops, j: ops.get_job(j)),
    "throughput": (EVERYONE, None, lambda ops, j: ops.throughput()),
    "rerun": (EDITORS, "failed", lambda ops, j: ops.rerun(j)),
    "cancel": (EDITORS, "queued", lambda ops, j: ops.cancel(j)),
    "retry_now": (EDITORS, "retrying", lambda ops, j: ops.retry_now(j)),
    "trigger": (EDITORS, "queued", lambda ops, j: ops.trigger(j)),
    "resolve": (EDITORS, "failed", lambda ops, j: ops.resolve(j, "fixed upstream")),
    "update_job": (EDITORS, "queued", lambda ops, j: ops.update_job(j, priority="high")),
    "activity_log": (EDITORS, None, lambda ops, j: ops.activity_log()),
    "enqueue": (EDITORS, None, lambda ops, j: ops.enqueue("test.ok", {"n": 1})),
    "send_to_dead_letter": (ADMINS, "failed", lambda ops, j: ops.send_to_dead_letter(j, "broken feed")),
    "replay": (ADMINS, "dead-letter", lambda ops, j: ops.replay(j)),
    "edit_and_replay": (ADMINS, "dead-letter", lambda ops, j: ops.edit_and_replay(j, {"fixed": True})),
    "dismiss": (ADMINS, "dead-letter", lambda ops, j: ops.dismiss(j)),
    "delete_job": (ADMINS, "succeeded", lambda ops, j: ops.delete_job(j)),
    "delete_jobs": (ADMINS, "failed", lambda ops, j: ops.delete_jobs(task="test.nodl")),
    "replay_dead_letters": (ADMINS, "dead-letter", lambda ops, j: ops.replay_dead_letters(task="test.boom")),
    "dismiss_dead_letters": (ADMINS, "dead-letter", lambda ops, j: ops.dismiss_dead_letters(task="test.boom")),
    "verify_audit": (ADMINS, None, lambda ops, j: ops.verify_audit()),
    "paused": (EVERYONE, None, lambda ops, j: ops.paused()),
    "workers": (EVERYONE, None, lambda ops, j: ops.workers()),
    "history": (EVERYONE, None, lambda ops, j: ops.history(state="succeeded")),
    "archive_runs": (EVERYONE, None, lambda ops, j: ops.archive_runs()),
    # Each answers the pauses it leaves.
    "pause_task": (ADMINS, None, lambda ops, j: (ops.pause_task("test.ok"), ops.paused())[1]),
    "resume_task": (ADMINS, None, lambda ops, j: _resumed(ops, "task", "test.ok")),
    "pause_queue": (ADMINS, None, lambda ops, j: (ops.pause_queue("low"), ops.paused())[1]),
    "resume_queue": (ADMINS, None, lambda ops, j: _resumed(ops, "queue", "low")),
}

# What each allowed write does to its job, seen in the ledger ({} = the row is gone).
EFFECT: dict[str, Callable[[dict[str, Any]], bool]] = {
    "rerun": lambda row: row["state"] == "queued" and row["attempts"] == 0,
    "cancel": lambda row: row["state"] == "cancelled",
    "retry_now": lambda row: row["state"] == "retrying" and row["scheduled_for"] <= row["updated_at"],
    "trigger": lambda row: row["state"] == "queued" and row["scheduled_for"] <= row["updated_at"],
    "resolve": lambda row: row["state"] == "resolved",
    "update_job": lambda row: row["priority"] == "high",
    "send_to_dead_letter": lambda row: row["state"] == "dead-letter",
    "replay": lambda row: row["state"] == "queued",
    "edit_and_replay": lambda row: row["state"] == "dead-letter" and row["replayed_as_id"] is not None,
    "dismiss": lambda row: row == {},
    "delete_job": lambda row: row == {},
    "delete_jobs": lambda row: row == {},
    "replay_dead_letters": lambda row: row["state"] == "queued",
    "dismiss_dead_letters": lambda row: row == {},
}


def test_matrix_is_the_readmes_table() -> None:
    shown = readme_permissions()
    assert {op: allowed for op, (allowed, *_) in (MATRIX | SCHEDULE_MATRIX).items()} == {
        op: set(shown[op][1]) for op in (MATRIX | SCHEDULE_MATRIX)}


def test_matrix_covers_every_operation() -> None:
    public = {name for name in vars(Operations) if not name.startswith("_") and callable(getattr(Operations, name))}
    extra_reads = {"throughput_series", "run_time_percentiles", "can", "within"}
    assert public - extra_reads == set(MATRIX) | set(SCHEDULE_MATRIX)


@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_role_matrix(hub: sgen_ops.Hub, operation: str) -> None:
    allowed, needs, call = MATRIX[operation]
    ops = add_operators(hub)
    jobs = Jobs(hub, ops["administrator"])
    # Refused roles first, so that an allowed bulk operation cannot hide a refused one's change.
    for role in sorted(ops, key=lambda r: r in allowed):
        job_id = jobs.make(needs) if needs else 0
        before = ledger_state(hub)
        if role not in allowed:
            with pytest.raises(AccessDenied, match=rf"{role}.*may not {operation}; allowed for: "):
                call(ops[role], job_id)
            assert ledger_state(hub) == before, f"{role} was refused {operation} but something changed"
            continue
        result = call(ops[role], job_id)
        if operation in EFFECT:
            assert EFFECT[operation](job_row(hub, job_id)), f"{role}'s {operation} did not take effect"
            new = [e for e in log_entries(hub) if e.id > before["entries"]]
            assert {(e.operator, e.action) for e in new} == {(role, operation)}
            assert job_id in {e.target_id for e in new}
        elif operation == "get_job":
            assert result.id == job_id
        elif operation == "verify_audit":
            assert result.ok
        else:
            assert result is not None


def test_capability_overrides_are_honoured(make_hub: Callable[..., sgen_ops.Hub]) -> None:
    hub = make_hub(capabilities={"viewer": ["list_jobs", "get_job", "throughput", "rerun"]})
    ops = add_operators(hub)
    job_id = Jobs(hub, ops["administrator"]).make("failed")
    ops["viewer"].rerun(job_id)
    assert job_row(hub, job_id)["state"] == "queued"


# -- accounts -----------------------------------------------------------------------------------
# The operations on one job by id (bulk ones are covered by the account test below).
SINGLE: dict[str, tuple[str, Call]] = {
    name: (needs, call) for name, (_, needs, call) in MATRIX.items()
    if needs and not name.endswith(("_jobs", "_letters"))
}


@pytest.mark.parametrize("operation", sorted(SINGLE))
def test_another_accounts_job_is_not_found_like_a_missing_one(hub: sgen_ops.Hub, operation: str) -> None:
    needs, call = SINGLE[operation]
    everyone = add_operators(hub)
    acme = add_operators(hub, account="acme", suffix="-acme")["administrator"]
    other = Jobs(hub, everyone["administrator"]).make(needs, account="globex")
    before = ledger_state(hub)
    with pytest.raises(NotFound) as theirs:
        call(acme, other)
    missing = other + 1000
    with pytest.raises(NotFound) as nobody:
        call(acme, missing)
    assert str(theirs.value).replace(str(other), "N") == str(nobody.value).replace(str(missing), "N")
    assert ledger_state(hub) == before
    # The same operation works for an account-bound operator on their own account's job.
    own = Jobs(hub, everyone["administrator"]).make(needs, account="acme")
    call(acme, own)
    if operation in EFFECT:
        assert EFFECT[operation](job_row(hub, own))


def test_account_bound_reads_and_bulk_see_only_their_account(hub: sgen_ops.Hub) -> None:
    everyone = add_operators(hub)
    acme = add_operators(hub, account="acme", suffix="-acme")
    jobs = Jobs(hub, everyone["administrator"])
    mine = jobs.make_all(["succeeded", "dead-letter", "failed"], account="acme")
    theirs = jobs.make_all(["succeeded", "dead-letter", "failed"], account="globex")
    unowned = jobs.make("dead-letter")
    everyone["administrator"].rerun(theirs["failed"])
    acme["administrator"].rerun(mine["failed"])

    page = acme["viewer"].list_jobs(include_old_succeeded=True)
    assert {r.id for r in page.items} == set(mine.values()) and page.total == 3
    assert {r.account for r in page.items} == {"acme"}
    assert everyone["viewer"].list_jobs().total == 7

    counts = acme["viewer"].throughput(window="1h")
    assert counts.set_index("task").loc["test.ok", "succeeded"] == 1
    assert counts.set_index("task").loc["test.boom", "dead_lettered"] == 1
    assert everyone["viewer"].throughput().set_index("task").loc["test.boom", "dead_lettered"] == 3
    assert set(acme["viewer"].throughput(by="account")["account"]) == {"acme"}

    log = acme["editor"].activity_log()
    assert set(log["account"]) == {"acme"} and list(log["target_id"]) == [mine["failed"]]
    assert len(everyone["editor"].activity_log()) == 2

    assert acme["administrator"].replay_dead_letters(dry_run=True) == 1
    assert acme["administrator"].dismiss_dead_letters() == 1
    assert job_row(hub, theirs["dead-letter"])["state"] == "dead-letter"
    assert job_row(hub, unowned)["state"] == "dead-letter"
    assert acme["administrator"].delete_jobs(state=["succeeded", "queued"]) == 2  # incl. the rerun one
    assert job_row(hub, theirs["succeeded"]) != {}


def test_unknown_operator_is_refused_at_the_gate(hub: sgen_ops.Hub) -> None:
    with pytest.raises(AccessDenied, match="not registered"):
        hub.as_operator("mallory")


def test_frames_are_dataframes(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)["administrator"]
    assert isinstance(ops.list_jobs().to_frame(), pd.DataFrame)
