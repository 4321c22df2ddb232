"""The CLI's job, schedule and audit commands against ``sgen-ops serve``: with SGEN_OPS_API_URL and a token set
(and no ledger or Redis to reach), they act as the token's operator, through the server."""

from __future__ import annotations

import json
import subprocess

import sgen_ops
from tests.integration.test_surface_fixtures import add_operators, job_row, log_entries

from ..conftest import Stack
from ..helpers import run_cli
from .conftest import Api


def test_job_schedule_and_audit_commands_go_through_the_server(stack: Stack, hub: sgen_ops.Hub, server: Api) -> None:
    add_operators(hub)
    waiting = [hub.enqueue("test.ok", {"n": n}, delay=3600) for n in range(2)]
    env = {k: v for k, v in stack.env().items() if k != "SGEN_OPS_OPERATOR"}
    env.update({"SGEN_OPS_API_URL": server.url, "SGEN_OPS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
                "SGEN_OPS_REDIS_URL": "redis://127.0.0.1:1"})

    def cli(operator: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["--log-level", "WARNING", *args], {**env, "SGEN_OPS_API_TOKEN": server.token(operator)})

    shown = cli("viewer", "jobs", "show", str(waiting[0]), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["payload"] == {"n": 0}
    refused = cli("viewer", "jobs", "cancel", str(waiting[0]))
    assert refused.returncode == 1 and "AccessDenied" in refused.stderr
    done = cli("editor", "jobs", "cancel", *map(str, waiting))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"job {i}: cancelled (a running job: at its next checkpoint)" for i in waiting]
    assert {job_row(hub, i)["state"] for i in waiting} == {"cancelled"}
    assert [(e.operator, e.action) for e in log_entries(hub) if e.action == "cancel"] == [("editor", "cancel")] * 2

    made = cli("administrator", "schedules", "create", "test.ok", "--every", "10m", "--json")
    assert made.returncode == 0, made.stderr
    listed = cli("viewer", "schedules", "list", "--json")
    assert [s["id"] for s in json.loads(listed.stdout)] == [json.loads(made.stdout)["id"]]
    logged = cli("administrator", "audit", "log", "--action", "cancel", "--json")
    assert logged.returncode == 0, logged.stderr
    answer = json.loads(logged.stdout)
    assert [e["target_id"] for e in answer["entries"]] == waiting and answer["chain"]["ok"] is True
