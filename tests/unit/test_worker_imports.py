"""`sgen-ops worker` imports only what it runs: none of the notebook, HTTP or migration stacks (pandas,
ipywidgets, papermill, Jupyter, FastAPI, uvicorn, httpx, Alembic), nor the archive's (pyarrow, DuckDB), nor a
database driver before the ledger's URL picks one, is loaded on its way to the first job; `sgen-ops --version`
and `--help` load neither the ledger nor Redis. Each check runs in a fresh interpreter, since this one has
imported everything."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sgen_ops
from sgen_ops.embedded import stop_redis

from ..conftest import ROOT
from ..helpers import NOT_FOR_WORKERS

# What `sgen-ops worker` (and `python -m worker`) imports before it connects: the command line with every
# command's parser, the worker command, the hub and the worker classes, and the default task catalog.
WORKER_PATH = """
import sgen_ops.cli
sgen_ops.cli.build_parser().parse_args(["worker", "--burst"])
import sgen_ops.cli.stack, sgen_ops.hub, sgen_ops.runtime.workers, sgen_ops.runtime.execution, sgen_ops.ledger.stack
import worker.__main__, worker.catalog
"""


def loaded_after(code: str) -> list[str]:
    """The top-level packages of NOT_FOR_WORKERS that a fresh interpreter has imported after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(NOT_FOR_WORKERS)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_the_worker_path_imports_none_of_the_notebook_or_http_stacks() -> None:
    assert loaded_after(WORKER_PATH) == []


def test_the_package_alone_imports_none_of_them() -> None:
    """A task module's ``import sgen_ops`` costs a worker nothing it does not run."""
    assert loaded_after("import sgen_ops") == []


def test_the_check_sees_a_heavy_import() -> None:
    """The probe finds what the HTTP client brings, so the checks above can fail."""
    assert {"httpx", "pandas"} <= set(loaded_after(WORKER_PATH + "import sgen_ops.api.client"))


def test_every_public_name_is_importable_from_the_package() -> None:
    code = (
        "import sgen_ops\nfrom sgen_ops import *\n"
        "missing = [n for n in sgen_ops.__all__ if globals().get(n) is not getattr(sgen_ops, n, None)]\n"
        "assert not missing, missing"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_client_is_reached_through_the_package() -> None:
    from sgen_ops.api.client import RemoteOperations, remote

    assert (sgen_ops.remote, sgen_ops.RemoteOperations) == (remote, RemoteOperations)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = sgen_ops.nothing_here


# What no worker start-up loads: the stacks above, the archive's, and either SQL driver (the ledger's URL picks
# one when it connects; the other is never loaded).
HEAVY = (*NOT_FOR_WORKERS, "pyarrow", "duckdb", "jupyter*", "notebook", "voila")
DRIVERS = ("psycopg", "psycopg2", "sqlite3", "_sqlite3")
# What `--version` and `--help` do not use either: the ledger, Redis, RQ.
STACK = ("sqlalchemy", "redis", "rq")
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$")


def imported_by(code: str) -> set[str]:
    """The top-level packages a fresh interpreter imports running ``code``, read from ``-X importtime``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {m.group(1).split(".")[0] for line in out.stderr.splitlines() if (m := _IMPORTED.match(line))}


def named(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or (n.endswith("*") and m.startswith(n[:-1])) for n in names))


def cli(*argv: str) -> str:
    """The console script's entry with ``argv`` (``--version`` and ``--help`` end in SystemExit(0))."""
    return (f"import sgen_ops.cli\ntry:\n    sgen_ops.cli.main({list(argv)!r})\n"
            "except SystemExit as e:\n    assert not e.code")


@pytest.mark.parametrize(
    "code", ["import sgen_ops.runtime.workers", WORKER_PATH], ids=["the worker module", "the worker command"]
)
def test_the_worker_imports_no_heavy_stack_and_no_driver(code: str) -> None:
    imported = imported_by(code)
    assert {"sqlalchemy", "redis", "rq"} <= imported  # what it runs
    assert named(imported, HEAVY + DRIVERS) == []


@pytest.mark.parametrize("argv", [("--version",), ("worker", "--help"), ("--help",)])
def test_version_and_help_load_neither_the_ledger_nor_redis(argv: tuple[str, ...]) -> None:
    assert named(imported_by(cli(*argv)), HEAVY + DRIVERS + STACK) == []


def test_the_import_probe_sees_the_stack_and_a_heavy_import() -> None:
    """So that the checks above can fail."""
    imported = imported_by(cli("--version") + "\nimport sgen_ops.hub, sgen_ops.api.client, sqlite3")
    assert {"sqlalchemy", "redis", "rq", "pandas", "sqlite3"} <= set(named(imported, HEAVY + DRIVERS + STACK))


# The notebook stack: what no command of the command line loads (the views are the notebooks' and the app's).
WIDGETS = ("ipywidgets", "ipykernel", "IPython", "jupyter*", "nbformat", "papermill", "matplotlib", "voila")


def test_a_command_on_the_ledger_loads_no_notebook_stack(tmp_path: Path) -> None:
    """``sgen-ops jobs list`` (the Jobs surface on the local ledger, or the server's when SGEN_OPS_API_URL is
    set) imports neither the views nor Jupyter: a command is not a notebook."""
    code = (f"import os\nos.environ['SGEN_OPS_HOME'] = {str(tmp_path / 'home')!r}\n"
            "os.environ['SGEN_OPS_OPERATOR'] = 'nobody'\n" + cli("jobs", "list").replace("assert not e.code", "pass")
            + "\nexcept Exception:\n    pass")
    try:
        imported = imported_by(code)
    finally:
        stop_redis(tmp_path / "home")  # the embedded Redis the command started for its stack
    assert "sqlalchemy" in imported  # it reached the ledger
    assert named(imported, WIDGETS) == []
