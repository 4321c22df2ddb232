"""Memory: peak RSS of a worker process after N jobs (sgen-ops against bare RQ), and of a process holding
an administrator's queue view over the million-job ledger.

Each measured process is a fresh interpreter (``bench.memory_child``) so that nothing of the benchmark
itself is counted; peak RSS is the kernel's high-water mark of that process's memory (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from . import ledger
from .common import bench_hub, check, flush

ROOT = Path(__file__).resolve().parent.parent


def child(*args: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory_child", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    readings = [v for k, v in result.items() if k in ("start", "end", "connected", "opened", "paged", "detail")]
    # A peak below a reading taken on the way means the peak was not this process's own.
    check(result["peak"] >= max(readings) - 0.5, f"peak RSS {result['peak']:.1f} MiB is below a reading: {result}")
    return result


def workers(redis_url: str, n: int) -> list[str]:
    rows = []
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    queue = Queue("rqbench-normal", connection=conn, serializer=JSONSerializer)
    queue.enqueue_many([Queue.prepare_data("bench.rq_tasks.noop", args=(i,), result_ttl=0) for i in range(n)])
    conn.close()
    r = child("rq-worker", redis_url, str(n))
    check(r["left"] == 0, f"bare RQ left {r['left']} jobs")
    rows.append(f"| bare RQ SimpleWorker | {r['start']:.0f} | {r['end']:.0f} | {r['peak']:.0f} |")
    for cls in ("simple", "fork"):
        flush(redis_url)
        with tempfile.TemporaryDirectory(prefix="sgen-bench-m-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
            hub = bench_hub(redis_url, url, tmp)
            hub.enqueue_many("bench.noop", [{"i": i} for i in range(n)])
            r = child("sgen-worker", url, redis_url, str(n), cls)
            check(r["left"] == 0, f"sgen-ops left {r['left']} deliveries")
            with hub.ledger.read() as session:
                from sqlalchemy import func, select

                from sgen_ops.ledger.store import Job

                done = session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded"))
            check(done == n, f"sgen-ops: {done} of {n} jobs succeeded")
            hub.close()
        what = "sgen-ops worker (simple)" if cls == "simple" else "sgen-ops worker (fork): the parent"
        rows.append(f"| {what} | {r['start']:.0f} | {r['end']:.0f} | {r['peak']:.0f} |")
    for row in rows:
        print(row, flush=True)
    return rows


def view_row(backend: str, url: str, info: ledger.Generated, redis_url: str) -> str:
    r = child("view", url, redis_url, info.anchor.isoformat())
    check(r.get("total") is not None and r["total"] > 0, f"the view read no jobs: {r}")
    check(
        r.get("filtered_total") == info.states["dead-letter"],
        f"the view's dead-letter total {r.get('filtered_total')} != {info.states['dead-letter']}",
    )
    row = (
        f"| {backend} | {r['kind']} | {r['connected']:.0f} | {r.get('opened', r['paged']):.0f} | "
        f"{r['paged']:.0f} | {r['detail']:.0f} | {r['peak']:.0f} |"
    )
    print(row, flush=True)
    return row


def run(redis_url: str, args: argparse.Namespace) -> str:
    n = args.n
    lines = [
        f"### Worker memory after {n:,} no-op jobs (MiB; SQLite ledger)",
        "",
        "| process | RSS at start | RSS at end | peak RSS |",
        "|---|---|---|---|",
    ]
    lines += workers(redis_url, n)
    lines += [
        "",
        f"### A process holding the queue view over the {args.ledger_jobs:,}-job ledger (MiB)",
        "",
        "Connected = after `sgen_ops.connect` + `as_operator`; opened = the view built (first page, "
        "throughput line); paged = three more pages; detail = a state filter applied and one job's detail "
        "opened.",
        "",
        "| ledger | view | connected | opened | paged | detail | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
        url, info, _ = ledger.sqlite_ledger(args.ledger_jobs, Path(tmp))
        lines.append(view_row("SQLite", url, info, redis_url))
    if args.postgres:
        url, info, _ = ledger.postgres_ledger(args.postgres, args.ledger_jobs)
        lines.append(view_row("PostgreSQL", url, info, redis_url))
    return "\n".join(lines)
