"""Redis commands per job: N no-op jobs through a burst worker on a private redis-server, counted from the
server's MONITOR (``redis-cli MONITOR``) while the worker runs (enqueueing is done before the watch starts).
Two figures per job: the commands the worker sent (a script call counting once) and every command Redis ran
(the commands a script runs included).

``python -m bench.redis_commands [--n 2000] [--worker-class simple|fork]``; prints a table row per class.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis
import rq
from sqlalchemy import func, select

from sgen_ops.ledger.store import Job

from .common import bench_hub, check, private_redis


def _parse(lines: list[str]) -> Counter[tuple[bool, str]]:
    """MONITOR's lines (``<time> [<db> <client>] "<command>" ...``) counted by (run by a script, name)."""
    seen: Counter[tuple[bool, str]] = Counter()
    for line in lines:
        if "] \"" not in line:
            continue
        head, rest = line.split("] ", 1)
        seen[(head.endswith(" lua"), rest.split(" ", 1)[0].strip('"').lower())] += 1
    return seen


def count(redis_url: str, n: int, worker_class: str) -> tuple[float, float, Counter[tuple[bool, str]]]:
    """(commands sent per job, commands run per job, the run's commands) for ``n`` jobs through a burst."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with tempfile.TemporaryDirectory(prefix="sgen-bench-") as tmp:
        hub = bench_hub(redis_url, f"sqlite:///{Path(tmp) / 'ledger.db'}", tmp)
        hub.enqueue_many("bench.noop", [{"i": i} for i in range(n)])
        out = Path(tmp) / "monitor.txt"
        with out.open("w") as sink:
            watcher = subprocess.Popen(["redis-cli", "-u", redis_url, "MONITOR"], stdout=sink)
            try:
                time.sleep(0.5)  # MONITOR is on before the worker starts
                hub.work(burst=True, worker_class=worker_class)
                time.sleep(0.5)
            finally:
                watcher.terminate()
                watcher.wait(10)
        seen = _parse(out.read_text().splitlines())
        with hub.ledger.read() as session:
            done = session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded"))
        check(done == n, f"{done} of {n} jobs succeeded")
        hub.close()
    client.close()
    sent = sum(v for (lua, _), v in seen.items() if not lua)
    return sent / n, sum(seen.values()) / n, seen


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_commands")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--worker-class", default="simple,fork")
    args = parser.parse_args()
    logging.getLogger("rq").setLevel(logging.WARNING)
    print(f"rq {rq.__version__}, {args.n} jobs per burst")
    with private_redis() as url:
        for cls in args.worker_class.split(","):
            sent, run, seen = count(url, args.n, cls)
            print(f"| {cls} | {sent:.2f} | {run:.2f} |", flush=True)
            for lua in (False, True):
                names = sorted((k, v) for (inner, k), v in seen.items() if inner == lua)
                print(f"  {'in scripts' if lua else 'sent'}: " + ", ".join(f"{k} {v}" for k, v in names))


if __name__ == "__main__":
    main()
