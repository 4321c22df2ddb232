"""The archive: what moves and what stays, reading archived jobs back (masked for each role), the writes an
archived job refuses, deleting one, history over ledger and archive, and the run's record. Real Parquet files,
real DuckDB, both backends; the horizon is moved with ``hub.archive(now=...)``."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

import sgen_ops
from sgen_ops import AccessDenied, InvalidTransition, NotFound
from sgen_ops.ledger import archive
from sgen_ops.ledger.store import ArchiveFile, Attempt, Job, JobEvent
from sgen_ops.surface.declarations import OPERATIONS
from tests.integration.test_surface_fixtures import Jobs, add_operators

LATER = timedelta(days=40)  # past the default horizon of 30 days
SOON = timedelta(days=10)
MASK = "••••••"


def later(delta: timedelta = LATER) -> datetime:
    return datetime.now(UTC) + delta


def ledger_ids(hub: sgen_ops.Hub, model: Any = Job, column: str = "id") -> set[int]:
    with hub.ledger.read() as session:
        return set(session.scalars(select(getattr(model, column))))


def archived_ids(hub: sgen_ops.Hub) -> list[int]:
    """Every job id in the files the catalogue lists (duplicates kept), read with pyarrow."""
    store = archive.Store(hub.settings.effective_archive_url)
    with hub.ledger.read() as session:
        paths = list(session.scalars(select(ArchiveFile.path)))
    found: list[int] = []
    for path in paths:
        found += pq.read_table(store.path(path), filesystem=store.fs, columns=["id"])["id"].to_pylist()
    return found


@pytest.fixture
def ops(hub: sgen_ops.Hub) -> dict[str, Any]:
    return add_operators(hub)


def test_terminal_jobs_past_the_horizon_move_with_their_attempts_and_events(hub: sgen_ops.Hub, ops: Any) -> None:
    ids = Jobs(hub, ops["administrator"]).make_all(
        ["queued", "retrying", "succeeded", "failed", "dead-letter", "resolved", "cancelled"])
    moving = {ids["succeeded"], ids["resolved"], ids["cancelled"]}
    assert hub.archive(now=later(SOON)) == 0  # inside the 30 days: nothing is due
    assert hub.archive(now=later(), dry_run=True) == 3
    assert ledger_ids(hub) == set(ids.values())  # a dry run moves nothing
    assert hub.archive(now=later()) == 3
    assert ledger_ids(hub) == set(ids.values()) - moving  # dead letters, waiting and failed jobs stay
    assert not moving & ledger_ids(hub, Attempt, "job_id")
    assert not moving & ledger_ids(hub, JobEvent, "job_id")
    assert sorted(archived_ids(hub)) == sorted(moving)
    assert hub.archive(now=later()) == 0  # a second run finds nothing left
    runs = ops["administrator"].archive_runs()
    done = runs.iloc[-1]  # the first real run (newest first)
    assert (done["state"], done["jobs"], done["files"]) == ("done", 3, 1)
    assert done["ledger_jobs_before"] == 7 and done["ledger_jobs_after"] == 4
    assert len(done["checksum"]) == 64 and done["cutoff"] > pd_now()
    assert done["oldest"] <= done["newest"] < done["cutoff"]


def pd_now() -> Any:
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


def test_files_are_day_partitioned_compressed_parquet_for_the_owner_only(hub: sgen_ops.Hub) -> None:
    hub.enqueue("test.ok", {"n": 1})
    hub.work()
    assert hub.archive(now=later()) == 1
    root = Path(hub.settings.effective_archive_url)
    [file] = list(root.rglob("*.parquet"))
    day = datetime.now(UTC).date().isoformat()
    assert file.parent.name in (f"day={day}", f"day={(datetime.now(UTC) - timedelta(days=1)).date().isoformat()}")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    for directory in (file.parent, file.parent.parent, root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    meta = pq.ParquetFile(file).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    row = pq.read_table(file).to_pylist()[0]
    assert row["state"] == "succeeded" and [a["exit"] for a in row["attempt_history"]] == ["succeeded"]
    assert [e["to_state"] for e in row["events"]] == ["queued", "running", "succeeded"]


def test_archive_after_days_zero_never_and_the_retention_window_raises_it(stack: Any) -> None:
    never = stack.hub(archive_after_days=0)
    never.enqueue("test.ok")
    never.work()
    assert never.archive(now=later(timedelta(days=3650))) == 0
    kept = stack.hub(retention_days=45, archive_after_days=30)
    assert kept.archive(now=later()) == 0  # 40 days: still inside the 45-day retention window
    assert kept.archive(now=later(timedelta(days=46))) == 1


def test_a_schedules_own_longer_retention_keeps_its_jobs(hub: sgen_ops.Hub) -> None:
    long_kept = hub.enqueue("test.ok")
    hub.work()
    with hub.ledger.write() as session:
        job = session.get(Job, long_kept)
        assert job is not None
        job.retention_days = 60
    assert hub.archive(now=later()) == 0
    assert hub.archive(now=later(timedelta(days=61))) == 1


@pytest.mark.parametrize("role", ["administrator", "editor", "viewer"])
def test_get_job_finds_an_archived_job_masked_as_any_other(hub: sgen_ops.Hub, ops: Any, role: str) -> None:
    job_id = hub.enqueue("test.secret", {"credentials": {"api_key": "sk-live-123"}, "rows": [{"card": "4111"}]},
                         account="acme")
    hub.work()
    ops["administrator"].resolve(job_id, "refunded by hand")
    live = ops[role].get_job(job_id)
    assert hub.archive(now=later()) == 1
    detail = ops[role].get_job(job_id)
    assert detail.archived is True and live.archived is False
    for field in ("task", "state", "payload", "attempts", "account", "last_error_code", "last_error_detail",
                  "error_log", "resolution_note", "created_at", "updated_at"):
        assert getattr(detail, field) == getattr(live, field), field
    assert [(a.number, a.exit, a.error) for a in detail.attempt_history] == [
        (a.number, a.exit, a.error) for a in live.attempt_history]
    shown = repr(detail)
    if role == "administrator":
        assert detail.payload["credentials"]["api_key"] == "sk-live-123"
    else:
        assert "sk-live-123" not in shown and "4111" not in shown
        assert detail.payload["credentials"]["api_key"] == MASK
        # The view of a masked record is logged, as for a live job.
        log = ops["administrator"].activity_log()
        assert ((log["action"] == "get_job") & (log["target_id"] == job_id)).sum() == 2


def test_an_archived_job_of_another_account_is_not_found(hub: sgen_ops.Hub) -> None:
    job_id = hub.enqueue("test.ok", account="acme")
    hub.work()
    hub.add_operator("gus", "administrator", account="globex")
    hub.add_operator("ana", "viewer", account="acme")
    assert hub.archive(now=later()) == 1
    assert hub.as_operator("ana").get_job(job_id).archived
    with pytest.raises(NotFound, match=f"job {job_id} not found"):
        hub.as_operator("gus").get_job(job_id)
    with pytest.raises(NotFound):
        hub.as_operator("gus").delete_job(job_id)
    assert hub.as_operator("gus").history().empty
    with pytest.raises(AccessDenied, match="bound to account 'globex'"):
        hub.as_operator("gus").history(account="acme")


JOB_WRITES = {
    "rerun": lambda ops, j: ops.rerun(j),
    "cancel": lambda ops, j: ops.cancel(j),
    "retry_now": lambda ops, j: ops.retry_now(j),
    "send_to_dead_letter": lambda ops, j: ops.send_to_dead_letter(j, "why not"),
    "replay": lambda ops, j: ops.replay(j),
    "edit_and_replay": lambda ops, j: ops.edit_and_replay(j, {"n": 2}),
    "dismiss": lambda ops, j: ops.dismiss(j),
    "resolve": lambda ops, j: ops.resolve(j, "done"),
    "trigger": lambda ops, j: ops.trigger(j),
    "update_job": lambda ops, j: ops.update_job(j, priority="high"),
}


def test_every_write_but_delete_job_refuses_an_archived_job(hub: sgen_ops.Hub, ops: Any) -> None:
    assert set(JOB_WRITES) | {"delete_job"} == {
        a for a, op in OPERATIONS.items() if op.target_type == "job" and not a.endswith(("_jobs", "_letters"))}
    job_id = hub.enqueue("test.ok", {"n": 1})
    hub.work()
    assert hub.archive(now=later()) == 1
    admin = ops["administrator"]
    entries = len(admin.activity_log())
    for action, call in JOB_WRITES.items():
        with pytest.raises(InvalidTransition, match=rf"cannot {action} job {job_id}: it is archived"):
            call(admin, job_id)
    # A role that may not is refused for that first, as for a live job.
    with pytest.raises(AccessDenied):
        ops["viewer"].rerun(job_id)
    assert len(admin.activity_log()) == entries  # a refused call records nothing
    assert admin.get_job(job_id).state == "succeeded"


def test_delete_job_removes_an_archived_job_from_the_archive_too(hub: sgen_ops.Hub, ops: Any) -> None:
    kept, gone = (hub.enqueue("test.ok", {"n": n, "password": "hunter2"}) for n in (1, 2))
    hub.work()
    assert hub.archive(now=later()) == 2
    admin = ops["administrator"]
    with pytest.raises(AccessDenied):
        ops["editor"].delete_job(gone)
    admin.delete_job(gone)
    with pytest.raises(NotFound):
        admin.get_job(gone)
    with pytest.raises(NotFound):
        admin.delete_job(gone)
    assert admin.history()["id"].tolist() == [kept]
    assert archived_ids(hub) == [kept]  # the file was rewritten without it
    assert len(list(Path(hub.settings.effective_archive_url).rglob("*.parquet"))) == 1
    entry = admin.activity_log().iloc[-1]
    assert (entry["action"], entry["target_id"]) == ("delete_job", gone)
    snapshot = entry["change"]["before"]
    assert snapshot["state"] == "succeeded" and snapshot["payload"]["password"] == MASK  # the log never holds it
    assert [a["exit"] for a in snapshot["attempt_history"]] == ["succeeded"]


def test_a_deleted_archived_job_leaves_its_file_at_the_next_run_when_a_run_held_the_lock(
    hub: sgen_ops.Hub, ops: Any
) -> None:
    kept, gone = hub.enqueue("test.ok"), hub.enqueue("test.ok")
    hub.work()
    assert hub.archive(now=later()) == 2
    with archive.archive_lock(hub.ledger):  # another run holds it: the delete cannot rewrite the file now
        ops["administrator"].delete_job(gone)
    assert sorted(archived_ids(hub)) == [kept, gone]
    assert ops["administrator"].history()["id"].tolist() == [kept]  # but no read shows it
    assert hub.archive(now=later()) == 0
    assert archived_ids(hub) == [kept]


def test_history_reads_ledger_and_archive_together_masked_and_filtered(hub: sgen_ops.Hub, ops: Any) -> None:
    old = [hub.enqueue("test.ok", {"n": n, "token": f"t-{n}"}, account=a) for n, a in ((1, "acme"), (2, "globex"))]
    hub.work()
    assert hub.archive(now=later()) == 2
    fresh = hub.enqueue("test.ok", {"n": 3, "token": "t-3"}, account="acme", delay=3600)
    dead = hub.enqueue("test.boom", account="acme")
    hub.work()
    frame = ops["viewer"].history()
    assert frame["id"].tolist() == [*old, fresh, dead]
    assert {"id", "task", "state", "account", "attempts", "created_at", "updated_at", "payload"} <= set(frame.columns)
    assert frame["archived"].tolist() == [True, True, False, False]
    assert frame["state"].tolist() == ["succeeded", "succeeded", "queued", "dead-letter"]
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]" or "UTC" in str(frame["created_at"].dtype)
    assert [p["token"] for p in frame["payload"][:3]] == [MASK] * 3
    assert [p["token"] for p in ops["administrator"].history()["payload"][:3]] == ["t-1", "t-2", "t-3"]
    admin = ops["administrator"]
    assert admin.history(account="acme")["id"].tolist() == [old[0], fresh, dead]
    assert admin.history(state="succeeded")["id"].tolist() == old
    assert admin.history(task=["test.boom"])["id"].tolist() == [dead]
    assert admin.history(since=timedelta(hours=1), state=["succeeded", "queued"])["id"].tolist() == [*old, fresh]
    assert admin.history(until=datetime.now(UTC) - timedelta(hours=1)).empty
    # An analyst's DuckDB over the frame.
    import duckdb

    counts = duckdb.sql("SELECT archived, count(*) AS n FROM frame GROUP BY archived ORDER BY archived").fetchall()
    assert counts == [(False, 2), (True, 2)]


def test_history_refuses_bad_filters(hub: sgen_ops.Hub, ops: Any) -> None:
    with pytest.raises(sgen_ops.ValidationError, match="unknown state"):
        ops["viewer"].history(state="done")
    with pytest.raises(sgen_ops.ValidationError, match="since"):
        ops["viewer"].history(since="yesterday-ish")


def test_archive_runs_need_an_operator_of_every_account(hub: sgen_ops.Hub) -> None:
    hub.add_operator("ana", "viewer", account="acme")
    with pytest.raises(AccessDenied, match="every account"):
        hub.as_operator("ana").archive_runs()


def test_any_fsspec_url_holds_the_archive(stack: Any) -> None:
    url = f"memory://sgen-{os.getpid()}-{id(stack)}/archive"
    hub = stack.hub(archive_url=url)
    ops = add_operators(hub)
    job_id = hub.enqueue("test.ok", {"n": 7})
    hub.work()
    assert hub.archive(now=later()) == 1
    assert ops["viewer"].get_job(job_id).archived
    assert ops["viewer"].history()["id"].tolist() == [job_id]
    import fsspec

    fs = fsspec.filesystem("memory")
    assert [p for p in fs.find(url.removeprefix("memory://")) if p.endswith(".parquet")]
    fs.rm(url.removeprefix("memory://"), recursive=True)


def test_rows_counted_in_the_catalogue_match_the_files(hub: sgen_ops.Hub) -> None:
    for n in range(12):
        hub.enqueue("test.ok", {"n": n})
    hub.work()
    result = archive.run(hub.ledger, hub.settings, now=later(), batch=5)
    assert (result.jobs, result.files) == (12, 3)
    with hub.ledger.read() as session:
        listed = session.execute(select(func.sum(ArchiveFile.jobs), func.count())).one()
    assert tuple(listed) == (12, 3)
    assert sorted(archived_ids(hub)) == sorted(set(archived_ids(hub)))


def test_a_ledger_upgraded_from_0008_rolls_up_and_archives_its_history(stack: Any) -> None:
    from alembic import command

    from sgen_ops.ledger.store.db import alembic_config

    hub = stack.hub()
    ids = [hub.enqueue("test.ok", {"n": n}) for n in range(3)]
    hub.enqueue("test.boom")
    hub.work()
    hub.add_operator("dana", "administrator")
    before = hub.as_operator("dana").throughput("24h")
    with hub.ledger.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0008")
    assert hub.ledger.current_revision() == "0008"
    hub.ledger.upgrade()
    assert hub.ledger.current_revision() == "0011"
    from sgen_ops.ledger import rollups

    assert rollups.roll(hub.ledger) > 0  # the history written before the upgrade
    assert hub.as_operator("dana").throughput("24h").equals(before)
    assert hub.archive(now=later()) == 3
    assert hub.as_operator("dana").throughput("24h").equals(before)
    frame = hub.as_operator("dana").history()
    assert frame.loc[frame["archived"], "id"].tolist() == ids
