"""``sgen-ops runbook`` as the README runs it: from a working directory whose default home holds the stack,
with no SGEN_OPS_HOME set. The kernel must use the caller's stack (not build one in ``notebooks/runbooks/``),
the command prints the runbook's result, and the terminal stays free of the kernel's noise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import AsyncKernelManager

import sgen_ops
from sgen_ops.embedded import stop_redis
from sgen_ops.ops import runbooks
from worker import demo

from ..conftest import ROOT, TASK_MODULES, Stack
from ..helpers import run_cli

STRAY_HOME = ROOT / "notebooks" / "runbooks" / ".sgen-ops"
NOISE = ("without encryption", "KeyboardInterrupt", "Traceback")


def _without_stack_settings() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGEN_OPS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(params=["embedded", "services"])
def caller(request: pytest.FixtureRequest, tmp_path: Path, stack: Stack) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory and the environment of a shell in it, with demo data in its stack: the embedded
    stack of ``./.sgen-ops`` (no SGEN_OPS_* at all), or the test's ledger and Redis named by URL."""
    if request.param == "embedded" and not stack.database_url.startswith("sqlite"):
        pytest.skip("the embedded stack's ledger is SQLite")
    cwd = tmp_path / "ops"
    cwd.mkdir()
    env = _without_stack_settings()
    env["SGEN_OPS_TASK_MODULES"] = TASK_MODULES
    settings: dict[str, object] = {"home": cwd / ".sgen-ops", "task_modules": TASK_MODULES}
    if request.param == "services":
        for key in ("database_url", "redis_url", "queue_prefix"):
            value = stack.settings()[key]
            env[f"SGEN_OPS_{key.upper()}"] = settings[key] = str(value)
        env["SGEN_OPS_AUTO_UPGRADE"] = "1"
        settings["auto_upgrade"] = True
    hub = sgen_ops.connect(**settings)  # type: ignore[arg-type]
    try:
        demo.seed(hub, jobs=40)
        hub.work(burst=True)
    finally:
        hub.close()
    try:
        yield cwd, env
    finally:
        if request.param == "embedded":
            stop_redis(cwd / ".sgen-ops")
        if STRAY_HOME.exists():  # what the defect left behind: its Redis too
            stop_redis(STRAY_HOME)
            shutil.rmtree(STRAY_HOME)


def dead_letters(cwd: Path, env: dict[str, str]) -> int:
    out = run_cli(["jobs", "list", "--operator", "ops-admin", "--state", "dead-letter", "--json", "--per-page", "500"],
                  env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return len(json.loads(out.stdout))


def test_the_readme_runbook_command_runs_on_the_callers_stack(caller: tuple[Path, dict[str, str]]) -> None:
    cwd, env = caller
    count = dead_letters(cwd, env)
    assert count > 0, "the demo data has dead letters"

    ran = subprocess.run(
        [sys.executable, "-m", "sgen_ops.cli", "runbook", "replay_dead_letters",
         "-p", "dry_run", "true", "--operator", "ops-admin"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith(f"DRY RUN: would replay {count} dead letter(s); nothing changed")
    [copy] = (cwd / ".sgen-ops" / "runs").iterdir()
    assert lines[-1] == f"executed runbook replay_dead_letters: {copy}"
    assert not STRAY_HOME.exists(), "the kernel built a stack of its own beside the runbook"
    assert [p.name for p in cwd.iterdir()] == [".sgen-ops"]
    assert not [n for n in NOISE if n in ran.stderr], ran.stderr
    assert dead_letters(cwd, env) == count

    as_json = subprocess.run(
        [sys.executable, "-m", "sgen_ops.cli", "runbook", "replay_dead_letters", "--operator", "ops-admin", "--json"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["result"] == lines[:-1] and answer["executed_copy"].startswith(str(cwd / ".sgen-ops" / "runs"))


def test_a_relative_output_dir_is_the_callers(caller: tuple[Path, dict[str, str]]) -> None:
    """-p output_dir reports/weekly lands under the caller's working directory, not under notebooks/runbooks/."""
    cwd, env = caller
    ran = subprocess.run(
        [sys.executable, "-m", "sgen_ops.cli", "runbook", "throughput_report", "-p", "window", "7d",
         "-p", "output_dir", "reports/weekly", "--operator", "ops-viewer"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    written = sorted(p.name for p in (cwd / "reports" / "weekly").glob("throughput_7d_*"))
    assert [n.rsplit(".", 1)[1] for n in written] == ["csv", "html"]
    assert ran.stdout.splitlines()[:2] == [f"wrote reports/weekly/{n}" for n in written]
    assert not (ROOT / "notebooks" / "runbooks" / "reports").exists()


def test_result_of_reads_the_tagged_cells(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("print('noise')")
    first.outputs = [nbformat.v4.new_output("stream", name="stdout", text="counting\n")]
    tagged = nbformat.v4.new_code_cell("n", metadata={"tags": ["result"]})
    tagged.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "13"}, execution_count=2)]
    last = nbformat.v4.new_code_cell("print('bye')")
    last.outputs = [nbformat.v4.new_output("stream", name="stdout", text="bye\n\n")]
    nb.cells = [first, tagged, last]
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, str(path))
    assert runbooks.result_of(path) == ["13"]
    tagged.metadata = {}
    nbformat.write(nb, str(path))
    assert runbooks.result_of(path) == ["bye"]


def test_every_runbook_tags_its_result() -> None:
    import nbformat

    for name in runbooks.available():
        nb = nbformat.read(str(runbooks.path_of(name)), as_version=4)
        assert any(runbooks.RESULT_TAG in c.metadata.get("tags", []) for c in nb.cells), name


SIGINT_PROBE = """
import signal
kernel = get_ipython().kernel
kernel.pre_handler_hook = kernel.post_handler_hook = lambda: None
signal.signal(signal.SIGINT, lambda *a: open({path!r}, "a").write("interrupted\\n"))
"""


@pytest.mark.parametrize("manager", [runbooks.NotebookKernel, AsyncKernelManager])
def test_a_finished_notebook_is_shut_down_without_an_interrupt(
    tmp_path: Path, manager: type[AsyncKernelManager]
) -> None:
    """jupyter_client interrupts a kernel before shutting it down, which ipykernel reports as "KeyboardInterrupt
    caught in kernel"; the runbooks' kernel manager does not (the stock one, run beside it, does)."""
    import nbformat

    probe = tmp_path / "sigint"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SIGINT_PROBE.format(path=str(probe)))]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, str(src))
    import papermill

    papermill.execute_notebook(
        str(src), str(tmp_path / "out.ipynb"), kernel_name=runbooks.KERNEL, progress_bar=False,
        kernel_manager_class=manager, resources={"metadata": {"path": str(tmp_path)}},
    )
    assert probe.exists() == (manager is AsyncKernelManager)


CONNECTION_PROBE = """
import json
from ipykernel import get_connection_info
open({path!r}, "w").write(get_connection_info())
"""


def test_a_notebook_kernel_listens_on_unix_sockets_of_its_own(tmp_path: Path) -> None:
    """Over TCP a kernel binds ports its manager found free a moment before, which any process on the machine
    may take meanwhile (the kernel then dies before it answers: seen in CI). The runbooks' kernel listens on
    Unix sockets in a folder of its own, removed when the kernel is shut down."""
    import nbformat

    probe = tmp_path / "connection.json"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CONNECTION_PROBE.format(path=str(probe)))]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, str(src))
    runbooks.execute(src, tmp_path / "out.ipynb", cwd=tmp_path)

    info = json.loads(probe.read_text())
    folder = Path(info["ip"]).parent
    assert info["transport"] == "ipc"
    assert folder.name.startswith("sgen-ops-kernel-") and folder != tmp_path
    assert not folder.exists(), "the socket folder outlived the kernel"
