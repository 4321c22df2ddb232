"""``python -m bench.startup [--runs N]``: what a worker process spends before its first job on importing the
worker and loading its settings (pydantic-settings), in CPU seconds of fresh interpreters, interleaved.

Prints the median and the minimum of: the interpreter alone, ``import sgen_ops.runtime.workers``, and that
import followed by ``load_settings()`` (the difference is what reading and checking the settings costs).
``--pythonpath DIR`` runs the same against another tree (an older checkout) for a before/after.

``--processes``: whole processes side by side with RQ's (issue 25), interleaved, wall-clock medians:
``sgen-ops --version`` against ``rq --help``, ``sgen-ops worker --help`` against ``rq worker --help``, and the
peak RSS (VmHWM) of an idle worker's process (``sgen-ops worker --concurrency 1`` on a SQLite ledger against
``rq worker -w rq.worker.SimpleWorker``, same private Redis) a few seconds after it listens. The worker's start
to its first job is ``bench.workers``' "spawn to first job" column.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "interpreter": "pass",
    "import the worker": "import sgen_ops.runtime.workers",
    "import + load_settings()": "import sgen_ops.runtime.workers\nfrom sgen_ops.config import load_settings\n"
                                "load_settings()",
}


def cpu_seconds(code: str, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.sep)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


BIN = Path(sys.executable).parent
COMMANDS = (
    (("sgen-ops", "--version"), ("rq", "--help")),
    (("sgen-ops", "worker", "--help"), ("rq", "worker", "--help")),
)
RQ_QUEUES = ("rqbench-high", "rqbench-normal", "rqbench-low")


def wall_seconds(argv: tuple[str, ...], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / argv[0]), *argv[1:]], check=True, env=env, cwd=os.sep, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def idle_peak_rss(argv: list[str], env: dict[str, str], cwd: Path, settle: float = 3.0) -> float:
    """MiB: the peak RSS of a worker's own process, ``settle`` seconds after it says it listens."""
    log = cwd / f"{Path(argv[0]).name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Listening on" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        time.sleep(settle)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return kib / 1024
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def processes(runs: int, env: dict[str, str]) -> None:
    from .common import bench_hub, private_redis
    from .workers import _sgen_env

    rows = []
    for ours, theirs in COMMANDS:
        a, b = [], []
        for _ in range(runs):
            a.append(wall_seconds(ours, env))
            b.append(wall_seconds(theirs, env))
        rows.append((" ".join(ours), statistics.median(a), " ".join(theirs), statistics.median(b), "s"))
    with private_redis() as redis_url, tempfile.TemporaryDirectory(prefix="sgen-bench-startup-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        bench_hub(redis_url, database_url, tmp).close()
        sgen_env = _sgen_env(tmp, database_url, redis_url)
        rq = [str(BIN / "rq"), "worker", "-w", "rq.worker.SimpleWorker", "-u", redis_url, "-S", "json", *RQ_QUEUES]
        a, b = [], []
        for _ in range(max(1, runs // 4)):
            a.append(idle_peak_rss([str(BIN / "sgen-ops"), "worker", "--concurrency", "1"], sgen_env, Path(tmp)))
            b.append(idle_peak_rss(rq, env, Path(tmp)))
        rows.append(("sgen-ops worker --concurrency 1, idle", statistics.median(a), "rq worker -w SimpleWorker, idle",
                     statistics.median(b), "MiB"))
    print("| sgen-ops | median | RQ | median | ratio |\n|---|---|---|---|---|")
    for ours_name, ours_v, theirs_name, theirs_v, unit in rows:
        print(f"| `{ours_name}` | {ours_v:.2f} {unit} | `{theirs_name}` | {theirs_v:.2f} {unit} "
              f"| {ours_v / theirs_v:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pythonpath", default=None, help="an sgen_ops tree to measure instead of this one")
    parser.add_argument("--processes", action="store_true", help="whole processes against RQ's (see above)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGEN_OPS_")}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    if args.processes:
        processes(args.runs, env)
        return
    found: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            found[name].append(cpu_seconds(code, env))
    for name, times in found.items():
        print(f"{name:28} median {statistics.median(times):.3f} s  min {min(times):.3f} s  ({args.runs} runs, CPU)")


if __name__ == "__main__":
    main()
