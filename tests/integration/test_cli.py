"""The sgen-ops command line against the test's stores (run in this process, as ``run_cli`` runs it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, update

import sgen_ops
from sgen_ops.ledger.store import ActivityEntry, Ledger

from ..conftest import Stack
from ..helpers import run_cli


def cli(stack: Stack, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    """``sgen-ops ARGS`` on the test's stack, ``settings`` overriding its own."""
    return run_cli(args, stack.env(**settings))


def test_operators_add_and_the_admin_gate(stack: Stack, hub: sgen_ops.Hub) -> None:
    out = cli(stack, "operators", "add", "dana", "--role", "administrator")
    assert out.returncode == 0, out.stderr
    assert "operator 'dana' (administrator, every account) registered" in out.stdout
    out = cli(stack, "operators", "add", "ed", "--role", "editor", "--account", "acme")
    assert "account acme" in out.stdout
    assert hub.as_operator("ed").account == "acme"

    again = cli(stack, "operators", "add", "dana", "--role", "viewer")
    assert again.returncode == 1 and "operator 'dana' already exists" in again.stderr
    bad = cli(stack, "operators", "add", "vic", "--role", "superuser")
    assert bad.returncode == 2 and "invalid choice: 'superuser'" in bad.stderr
    listed = cli(stack, "operators", "list").stdout.splitlines()
    assert listed == ["dana\tadministrator\t*\tenabled", "ed\teditor\tacme\tenabled"]

    assert cli(stack, "operators", "disable", "ed").returncode == 0
    with pytest.raises(sgen_ops.AccessDenied, match="'ed' is not registered or is disabled"):
        hub.as_operator("ed")
    refused = cli(stack, "jobs", "list", "--operator", "ed")
    assert refused.returncode == 1 and "disabled" in refused.stderr
    assert cli(stack, "operators", "enable", "ed").returncode == 0
    assert hub.as_operator("ed").role == "editor"
    missing = cli(stack, "operators", "disable", "nobody")
    assert missing.returncode == 1 and "'nobody' is not registered" in missing.stderr


def test_jobs_list_filters_and_json(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("acme-ed", "editor", account="acme")
    failed = hub.enqueue("test.nodl", account="acme")
    ok = hub.enqueue("test.ok", account="globex")
    hub.work()
    out = cli(stack, "jobs", "list", "--operator", "dana", "--json")
    assert out.returncode == 0, out.stderr
    assert {r["id"] for r in json.loads(out.stdout)} == {failed, ok}
    out = cli(stack, "jobs", "list", "--operator", "dana", "--state", "failed", "--json")
    assert [(r["id"], r["state"], r["last_error_code"]) for r in json.loads(out.stdout)] == [
        (failed, "failed", "always")
    ]
    out = cli(stack, "jobs", "list", "--state", "succeeded", operator="acme-ed")
    assert "no jobs match" in out.stdout  # the only succeeded job belongs to another account
    table = cli(stack, "jobs", "list", "--operator", "dana", "--task", "test.nodl").stdout
    assert "test.nodl" in table and "1 of 1 job(s)" in table

    unknown = cli(stack, "jobs", "list", "--operator", "mallory")
    assert unknown.returncode == 1 and "AccessDenied" in unknown.stderr and "operators add mallory" in unknown.stderr
    bad = cli(stack, "jobs", "list", "--operator", "dana", "--state", "exploded")
    assert bad.returncode == 1 and "ValidationError" in bad.stderr and "dead-letter" in bad.stderr


def test_audit_verify_names_the_altered_entry(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    ops = hub.as_operator("dana")
    ids = [hub.enqueue("test.ok", delay=3600) for _ in range(3)]
    for job_id in ids:
        ops.cancel(job_id)
    out = cli(stack, "audit", "verify")
    assert out.returncode == 0, out.stdout + out.stderr
    with hub.ledger.write() as session:
        second = session.scalars(select(ActivityEntry.id).order_by(ActivityEntry.id)).all()[1]
        session.execute(update(ActivityEntry).where(ActivityEntry.id == second).values(operator="mallory"))
    out = cli(stack, "audit", "verify")
    assert out.returncode == 1
    assert str(second) in out.stdout
    answer = json.loads(cli(stack, "audit", "verify", "--json").stdout)
    assert (answer["ok"], answer["first_bad_id"]) == (False, second)


def test_db_upgrade_creates_a_fresh_ledger(stack: Stack, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = cli(stack, "db", "upgrade", database_url=url)
    assert out.returncode == 0, out.stderr
    ledger = Ledger(url)
    assert ledger.current_revision() == ledger.head_revision()
    ledger.close()
