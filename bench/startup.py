"""``python -m bench.startup [--runs N]``: what a worker process spends before its first job on importing the
worker and loading its settings (pydantic-settings), in CPU seconds of fresh interpreters, interleaved.

Prints the median and the minimum of: the interpreter alone, ``import sgen_ops.runtime.workers``, and that
import followed by ``load_settings()`` (the difference is what reading and checking the settings costs).
``--pythonpath DIR`` runs the same against another tree (an older checkout) for a before/after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys

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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pythonpath", default=None, help="an sgen_ops tree to measure instead of this one")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGEN_OPS_")}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    found: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            found[name].append(cpu_seconds(code, env))
    for name, times in found.items():
        print(f"{name:28} median {statistics.median(times):.3f} s  min {min(times):.3f} s  ({args.runs} runs, CPU)")


if __name__ == "__main__":
    main()
