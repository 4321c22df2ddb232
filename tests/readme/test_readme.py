"""The README is tested: its shell and Python examples run in order against a fresh demo stack, and its
Configuration table names every setting and environment variable a user can set.

How the examples run (see ``blocks.py`` for how they are read):

- In a directory standing for the checkout after ``make demo``: ``.venv`` (the virtualenv running these
  tests) and ``.sgen-ops``, the demo's home, seeded as ``make demo`` seeds it (``sgen_ops.ops.demo.seed_once``),
  then a worker burst and a scheduler pass, as the demo's worker and scheduler do first. No worker runs in the
  background, so what an example leaves is what the next one finds.
- Each shell block runs as one ``bash`` script (``set -e -o pipefail``); what it exports, later blocks see.
- The Python blocks run in one kernel started in that directory, statement by statement as notebook cells, so
  a name one block defines is there for the next.
- A block marked ``<!-- not run: REASON -->`` is skipped, and the run lists each one with its reason at its end
  (``pytest_terminal_summary`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from sgen_ops import config

from ..conftest import ROOT
from .blocks import Block, Step, blocks, matches, python_steps, shell_steps

README = ROOT / "README.md"
# What the demo seeds, then what its worker and scheduler do first.
SEED = """
import sgen_ops
from sgen_ops.ops import demo

hub = sgen_ops.connect()
demo.seed_once(hub)
hub.work(burst=True)
hub.tick()
hub.work(burst=True)
hub.close()
"""
MARKER = "@@readme-step@@"
# Far above what a step takes; only a hang reaches it.
STEP_TIMEOUT = 600


def _user_environment(database_url: str) -> dict[str, str]:
    """A shell as a user has it after ``make demo``: none of the test run's sgen-ops or Jupyter settings, the
    ledger the test chose (SQLite: the embedded one), and a fixed terminal width for the tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGEN_OPS_", "JUPYTER", "VIRTUAL_ENV"))}
    if not database_url.startswith("sqlite"):
        env["SGEN_OPS_DATABASE_URL"] = database_url
    env["COLUMNS"] = "120"
    return env


def _virtualenv(checkout: Path) -> None:
    """``.venv`` in the stand-in checkout: the virtualenv running the tests (or, outside one, an activate
    script putting this interpreter first on PATH)."""
    prefix = Path(sys.prefix)
    if (prefix / "bin" / "activate").is_file():
        (checkout / ".venv").symlink_to(prefix, target_is_directory=True)
        return
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')


class Shell:
    """Runs shell blocks one after another, carrying their exported variables from one to the next."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.exports = cwd.parent / "exported.sh"

    def run(self, block: Block) -> list[tuple[Step, str]]:
        lines = ["exec 2>&1", "set -e -o pipefail", f'if [ -f "{self.exports}" ]; then . "{self.exports}"; fi']
        for step in block.steps:
            lines += [f"printf '\\n%s\\n' '{MARKER}'", step.code]
        lines += [f"printf '\\n%s\\n' '{MARKER}'", f'export -p > "{self.exports}"']
        done = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT * max(1, len(block.steps)),
                              check=False)
        outputs = [part.strip("\n") for part in done.stdout.split(f"\n{MARKER}\n")[1:]]
        if done.returncode != 0:
            failed = block.steps[len(outputs) - 1] if outputs else block.steps[0]
            pytest.fail(f"README.md line {failed.line}: `{failed.code}` failed (exit {done.returncode}):\n"
                        f"{outputs[-1] if outputs else done.stdout}")
        return list(zip(block.steps, outputs, strict=False))


class Kernel:
    """One Python kernel, started in the checkout, running each step as a notebook cell."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.notebook = nbformat.v4.new_notebook()
        self.client = NotebookClient(self.notebook, timeout=STEP_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
        self.env = env
        self._running: Any = None

    def run(self, step: Step) -> str:
        if self._running is None:
            self._running = self.client.setup_kernel(env=self.env)
            self._running.__enter__()
        cell = nbformat.v4.new_code_cell(step.code)
        self.notebook.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(self.notebook.cells) - 1)
        except CellExecutionError as exc:
            pytest.fail(f"README.md line {step.line}: the example raised:\n{step.code}\n{exc}")
        text = []
        for output in cell.outputs:
            if output.output_type == "stream":
                text.append(output.text)
            elif "data" in output:
                text.append(output.data.get("text/plain", ""))
        return "\n".join(text)

    def close(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)


@pytest.fixture
def checkout(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """The stand-in checkout after ``make demo`` (its demo home seeded), and a user's environment there; the
    demo's processes and its embedded Redis are stopped at the end (``sgen-ops down``)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _virtualenv(checkout)
    env = _user_environment(database_url)
    try:
        subprocess.run([sys.executable, "-c", SEED], cwd=checkout, env=env, check=True, timeout=STEP_TIMEOUT,
                       capture_output=True, text=True)
        yield checkout, env
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"seeding the demo failed:\n{exc.stdout}\n{exc.stderr}")
    finally:
        subprocess.run([sys.executable, "-m", "sgen_ops.cli", "down"], cwd=checkout, env=env, check=False,
                       capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(900)  # every command of the README as its own process, twice as many on a loaded machine
def test_the_readme_examples_run_in_order_on_the_demo(
    checkout: tuple[Path, dict[str, str]], record_property: Any
) -> None:
    """Every example not marked otherwise runs without an error, and prints what its comment says it prints."""
    cwd, env = checkout
    shell, kernel = Shell(cwd, env), Kernel(cwd, env)
    not_run = [f"README.md line {b.line} ({b.language}): {b.not_run}" for b in blocks(README) if b.not_run]
    record_property("readme_not_run", not_run)
    problems: list[str] = []
    try:
        for block in blocks(README):
            if block.not_run:
                continue
            ran = shell.run(block) if block.language == "sh" else [(s, kernel.run(s)) for s in block.steps]
            for step, output in ran:
                problems += [f"README.md line {step.line}: `{step.code.strip()}`: {p}\n{output}"
                             for p in step.check(output)]
    finally:
        kernel.close()
    assert not problems, "\n\n".join(problems)


def test_every_block_runs_or_says_why_not() -> None:
    """Both languages are there, most blocks run, and each one that does not gives a reason in words."""
    found = blocks(README)
    assert {b.language for b in found} == {"sh", "python"}
    assert all(b.steps for b in found if not b.not_run)
    assert all(len(b.not_run) > 10 for b in found if b.not_run)
    assert len([b for b in found if not b.not_run]) > len([b for b in found if b.not_run])
    # A block the test cannot run is marked, never silently dropped: a long-running server or a foreign URL.
    for block in found:
        if not block.not_run:
            assert "ops.example" not in block.code and "--host 0.0.0.0" not in block.code, block.line


def test_steps_and_documented_output_are_read_as_the_readme_means_them() -> None:
    sh = shell_steps('. .venv/bin/activate\n# a comment line\nsgen-ops x --payload \'{"a": "#"}\'   '
                     '# prints "job ...: resolved"\nlong \\\n  --flag\n', 10)
    assert [(s.code.splitlines()[0], s.line, s.expected) for s in sh] == [
        (". .venv/bin/activate", 10, ()),
        ("sgen-ops x --payload '{\"a\": \"#\"}'   # prints \"job ...: resolved\"", 12, ("job ...: resolved",)),
        ("long \\", 13, ()),
    ]
    py = python_steps('import x\n\n@d\ndef f():\n    pass\na(); b()   # -> "dead-letter"\n', 1)
    assert [(s.line, s.expected) for s in py] == [(1, ()), (3, ()), (6, ("dead-letter",))]
    assert matches("ID TASK STATE ...", "ID   TASK          STATE   ATTEMPTS")
    assert matches("job ...: resolved", "job 12: resolved")
    assert not matches("job ...: resolved", "job 12: queued again")
    assert Step("x", 1).check("no jobs match") != []
    assert Step("x", 1, ("no jobs match",)).check("no jobs match") == []


# --- the Configuration table ---------------------------------------------------------------------------------

def _configuration_table() -> list[tuple[str, str]]:
    """(setting, environment) cells of each row of the README's Configuration table."""
    text = README.read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 4 and not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[1]))
    return rows[1:]  # the header


def _setting_names() -> list[str]:
    settings: Any = config.Settings
    if is_dataclass(settings):
        return [f.name for f in fields(settings)]
    return list(settings.model_fields)  # a pydantic-settings model


def _environment_variables_read() -> dict[str, set[str]]:
    """Every environment variable sgen_ops reads or hands to a process it starts, by file: names looked up in
    an environment (``os.environ[...]``, ``.get``, ``getenv``, ``setdefault``, ``pop``), set for a child
    (``dict(os.environ, NAME=...)``, ``env["NAME"] = ...``), or kept in a constant named ``*_VARIABLE(S)``."""
    found: dict[str, set[str]] = {}
    env_like = re.compile(r"^(environ|env|environment|kernel_env)$")
    name_like = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")

    def add(node: ast.AST | None, path: Path) -> None:
        for sub in ast.walk(node) if node is not None else ():
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and name_like.match(sub.value):
                found.setdefault(sub.value, set()).add(str(path.relative_to(ROOT)))

    def named(node: ast.AST) -> str:
        return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""

    for path in sorted((ROOT / "sgen_ops").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("get", "setdefault", "pop") and env_like.match(named(node.func.value)):
                    add(node.args[0] if node.args else None, path)
                if node.func.attr == "getenv":
                    add(node.args[0] if node.args else None, path)
                if node.func.attr == "update" and env_like.match(named(node.func.value)):
                    for keyword in node.keywords:
                        add(ast.Constant(keyword.arg), path)
            if isinstance(node, ast.Call) and named(node.func) == "dict" and node.args and env_like.match(
                named(node.args[0])
            ):
                for keyword in node.keywords:
                    add(ast.Constant(keyword.arg), path)
            if isinstance(node, ast.Subscript) and env_like.match(named(node.value)):
                add(node.slice, path)
            constants = isinstance(node, ast.Assign) and any(
                named(t).endswith(("_VARIABLE", "_VARIABLES")) for t in node.targets
            )
            if constants:
                add(node.value, path)
    return found


def test_the_configuration_table_lists_every_setting() -> None:
    """Each setting has its row, named as in sgen-ops.toml, with its SGEN_OPS_ variable where it has one."""
    rows = _configuration_table()
    by_setting = {setting.strip("`"): env for setting, env in rows}
    missing = [name for name in _setting_names() if name not in by_setting]
    assert missing == [], f"settings missing from the README's Configuration table: {missing}"
    for name in _setting_names():
        if "toml only" not in by_setting[name]:
            assert f"`{config.ENV_PREFIX}{name.upper()}`" in by_setting[name], name


def test_the_configuration_table_lists_every_environment_variable() -> None:
    """Every variable sgen_ops reads (or sets for a process it starts) is in the table, and so is JupyterLab's
    JUPYTER_PORT, which ``make demo``'s JupyterLab honours."""
    documented = " ".join(env for _setting, env in _configuration_table())
    read = _environment_variables_read()
    assert {"SGEN_OPS_API_URL", "SGEN_OPS_OPERATOR", "JUPYTERHUB_API_TOKEN"} <= set(read)  # the scan finds them
    missing = {name: sorted(where) for name, where in read.items() if f"`{name}`" not in documented}
    assert missing == {}, f"environment variables missing from the README's Configuration table: {missing}"
    assert "`JUPYTER_PORT`" in documented
    assert "`COLUMNS`" in documented
