"""Load: ``--load-clients`` (32) concurrent clients for ``--load-seconds`` (60) against ``sgen-ops serve
--workers 2`` on a generated ledger, mixed as operators and integrations use the API: job details (an
administrator's and a masked editor's), the account's first page, searches (filters, a rare text), a deep
page by keyset, dead-letter groups, and a few writes (enqueues). Every answer must be 2xx; p50/p95/p99 per
kind are recorded, and the server's memory (its worker processes' resident sets, summed) every 5 s: flat
means the last sample within 10% of the one a third of the way in (connections opened, caches filled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
from sqlalchemy import delete, func, select

import sgen_ops
from sgen_ops.ledger.store import Job, JobEvent

from . import ledger
from .common import check, median, percentile
from .http import ACCOUNT, EDITOR, serve, stop

# (kind, weight): what each client's next request is, drawn at random.
MIX = (("detail", 30), ("detail masked", 15), ("first page", 20), ("search", 15), ("deep page", 8),
       ("dead-letter groups", 4), ("text search", 4), ("enqueue", 4))
SAMPLE_SECONDS = 5.0


def _rss_kib(pid: int) -> int:
    """The resident set of ``pid`` and its children (uvicorn's worker processes), KiB."""
    total = 0
    for proc in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found + [g for c in found for g in _children(c)]


async def _load(base: str, tokens: dict[str, str], ids: list[int], deep_after: int, rare: list[str],
                clients: int, seconds: float, pid: int) -> tuple[dict[str, list[float]], list[str], list[int]]:
    times: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    memory: list[int] = []
    deadline = time.perf_counter() + seconds
    kinds, weights = zip(*MIX, strict=True)

    async def client(n: int) -> None:
        rng = random.Random(n)
        headers = {who: {"Authorization": f"Bearer {token}"} for who, token in tokens.items()}
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            while time.perf_counter() < deadline:
                kind = rng.choices(kinds, weights)[0]
                who = "editor" if kind == "detail masked" else "admin"
                start = time.perf_counter()
                if kind.startswith("detail"):
                    answer = await http.get(f"/api/jobs/{rng.choice(ids)}", headers=headers[who])
                elif kind == "first page":
                    answer = await http.get(f"/api/accounts/{ACCOUNT}/jobs", headers=headers[who])
                elif kind == "search":
                    body = rng.choice([{"state": ["dead-letter"]}, {"task": ["webhook.dispatch"]},
                                       {"error_code": ["provider_timeout"]}, {"state": ["failed"], "per_page": 20}])
                    answer = await http.post(f"/api/accounts/{ACCOUNT}/jobs/search", json=body, headers=headers[who])
                elif kind == "deep page":
                    answer = await http.get(f"/api/accounts/{ACCOUNT}/jobs", params={"after_id": deep_after},
                                            headers=headers[who])
                elif kind == "dead-letter groups":
                    answer = await http.get(f"/api/accounts/{ACCOUNT}/dead-letters/groups", headers=headers[who])
                elif kind == "text search":
                    answer = await http.post(f"/api/accounts/{ACCOUNT}/jobs/search", json={"text": rng.choice(rare)},
                                             headers=headers[who])
                else:
                    answer = await http.post(f"/api/accounts/{ACCOUNT}/jobs", headers=headers[who],
                                             json={"task": "cache.warm", "payload": {"keys": ["home"]},
                                                   "delay": 86400})
                times[kind].append((time.perf_counter() - start) * 1000)
                if not 200 <= answer.status_code < 300:
                    errors.append(f"{kind}: {answer.status_code} {answer.text[:200]}")

    async def sample() -> None:
        while time.perf_counter() < deadline:
            memory.append(_rss_kib(pid))
            await asyncio.sleep(SAMPLE_SECONDS)
        memory.append(_rss_kib(pid))

    await asyncio.gather(sample(), *(client(n) for n in range(clients)))
    return times, errors, memory


def section(backend: str, url: str, info: ledger.Generated, redis_url: str, args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="sgen-bench-load-") as home:
        hub = sgen_ops.connect(database_url=url, redis_url=redis_url, home=home, task_modules="worker.catalog",
                               queue_prefix="hbench")
        with contextlib.suppress(sgen_ops.ValidationError):
            hub.add_operator(EDITOR, "editor", account=ACCOUNT)
        with hub.ledger.read() as session:
            ids = list(session.scalars(select(Job.id).where(Job.account == ACCOUNT).order_by(func.random())
                                       .limit(1000)))
        deep = hub.as_operator(EDITOR).list_jobs(per_page=10_000)
        tokens = {"admin": hub.create_token("bench-admin"), "editor": hub.create_token(EDITOR)}
        with hub.ledger.read() as session:
            last = int(session.scalar(select(func.max(Job.id))) or 0)
        proc, base = serve(url, redis_url, home)
        try:
            times, errors, memory = asyncio.run(_load(
                base, tokens, ids, deep.items[-1].id, info.rare_terms or ["timed out"], args.load_clients,
                args.load_seconds, proc.pid))
        finally:
            stop(proc)
            # The ledger goes back to what was generated (a kept one is checked against it when reused).
            with hub.ledger.write() as session:
                session.execute(delete(JobEvent).where(JobEvent.job_id > last))
                session.execute(delete(Job).where(Job.id > last))
            hub.close()
    check(not errors, f"{len(errors)} requests failed under load: {errors[:3]}")
    done = sum(len(t) for t in times.values())
    warm = memory[len(memory) // 3]  # after a third of the run: pools opened, caches filled
    flat = memory[-1] <= warm * 1.10
    rows = [f"| {kind} | {len(times[kind]):,} | {median(times[kind]):.1f} | {percentile(times[kind], 95):.1f} | "
            f"{percentile(times[kind], 99):.1f} |" for kind, _ in MIX if times[kind]]
    every = [t for kind in times for t in times[kind]]
    return "\n".join([
        f"### Load, {backend}, {args.ledger_jobs:,} jobs: {args.load_clients} clients for {args.load_seconds:.0f} s "
        f"against `sgen-ops serve --workers 2`",
        "",
        f"{done:,} requests ({done / args.load_seconds:,.0f}/s), **{len(errors)} errors**; every answer 2xx. "
        f"Latency in ms, as the clients saw it (they share the 2 cores with the server).",
        "",
        "| kind | requests | p50 | p95 | p99 |",
        "|---|---|---|---|---|",
        *rows,
        f"| **all** | {len(every):,} | {median(every):.1f} | {percentile(every, 95):.1f} | "
        f"**{percentile(every, 99):.1f}** |",
        "",
        f"Server memory (resident, both workers), every {SAMPLE_SECONDS:.0f} s: "
        + ", ".join(f"{m / 1024:.0f}" for m in memory) + " MiB; a third of the way in "
        f"{warm / 1024:.0f} MiB, at the end {memory[-1] / 1024:.0f} MiB: **{'flat' if flat else 'GREW'}**.",
    ])


def run(redis_url: str, args: argparse.Namespace) -> str:
    parts = []
    n = args.ledger_sizes[0]
    args.ledger_jobs = n
    with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
        url, info, _ = ledger.sqlite_ledger(n, Path(tmp))
        print("  SQLite", flush=True)
        parts.append(section("SQLite", url, info, redis_url, args))
    if args.postgres:
        url, info, _ = ledger.postgres_ledger(args.postgres, n)
        print("  PostgreSQL", flush=True)
        parts.append(section("PostgreSQL", url, info, redis_url, args))
    return "\n\n".join(parts)
