"""Nothing lost, nothing twice: an archive run SIGKILLed at any point (before, during or after writing a file;
before or after deleting the rows; before marking the run done; at random moments) leaves every job exactly once
across ledger and archive after the next run, and two archivers at once never both move a job. Both backends."""

from __future__ import annotations

import contextlib
import hashlib
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select

import sgen_ops
from sgen_ops.ledger import archive
from sgen_ops.ledger.store import ArchiveFile, ArchiveRun, Job
from tests.conftest import ROOT, Stack
from tests.helpers import race

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC) + timedelta(days=40)
JOBS = 30


def seeded(stack: Stack) -> tuple[sgen_ops.Hub, set[int], pd.DataFrame]:
    """JOBS succeeded jobs to archive and two that stay; the throughput before any archiving."""
    hub = stack.hub()
    ids = set(hub.enqueue_many("test.ok", [{"n": n} for n in range(JOBS)], account="acme"))
    stays = {hub.enqueue("test.boom"), hub.enqueue("test.ok", delay=7200)}
    hub.work()
    hub.add_operator("dana", "administrator")
    return hub, ids | stays, hub.as_operator("dana").throughput("24h")


def child(stack: Stack, point: str, nth: int, batch: int = 4) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.archive_child", point, str(nth), NOW.isoformat(), str(batch)],
        cwd=ROOT, env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def listed(hub: sgen_ops.Hub) -> list[tuple[str, str]]:
    with hub.ledger.read() as session:
        return [tuple(r) for r in session.execute(select(ArchiveFile.path, ArchiveFile.sha256))]  # type: ignore[misc]


def archived(hub: sgen_ops.Hub) -> list[int]:
    """Every job id in the files the catalogue lists, duplicates kept."""
    import pyarrow.parquet as pq

    store = archive.Store(hub.settings.effective_archive_url)
    found: list[int] = []
    for path, _ in listed(hub):
        found += pq.read_table(store.path(path), filesystem=store.fs, columns=["id"])["id"].to_pylist()
    return found


def in_ledger(hub: sgen_ops.Hub) -> set[int]:
    with hub.ledger.read() as session:
        return set(session.scalars(select(Job.id)))


def exactly_once(hub: sgen_ops.Hub, everything: set[int]) -> None:
    found = archived(hub)
    assert len(found) == len(set(found)), "a job is in the archive twice"
    assert not set(found) & in_ledger(hub), "a job is both in the ledger and in the archive"
    assert set(found) | in_ledger(hub) == everything, "a job was lost"


def files_intact(hub: sgen_ops.Hub) -> None:
    store = archive.Store(hub.settings.effective_archive_url)
    catalogue = dict(listed(hub))
    assert sorted(store.listing()) == sorted(catalogue), "a file the catalogue does not list was left behind"
    for path, sha in catalogue.items():
        assert hashlib.sha256(store.read(path)).hexdigest() == sha


@pytest.mark.parametrize("point", ["before-write", "during-write", "after-write", "before-delete", "after-delete",
                                   "before-finish"])
def test_a_run_killed_at_any_point_is_finished_by_the_next(stack: Stack, point: str) -> None:
    hub, everything, before = seeded(stack)
    nth = random.Random(point).randint(1, 5)  # which file, or which batch
    proc = child(stack, point, nth)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, out.decode(errors="replace")
    exactly_once(hub, everything)  # even between the kill and the next run
    moved = hub.archive(now=NOW)
    exactly_once(hub, everything)
    files_intact(hub)
    assert len(archived(hub)) == JOBS
    with hub.ledger.read() as session:
        states = list(session.scalars(select(ArchiveRun.state).order_by(ArchiveRun.id)))
    assert states.count("interrupted") == 1 and "running" not in states
    if moved:
        assert states[-1] == "done"
    # The rollups folded every archived row exactly once, kill or no kill.
    pd.testing.assert_frame_equal(hub.as_operator("dana").throughput("24h"), before)


def test_runs_killed_at_random_moments_leave_each_job_once(stack: Stack) -> None:
    hub, everything, before = seeded(stack)
    rng = random.Random(20)
    for _ in range(4):
        proc = child(stack, "none", 0, batch=2)
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=60)
        exactly_once(hub, everything)
    hub.archive(now=NOW)
    exactly_once(hub, everything)
    files_intact(hub)
    assert len(archived(hub)) == JOBS
    pd.testing.assert_frame_equal(hub.as_operator("dana").throughput("24h"), before)


def test_two_archivers_at_once_never_both_move_a_job(stack: Stack) -> None:
    hub, everything, before = seeded(stack)
    procs = [child(stack, "none", 0, batch=3) for _ in range(2)]
    outputs = [p.communicate(timeout=180)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum(int(o.rsplit("moved ", 1)[1]) for o in outputs) == JOBS
    exactly_once(hub, everything)
    files_intact(hub)
    pd.testing.assert_frame_equal(hub.as_operator("dana").throughput("24h"), before)


def test_without_the_lock_the_delete_transaction_still_keeps_them_apart(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is not what makes it exactly once: two archivers that both wrote a batch's files find, in the
    delete transaction, that the other took the jobs, and drop their files."""
    hub, everything, before = seeded(stack)
    monkeypatch.setattr(archive, "archive_lock", lambda ledger, wait=True: contextlib.nullcontext(True))
    other = stack.hub()
    results = race(*(lambda h=h: archive.run(h.ledger, h.settings, now=NOW, batch=3) for h in (hub, other)))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.jobs for r in results) == JOBS
    exactly_once(hub, everything)
    files_intact(hub)
    pd.testing.assert_frame_equal(hub.as_operator("dana").throughput("24h"), before)


def test_a_batch_another_archiver_moved_whole_is_skipped(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the lock, a second archiver may move every job of a batch between the first one choosing it and
    reading it: the first then finds nothing to write and carries on (it once failed on the empty batch)."""
    hub, everything, before = seeded(stack)
    monkeypatch.setattr(archive, "archive_lock", lambda ledger, wait=True: contextlib.nullcontext(True))
    other = stack.hub()
    move = archive._move_batch
    calls: list[str] = []

    def late(*args: object, **kwargs: object) -> tuple[int, int]:
        if not calls:
            calls.append("the other archiver")  # before it runs: its own batches go straight through
            calls.append(str(archive.run(other.ledger, other.settings, now=NOW, batch=JOBS).jobs))
        return move(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(archive, "_move_batch", late)
    first = archive.run(hub.ledger, hub.settings, now=NOW, batch=JOBS)
    assert (calls, first.jobs, first.files) == (["the other archiver", str(JOBS)], 0, 0)
    exactly_once(hub, everything)
    files_intact(hub)
    pd.testing.assert_frame_equal(hub.as_operator("dana").throughput("24h"), before)
