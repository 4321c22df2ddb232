"""`sgen-ops worker` imports only what it runs: none of the notebook, HTTP or migration stacks (pandas,
ipywidgets, papermill, Jupyter, FastAPI, uvicorn, httpx, Alembic) is loaded on its way to the first job.
Each check runs in a fresh interpreter, since this one has imported everything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sgen_ops

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
