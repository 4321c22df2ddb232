"""``python -m bench.worker_exit [--runs N]``: seconds from the ledger showing a burst's last job done to the
exit of ``sgen-ops worker --burst``, at each concurrency and worker class, with the worker pool sgen-ops runs
(``PromptWorkerPool``, woken by a worker process's end) and with RQ's ``WorkerPool`` (which looks once a
second) swapped in, interleaved in one run on one embedded stack (SQLite ledger, its own Redis)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

import sgen_ops
from sgen_ops.embedded import stop_redis
from sgen_ops.ledger.store.models import Job

# The worker command with RQ's own pool in place of sgen-ops' (the "before").
WITH_RQ_POOL = (
    "import sys, rq.worker_pool, sgen_ops.runtime.workers as w\n"
    "w.PromptWorkerPool = rq.worker_pool.WorkerPool\n"
    "from sgen_ops.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
PROMPT = "import sys\nfrom sgen_ops.cli import main\nsys.exit(main(sys.argv[1:]))\n"
SETUPS = (("--concurrency", "2"), ("--concurrency", "4"), ("--concurrency", "2", "--fork"), ("--concurrency", "1"))


def exit_lag(hub: sgen_ops.Hub, env: dict[str, str], code: str, args: tuple[str, ...], jobs: int = 5) -> float:
    ids = [hub.enqueue("bench.noop", {"i": i}) for i in range(jobs)]
    worker = subprocess.Popen([sys.executable, "-c", code, "worker", "--burst", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    all_done = None
    try:
        while worker.poll() is None:
            if all_done is None:
                with hub.ledger.read() as session:
                    n = session.scalar(select(func.count()).where(Job.id.in_(ids), Job.state == "succeeded"))
                if n == len(ids):
                    all_done = time.monotonic()
            time.sleep(0.02)
    finally:
        if worker.poll() is None:  # the benchmark failed: no worker outlives it
            worker.kill()
            worker.wait()
    exited = time.monotonic()
    if worker.returncode != 0:
        raise SystemExit(f"the worker exited {worker.returncode}")
    return exited - (all_done or exited)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sgen-bench-exit-") as tmp:
        env = {**os.environ, "SGEN_OPS_HOME": str(Path(tmp) / "home"), "SGEN_OPS_TASK_MODULES": "bench.tasks",
               "SGEN_OPS_QUEUE_PREFIX": "bench-exit"}
        os.environ.update(env)
        import bench.tasks  # noqa: F401 - registers bench.noop in this process, for enqueue
        hub = sgen_ops.connect()
        try:
            lags: dict[tuple[str, tuple[str, ...]], list[float]] = {}
            for _ in range(args.runs):
                for setup in SETUPS:
                    for name, code in (("RQ's WorkerPool", WITH_RQ_POOL), ("PromptWorkerPool", PROMPT)):
                        lags.setdefault((name, setup), []).append(exit_lag(hub, env, code, setup))
        finally:
            hub.close()
            stop_redis(Path(env["SGEN_OPS_HOME"]))
    print(f"| setup | RQ's WorkerPool: median, max | PromptWorkerPool: median, max |  ({args.runs} runs each)")
    print("|---|---|---|")
    for setup in SETUPS:
        cells = [f"{statistics.median(lags[(n, setup)]):.2f} s, {max(lags[(n, setup)]):.2f} s"
                 for n in ("RQ's WorkerPool", "PromptWorkerPool")]
        print(f"| `{' '.join(setup)}` | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
