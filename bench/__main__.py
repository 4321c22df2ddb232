"""``python -m bench [NAME ...] [--record]``: run benchmarks by hand; --record writes bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os

from .common import machine, private_redis, record


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=["throughput"], help="throughput enqueue queries triage memory")
    parser.add_argument("--n", type=int, default=5000, help="jobs for throughput")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SGEN_OPS_BENCH_DATABASE_URL"),
        help="PostgreSQL URL to run the ledger benchmarks on as well",
    )
    parser.add_argument("--record", action="store_true", help="write the results into bench/RESULTS.md")
    args = parser.parse_args()
    print(machine())
    with private_redis() as redis_url:
        for name in args.names:
            if name == "throughput":
                from . import throughput

                parts = [throughput.run(redis_url, n=args.n, repeats=args.repeats)]
                if args.postgres:
                    parts.append(throughput.run(redis_url, n=args.n, repeats=args.repeats, database_url=args.postgres))
                out = "\n\n".join(parts)
            else:
                import importlib

                out = importlib.import_module(f"bench.{name}").run(redis_url, args)
            print(out)
            if args.record:
                record(name, f"Machine: {machine()}\n\n{out}")


if __name__ == "__main__":
    main()
