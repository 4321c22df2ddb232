"""Layers import downward only: the hub composes everything, so nothing below it imports it (not even for
type checking, nor inside a function): what a lower layer needs is handed to it (``sgen_ops.stack``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sgen_ops"
# The entry points above the hub: the package's public surface, the command line, the HTTP API, the views,
# the demo and the runbooks.
ABOVE = {"__init__", "hub", "cli", "demo", "runbooks"}
ABOVE_PACKAGES = {"api", "cli", "ui"}
LOWER = sorted(p for p in PACKAGE.rglob("*.py")
               if p.stem not in ABOVE and p.relative_to(PACKAGE).parts[0] not in ABOVE_PACKAGES
               and "migrations" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere in it, as absolute names."""
    package = ["sgen_ops", *path.relative_to(PACKAGE).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_lower_layers_are_the_ones_expected() -> None:
    names = {p.stem for p in LOWER}
    assert {"execution", "workers", "scheduler", "schedules", "surface", "jobs", "stack"} <= names


@pytest.mark.parametrize("path", LOWER, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_lower_layer_does_not_import_the_hub(path: Path) -> None:
    assert not {m for m in _imports(path) if m == "sgen_ops.hub" or m.startswith("sgen_ops.hub.")}


def test_the_check_sees_an_import_of_the_hub() -> None:
    """The walk finds the hub wherever it is imported: the package's own entry point does."""
    assert "sgen_ops.hub" in _imports(PACKAGE / "__init__.py")
    assert "sgen_ops.hub" in _imports(PACKAGE / "ui" / "session.py")


def test_the_worker_state_lives_on_its_runtime() -> None:
    from sgen_ops import execution

    gone = ("_hub", "_hub_pid", "worker_name", "_heartbeat", "_handover", "_outcome_fd", "_HOT")
    assert [name for name in gone if hasattr(execution, name)] == []
    runtime = execution.RUNTIME
    assert isinstance(runtime, execution.WorkerRuntime) and runtime.connect is not None
