"""Shared benchmark plumbing: a private Redis, timing, medians, the machine, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

import sgen_ops
from sgen_ops.embedded import start_redis_server, stop_process

RESULTS = Path(__file__).with_name("RESULTS.md")


class BenchmarkError(AssertionError):
    """What was measured is wrong (jobs lost, counts off): no time is reported for broken work."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchmarkError(message)


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the benchmark's own, so every compared system uses the same one."""
    with tempfile.TemporaryDirectory(prefix="sgen-bench-redis-") as tmp:
        url, pid = start_redis_server(Path(tmp))
        try:
            yield url
        finally:
            stop_process(pid)


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL for SQLAlchemy with the psycopg (3) driver, which is the one installed."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def bench_hub(redis_url: str, database_url: str, home: str | Path) -> sgen_ops.Hub:
    """A hub for the bench.tasks no-op on the given ledger, schema brought to head."""
    return sgen_ops.connect(
        database_url=database_url,
        redis_url=redis_url,
        home=home,
        task_modules="bench.tasks",
        auto_upgrade=True,
        queue_prefix="bench",
    )


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import rq
    import sqlalchemy

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, "
        f"RQ {rq.__version__}, redis-py {redis.__version__}, SQLAlchemy {sqlalchemy.__version__}; "
        f"load average at the start {load} (a shared machine: more than the core count means other work ran)"
    )


def record(section: str, markdown: str) -> None:
    """Replace (or add) one benchmark's section of bench/RESULTS.md."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
