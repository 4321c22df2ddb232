"""Execute the operator notebooks and the runbooks (dry runs) headless, as ``make demo HEADLESS=1`` does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# Runbook parameters for a headless run: never change anything.
DRY_RUN_PARAMETERS: dict[str, dict[str, Any]] = {
    "replay_dead_letters": {"dry_run": True},
    "purge_succeeded": {"dry_run": True},
    "throughput_report": {},
}


def execute(notebook: Path, output: Path, parameters: dict[str, Any] | None = None) -> None:
    """Run one notebook with papermill into ``output``; raises if a cell fails."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters or {},
        cwd=str(notebook.parent),
        progress_bar=False,
        kernel_name="python3",
    )


def execute_all(home: Path, *, operator: str) -> int:
    """Every notebook under notebooks/ (runbooks as dry runs) into home/reports; 0 only if all ran."""
    reports = home / "reports"
    os.environ["SGEN_OPS_HOME"] = str(home)
    os.environ["SGEN_OPS_OPERATOR"] = operator
    failures = []
    ran = 0
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        if notebook.name == "app.ipynb":
            continue
        ran += 1
        try:
            execute(notebook, reports / notebook.name)
            print(f"ok      {notebook.name}")
        except Exception as exc:  # noqa: BLE001 - report every failing notebook, not just the first
            failures.append(notebook.name)
            print(f"FAILED  {notebook.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    for notebook in sorted((NOTEBOOKS / "runbooks").glob("*.ipynb")):
        ran += 1
        params = dict(DRY_RUN_PARAMETERS.get(notebook.stem, {}), operator=operator)
        if notebook.stem == "throughput_report":
            params["output_dir"] = str(reports / "throughput")
        try:
            execute(notebook, reports / "runbooks" / notebook.name, params)
            print(f"ok      runbooks/{notebook.name}")
        except Exception as exc:  # noqa: BLE001
            failures.append(notebook.name)
            print(f"FAILED  runbooks/{notebook.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    print(f"{ran - len(failures)} of {ran} notebooks ran; executed copies in {reports}")
    return 1 if failures else 0
