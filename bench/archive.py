"""The archive and the rollups at scale: a generated ledger (``--ledger-jobs``, 30 days), SQLite and PostgreSQL.

For each backend, with sgen-ops' clock stopped at the ledger's generation time (``ledger.clock``):

1. the statistics calls (throughput 24h / 30d / 90d, throughput_series 7d by 1h, run_time_percentiles 24h /
   30d / 90d) on the raw ledger, then the first roll-up pass (the whole history), then the same calls;
2. a worker (``sgen-ops worker --concurrency 1``, a separate process on the real clock) runs no-op jobs: its
   rate alone, then while the archive runs with its horizon 27 days after the generation time (every
   terminal job of the ledger but its last 3 days' moves: about 90 %), as a ratio;
3. what the run moved, its time, the bytes per archived job of the Parquet files, the ledger's size before
   and after (PostgreSQL: after ``VACUUM``; SQLite: pages in use, and the file after ``VACUUM``);
4. the statistics calls again, now that most of the history is in the archive, and ``history`` / ``get_job``
   of an archived job.

``python -m bench.archive roll EVERY`` is the roll-up loop ``bench/workers.py`` runs beside a worker to cost
the rollups (``rollup_cost``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

import sgen_ops
from sgen_ops.ledger import archive, rollups
from sgen_ops.ledger.store import ArchiveFile, Job

from . import ledger
from .common import bench_hub, check, flush
from .queries import Timing, measure, table
from .soak import sgen_ops_cli

TARGET_MS = 100.0
KEEP = timedelta(days=3)  # the generated ledger's last days stay live
WORKER_SECONDS = 15.0


def calls(ops: Any, repeats: int, label: str) -> list[Timing]:
    """The statistics calls of the issue's table, p95 against 100 ms."""
    wanted: list[tuple[str, Callable[[int], Any]]] = [
        ("throughput('24h')", lambda k: ops.throughput("24h")),
        ("throughput('30d')", lambda k: ops.throughput("30d")),
        ("throughput('90d')", lambda k: ops.throughput("90d")),
        ("throughput_series('7d', '1h')", lambda k: ops.throughput_series("7d", "1h")),
        ("throughput_series('90d', '1d')", lambda k: ops.throughput_series("90d", "1d")),
        ("run_time_percentiles('24h')", lambda k: ops.run_time_percentiles("24h")),
        ("run_time_percentiles('30d')", lambda k: ops.run_time_percentiles("30d")),
        ("run_time_percentiles('90d')", lambda k: ops.run_time_percentiles("90d")),
    ]
    return [measure(f"{name}, {label}", fn, repeats, TARGET_MS) for name, fn in wanted]


def _succeeded(hub: sgen_ops.Hub, since_id: int) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(
            Job.id > since_id, Job.task == "bench.noop", Job.state == "succeeded")) or 0)


def worker_rate(hub: sgen_ops.Hub, redis_url: str, env: dict[str, str], cwd: Path, seconds: float,
                during: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """Jobs/s of one ``sgen-ops worker`` process over ``seconds`` from its first finished job on; with
    ``during``, over the same span while ``during`` runs in a thread beside it (and until it ends if sooner).
    Returns (rate, what ``during`` returned). The worker's jobs are deleted afterwards."""
    with hub.ledger.read() as session:
        start_id = int(session.scalar(select(func.coalesce(func.max(Job.id), 0))) or 0)
    total = int(seconds * 2500)
    for first_of in range(0, total, 20_000):
        hub.enqueue_many("bench.noop", [{"i": i} for i in range(first_of, min(total, first_of + 20_000))])
    log = (cwd / "worker.log").open("ab")
    proc = subprocess.Popen([sgen_ops_cli(), "worker", "--concurrency", "1"], env=env, cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while _succeeded(hub, start_id) == 0:
            check(proc.poll() is None and time.monotonic() < deadline, "the benchmark's worker did not start")
            time.sleep(0.1)
        thread = threading.Thread(target=lambda: result.update(value=during())) if during else None
        if thread is not None:
            thread.start()
            time.sleep(1.0)  # past the run's start: its recovery and first roll-up pass
        first, began = _succeeded(hub, start_id), time.perf_counter()
        while time.perf_counter() - began < seconds and (thread is None or thread.is_alive()):
            time.sleep(0.2)
        done, took = _succeeded(hub, start_id), time.perf_counter() - began
        if thread is not None:
            thread.join()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    check(done < total, "the worker ran out of jobs before the measurement ended")
    with hub.ledger.write() as session:  # the worker's jobs are not part of the ledger measured
        session.execute(text("DELETE FROM attempts WHERE job_id > :i"), {"i": start_id})
        session.execute(text("DELETE FROM job_events WHERE job_id > :i"), {"i": start_id})
        session.execute(text("DELETE FROM jobs WHERE id > :i"), {"i": start_id})
    flush(redis_url)
    return (done - first) / took, result.get("value")


def _size(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def one_backend(name: str, url: str, info: ledger.Generated, redis_url: str, repeats: int) -> str:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sgen-bench-archive-") as home:
        hub = bench_hub(redis_url, url, home)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGEN_OPS_")}
        env.update(SGEN_OPS_HOME=home, SGEN_OPS_DATABASE_URL=url, SGEN_OPS_REDIS_URL=redis_url,
                   SGEN_OPS_TASK_MODULES="bench.tasks", SGEN_OPS_QUEUE_PREFIX="bench",
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", ""))
        try:
            # The generated ledger's own operators (bench-admin, bench-viewer).
            with ledger.clock(info.anchor):
                ops = hub.as_operator("bench-admin")
                print(f"  {name}: the calls on the raw ledger", flush=True)
                raw = calls(ops, repeats, "raw ledger")
                start = time.perf_counter()
                rolled_rows = rollups.roll(hub.ledger)
                roll_seconds = time.perf_counter() - start
                print(f"  {name}: rolled {rolled_rows:,} rows up in {roll_seconds:.0f} s", flush=True)
                rolled = calls(ops, repeats, "rolled up")
                jobs_before, bytes_before = archive.ledger_size(hub.ledger)
                horizon = info.anchor + timedelta(days=30) - KEEP  # the cutoff falls KEEP before the anchor
                due = archive.run(hub.ledger, hub.settings, now=horizon, dry_run=True).jobs
            print(f"  {name}: the worker alone", flush=True)
            alone, _ = worker_rate(hub, redis_url, env, Path(home), WORKER_SECONDS)
            print(f"  {name}: the worker while {due:,} jobs are archived", flush=True)
            timed: dict[str, float] = {}

            def archiving() -> archive.RunResult:
                begun = time.perf_counter()
                try:
                    return archive.run(hub.ledger, hub.settings, now=horizon)
                finally:
                    timed["seconds"] = time.perf_counter() - begun

            during, result = worker_rate(hub, redis_url, env, Path(home), WORKER_SECONDS * 2, during=archiving)
            archive_seconds = timed["seconds"]
            check(result.jobs == due, f"archived {result.jobs} of the {due} jobs due")
            jobs_after, bytes_after = archive.ledger_size(hub.ledger)
            vacuumed = _vacuum(hub)
            with hub.ledger.read() as session:
                files, summed = session.execute(select(func.count(), func.sum(ArchiveFile.bytes))).one()
                file_bytes = int(summed or 0)
                some = session.scalar(select(ArchiveFile.min_id).limit(1))
            with ledger.clock(info.anchor):
                after = calls(ops, repeats, "after archiving")
                after.append(measure("get_job(archived id)", lambda k: ops.get_job(some), repeats, None))
                after.append(measure("history(since=1d)", lambda k: ops.history(since=timedelta(days=1)),
                                     max(3, repeats // 5), None))
            lines.append(
                f"{name}: {info.n:,} jobs generated over 30 days. First roll-up pass (the whole history): "
                f"{rolled_rows:,} rows in {roll_seconds:.1f} s. Archive run (horizon 27 days after generation): "
                f"**{result.jobs:,} jobs** in {archive_seconds:.0f} s ({result.jobs / archive_seconds:,.0f} jobs/s), "
                f"{files:,} files, {_size(file_bytes or 0)}: **{(file_bytes or 0) / max(result.jobs, 1):,.0f} bytes "
                f"per archived job**. Ledger: {jobs_before:,} -> {jobs_after:,} jobs, {_size(bytes_before)} -> "
                f"{_size(bytes_after)} in use; {vacuumed}. Worker (`sgen-ops worker --concurrency 1`, no-op jobs): "
                f"{alone:,.0f} jobs/s alone, {during:,.0f} jobs/s while the archive ran: "
                f"**{during / alone:.2f}x**."
            )
            lines.append(table(f"#### {name}: the statistics calls (warm, {repeats} runs each)", raw + rolled + after))
        finally:
            hub.close()
    return "\n\n".join(lines)


def _vacuum(hub: sgen_ops.Hub) -> str:
    if hub.ledger.engine.dialect.name == "postgresql":
        with hub.ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            vacuumed = archive.ledger_size(hub.ledger)[1]
            # Plain VACUUM makes the space reusable but keeps the files; VACUUM FULL gives it back.
            conn.execute(text("VACUUM FULL"))
        return (f"after VACUUM {_size(vacuumed)} (the space freed is reused by new rows; the files after "
                f"VACUUM FULL: {_size(archive.ledger_size(hub.ledger)[1])})")
    path = Path(hub.ledger.engine.url.database or "")
    raw = hub.ledger.engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]  # outside SQLAlchemy's BEGIN
    finally:
        raw.close()
    return f"the file after VACUUM {_size(path.stat().st_size)}"


def run(redis_url: str, args: argparse.Namespace) -> str:
    n, repeats = args.ledger_jobs, args.query_repeats
    parts = [
        f"Generated ledger of {n:,} jobs (bench/ledger.py); the statistics with sgen-ops' clock at its generation "
        f"time; a roll-up pass, then an archive run moving every terminal job but the last {KEEP.days} days' "
        f"while a worker runs (its rate over up to {WORKER_SECONDS * 2:.0f} s inside the run, against "
        f"{WORKER_SECONDS:.0f} s alone just before)."
    ]
    with tempfile.TemporaryDirectory(prefix="sgen-bench-archive-ledger-") as tmp:
        url, info, _ = ledger.sqlite_ledger(n, Path(tmp))
        parts.append(one_backend("SQLite", url, info, redis_url, repeats))
    if args.postgres:
        url, info, _ = ledger.postgres_ledger(args.postgres, n, copy="sgen_bench_archive")
        parts.append(one_backend("PostgreSQL", url, info, redis_url, repeats))
    return "\n\n".join(parts)


def roll_forever(every: float) -> None:
    """The roll-up loop of ``bench/workers.py``'s rollup cost: ``rollups.roll`` every ``every`` seconds on the
    stack of the environment, until killed."""
    hub = sgen_ops.connect()
    while True:
        rollups.roll(hub.ledger)
        time.sleep(every)


if __name__ == "__main__":
    if sys.argv[1:2] == ["roll"]:
        roll_forever(float(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench.archive roll EVERY (the benchmark runs from python -m bench)")
