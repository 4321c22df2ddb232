"""One measured process of the memory benchmark: ``python -m bench.memory_child MODE ...`` prints JSON.

Modes: ``rq-worker REDIS_URL N`` (bare RQ SimpleWorker over N queued jobs), ``sgen-worker DB_URL
REDIS_URL N CLASS`` (sgen-ops' worker over N queued jobs), ``view DB_URL REDIS_URL ANCHOR`` (an
administrator's queue view over a big ledger: the view, three pages, a filter, the detail of a job).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def peak_mib() -> float:
    """This process's own peak RSS: VmHWM, the high-water mark of its address space.

    Not ``getrusage().ru_maxrss``: Linux carries that across fork and exec, so a child started by a big
    parent reports the parent's size at the fork (every process here read 80 MiB, the benchmark's own)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS cannot be measured on this system")


def rq_worker(redis_url: str, n: int) -> dict[str, Any]:
    import logging

    import redis
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    logging.getLogger("rq").setLevel(logging.WARNING)
    conn = redis.Redis.from_url(redis_url)
    queues = [Queue(f"rqbench-{p}", connection=conn, serializer=JSONSerializer) for p in ("high", "normal", "low")]
    start = rss_mib()
    SimpleWorker(queues, connection=conn, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
    left = sum(q.count for q in queues)
    return {"start": start, "end": rss_mib(), "peak": peak_mib(), "left": left}


def sgen_worker(db_url: str, redis_url: str, n: int, worker_class: str) -> dict[str, Any]:
    import tempfile

    import sgen_ops

    with tempfile.TemporaryDirectory() as home:
        hub = sgen_ops.connect(
            database_url=db_url, redis_url=redis_url, home=home, task_modules="bench.tasks", queue_prefix="bench"
        )
        start = rss_mib()
        hub.work(burst=True, worker_class=worker_class)
        left = hub.transport.waiting()
        hub.close()
    return {"start": start, "end": rss_mib(), "peak": peak_mib(), "left": left}


def view(db_url: str, redis_url: str, anchor: str) -> dict[str, Any]:
    import tempfile
    from datetime import datetime

    import sgen_ops

    from . import ledger

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home, ledger.clock(datetime.fromisoformat(anchor)):
        hub = sgen_ops.connect(
            database_url=db_url, redis_url=redis_url, home=home, task_modules="worker.catalog", queue_prefix="mbench"
        )
        ops = hub.as_operator("bench-admin")
        out["connected"] = rss_mib()
        try:
            from sgen_ops.ui import QueueView
        except ImportError:
            QueueView = None
        if QueueView is not None:
            v = QueueView(ops)
            out["kind"] = "sgen_ops.ui.QueueView(ops)"
            out["opened"] = rss_mib()
            page = v.job_page
            out["total"] = page.total if page is not None else None
            for p in (2, 3, 4):
                v.go(p)
            out["paged"] = rss_mib()
            v.state_filter.value = ("dead-letter",)
            v.apply()
            out["filtered_total"] = v.job_page.total if v.job_page is not None else None
            first = v.job_page.items[0].id if v.job_page is not None and v.job_page.items else None
            if first is not None:
                v.rows.value = (first,)
                v.open_detail()
            out["detail"] = rss_mib()
        else:
            out["kind"] = "list_jobs page + to_frame (no QueueView)"
            page = ops.list_jobs(per_page=25)
            frames = [page.to_frame()]
            out["total"] = page.total
            for p in (2, 3, 4):
                frames.append(ops.list_jobs(page=p, per_page=25).to_frame())
            out["paged"] = rss_mib()
            dl = ops.list_jobs(state="dead-letter", per_page=25)
            out["filtered_total"] = dl.total
            ops.get_job(dl.items[0].id)
            out["detail"] = rss_mib()
        hub.close()
    out["peak"] = peak_mib()
    return out


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "rq-worker":
        result = rq_worker(args[0], int(args[1]))
    elif mode == "sgen-worker":
        result = sgen_worker(args[0], args[1], int(args[2]), args[3])
    elif mode == "view":
        result = view(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
