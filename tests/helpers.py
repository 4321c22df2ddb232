"""Small helpers shared by the tests: reading the ledger, waiting on a condition, worker processes, the
command line in this process."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

import sgen_ops
from sgen_ops.core.states import TRANSITIONS, State
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Attempt, Job

from .conftest import ROOT, Stack

CLI = "sgen-ops"

# What a worker never runs, so never imports: the notebook and HTTP stacks, and Alembic (whose migrations run
# only when the ledger is behind).
NOT_FOR_WORKERS = (
    "pandas", "numpy", "ipywidgets", "IPython", "papermill", "nbformat", "nbclient", "jupyter_client",
    "jupyter_core", "zmq", "fastapi", "starlette", "uvicorn", "httpx", "alembic", "mako",
)


def job_row(hub: sgen_ops.Hub, job_id: int) -> Job:
    with hub.ledger.read() as session:
        job = session.get(Job, job_id)
        assert job is not None, f"job {job_id} is not in the ledger"
        return job


def attempts_of(hub: sgen_ops.Hub, job_id: int) -> list[Attempt]:
    with hub.ledger.read() as session:
        return list(
            session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.run, Attempt.number))
        )


def bring_to(hub: sgen_ops.Hub, job_id: int, state: str) -> None:
    """Move a queued job to ``state`` the way the state machine allows, one write per move (the ledger
    refuses any other change)."""
    seen: dict[State, list[State]] = {State.QUEUED: []}
    todo = deque([State.QUEUED])
    while todo:
        here = todo.popleft()
        for nxt in sorted(TRANSITIONS[here]):
            if nxt not in seen:
                seen[nxt] = [*seen[here], nxt]
                todo.append(nxt)
    for step in seen[State(state)]:
        with hub.ledger.write() as session:
            job = session.get(Job, job_id)
            assert job is not None
            hub.book.move(job, step, utcnow())


def job_count(hub: sgen_ops.Hub) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Process:
    """A child process of the test whose output goes to a log file, read back when it matters."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.popen.pid

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def start_worker(stack: Stack, *args: str, **settings: Any) -> Process:
    """A real worker process (``python -m worker``) on the test's stack."""
    stack.home.mkdir(parents=True, exist_ok=True)
    log = stack.home / f"worker-{time.monotonic_ns()}.log"
    return Process([sys.executable, "-m", "worker", *args], stack.env(**settings), log)


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, one thread each; returns each one's result or the exception it raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def raised(results: list[Any]) -> list[BaseException]:
    """The exceptions among ``race``'s results."""
    return [r for r in results if isinstance(r, BaseException)]


@contextlib.contextmanager
def _as_a_fresh_process(env: Mapping[str, str], cwd: Path) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """This process as a new one would start: exactly ``env`` as its environment, ``cwd`` as its working
    directory, stdout and stderr read back, and a root logger with no handler yet (so that the command's own
    ``logging.basicConfig`` writes to its stderr). All of it is put back afterwards."""
    env, saved_env, saved_cwd = dict(env), dict(os.environ), os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    root.handlers = []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved_handlers, saved_level
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def run_cli(args: Sequence[str], env: Mapping[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``sgen-ops ARGS`` run in this process (``sgen_ops.cli.main``) as a shell would run it: with ``env`` as
    its whole environment, in ``cwd``; its exit status, stdout and stderr come back as ``subprocess.run``
    gives them. A few tests run the real console script (``sgen_ops_process``) to show that it works as a
    process; every other test of a command runs it here, without the start-up of a new interpreter."""
    from sgen_ops.cli import main

    with _as_a_fresh_process(env, cwd) as (out, err):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's usage errors, --help and --version
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    return subprocess.CompletedProcess([CLI, *args], status, out.getvalue(), err.getvalue())


def sgen_ops_process(
    args: Sequence[str], env: Mapping[str, str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``sgen-ops ARGS`` as a real process: the console script installed beside this interpreter."""
    script = Path(sys.executable).with_name(CLI)
    return subprocess.run([str(script), *args], cwd=cwd, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)
