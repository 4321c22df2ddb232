"""``sgen-ops serve`` as a real uvicorn process on a free port: the role x operation and cross-account
matrices of the surface's own tests, driven through the remote client over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest

import sgen_ops
from sgen_ops import AccessDenied, NotFound
from tests.integration.test_surface_fixtures import ROLES, Jobs, add_operators, job_row, ledger_state, log_entries
from tests.integration.test_surface_roles import EFFECT, MATRIX, SINGLE
from tests.integration.test_surface_schedules import SCHEDULE_MATRIX, schedule_state

from ..conftest import Stack
from ..helpers import run_cli, wait_for
from .conftest import Api

pytestmark = pytest.mark.slow


def test_role_matrix_over_http(hub: sgen_ops.Hub, server: Api) -> None:
    local = add_operators(hub)
    remote = {role: server.remote(role) for role in ROLES}
    jobs = Jobs(hub, local["administrator"])
    for operation in sorted(MATRIX):
        allowed, needs, call = MATRIX[operation]
        for role in sorted(ROLES, key=lambda r: r in allowed):
            job_id = jobs.make(needs) if needs else 0
            before = ledger_state(hub)
            if role not in allowed:
                with pytest.raises(AccessDenied, match=rf"{role}.*may not {operation}; allowed for: "):
                    call(remote[role], job_id)
                assert ledger_state(hub) == before, f"{role} was refused {operation} but something changed"
                continue
            result = call(remote[role], job_id)
            if operation in EFFECT:
                assert EFFECT[operation](job_row(hub, job_id)), f"{role}'s {operation} did not take effect"
                new = [e for e in log_entries(hub) if e.id > before["entries"]]
                assert (role, operation) in {(e.operator, e.action) for e in new}
            elif operation == "get_job":
                assert result.id == job_id
                if role != "administrator":  # the server logs the masked view in its next batch of views
                    wait_for(lambda role=role, job_id=job_id: any(
                        (e.operator, e.action, e.target_id) == (role, "get_job", job_id) for e in log_entries(hub)),
                        timeout=30, what="the server to log the masked view")
            else:
                assert result is not None


def test_schedule_matrix_over_http(hub: sgen_ops.Hub, server: Api) -> None:
    local = add_operators(hub)
    remote = {role: server.remote(role) for role in ROLES}
    for operation in sorted(SCHEDULE_MATRIX):
        allowed, call = SCHEDULE_MATRIX[operation]
        for role in sorted(ROLES, key=lambda r: r in allowed):
            schedule_id = local["administrator"].create_schedule("test.ok", every="1h")
            if operation == "resume_schedule" and role == "administrator":
                local["administrator"].pause_schedule(schedule_id)
                call = _resume  # the matrix's own call pauses through ops.hub, which a remote client has not
            before = schedule_state(hub)
            if role not in allowed:
                with pytest.raises(AccessDenied, match=rf"{role}.*may not {operation}; allowed for: "):
                    call(remote[role], schedule_id)
                assert schedule_state(hub) == before
                continue
            call(remote[role], schedule_id)
            if operation not in ("list_schedules", "preview_schedule"):
                new = [e for e in log_entries(hub)[before["entries"]:] if e.operator == role]
                assert operation in {e.action for e in new}
    # Every operation's route was reached through the remote client (the server counted each by name).
    admin = remote["administrator"]
    admin.throughput_series()
    admin.run_time_percentiles()
    counted = set(re.findall(r'sgen_ops_operator_actions_total\{action="(\w+)"',
                             server.http("administrator").get("/metrics").text))
    assert counted >= set(SCHEDULE_MATRIX) | {"can", "throughput_series", "run_time_percentiles"}


def _resume(ops: Any, schedule_id: int) -> Any:
    return ops.resume_schedule(schedule_id)


def test_cross_account_matrix_over_http(hub: sgen_ops.Hub, server: Api) -> None:
    everyone = add_operators(hub)
    add_operators(hub, account="acme", suffix="-acme")
    acme = server.remote("administrator-acme")
    jobs = Jobs(hub, everyone["administrator"])
    for operation in sorted(SINGLE):
        needs, call = SINGLE[operation]
        other = jobs.make(needs, account="globex")
        before = ledger_state(hub)
        with pytest.raises(NotFound) as theirs:
            call(acme, other)
        missing = other + 1000
        with pytest.raises(NotFound) as nobody:
            call(acme, missing)
        assert str(theirs.value).replace(str(other), "N") == str(nobody.value).replace(str(missing), "N")
        assert ledger_state(hub) == before, operation
        own = jobs.make(needs, account="acme")
        call(acme, own)
        if operation in EFFECT:
            assert EFFECT[operation](job_row(hub, own)), operation
    # Lists, counts and the log of another account are out of reach too.
    with pytest.raises(NotFound, match="account 'globex' not found"):
        acme.within("globex").list_jobs()
    assert {r.account for r in acme.list_jobs(include_old_succeeded=True, per_page=500).items} == {"acme"}
    assert set(acme.activity_log()["account"]) == {"acme"}
    raw = server.http("viewer-acme").get("/api/accounts/globex/jobs")
    assert raw.status_code == 404 and raw.json()["detail"] == "account 'globex' not found"


def test_jobs_list_and_runbook_commands_go_through_the_server(stack: Stack, hub: sgen_ops.Hub, server: Api) -> None:
    ops = add_operators(hub)
    Jobs(hub, ops["administrator"]).make_all(["failed", "dead-letter"])
    # The command's environment has the server's URL and a token, and no ledger or Redis to reach.
    env = {**stack.env(), "SGEN_OPS_API_URL": server.url, "SGEN_OPS_API_TOKEN": server.token("viewer"),
           "SGEN_OPS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "SGEN_OPS_REDIS_URL": "redis://127.0.0.1:1"}
    listed = run_cli(["jobs", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    assert {r["state"] for r in __import__("json").loads(listed.stdout)} == {"failed", "dead-letter"}
    as_other = run_cli(["jobs", "list", "--operator", "administrator"], env)
    assert as_other.returncode == 1 and "cannot act as 'administrator'" in as_other.stderr
    entries = len(log_entries(hub))
    env["SGEN_OPS_API_TOKEN"] = server.token("administrator")
    ran = run_cli(["runbook", "replay_dead_letters", "-p", "dry_run", "false"], env)
    assert ran.returncode == 0, ran.stderr
    replayed = [e for e in log_entries(hub)[entries:] if e.action == "replay_dead_letters"]
    assert [e.operator for e in replayed] == ["administrator"]
