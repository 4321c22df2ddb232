"""RQ's internals live in one module (``sgen_ops/transport/rq.py``), where each is noted with the RQ releases it
was checked against. Every other module under ``sgen_ops/`` is parsed here and fails the test when it imports
a private RQ name, reaches an underscored attribute of something imported from RQ, reads or sets an attribute
that RQ itself defines with a leading underscore (``queue._enqueue_job``, ``worker._state``), or, in a class
built on an RQ class, overrides one of RQ's private methods or undocumented hooks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import rq

PACKAGE = Path(__file__).resolve().parents[2] / "sgen_ops"
HOME = PACKAGE / "transport" / "rq.py"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != HOME)
# RQ methods sgen-ops overrides that RQ does not document as extension points: only the transport's module.
UNDOCUMENTED_HOOKS = frozenset({"dequeue_job_and_maintain_ttl"})
# The transport's classes built on RQ's: a subclass of them is built on RQ too.
RQ_MODULES = ("rq", "sgen_ops.transport.rq")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _rq_private_names() -> frozenset[str]:
    """The underscored names RQ defines, read from the installed RQ's source: its functions and methods, class
    attributes, and attributes it sets on its objects (``self._state = ...``)."""
    names: set[str] = set()
    for path in Path(rq.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Attribute):
                        names.add(target.attr)
                    elif isinstance(target, ast.Name):
                        names.add(target.id)
    return frozenset(n for n in names if _private(n))


RQ_PRIVATE = _rq_private_names()


def _module_of(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = ["sgen_ops", *path.relative_to(PACKAGE).parent.parts]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _from_rq(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in RQ_MODULES)


def violations(source: str, path: Path = PACKAGE / "example.py") -> list[str]:
    """What ``source`` (a module at ``path``) does with RQ's internals, one line per finding."""
    tree = ast.parse(source)
    found: list[str] = []
    rq_names: set[str] = set()  # names bound to RQ's modules, classes and functions
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _from_rq(alias.name):
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"line {node.lineno}: imports {alias.name}")
                    rq_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            module = _module_of(node, path)
            if _from_rq(module):
                for alias in node.names:
                    if _private(alias.name) or any(_private(part) for part in module.split(".")):
                        found.append(f"line {node.lineno}: imports {alias.name} from {module}")
                    rq_names.add(alias.asname or alias.name)
    # Classes built on RQ's, here or through a class of this module built on them.
    rq_classes: set[str] = set()
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    changed = True
    while changed:
        changed = False
        for cls in classes:
            bases = {ast.unparse(b).split(".")[0] for b in cls.bases}
            if cls.name not in rq_classes and bases & (rq_names | rq_classes):
                rq_classes.add(cls.name)
                changed = True
    for cls in classes:
        if cls.name not in rq_classes:
            continue
        for item in cls.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                item.name in RQ_PRIVATE or item.name in UNDOCUMENTED_HOOKS
            ):
                found.append(f"line {item.lineno}: {cls.name} overrides RQ's {item.name}")
    own_classes = {cls.name: cls for cls in classes}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        owner = node.value
        while isinstance(owner, ast.Attribute):  # rq.worker._x: the chain's root
            owner = owner.value
        if isinstance(owner, ast.Name) and owner.id in rq_names:
            found.append(f"line {node.lineno}: {ast.unparse(node)} (a private name of RQ's {owner.id})")
        elif node.attr in RQ_PRIVATE and not _own_attribute(node, own_classes, rq_classes):
            found.append(f"line {node.lineno}: {ast.unparse(node)} (RQ's private {node.attr})")
    return found


def _own_attribute(node: ast.Attribute, own_classes: dict[str, ast.ClassDef], rq_classes: set[str]) -> bool:
    """``self._x`` in a method of a class of this module not built on RQ's: that class's own attribute."""
    if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
        return False
    return any(
        name not in rq_classes and any(n is node for n in ast.walk(cls)) for name, cls in own_classes.items()
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outside_the_transport_touches_rq_internals(path: Path) -> None:
    found = violations(path.read_text(), path)
    assert not found, f"{path.relative_to(PACKAGE)} uses RQ's internals (move them to transport/rq.py): {found}"


def test_the_check_knows_rqs_private_names() -> None:
    """Read from the installed RQ: the names the transport relies on are among them."""
    assert {"_enqueue_job", "_state", "_stop_requested", "_horse_pid", "_is_horse", "_start_scheduler",
            "_install_signal_handlers", "_process"} <= RQ_PRIVATE


@pytest.mark.parametrize(
    "source",
    [
        "from rq.queue import _something\n",
        "import rq._private\n",
        "from rq import Queue\nQueue._enqueue_job\n",
        "def f(queue):\n    queue._enqueue_job(None)\n",
        "def f(worker):\n    return worker._state\n",
        "import rq\nrq.worker._anything\n",
        "from rq import Worker\nclass W(Worker):\n    def _start_scheduler(self): ...\n",
        "from rq import SimpleWorker\nclass A(SimpleWorker): ...\n"
        "class B(A):\n    def dequeue_job_and_maintain_ttl(self): ...\n",
        "from rq import Worker\nclass W(Worker):\n    def f(self):\n        return self._horse_pid\n",
        "from ..transport.rq import DeliveryWorker\n"
        "class W(DeliveryWorker):\n    def f(self):\n        self._is_horse = 1\n",
    ],
)
def test_the_check_finds_each_kind_of_use(source: str) -> None:
    assert violations(source, PACKAGE / "runtime" / "example.py")


@pytest.mark.parametrize(
    "source",
    [
        "import os\nos._exit(0)\n",
        "class C:\n    def __init__(self):\n        self._state = 1\n",
        "from rq import Worker\nclass W(Worker):\n    def f(self):\n        return self._my_own_thing\n",
        "from rq import get_current_job\nget_current_job()\n",
    ],
)
def test_the_check_leaves_other_names_alone(source: str) -> None:
    assert not violations(source, PACKAGE / "runtime" / "example.py")


def test_pyproject_allows_the_releases_the_transport_was_checked_against() -> None:
    """``pyproject.toml`` bounds RQ to ``CHECKED``, and the installed RQ is one of those releases."""
    from sgen_ops.transport.rq import CHECKED, RQ_VERSION

    assert f'"rq{CHECKED}"' in (PACKAGE.parent / "pyproject.toml").read_text()
    low, high = (tuple(int(p) for p in bound.lstrip("<>=").split(".")) for bound in CHECKED.split(","))
    assert low <= RQ_VERSION < high
