"""``sgen-ops jobs``: the readable table, exit statuses, time filters, unknown tasks, a closed pipe, and the
writes on several ids, against the test's stores: in this process (``run_cli``), but for the closed pipe
and ``--version``, which run the real ``python -m sgen_ops.cli`` and console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from importlib.metadata import version

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Job

from ..conftest import ROOT, Stack
from ..helpers import job_row, run_cli, sgen_ops_process

NOT_SHOWN = ("NaN", "NaT", "None", "Traceback")


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``sgen-ops ARGS`` on the test's stack, with ``env`` added to its environment."""
    return run_cli(args, {**stack.env(), **env})


def test_jobs_list_is_an_aligned_table_that_fits_the_terminal(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    long_error = hub.enqueue("test.verbose", {"text": "upstream said: " + "no " * 80 + "END"})
    ok = hub.enqueue("test.ok")
    later = hub.enqueue("test.ok", delay=3600)
    hub.work()

    out = cli(stack, "jobs", "list", "--operator", "dana", COLUMNS="100")

    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header, rows, footer = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["ID", "TASK", "STATE", "ATTEMPTS", "NEXT", "RUN", "ERROR", "ACCOUNT", "CREATED"]
    assert all(len(line) <= 100 for line in lines), lines
    assert not [w for w in NOT_SHOWN if w in out.stdout], out.stdout
    by_id = {int(r.split()[0]): r for r in rows}
    assert set(by_id) == {long_error, ok, later}
    assert "verbose: upstream said: no no" in by_id[long_error] and "…" in by_id[long_error]
    assert "END" not in by_id[long_error]
    assert re.search(r"\bin (1h|[1-5]?\dm)\b", by_id[later])  # due an hour after it was queued, however slow the run
    assert by_id[ok].rstrip().endswith(("s ago", "just now"))  # created seconds before, relative
    # Columns line up: each header starts where its values start.
    error_at = header.index("ERROR")
    assert by_id[long_error][error_at:].startswith("verbose:")
    assert footer == "-- page 1 of 1, 3 of 3 job(s)"


def test_exit_status_says_refused_or_usage(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("vic", "viewer")
    job_id = hub.enqueue("test.ok", delay=3600)

    refused = cli(stack, "jobs", "cancel", str(job_id), "--operator", "vic")
    assert refused.returncode == 1
    assert "AccessDenied" in refused.stderr and "Traceback" not in refused.stderr
    usage = cli(stack, "jobs", "cancel", "twelve", "--operator", "vic")
    assert usage.returncode == 2 and "invalid int value: 'twelve'" in usage.stderr
    nobody = cli(stack, "jobs", "list", SGEN_OPS_OPERATOR="")
    assert nobody.returncode == 1 and "no operator given" in nobody.stderr
    assert cli(stack, "jobs", "frobnicate").returncode == 2
    assert job_row(hub, job_id).state == "queued"


def test_since_takes_durations_like_the_runbooks(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    old, new = hub.enqueue("test.ok", delay=3600), hub.enqueue("test.ok", delay=3600)
    with hub.ledger.write() as session:
        session.get(Job, old).created_at = utcnow() - timedelta(days=2)

    def listed(*args: str) -> list[int]:
        out = cli(stack, "jobs", "list", "--operator", "dana", "--json", *args)
        assert out.returncode == 0, out.stderr
        return sorted(r["id"] for r in json.loads(out.stdout))

    assert listed("--since", "24h") == [new]
    assert listed("--since", "3d") == sorted([old, new])
    assert listed("--until", "1d") == [old]
    assert listed("--since", (utcnow() - timedelta(hours=1)).isoformat()) == [new]
    bad = cli(stack, "jobs", "list", "--operator", "dana", "--since", "last tuesday")
    assert bad.returncode == 1 and "since" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unknown_task_is_an_error_naming_the_tasks(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    hub.enqueue("test.ok", delay=3600)
    out = cli(stack, "jobs", "list", "--operator", "dana", "--task", "test.okk")
    assert out.returncode == 1
    assert "unknown task 'test.okk'; known tasks:" in out.stderr and "test.ok," in out.stderr
    assert "no jobs match" not in out.stdout
    known = cli(stack, "jobs", "list", "--operator", "dana", "--task", "test.boom")
    assert known.returncode == 0 and "no jobs match" in known.stdout


def test_json_into_a_pipe_closed_early_ends_quietly(stack: Stack, hub: sgen_ops.Hub) -> None:
    """`sgen-ops jobs list --json | head -c 10`: the reader goes away; no BrokenPipeError traceback."""
    hub.add_operator("dana", "administrator")
    hub.enqueue_many("test.ok", [{"pad": "x" * 200, "n": n} for n in range(600)], delay=3600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgen_ops.cli", "jobs", "list", "--operator", "dana", "--json", "--per-page", "600"],
        cwd=ROOT, env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b'[{"id": 60'
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141  # as a shell reports a command its reader left (128 + SIGPIPE)
    assert err == ""


def test_version() -> None:
    """The console script ``sgen-ops`` as installed, a real process; and main() in this process says the same."""
    out = sgen_ops_process(["--version"], os.environ, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"sgen-ops {version('sgen-ops')}"
    here = run_cli(["--version"], os.environ)
    assert (here.returncode, here.stdout) == (0, out.stdout)


def test_writes_on_several_ids_report_each(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    waiting = [hub.enqueue("test.ok", delay=3600) for _ in range(2)]
    done = hub.enqueue("test.ok")
    hub.work()

    out = cli(stack, "jobs", "cancel", *map(str, [*waiting, done, 999_999]), "--operator", "dana")

    assert out.returncode == 1
    assert out.stdout.splitlines() == [f"job {i}: cancelled (a running job: at its next checkpoint)" for i in waiting]
    err = out.stderr.splitlines()
    assert err[0].startswith(f"sgen-ops: job {done}: InvalidTransition: cannot cancel job {done}: it is succeeded")
    assert err[1] == "sgen-ops: job 999999: NotFound: job 999999 not found"
    assert [job_row(hub, i).state for i in waiting] == ["cancelled", "cancelled"]
    log = hub.as_operator("dana").activity_log()
    assert sorted(log[log["action"] == "cancel"]["target_id"]) == sorted(waiting)

    again = cli(stack, "jobs", "rerun", str(done), "--operator", "dana", "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == [
        {"id": done, "ok": True, "result": "queued again with a fresh attempt counter"}
    ]
    assert job_row(hub, done).state == "queued"


def test_update_changes_when_a_job_runs_and_only_an_administrator_what_it_runs(stack: Stack, hub: sgen_ops.Hub
                                                                                ) -> None:
    hub.add_operator("ed", "editor")
    hub.add_operator("dana", "administrator")
    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)

    out = cli(stack, "jobs", "update", str(job_id), "--priority", "high", "--scheduled-for", "2h",
              "--max-attempts", "5", "--operator", "ed")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"job {job_id}: updated (priority, max_attempts, scheduled_for)"]
    row = job_row(hub, job_id)
    assert (row.priority, row.max_attempts) == ("high", 5)
    assert timedelta(minutes=119) < row.scheduled_for.replace(tzinfo=utcnow().tzinfo) - utcnow() < timedelta(hours=2)

    refused = cli(stack, "jobs", "update", str(job_id), "--payload", '{"n": 2}', "--operator", "ed")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == (
        f"sgen-ops: job {job_id}: AccessDenied: operator 'ed' (editor) may not update_job_payload: only "
        "administrators can change what a job runs; you are signed in as an editor")
    assert job_row(hub, job_id).payload == {"n": 1}

    done = cli(stack, "jobs", "update", str(job_id), "--payload", '{"n": 2}', "--operator", "dana")
    assert done.returncode == 0, done.stderr
    assert job_row(hub, job_id).payload == {"n": 2}
