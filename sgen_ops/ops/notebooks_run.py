"""Execute the operator notebooks and the runbooks (dry runs) headless, as ``make demo HEADLESS=1`` does."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_event_loop

from ..errors import SgenOpsError
from . import runbooks

NOTEBOOKS = runbooks.RUNBOOKS.parent


def notebooks() -> list[Path]:
    """The operator notebooks (not the runbooks), in order."""
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def notebook_parameters(notebook: Path, reports: Path) -> dict[str, Any]:
    """The parameters of an operator notebook for a headless run: what it exports goes under ``reports``, not
    beside the notebook."""
    import papermill

    return {"export_dir": str(reports)} if "export_dir" in papermill.inspect_notebook(str(notebook)) else {}


def dry_run_parameters(name: str, reports: Path, operator: str) -> dict[str, Any]:
    """The parameters of runbook ``name`` for a headless run: dry runs (never a change), artifacts under
    ``reports``."""
    params: dict[str, Any] = {}
    declared = runbooks.parameters(name)
    if "dry_run" in declared:
        params["dry_run"] = True
    if "output_dir" in declared:
        params["output_dir"] = str(reports / name)
    if "operator" in declared:
        params["operator"] = operator
    return runbooks.resolve_parameters(name, params, declared)


def execute_all(home: Path, *, operator: str, parallel: int | None = None, reports: Path | None = None) -> int:
    """Every notebook under notebooks/ and every runbook (as a dry run) into ``home/reports``.

    Kernels inherit this process's environment with ``SGEN_OPS_HOME`` and ``SGEN_OPS_OPERATOR`` added (this
    process's own environment is left as it was); with ``SGEN_OPS_API_URL`` and a token in the environment,
    the notebooks are the API's clients.
    ``parallel`` kernels run at once (default: the CPU count, at most 4). Prints one line per notebook;
    returns 0 only if every cell of every notebook ran. Executed copies go to ``reports`` (default
    ``home/reports``).
    """
    reports = reports or home / "reports"
    kernel_env = {"SGEN_OPS_HOME": str(home), "SGEN_OPS_OPERATOR": operator}
    jobs: list[tuple[str, Path, Path, dict[str, Any]]] = [
        (nb.name, nb, reports / nb.name, notebook_parameters(nb, reports)) for nb in notebooks()
    ]
    for name in runbooks.available():
        label = f"runbooks/{name}.ipynb"
        try:
            params = dry_run_parameters(name, reports, operator)
        except SgenOpsError as exc:
            print(f"FAILED  {label}: {exc}")
            return 1
        jobs.append((label, runbooks.path_of(name), reports / label, params))

    def execute(label: str, notebook: Path, output: Path, params: dict[str, Any]) -> str | None:
        started = time.monotonic()
        try:
            runbooks.execute(notebook, output, params, env=kernel_env)
        except Exception as exc:  # noqa: BLE001 - report every failing notebook (a dead kernel too), not the first
            print(f"FAILED  {label}: {type(exc).__name__}: {exc}", flush=True)
            return label
        finally:
            # nbclient runs each thread's kernel client on an event loop of that thread: close it with the thread.
            loop = ensure_event_loop()
            asyncio.set_event_loop(None)
            loop.close()
        print(f"ok      {label} ({time.monotonic() - started:.1f}s)", flush=True)
        return None

    workers = parallel or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notebook") as pool:
        failures = [f for f in pool.map(lambda job: execute(*job), jobs) if f]
    print(f"{len(jobs) - len(failures)} of {len(jobs)} notebooks ran; executed copies in {reports}")
    return 1 if failures else 0
