"""Layers import downward only. Each layer of the tree has a rank; a module imports modules of its own layer
or of lower ones, never above (not even for type checking, nor inside a function). What a lower layer needs of
a higher one is handed to it (``sgen_ops.ledger.stack``, ``WorkerRuntime.connect``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sgen_ops"
# Lowest first. A top-level module is its own layer; a subpackage is one layer with everything in it.
LAYERS = (
    ("errors", "embedded", "config"),
    ("core",),
    ("transport",),
    ("ledger",),
    ("runtime",),
    ("surface",),
    ("hub",),
    ("api",),
    ("ui",),
    ("ops",),
    ("cli",),
    ("__init__",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _layer(parts: tuple[str, ...]) -> str:
    """The layer of a module given by its parts under ``sgen_ops`` (``("ledger", "jobs")`` -> ``ledger``)."""
    return parts[0].removesuffix(".py") if parts else "__init__"


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


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for module in _imports(path):
        parts = module.split(".")
        if parts[0] == "sgen_ops" and len(parts) > 1 and parts[1] in RANK:
            layers.add(parts[1])
    return layers


def test_every_module_belongs_to_a_layer() -> None:
    assert {_layer(p.relative_to(PACKAGE).parts) for p in MODULES} <= set(RANK)
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} <= set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_its_layer_and_those_below(path: Path) -> None:
    own = _layer(path.relative_to(PACKAGE).parts)
    above = {layer for layer in _imported_layers(path) if RANK[layer] > RANK[own]}
    assert not above, f"{path.relative_to(PACKAGE)} ({own}) imports from higher layers: {sorted(above)}"


def test_the_check_sees_an_upward_import() -> None:
    """The walk finds a layer wherever it is imported: the view session imports the hub, inside a function too."""
    assert "hub" in _imported_layers(PACKAGE / "ui" / "session.py")
    assert "hub" in _imported_layers(PACKAGE / "__init__.py")
    assert RANK["ui"] > RANK["hub"] > RANK["surface"] > RANK["ledger"] > RANK["core"]


def test_the_worker_state_lives_on_its_runtime() -> None:
    import sgen_ops.hub
    from sgen_ops.runtime import execution

    gone = ("_hub", "_hub_pid", "worker_name", "_heartbeat", "_handover", "_outcome_fd", "_HOT")
    assert [name for name in gone if hasattr(execution, name)] == []
    runtime = execution.RUNTIME
    assert isinstance(runtime, execution.WorkerRuntime) and runtime.connect is sgen_ops.hub.connect
