"""The chaos soak (``bench/soak.py``, issue 12) in the suite: its checker, and a short run of it.

What the smoke run covers: workers of both classes (default and ``--fork``) SIGKILLed a few times, each
while inside an attempt (past the claim); fork workers' work horses SIGKILLed; one Redis restart with
nothing persisted (the workers ride it out and ``sgen-ops reconcile`` re-sends what Redis forgot);
PostgreSQL backends terminated on that backend; operator threads writing to random jobs; workers doing
their upkeep on their usual interval (two passes may race to recover one lapsed lease); then a drain with
``sgen-ops reconcile``. The checker must then find nothing lost, stuck, started twice or overlapping, every
job's events chained, and the Activity Log intact.

What it does not cover, and ``make soak`` does: kills at any moment (between RQ's dequeue and the ledger's
claim, whose re-send waits for RQ's worker registration to lapse, minutes rather than the smoke's drain),
attempts that outlive the lease of their killed worker, and many more jobs over minutes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.soak import alive, marked_processes
from bench.soak_check import LedgerRows, check

from ..conftest import BACKENDS, PG_URL, ROOT


def _start(job: int, attempt: int, pid: int, mono: float, run: int = 1, ppid: int = 1) -> dict[str, Any]:
    return {"event": "start", "job": job, "run": run, "attempt": attempt, "pid": pid, "ppid": ppid, "mono": mono}


def _finish(job: int, attempt: int, pid: int, mono: float, run: int = 1) -> dict[str, Any]:
    return {"event": "finish", "job": job, "run": run, "attempt": attempt, "pid": pid, "mono": mono, "outcome": "ok"}


def _clean() -> tuple[list[dict[str, Any]], LedgerRows]:
    """Two jobs: 1 succeeded at once; 2 lost its first attempt with its worker (killed), then succeeded."""
    lines = [
        {"event": "enqueued", "jobs": [1, 2], "mono": 0.0},
        _start(1, 1, pid=100, mono=1.0),
        _finish(1, 1, pid=100, mono=1.5),
        _start(2, 1, pid=101, mono=2.0),
        {"event": "kill", "pid": 101, "what": "worker", "mono": 2.5},
        _start(2, 2, pid=102, mono=20.0),
        _finish(2, 2, pid=102, mono=21.0),
    ]
    ledger = LedgerRows(
        jobs=[(1, "succeeded"), (2, "succeeded")],
        attempts=[(1, 1, 1, "succeeded"), (2, 1, 1, "worker-lost"), (2, 1, 2, "succeeded")],
        events=[
            (1, 1, None, "queued"), (2, 2, None, "queued"), (3, 1, "queued", "running"), (4, 1, "running", "succeeded"),
            (5, 2, "queued", "running"), (6, 2, "running", "failed"), (7, 2, "failed", "retrying"),
            (8, 2, "retrying", "queued"), (9, 2, "queued", "running"), (10, 2, "running", "succeeded"),
        ],
    )
    return lines, ledger


def test_the_checker_passes_a_clean_run() -> None:
    lines, ledger = _clean()
    report = check(lines, ledger)
    assert report.ok, report.table()
    assert (report.jobs, report.worker_kills) == (2, 1)
    assert set(report.counts.values()) == {0}


def test_the_checker_catches_each_planted_fault() -> None:
    lines, ledger = _clean()
    doubled = check([*lines, _start(1, 1, pid=103, mono=30.0), _finish(1, 1, pid=103, mono=31.0)], ledger)
    assert doubled.counts["attempts started twice"] == 1 and not doubled.ok

    # Job 2's first attempt still ran (its process was never seen to die) when the second began.
    overlapping = check([line for line in lines if line["event"] != "kill"], ledger)
    assert overlapping.counts["overlapping runs"] == 1 and overlapping.failed == ["overlapping runs"]

    stuck = LedgerRows([*ledger.jobs[:1], (2, "running")], ledger.attempts, ledger.events[:5])
    found = check(lines, stuck)
    assert (found.counts["stuck"], found.counts["lost"], found.counts["event-chain breaks"]) == (1, 1, 0)

    missing = LedgerRows(ledger.jobs[1:], ledger.attempts, [e for e in ledger.events if e[1] != 1])
    assert check(lines, missing).counts["lost"] == 1

    # A loss recorded over a success (issue 12's recovery race): running -> failed after succeeded.
    broken = LedgerRows(ledger.jobs, ledger.attempts, [*ledger.events, (11, 2, "running", "failed")])
    assert check(lines, broken).counts["event-chain breaks"] == 1
    wrong_state = LedgerRows([(1, "succeeded"), (2, "queued")], ledger.attempts, ledger.events)
    assert check(lines, wrong_state).counts["event-chain breaks"] == 1

    audit = LedgerRows(ledger.jobs, ledger.attempts, ledger.events, audit_ok=False)
    assert check(lines, audit).failed == ["audit verify"]


def test_a_rerun_after_a_truly_lost_outcome_is_counted_and_allowed() -> None:
    lines, ledger = _clean()
    # The handler of job 2's first attempt finished; its worker died before recording it.
    lines.insert(4, _finish(2, 1, pid=101, mono=2.2))
    report = check(lines, ledger)
    assert report.counts["re-runs after a truly lost outcome"] == 1
    assert report.ok and report.orphan_finishes == 0

    # The same attempt run by a work horse (of worker 200) that finished after its worker was killed.
    horse = [line for line in lines if line["event"] != "kill"]
    horse[3] = _start(2, 1, pid=101, mono=2.0, ppid=200)
    horse.insert(4, {"event": "kill", "pid": 200, "what": "worker", "mono": 2.1})
    orphaned = check(horse, ledger)
    assert orphaned.ok and orphaned.orphan_finishes == 1
    assert "1 finished by a work horse after its worker was killed" in orphaned.table()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_mild_soak_finds_no_fault_and_its_checker_fails_a_planted_one(backend: str, tmp_path: Path) -> None:
    workdir = tmp_path / "soak"
    argv = [
        sys.executable, "-m", "bench.soak", "--backend", backend, "--workdir", str(workdir),
        "--seconds", "15", "--jobs", "120", "--workers", "2", "--kill-every", "3", "5", "--kill-when", "busy",
        "--redis-restarts", "1", "--pg-every", "5", "--operators", "2",
        "--drain-seconds", "120", "--seed", "7", "--long-share", "0",
    ]
    if backend == "postgresql":
        assert PG_URL
        argv += ["--database-url", PG_URL]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=330, check=False)
    summary = json.loads((workdir / "report.json").read_text())
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        report = summary["report"]
        assert report["jobs"] == 120 and report["worker_kills"] >= 1
        assert report["redis_restarts"] == 1
        assert report["pg_terminations"] >= 1 if backend == "postgresql" else report["pg_terminations"] == 0
        for name in ("lost", "stuck", "attempts started twice", "overlapping runs", "event-chain breaks"):
            assert report["counts"][name] == 0, name
        assert report["audit_ok"] and summary["strays_after_teardown"] == {"horses": 0, "other": 0}
    finally:
        # Nothing the soak started outlives it: workers, horses, reconcilers, its redis-server.
        assert marked_processes(summary["run_id"]) == []
        assert summary["redis_pids"] and not any(alive(pid) for pid in summary["redis_pids"])

    # The same log with one attempt's start written twice: the checker says so and fails.
    log = (workdir / "attempts.log").read_text().splitlines()
    first_start = next(line for line in log if json.loads(line)["event"] == "start")
    planted = tmp_path / "planted.log"
    planted.write_text("\n".join([*log, first_start]) + "\n")
    checked = subprocess.run(
        [sys.executable, "-m", "bench.soak_check", str(planted), "--ledger-json", str(workdir / "ledger.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert checked.returncode == 1
    assert "| attempts started twice | 1 |" in checked.stdout
