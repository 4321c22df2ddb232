"""The HTTP API at a million jobs: ``GET /api/jobs/{id}`` and the first page of ``GET /api/accounts/{a}/jobs``
over HTTP against ``sgen-ops serve --workers 2`` (uvicorn), beside the same call in process through
``Operations``, and requests per second with several clients at once.

Latency: one client with a kept-alive connection, each HTTP call interleaved with the same call in process
(so drift of the shared machine hits both alike), ``--http-repeats`` of each after a warm-up. Throughput:
``--http-clients`` threads each sending their share of ``--http-requests`` (the clients run on the same two
cores as the server, so this is a floor). Every answer is checked: the job asked for, a full page of the
account's jobs with the same total as in process.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.ledger.store import Job

from . import ledger
from .common import check, median, percentile

ACCOUNT = "acme"
TARGET_P95_MS = 50.0
TARGET_OVERHEAD_MS = 2.0
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, redis_url: str, home: str) -> tuple[subprocess.Popen[bytes], str]:
    """``sgen-ops serve --workers 2`` on the ledger, once it answers."""
    port = _free_port()
    env = {**os.environ, "SGEN_OPS_DATABASE_URL": url, "SGEN_OPS_REDIS_URL": redis_url, "SGEN_OPS_HOME": home,
           "SGEN_OPS_TASK_MODULES": "worker.catalog", "SGEN_OPS_QUEUE_PREFIX": "hbench"}
    log = open(Path(home) / "serve.log", "wb")  # noqa: SIM115 - the server's whole life
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgen_ops.cli", "--log-level", "WARNING", "serve", "--port", str(port),
         "--workers", str(WORKERS)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        check(proc.poll() is None, f"sgen-ops serve exited: {(Path(home) / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("sgen-ops serve did not answer in 120 s")


def interleaved(local: Callable[[int], Any], remote: Callable[[int], Any], repeats: int) -> tuple[list[float], ...]:
    for k in range(5):
        local(k)
        remote(k)
    ours, theirs = [], []
    for k in range(repeats):
        start = time.perf_counter()
        local(k)
        ours.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        remote(k)
        theirs.append((time.perf_counter() - start) * 1000)
    return ours, theirs


def rate(base: str, token: str, paths: list[str], clients: int, total: int) -> float:
    """Requests per second with ``clients`` threads sending ``total`` requests between them."""
    errors: list[str] = []
    share = total // clients

    def client(n: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            for k in range(share):
                answer = http.get(paths[(n * share + k) % len(paths)])
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    check(not errors, f"{len(errors)} requests failed: {errors[:3]}")
    return share * clients / took


def section(backend: str, url: str, redis_url: str, args: argparse.Namespace) -> str:
    repeats, requests, clients = args.http_repeats, args.http_requests, args.http_clients
    with tempfile.TemporaryDirectory(prefix="sgen-bench-http-") as home:
        hub = sgen_ops.connect(database_url=url, redis_url=redis_url, home=home, task_modules="worker.catalog",
                               queue_prefix="hbench")
        admin = hub.as_operator("bench-admin")
        scoped = admin.within(ACCOUNT)
        with hub.ledger.read() as session:
            ids = list(session.scalars(select(Job.id).order_by(func.random()).limit(500)))
        token = hub.create_token("bench-admin")
        proc, base = serve(url, redis_url, home)
        try:
            http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            total = scoped.list_jobs().total

            def get_local(k: int) -> None:
                check(admin.get_job(ids[k % len(ids)]).id == ids[k % len(ids)], "in process: wrong job")

            def get_remote(k: int) -> None:
                answer = http.get(f"/api/jobs/{ids[k % len(ids)]}")
                check(answer.status_code == 200 and answer.json()["id"] == ids[k % len(ids)], "HTTP: wrong job")

            last = {"total": total}

            def list_local(k: int) -> None:
                page = scoped.list_jobs()
                check(len(page.items) == 50 and {r.account for r in page.items} == {ACCOUNT}, "in process: page")
                last["total"] = page.total

            def list_remote(k: int) -> None:
                answer = http.get(f"/api/accounts/{ACCOUNT}/jobs").json()
                # The same total as the call in process just before (succeeded jobs leave the default view
                # as the retention window moves on, a few a minute).
                check(len(answer["items"]) == 50 and abs(answer["total"] - last["total"]) <= 5,
                      f"HTTP: page of {len(answer['items'])}, total {answer['total']} against {last['total']}")

            rows = []
            for name, local, remote in (
                ("GET /api/jobs/{id} (administrator, random ids)", get_local, get_remote),
                (f"GET /api/accounts/{ACCOUNT}/jobs, first page (total {total:,})", list_local, list_remote),
            ):
                ours, theirs = interleaved(local, remote, repeats)
                added = median(theirs) - median(ours)
                met = percentile(theirs, 95) <= TARGET_P95_MS and added <= TARGET_OVERHEAD_MS
                rows.append(
                    f"| {name} | {median(ours):.1f} / {percentile(ours, 95):.1f} | "
                    f"{median(theirs):.1f} / {percentile(theirs, 95):.1f} | {added:+.1f} | "
                    f"{'yes' if met else '**no**'} |"
                )
                print(f"    {rows[-1]}", flush=True)
            get_rps = rate(base, token, [f"/api/jobs/{i}" for i in ids], clients, requests)
            list_rps = rate(base, token, [f"/api/accounts/{ACCOUNT}/jobs"], clients, requests // 4)
            http.close()
        finally:
            proc.terminate()
            proc.wait(30)
            hub.close()
    return "\n".join([
        f"### {backend}, {args.ledger_jobs:,} jobs: in process vs over HTTP ({WORKERS} uvicorn workers)",
        "",
        f"{repeats} calls each, interleaved, warm; ms.",
        "",
        "| call | in process p50 / p95 | HTTP p50 / p95 | HTTP adds at p50 | met (p95 <= 50, adds <= 2) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Requests per second, {clients} client threads on the same 2 cores: GET /api/jobs/{{id}} "
        f"**{get_rps:,.0f}**/s ({requests:,} requests); first page of the account's jobs **{list_rps:,.0f}**/s "
        f"({requests // 4:,} requests).",
    ])


def run(redis_url: str, args: argparse.Namespace) -> str:
    random.seed(7)
    n = args.ledger_jobs
    parts = []
    with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
        url, _, _ = ledger.sqlite_ledger(n, Path(tmp))
        print("  SQLite", flush=True)
        parts.append(section("SQLite", url, redis_url, args))
    if args.postgres:
        url, _, _ = ledger.postgres_ledger(args.postgres, n)
        print("  PostgreSQL", flush=True)
        parts.append(section("PostgreSQL", url, redis_url, args))
    return "\n\n".join(parts)
