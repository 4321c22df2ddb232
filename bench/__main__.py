"""``python -m bench [NAME ...] [--postgres URL] [--record]``: run benchmarks by hand.

Names: throughput enqueue queries triage memory http load workers archive (default: all). ``--postgres`` (or
``SGEN_OPS_BENCH_DATABASE_URL``) is a server URL: each benchmark makes its own databases there and drops
them at the end. ``--record`` writes each benchmark's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time

from .common import machine, private_redis, record

ALL = ("throughput", "enqueue", "queries", "triage", "memory", "http", "load", "workers", "archive")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=list(ALL), help=" ".join(ALL))
    parser.add_argument("--n", type=int, default=5000, help="jobs for throughput and the worker's memory")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of throughput and enqueue")
    parser.add_argument("--classes", default="simple,fork", help="worker classes for throughput")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per run of workers (whole processes)")
    parser.add_argument(
        "--latency-jobs", type=int, default=200, help="jobs of workers' enqueue -> start runs (0: none)"
    )
    parser.add_argument(
        "--worker-setups",
        default="simple:1,fork:1,simple:2,fork:2,prefork:1,prefork:2",
        help="worker class:processes for workers (prefork: --fork --horse-attempts 100)",
    )
    parser.add_argument(
        "--count-jobs",
        type=int,
        default=1000,
        help="jobs of workers' un-timed run per setup that counts SQL statements and commits (at most --jobs; 0: none)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SGEN_OPS_BENCH_DATABASE_URL"),
        help="PostgreSQL server URL to run the ledger benchmarks on as well (databases are made and dropped)",
    )
    parser.add_argument("--enqueue-single", type=int, default=2000, help="single enqueue calls")
    parser.add_argument("--enqueue-bulk", type=int, default=20_000, help="jobs in one bulk enqueue")
    parser.add_argument("--ledger-jobs", type=int, default=1_000_000, help="jobs in the generated ledger")
    parser.add_argument("--query-repeats", type=int, default=30, help="runs of each operator query")
    parser.add_argument("--rq-registry-jobs", type=int, default=100_000, help="jobs in RQ's FailedJobRegistry")
    parser.add_argument("--http-repeats", type=int, default=300, help="calls of each endpoint, in process and HTTP")
    parser.add_argument("--http-seconds", type=float, default=10.0, help="seconds of each requests-per-second run")
    parser.add_argument("--http-clients", type=int, default=8, help="concurrent clients of the requests-per-second run")
    parser.add_argument("--ledger-sizes", type=lambda v: [int(n) for n in v.split(",")], default=None,
                        help="ledger sizes of queries and http, e.g. 1000000,4000000 (default: --ledger-jobs); "
                        "figures past the first are also given as ratios to it")
    parser.add_argument("--load-clients", type=int, default=32, help="concurrent clients of the load run")
    parser.add_argument("--load-seconds", type=float, default=60.0, help="seconds of the load run")
    parser.add_argument(
        "--rollup-rounds", type=int, default=0,
        help="workers: interleaved rounds of a worker with and without a roll-up loop beside it (0: none)",
    )
    parser.add_argument(
        "--procrastinate-venv", default=None,
        help="workers, with --postgres: a venv with procrastinate and psycopg[binary], to run it beside RQ",
    )
    parser.add_argument("--keep-postgres", action="store_true", help="keep the generated PostgreSQL databases")
    parser.add_argument("--record", action="store_true", help="write the results into bench/RESULTS.md")
    parser.add_argument(
        "--label",
        default="",
        help="record under NAME:LABEL, beside earlier runs (workers: the label goes in its heading)",
    )
    args = parser.parse_args()
    args.ledger_sizes = args.ledger_sizes or [args.ledger_jobs]
    unknown = sorted(set(args.names) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ALL)}")
    print(machine(), flush=True)
    from . import ledger

    with private_redis() as redis_url:
        try:
            for name in args.names:
                start = time.perf_counter()
                out = importlib.import_module(f"bench.{name}").run(redis_url, args)
                took = time.perf_counter() - start
                out = f"{out}\n\n_Run time of this benchmark: {took / 60:.1f} min._"
                print(out, flush=True)
                if args.record:
                    record(f"{name}:{args.label}" if args.label else name, f"Machine: {machine()}\n\n{out}")
        finally:
            if args.postgres and not args.keep_postgres:
                ledger.cleanup(args.postgres)


if __name__ == "__main__":
    main()
