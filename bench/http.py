"""The HTTP API at a million jobs beside a bare yardstick (``bench/yardstick.py``), in one run.

``sgen-ops serve --workers 2`` and the yardstick (uvicorn, 2 workers) run side by side on the same ledger.
Latency: one client with a kept-alive connection; each call in process (through ``Operations``), then over
HTTP, then to the yardstick, interleaved so that drift of the shared machine hits all three alike;
``--http-repeats`` of each after a warm-up. Requests per second: ``--http-clients`` concurrent clients
(asyncio, one connection each) for ``--http-seconds``, ours and the yardstick's alternated three times, the
median taken; the clients run on the same cores as the servers. Every answer is checked.

The load run (``bench.load``) is beside it: 32 clients for 60 s of mixed reads and a few writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.ledger.store import Job

from . import ledger
from .common import check, median, percentile, sqlalchemy_url

ACCOUNT = "acme"
WORKERS = 2
EDITOR = "bench-acme-editor"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _started(proc: subprocess.Popen[bytes], log: Path, probe: str, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        check(proc.poll() is None, f"{what} exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(probe, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{what} did not answer in 120 s")


def serve(url: str, redis_url: str, home: str) -> tuple[subprocess.Popen[bytes], str]:
    """``sgen-ops serve --workers 2`` on the ledger, once it answers."""
    port = _free_port()
    env = {**os.environ, "SGEN_OPS_DATABASE_URL": url, "SGEN_OPS_REDIS_URL": redis_url, "SGEN_OPS_HOME": home,
           "SGEN_OPS_TASK_MODULES": "worker.catalog", "SGEN_OPS_QUEUE_PREFIX": "hbench"}
    log = Path(home) / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgen_ops.cli", "--log-level", "WARNING", "serve", "--port", str(port),
         "--workers", str(WORKERS)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    _started(proc, log, f"{base}/healthz", "sgen-ops serve")
    return proc, base


def yardstick(url: str, home: str) -> tuple[subprocess.Popen[bytes], str]:
    """The bare yardstick under uvicorn with as many workers, once it answers."""
    port = _free_port()
    log = Path(home) / "yardstick.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.yardstick:app", "--port", str(port), "--workers", str(WORKERS),
         "--log-level", "warning", "--no-access-log"],
        env={**os.environ, "SGEN_BENCH_YARDSTICK_URL": url}, cwd=ROOT, stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    _started(proc, log, f"{base}/api/jobs/1", "the yardstick")
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def interleaved(calls: list[Callable[[int], Any]], repeats: int) -> list[list[float]]:
    """Each call ``repeats`` times (after five unmeasured), one after the other: ms each."""
    for k in range(5):
        for call in calls:
            call(k)
    times: list[list[float]] = [[] for _ in calls]
    for k in range(repeats):
        for call, spent in zip(calls, times, strict=True):
            start = time.perf_counter()
            call(k)
            spent.append((time.perf_counter() - start) * 1000)
    return times


async def _rate(base: str, token: str, paths: list[str], clients: int, seconds: float) -> float:
    """Answers per second from ``clients`` concurrent clients sending for ``seconds``."""
    errors: list[str] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                     timeout=60) as http:
            k = n
            while time.perf_counter() < deadline:
                answer = await http.get(paths[k % len(paths)])
                k += clients
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")
                done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    check(not errors, f"{len(errors)} requests failed: {errors[:3]}")
    return done / (time.perf_counter() - start)


def rate_side_by_side(ours: str, theirs: str, token: str, paths: list[str], args: argparse.Namespace) -> tuple[
        float, float]:
    """Median answers per second of ours and the yardstick's, alternated three times."""
    mine, bare = [], []
    for _ in range(3):
        mine.append(asyncio.run(_rate(ours, token, paths, args.http_clients, args.http_seconds)))
        bare.append(asyncio.run(_rate(theirs, token, paths, args.http_clients, args.http_seconds)))
    return median(mine), median(bare)


def section(backend: str, url: str, redis_url: str, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    """The latency and requests-per-second tables of one backend; and the figures, for the 1M/4M ratios."""
    repeats = args.http_repeats
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sgen-bench-http-") as home:
        hub = sgen_ops.connect(database_url=url, redis_url=redis_url, home=home, task_modules="worker.catalog",
                               queue_prefix="hbench")
        with hub.ledger.read() as session:
            ids = list(session.scalars(select(Job.id).where(Job.account == ACCOUNT).order_by(func.random())
                                       .limit(500)))
        check(len(ids) == 500, "the ledger lacks the account's jobs")
        with contextlib.suppress(sgen_ops.ValidationError):  # made by an earlier run on a kept ledger
            hub.add_operator(EDITOR, "editor", account=ACCOUNT)
        admin, editor = hub.as_operator("bench-admin"), hub.as_operator(EDITOR)
        scoped = admin.within(ACCOUNT)
        tokens = {"admin": hub.create_token("bench-admin"), "editor": hub.create_token(EDITOR)}
        ours_proc, ours = serve(url, redis_url, home)
        bare_proc, bare = yardstick(sqlalchemy_url(url), home)
        try:
            clients = {(who, where): httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens[who]}"},
                                                  timeout=60)
                       for who in tokens for where, base in (("ours", ours), ("bare", bare))}

            def detail(ops: Any, who: str) -> list[Callable[[int], Any]]:
                def local(k: int) -> None:
                    check(ops.get_job(ids[k % len(ids)]).id == ids[k % len(ids)], "in process: wrong job")

                def over(where: str) -> Callable[[int], None]:
                    def call(k: int) -> None:
                        answer = clients[(who, where)].get(f"/api/jobs/{ids[k % len(ids)]}")
                        check(answer.status_code == 200 and answer.json()["id"] == ids[k % len(ids)],
                              f"{where}: wrong job: {answer.status_code} {answer.text[:200]}")
                    return call

                return [local, over("ours"), over("bare")]

            def first_page(ops: Any, who: str) -> list[Callable[[int], Any]]:
                def local(k: int) -> None:
                    page = ops.list_jobs()
                    check(len(page.items) == 50 and {r.account for r in page.items} == {ACCOUNT}, "in process: page")

                def over(where: str) -> Callable[[int], None]:
                    def call(k: int) -> None:
                        answer = clients[(who, where)].get(f"/api/accounts/{ACCOUNT}/jobs")
                        check(answer.status_code == 200 and len(answer.json()["items"]) == 50,
                              f"{where}: page: {answer.status_code} {answer.text[:200]}")
                    return call

                return [local, over("ours"), over("bare")]

            rows = []
            for key, name, calls in (
                ("detail", "`GET /api/jobs/{id}` (administrator)", detail(admin, "admin")),
                ("detail_masked", "`GET /api/jobs/{id}` (editor of acme: masked, logged)", detail(editor, "editor")),
                ("page", f"`GET /api/accounts/{ACCOUNT}/jobs`, first page (administrator)",
                 first_page(scoped, "admin")),
                ("page_bound", f"`GET /api/accounts/{ACCOUNT}/jobs`, first page (editor bound to {ACCOUNT})",
                 first_page(editor, "editor")),
            ):
                local, http, yard = interleaved(calls, repeats)
                added = median(http) - median(local)
                figures.update({f"{key}_local": median(local), f"{key}_http": median(http),
                                f"{key}_http_p95": percentile(http, 95), f"{key}_bare": median(yard)})
                rows.append(
                    f"| {name} | {median(local):.2f} / {percentile(local, 95):.2f} | "
                    f"{median(http):.2f} / {percentile(http, 95):.2f} | {median(yard):.2f} / {percentile(yard, 95):.2f}"
                    f" | {added:+.2f} {'' if added <= 1.0 else '**(> 1 ms)**'} | {median(http) / median(yard):.2f}x |"
                )
                print(f"    {rows[-1]}", flush=True)
            masking = figures["detail_masked_local"] / figures["detail_local"]
            paths = [f"/api/jobs/{i}" for i in ids]
            get_ours, get_bare = rate_side_by_side(ours, bare, tokens["admin"], paths, args)
            page_ours, page_bare = rate_side_by_side(ours, bare, tokens["admin"], [f"/api/accounts/{ACCOUNT}/jobs"],
                                                     args)
            figures.update({"rps_detail": get_ours, "rps_detail_bare": get_bare, "rps_page": page_ours,
                            "rps_page_bare": page_bare, "masking": masking})
            for client in clients.values():
                client.close()
        finally:
            stop(ours_proc)
            stop(bare_proc)
            hub.close()
    table = "\n".join([
        f"### {backend}, {args.ledger_jobs:,} jobs: in process, over HTTP, and the bare yardstick "
        f"({WORKERS} uvicorn workers each)",
        "",
        f"{repeats} calls each, interleaved, warm; ms (p50 / p95).",
        "",
        "| call | in process | HTTP (`sgen-ops serve`) | yardstick | HTTP adds at p50 (target <= 1 ms) | "
        "HTTP / yardstick |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Masking for a non-administrator, in process: the editor's detail read takes **{masking:.2f}x** the "
        "administrator's (target <= 1.20x; its Activity Log entry goes in the next batch of views).",
        "",
        f"Requests per second, {args.http_clients} concurrent clients for {args.http_seconds:.0f} s, alternated 3 "
        "times (median), on the same 2 cores:",
        "",
        "| endpoint | `sgen-ops serve` | yardstick | ratio (target >= 0.8) |",
        "|---|---|---|---|",
        f"| `GET /api/jobs/{{id}}` | {get_ours:,.0f}/s | {get_bare:,.0f}/s | **{get_ours / get_bare:.2f}x** |",
        f"| `GET /api/accounts/{ACCOUNT}/jobs` | {page_ours:,.0f}/s | {page_bare:,.0f}/s | "
        f"{page_ours / page_bare:.2f}x |",
    ])
    return table, figures


def run(redis_url: str, args: argparse.Namespace) -> str:
    random.seed(7)
    parts = []
    sizes = args.ledger_sizes
    for backend in ("SQLite", "PostgreSQL"):
        if backend == "PostgreSQL" and not args.postgres:
            continue
        figures_by_size: dict[int, dict[str, float]] = {}
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
                if backend == "SQLite":
                    url, _, _ = ledger.sqlite_ledger(n, Path(tmp))
                else:
                    url, _, _ = ledger.postgres_ledger(args.postgres, n)
                print(f"  {backend}, {n:,} jobs", flush=True)
                args.ledger_jobs = n
                table, figures_by_size[n] = section(backend, url, redis_url, args)
                parts.append(table)
        if len(sizes) > 1:
            parts.append(ratios(backend, figures_by_size))
    return "\n\n".join(parts)


def ratios(backend: str, figures: dict[int, dict[str, float]]) -> str:
    """Each figure at the bigger ledgers as a ratio to the first (target <= 1.25 for latencies)."""
    base, *rest = sorted(figures)
    keys = [k for k in figures[base] if k.endswith(("_local", "_http"))]
    head = " | ".join(f"{n:,} / {base:,}" for n in rest)
    lines = [f"### {backend}: HTTP figures at {', '.join(f'{n:,}' for n in rest)} jobs as ratios to {base:,}",
             "", f"| figure (p50) | {head} |", "|---|" + "---|" * len(rest)]
    lines += [f"| {k} | " + " | ".join(f"{figures[n][k] / figures[base][k]:.2f}x" for n in rest) + " |"
              for k in keys]
    return "\n".join(lines)
