"""Runbooks through ``sgen_ops.ops.runbooks.run`` and through ``sgen-ops runbook``: dry runs change nothing,
real runs change exactly what matches and are audited under the operator, bad input runs nothing."""

from __future__ import annotations

import csv
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import update

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Job
from sgen_ops.ops import runbooks

from ..helpers import run_cli
from .conftest import ADMIN, SQLITE_ONLY, Seeded
from .reading import errors_of, text_of

RUN_NAME = re.compile(r"^\d{8}T\d{6}Z_(?P<runbook>[a-z_]+)_(?P<operator>[\w.-]+?)(-\d+)?\.ipynb$")


def runs_dir(seeded: Seeded) -> Path:
    return seeded.hub.home / "runs"


def assert_run_copy(path: Path, seeded: Seeded, runbook: str, operator: str) -> None:
    """The executed copy is under $SGEN_OPS_HOME/runs/, named <UTC time>_<runbook>_<operator>.ipynb."""
    assert path.parent == runs_dir(seeded) and path.is_file()
    match = RUN_NAME.match(path.name)
    assert match and match["runbook"] == runbook and match["operator"] == operator, path.name
    assert errors_of(path) == []


def cli(seeded: Seeded, *args: str, operator: str | None = ADMIN) -> subprocess.CompletedProcess[str]:
    return run_cli(["runbook", *args], seeded.env(operator or ""))


@SQLITE_ONLY
def test_cli_dry_run_changes_nothing(seeded: Seeded) -> None:
    before_states, before_log = seeded.states(), seeded.activity()
    dead = seeded.dead_letters()
    assert dead, "the seeded stack has dead letters"

    result = cli(seeded, "replay_dead_letters", "-p", "dry_run", "true", "--operator", ADMIN)

    assert result.returncode == 0, result.stderr
    [copy] = runs_dir(seeded).iterdir()
    assert f"executed runbook replay_dead_letters: {copy}" in result.stdout
    assert_run_copy(copy, seeded, "replay_dead_letters", ADMIN)
    assert f"DRY RUN: would replay {len(dead)} dead letter(s); nothing changed" in text_of(copy)
    assert seeded.states() == before_states
    assert seeded.activity() == before_log


def test_cli_real_run_replays_exactly_the_matching_dead_letters(seeded: Seeded) -> None:
    task, code = "test.secret", "auth_failed"
    matching = seeded.dead_letters(task=task, error_code=code)
    others = seeded.dead_letters() - matching
    assert matching and others, "the seed gives dead letters of this cause and of others"
    before_log = seeded.activity()

    # The operator comes from SGEN_OPS_OPERATOR this time.
    result = cli(seeded, "replay_dead_letters", "-p", "task", task, "-p", "error_code", code, "-p", "dry_run", "false")

    assert result.returncode == 0, result.stderr
    states = seeded.states()
    assert {states[i] for i in matching} == {"queued"}
    assert seeded.dead_letters() == others
    written = seeded.activity()[len(before_log):]
    assert sorted(written) == sorted((ADMIN, "replay_dead_letters", i) for i in matching)
    [copy] = runs_dir(seeded).iterdir()
    assert_run_copy(copy, seeded, "replay_dead_letters", ADMIN)
    assert f"replayed {len(matching)} dead letter(s) as {ADMIN}; {len(matching)} Activity Log entries" in text_of(copy)


def test_run_purges_old_succeeded_jobs_as_the_operator(seeded: Seeded) -> None:
    """purge_succeeded through run(): only succeeded jobs created before older_than go, each audited."""
    admin = seeded.admin
    succeeded = [r.id for r in admin.list_jobs(state="succeeded", per_page=1000).items]
    old = set(succeeded[: len(succeeded) // 2])
    with seeded.hub.ledger.write() as session:
        session.execute(update(Job).where(Job.id.in_(old)).values(created_at=utcnow() - timedelta(days=40)))
    before = seeded.states()
    before_log = seeded.activity()

    dry = runbooks.run("purge_succeeded", {"older_than": "30d"}, operator="ops-admin")
    assert f"DRY RUN: would delete {len(old)} succeeded job(s)" in text_of(dry)
    assert seeded.states() == before

    path = runbooks.run("purge_succeeded", {"older_than": "30d", "dry_run": "false"}, operator=ADMIN)

    assert_run_copy(path, seeded, "purge_succeeded", ADMIN)
    after = seeded.states()
    assert set(before) - set(after) == old
    assert {i: s for i, s in before.items() if i not in old} == after
    written = seeded.activity()[len(before_log):]
    assert sorted(written) == sorted((ADMIN, "delete_jobs", i) for i in old)
    assert f"deleted {len(old)} succeeded job(s) as {ADMIN}" in text_of(path)


@SQLITE_ONLY
def test_run_writes_the_throughput_report(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "weekly"
    before_log = seeded.activity()

    path = runbooks.run("throughput_report", {"window": "7d", "output_dir": str(out)}, operator="ops-viewer")

    assert_run_copy(path, seeded, "throughput_report", "ops-viewer")
    [csv_path] = out.glob("throughput_7d_*.csv")
    [html_path] = out.glob("throughput_7d_*.html")
    with csv_path.open() as fh:
        rows = {r["task"]: r for r in csv.DictReader(fh)}
    expected = seeded.admin.throughput("7d").set_index("task")
    assert set(rows) == set(expected.index)
    assert all(int(float(rows[t]["failed"])) == expected.loc[t, "failed"] for t in rows)
    page = html_path.read_text()
    assert "Throughput, last 7d" in page and "by ops-viewer" in page and "webhook.dispatch" in page
    assert seeded.activity() == before_log


@SQLITE_ONLY
def test_archive_report_prints_what_moved_and_the_ledgers_size(seeded: Seeded) -> None:
    before = seeded.states()
    moved = seeded.hub.archive(now=utcnow() + timedelta(days=40))
    assert moved > 0
    archived = seeded.admin.history().query("archived")
    path = runbooks.run("archive_report", {"window": "1d"}, operator=ADMIN)
    assert_run_copy(path, seeded, "archive_report", ADMIN)
    lines = runbooks.result_of(path)
    assert lines[0] == "1 archive run(s) in the last 1d"
    assert re.match(rf"run 1 done .*: {moved} job\(s\) in 1 file\(s\), last changes .*; ledger {len(before)} -> "
                    rf"{len(before) - moved} jobs, [\d.]+ MB -> [\d.]+ MB$", lines[1]), lines[1]
    per_task = archived.groupby("task").size()
    for task, count in per_task.items():
        assert any(line.startswith(f"  {task} ") and line.endswith(f": {count} job(s) archived") for line in lines)
    assert lines[-1] == f"{moved} archived job(s) shown"
    one = per_task.index[0]
    only = runbooks.result_of(runbooks.run("archive_report", {"window": "1d", "task": one}, operator=ADMIN))
    assert only[0] == f"1 archive run(s) in the last 1d, task {one}"
    assert only[-1] == f"{per_task[one]} archived job(s) shown"


BAD_INPUT: list[tuple[str, dict[str, str], str | None, type[Exception], str]] = [
    ("replay_everything", {}, ADMIN, sgen_ops.ValidationError,
     "no runbook named 'replay_everything'; available runbooks: archive_report, purge_succeeded, "
     "replay_dead_letters, throughput_report"),
    ("replay_dead_letters", {"dry_run": "false", "tsk": "webhook.dispatch"}, ADMIN, sgen_ops.ValidationError,
     "runbook replay_dead_letters has no parameter(s) tsk; its parameters: task"),
    ("replay_dead_letters", {"dry_run": "nope"}, ADMIN, sgen_ops.ValidationError,
     "dry_run='nope' is not valid; give true or false"),
    ("replay_dead_letters", {"dry_run": "false"}, "mallory", sgen_ops.AccessDenied,
     "operator 'mallory' is not registered"),
    ("replay_dead_letters", {"dry_run": "false"}, None, sgen_ops.AccessDenied, "no operator given"),
    ("replay_dead_letters", {"dry_run": "false", "operator": "ops-viewer"}, ADMIN, sgen_ops.ValidationError,
     "two operators given"),
]


@SQLITE_ONLY
def test_bad_input_runs_nothing(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown runbook or parameter, a bad value, no or an unknown operator: refused before any kernel starts."""
    monkeypatch.delenv("SGEN_OPS_OPERATOR", raising=False)
    before_states, before_log = seeded.states(), seeded.activity()

    for name, params, operator, error, says in BAD_INPUT:
        with pytest.raises(error, match=re.escape(says)):
            runbooks.run(name, params, operator=operator)

    assert not runs_dir(seeded).exists()
    assert seeded.states() == before_states
    assert seeded.activity() == before_log


@SQLITE_ONLY
def test_cli_reports_bad_input_in_words(seeded: Seeded) -> None:
    before_states, before_log = seeded.states(), seeded.activity()
    result = cli(seeded, "replay_dead_letters", "-p", "dry_run", "false", "--operator", "mallory")
    assert result.returncode == 1
    assert "sgen-ops: AccessDenied: operator 'mallory' is not registered" in result.stderr
    assert not runs_dir(seeded).exists()
    assert seeded.states() == before_states
    assert seeded.activity() == before_log


@SQLITE_ONLY
def test_a_failing_cell_names_its_exception_and_keeps_the_copy(seeded: Seeded) -> None:
    before_states, before_log = seeded.states(), seeded.activity()

    with pytest.raises(runbooks.RunbookFailed, match=r"ValidationError: since='last tuesday' is not a time") as info:
        runbooks.run("replay_dead_letters", {"since": "last tuesday", "dry_run": "false"}, operator=ADMIN)

    copy = info.value.path
    assert copy.parent == runs_dir(seeded) and RUN_NAME.match(copy.name)
    assert str(copy) in str(info.value)
    assert [e.split(":")[0] for e in errors_of(copy)] == ["ValidationError"]
    assert nbformat.read(str(copy), as_version=4).metadata.papermill.exception
    assert seeded.states() == before_states
    assert seeded.activity() == before_log


def test_parameters_are_read_from_the_runbooks_and_coerced() -> None:
    """-p values are text: they become the type the runbook's parameters cell declares."""
    declared = runbooks.parameters("replay_dead_letters")
    assert list(declared) == ["task", "error_code", "since", "dry_run", "operator"]
    assert (declared["dry_run"].type, declared["dry_run"].default) == ("bool", True)
    assert declared["task"].optional and declared["task"].help.startswith("only dead letters of this task")
    assert runbooks.resolve_parameters(
        "replay_dead_letters", {"dry_run": "FALSE", "task": "import.products", "since": "none"}
    ) == {"dry_run": False, "task": "import.products", "since": None}
    assert runbooks.resolve_parameters("purge_succeeded", {"dry_run": "yes", "older_than": "12h"}) == {
        "dry_run": True, "older_than": "12h",
    }
    number = runbooks.Parameter("limit", "int", False, 10, "")
    assert runbooks.coerce(number, " 25 ") == 25
    with pytest.raises(sgen_ops.ValidationError, match=r"limit='ten' is not valid; give a number \(int\)"):
        runbooks.coerce(number, "ten")
    with pytest.raises(sgen_ops.ValidationError, match="limit=True is not valid; limit takes int values"):
        runbooks.coerce(number, True)
    assert runbooks.time_filter("24h") == timedelta(hours=24)
    assert runbooks.time_filter("2026-01-31T12:00:00Z") == "2026-01-31T12:00:00Z"
    assert runbooks.time_filter(None) is None
