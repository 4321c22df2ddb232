"""The CLI's operations as a real process: jobs show/enqueue and the writes, schedules, info and audit log.
Each goes through the surface as the operator, so capability, account scope, masking and the Activity Log
apply as in Python."""

from __future__ import annotations

import json
import os
import signal
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

import sgen_ops
from sgen_ops.core.masking import MASK
from sgen_ops.core.times import utcnow
from sgen_ops.embedded import stop_process
from sgen_ops.ledger.store import ActivityEntry

from ..conftest import Stack
from ..helpers import job_row, start_worker, wait_for
from .test_cli_jobs import cli

SECRET = "key-do-not-show-42"


def as_json(out: Any) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def actions(hub: sgen_ops.Hub) -> list[tuple[str, str, int | None]]:
    log = hub.as_operator("dana").activity_log()
    return list(zip(log["operator"], log["action"], log["target_id"], strict=True))


def test_jobs_show_masks_for_the_role_and_keeps_account_scope(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("vic", "viewer", account="initech")
    hub.add_operator("gina", "viewer", account="globex")
    job_id = hub.enqueue("test.secret", {"credentials": {"api_key": SECRET}}, account="initech")
    hub.work()

    shown = cli(stack, "jobs", "show", str(job_id), "--operator", "vic")
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout and MASK in shown.stdout
    assert "state:            dead-letter" in shown.stdout and "auth_failed" in shown.stdout
    detail = as_json(cli(stack, "jobs", "show", str(job_id), "--operator", "vic", "--json"))
    assert detail["payload"]["credentials"]["api_key"] == MASK and SECRET not in json.dumps(detail)
    assert [a["exit"] for a in detail["attempt_history"]] == ["error"] or len(detail["attempt_history"]) == 1
    assert ("vic", "get_job", job_id) in actions(hub)  # a masked view is logged
    admin = as_json(cli(stack, "jobs", "show", str(job_id), "--operator", "dana", "--json"))
    assert admin["payload"]["credentials"]["api_key"] == SECRET
    other = cli(stack, "jobs", "show", str(job_id), "--operator", "gina")
    assert other.returncode == 1 and f"NotFound: job {job_id} not found" in other.stderr


def test_jobs_writes_go_through_capability_scope_and_log(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("ed", "editor", account="acme")
    dead = [hub.enqueue("test.boom", max_attempts=1, account="acme") for _ in range(2)]
    failed = hub.enqueue("test.nodl", account="acme")
    delayed = hub.enqueue("test.ok", delay=3600, account="acme")
    theirs = hub.enqueue("test.ok", delay=3600, account="globex")
    hub.work()

    assert cli(stack, "jobs", "replay", str(dead[0]), "--operator", "ed").returncode == 1  # administrator's
    out = cli(stack, "jobs", "replay", str(dead[0]), "--operator", "dana")
    assert out.returncode == 0 and out.stdout == f"job {dead[0]}: replayed from the dead letter\n"
    assert cli(stack, "jobs", "dismiss", str(dead[1]), "--operator", "dana").returncode == 0
    out = cli(stack, "jobs", "resolve", str(failed), "--note", "refunded by hand", "--operator", "ed")
    assert out.returncode == 0, out.stderr
    out = cli(stack, "jobs", "trigger", str(delayed), str(theirs), "--operator", "ed")
    assert out.returncode == 1 and f"job {theirs}: NotFound" in out.stderr  # another account's: not found
    assert cli(stack, "jobs", "resolve", str(failed), "--operator", "ed").returncode == 2  # --note is required

    assert job_row(hub, dead[0]).state == "queued"
    assert hub.as_operator("dana").list_jobs(state="dead-letter").total == 0
    assert job_row(hub, failed).state == "resolved"
    assert job_row(hub, delayed).scheduled_for <= utcnow()
    assert job_row(hub, theirs).scheduled_for > utcnow() + timedelta(minutes=30)
    assert actions(hub) == [("dana", "replay", dead[0]), ("dana", "dismiss", dead[1]), ("ed", "resolve", failed),
                            ("ed", "trigger", delayed)]


def test_jobs_enqueue(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("ed", "editor", account="acme")
    hub.add_operator("vic", "viewer")

    made = as_json(cli(stack, "jobs", "enqueue", "test.ok", "--payload", '{"n": 1}', "--priority", "high",
                       "--delay", "1h", "--operator", "ed", "--json"))

    row = job_row(hub, made["id"])
    assert (row.task, row.payload, row.priority, row.account, row.state) == ("test.ok", {"n": 1}, "high", "acme",
                                                                             "queued")
    assert row.scheduled_for > utcnow() + timedelta(minutes=50)
    assert hub.as_operator("ed").get_job(made["id"]).originating_user == "ed"
    bad = cli(stack, "jobs", "enqueue", "test.ok", "--payload", "{n: 1}", "--operator", "ed")
    assert bad.returncode == 1 and "--payload is not JSON" in bad.stderr
    denied = cli(stack, "jobs", "enqueue", "test.ok", "--operator", "vic")
    assert denied.returncode == 1 and "AccessDenied" in denied.stderr
    elsewhere = cli(stack, "jobs", "enqueue", "test.ok", "--account", "globex", "--operator", "ed")
    assert elsewhere.returncode == 1 and "bound to account 'acme'" in elsewhere.stderr
    unknown = cli(stack, "jobs", "enqueue", "test.nope", "--operator", "ed")
    assert unknown.returncode == 1 and "unknown task 'test.nope'" in unknown.stderr


def test_schedules_commands(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("ed", "editor")

    made = as_json(cli(stack, "schedules", "create", "test.ok", "--every", "5m", "--payload", '{"day": "{tick:%d}"}',
                       "--operator", "dana", "--json"))
    sid = made["id"]
    [row] = as_json(cli(stack, "schedules", "list", "--operator", "ed", "--json"))
    assert (row["id"], row["task"], row["every"], row["enabled"]) == (sid, "test.ok", "5m", True)
    table = cli(stack, "schedules", "list", "--operator", "ed").stdout
    assert "every 5m" in table and "enabled" in table and "NaN" not in table and "NaT" not in table

    assert cli(stack, "schedules", "pause", str(sid), "--operator", "ed").returncode == 1  # administrator's
    assert cli(stack, "schedules", "pause", str(sid), "--operator", "dana").stdout == f"schedule {sid}: paused\n"
    assert "paused" in cli(stack, "schedules", "list", "--operator", "ed").stdout
    assert cli(stack, "schedules", "resume", str(sid), "--operator", "dana").returncode == 0
    ran = cli(stack, "schedules", "run", str(sid), "--operator", "ed")
    assert ran.returncode == 0, ran.stderr
    job_id = int(ran.stdout.split("emitted job ")[1])
    assert job_row(hub, job_id).schedule_id == sid
    assert cli(stack, "schedules", "create", "test.ok", "--operator", "dana").returncode == 2  # no timing
    bad = cli(stack, "schedules", "create", "test.ok", "--cron", "61 * * * *", "--operator", "dana")
    assert bad.returncode == 1 and "ValidationError" in bad.stderr
    assert [a[:2] for a in actions(hub)] == [("dana", "create_schedule"), ("dana", "pause_schedule"),
                                              ("dana", "resume_schedule"), ("ed", "run_schedule_now")]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_info_shows_workers_queues_the_scheduler_and_flags_a_dead_worker(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("ann", "viewer", account="acme")
    ops = hub.as_operator("dana")
    ops.create_schedule("test.ok", every="1m", priority="low")
    done = hub.enqueue("test.ok")
    worker = start_worker(stack, "--concurrency", "1")
    try:
        def info(*args: str) -> Any:
            return as_json(cli(stack, "info", "--operator", "dana", "--json", *args))

        def this_worker() -> Any:
            found = [w for w in info()["workers"] if w["pid"] == worker.pid]
            return found[0] if found and found[0]["succeeded"] >= 1 else None

        # Waited for here, not by starting `sgen-ops info` again and again while the worker starts.
        wait_for(lambda: job_row(hub, done).state == "succeeded", timeout=60, what="the worker to run the job")
        alive = wait_for(this_worker, timeout=60, what="the worker in sgen-ops info")
        assert job_row(hub, done).state == "succeeded"
        assert alive["host"] == socket.gethostname() and alive["state"] in ("idle", "busy")
        assert alive["stale"] is False and alive["last_heartbeat"] is not None and alive["failed"] == 0
        assert info()["last_schedule_tick"] is None
        hub.tick(now=utcnow() + timedelta(minutes=2))
        assert info()["last_schedule_tick"] is not None and info()["enabled_schedules"] == 1
    finally:
        # Killed as a crash kills it; RQ's scheduler, a process it forked, is stopped after it.
        forked = children(worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
        for pid in forked:
            stop_process(pid)

    hub.enqueue("test.ok", priority="high", delay=3600)
    # Until Redis has dropped the killed worker's connection, its blocking pop could take a new delivery.
    wait_for(lambda: not [c for c in hub.redis.client_list() if c.get("name") == alive["name"]],
             what="Redis to drop the killed worker's connection")
    hub.enqueue_many("test.ok", [None, None], account="acme")
    shown = info()
    [gone] = [w for w in shown["workers"] if w["pid"] == worker.pid]
    assert gone["stale"] is True and gone["stale_reason"].startswith(f"process {gone['pid']} no longer runs")
    queues = {q["priority"]: q for q in shown["queues"]}
    assert queues["high"]["delayed"] == 1 and queues["high"]["waiting"] == 0
    assert queues["normal"]["waiting"] == 2 and queues["normal"]["ready"] == 2
    assert queues["low"]["waiting"] + queues["low"]["delayed"] == 1  # the tick's job
    assert queues["normal"]["oldest_due"] is not None

    table = cli(stack, "info", "--operator", "dana")
    assert table.returncode == 0 and "STALE: process " in table.stdout and "(1 stale)" in table.stdout
    assert "scheduler: last tick" in table.stdout and "1 enabled schedule(s)" in table.stdout
    scoped = {q["priority"]: q for q in as_json(cli(stack, "info", "--operator", "ann", "--json"))["queues"]}
    assert scoped["normal"]["waiting"] == 2 and scoped["high"]["delayed"] == 0  # only acme's jobs
    assert cli(stack, "info", "--operator", "mallory").returncode == 1


def test_audit_log_filters_and_shows_the_chain(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("ed", "editor")
    hub.add_operator("vic", "viewer")
    jobs = [hub.enqueue("test.ok", delay=3600) for _ in range(3)]
    hub.as_operator("dana").cancel(jobs[0])
    hub.as_operator("dana").cancel(jobs[1])
    hub.as_operator("ed").trigger(jobs[2])

    def log(*args: str, acting: str = "dana") -> Any:
        return as_json(cli(stack, "audit", "log", "--as", acting, "--json", *args))

    everything = log()
    assert [(e["operator"], e["action"], e["target_id"]) for e in everything["entries"]] == [
        ("dana", "cancel", jobs[0]), ("dana", "cancel", jobs[1]), ("ed", "trigger", jobs[2])]
    assert everything["chain"]["ok"] is True and everything["chain"]["checked"] == 3
    assert [e["target_id"] for e in log("--operator", "ed")["entries"]] == [jobs[2]]
    assert [e["target_id"] for e in log("--action", "cancel")["entries"]] == jobs[:2]
    assert [e["action"] for e in log("--target", f"job:{jobs[1]}")["entries"]] == ["cancel"]
    assert log("--target", f"schedule:{jobs[1]}")["entries"] == []
    assert len(log("--since", "1h")["entries"]) == 3 and log("--until", "1h")["entries"] == []
    as_editor = log(acting="ed")
    assert len(as_editor["entries"]) == 3 and as_editor["chain"]["verified"] is False
    denied = cli(stack, "audit", "log", "--as", "vic")
    assert denied.returncode == 1 and "AccessDenied" in denied.stderr

    with hub.ledger.write() as session:
        session.execute(update(ActivityEntry).where(ActivityEntry.target_id == jobs[1]).values(operator="mallory"))
    table = cli(stack, "audit", "log", "--as", "dana")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["AT", "WHEN", "OPERATOR", "ACTION", "TARGET", "ACCOUNT", "CHANGE"]
    assert "mallory" in lines[2] and lines[-1].startswith("chain: ") and "intact" not in lines[-1]
    assert log()["chain"]["ok"] is False


def test_audit_log_names_a_paused_task_and_leaves_no_nan(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.as_operator("dana").pause_task("test.ok")
    table = cli(stack, "audit", "log", "--as", "dana")
    assert table.returncode == 0, table.stderr
    [entry] = [line for line in table.stdout.splitlines() if "pause_task" in line]
    assert "pause_task  task test.ok" in entry and "nan" not in entry.split()


def test_operators_and_tokens_list_as_json(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.add_operator("ed", "editor", account="acme")
    token = hub.create_token("ed", expires_in="1d")
    assert as_json(cli(stack, "operators", "list", "--json")) == [
        {"name": "dana", "role": "administrator", "account": None, "enabled": True},
        {"name": "ed", "role": "editor", "account": "acme", "enabled": True},
    ]
    listed = cli(stack, "tokens", "list", "--json")
    assert token not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert (row["operator"], row["status"], row["revoked_at"]) == ("ed", "active", None)
    assert row["expires_at"] is not None and "hash" not in json.dumps(row)


def test_pause_and_resume_tasks_and_queues(stack: Stack, hub: sgen_ops.Hub) -> None:
    """``tasks pause`` holds a task's waiting jobs back from the workers until ``tasks resume``; the same for a
    priority queue; an editor is refused; an unknown task or priority is refused naming what is allowed."""
    hub.add_operator("dana", "administrator")
    hub.add_operator("ed", "editor")

    assert cli(stack, "paused", "--operator", "ed").stdout == "nothing is paused\n"
    refused = cli(stack, "tasks", "pause", "test.ok", "--operator", "ed")
    assert refused.returncode == 1 and "AccessDenied" in refused.stderr
    done = cli(stack, "tasks", "pause", "test.ok", "--operator", "dana")
    assert done.stdout == "task test.ok: paused: its waiting jobs stay queued until resumed\n", done.stderr
    assert cli(stack, "queues", "pause", "low", "--operator", "dana").returncode == 0
    rows = as_json(cli(stack, "paused", "--operator", "ed", "--json"))
    assert sorted((r["kind"], r["name"], r["paused_by"]) for r in rows) == [("queue", "low", "dana"),
                                                                           ("task", "test.ok", "dana")]
    assert "test.ok" in cli(stack, "paused", "--operator", "ed").stdout

    held = hub.enqueue("test.ok", {"n": 1}, account="initech")
    hub.work()
    assert (job_row(hub, held).state, job_row(hub, held).attempts) == ("queued", 0)
    unknown = cli(stack, "tasks", "pause", "no.such.task", "--operator", "dana")
    assert unknown.returncode == 1 and "ValidationError" in unknown.stderr and "test.ok" in unknown.stderr
    badq = cli(stack, "queues", "pause", "urgent", "high", "--operator", "dana", "--json")
    assert badq.returncode == 1
    assert [(r["id"], r["ok"]) for r in json.loads(badq.stdout)] == [("urgent", False), ("high", True)]

    assert cli(stack, "tasks", "resume", "test.ok", "--operator", "dana").returncode == 0
    hub.work()
    assert job_row(hub, held).state == "succeeded"
    assert [a[:2] for a in actions(hub)] == [("dana", "pause_task"), ("dana", "pause_queue"),
                                              ("dana", "pause_queue"), ("dana", "resume_task")]
