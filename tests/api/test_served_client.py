"""A client of ``sgen-ops serve`` with only ``SGEN_OPS_API_URL`` and ``SGEN_OPS_API_TOKEN`` set: every command it
can run through the API runs as the token's operator, and those that need the stack itself are refused in words
(exit status 1); none creates a ledger or anything else under the working directory, none starts a Redis
server, and no library writes its log lines (httpx's "HTTP Request") on stderr unless ``--log-level`` asks.
``workers()`` over HTTP answers what the local surface answers, to every role, scoped as the local one."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sgen_ops
from sgen_ops.runtime.execution import bind_hub
from sgen_ops.runtime.workers import SgenWorker, worker_name
from sgen_ops.runtime.workers_info import Snapshot
from tests.integration.test_surface_fixtures import add_operators

from ..helpers import run_cli, sgen_ops_process
from .conftest import Api

HTTP_LOG = "HTTP Request"


def _redis_servers(*places: Path) -> set[int]:
    """The running redis-servers whose working directory or command line is under one of ``places`` (the
    embedded stack starts its own in its home): other tests on this machine start theirs elsewhere."""
    found = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True, check=False)
    ours = set()
    for pid in map(int, found.stdout.split()):
        try:
            where = os.readlink(f"/proc/{pid}/cwd") + " " + Path(f"/proc/{pid}/cmdline").read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(str(place) in where for place in places):
            ours.add(pid)
    return ours


class Client:
    """A shell that reaches the stack only through the API: an empty working directory, a home of its own, and
    no variable of sgen-ops but the URL and the token."""

    def __init__(self, tmp_path: Path, server: Api, operator: str) -> None:
        self.cwd = tmp_path / "work"
        self.home = tmp_path / "user"
        self.cwd.mkdir()
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SGEN_OPS_", "JUPYTERHUB_"))}
        self.env.update(HOME=str(self.home), SGEN_OPS_API_URL=server.url, SGEN_OPS_API_TOKEN=server.token(operator))
        self.env.pop("XDG_DATA_HOME", None)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``sgen-ops ARGS`` in this process, as a new one would run."""
        return run_cli(args, self.env, cwd=self.cwd)

    def process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``sgen-ops ARGS`` as a real process."""
        return sgen_ops_process(args, self.env, cwd=self.cwd, timeout=300)

    def written(self) -> list[str]:
        return sorted(str(p.relative_to(self.cwd)) for p in self.cwd.rglob("*"))


@pytest.fixture
def worker(hub: sgen_ops.Hub) -> Iterator[SgenWorker]:
    """A worker of the hub's queues registered in Redis, as a running one registers itself."""
    bind_hub(hub)
    registered = SgenWorker(hub.transport.ordered_queues, connection=hub.redis,
                            name=worker_name(hub.settings.queue_prefix))
    registered.register_birth()
    yield registered
    registered.register_death()


def test_a_token_only_shell_runs_every_api_command_and_creates_nothing(
    tmp_path: Path, hub: sgen_ops.Hub, server: Api, worker: SgenWorker
) -> None:
    add_operators(hub)
    hub.enqueue("test.ok", {"n": 1}, delay=3600)
    client = Client(tmp_path, server, "administrator")

    commands = [
        ("info",), ("jobs", "list"), ("paused",), ("audit", "log"), ("audit", "verify"), ("schedules", "list"),
        ("runbook", "replay_dead_letters", "-p", "dry_run", "true"),
    ]
    for command in commands:
        done = client.process(*command)
        assert done.returncode == 0, (command, done.stderr)
        assert HTTP_LOG not in done.stderr and "INFO" not in done.stderr, (command, done.stderr)
        assert client.written() == [], command  # no ./.sgen-ops, no ledger, no export
    assert _redis_servers(client.cwd, client.home) == set()  # none started (and none left running)

    info = client.run("info")
    assert info.returncode == 0, info.stderr
    assert socket.gethostname() in info.stdout and str(worker.pid) in info.stdout
    assert "workers: 1" in info.stdout and "scheduler: last tick none yet" in info.stdout
    # The runbook's executed copy is kept in the user's data folder, not the working directory.
    runs = list((client.home / ".local" / "share" / "sgen-ops" / "runs").glob("*_replay_dead_letters_*.ipynb"))
    assert len(runs) == 1
    assert client.written() == []


def test_library_log_lines_only_when_asked(tmp_path: Path, hub: sgen_ops.Hub, server: Api) -> None:
    add_operators(hub)
    client = Client(tmp_path, server, "viewer")
    quiet = client.run("jobs", "list")
    assert quiet.returncode == 0 and quiet.stderr == ""
    asked = client.run("--log-level", "INFO", "jobs", "list")
    assert asked.returncode == 0 and HTTP_LOG in asked.stderr
    assert client.run("jobs", "list").stderr == ""


@pytest.mark.parametrize("command", [
    ("tokens", "create", "viewer"), ("tokens", "list"), ("tokens", "revoke", "1"),
    ("operators", "add", "zoe", "--role", "viewer"), ("operators", "list"),
    ("worker", "--burst"), ("scheduler", "--once"), ("reconcile",), ("archive", "--dry-run"),
    ("db", "upgrade"), ("serve",), ("demo",), ("down",),
])
def test_what_needs_the_stack_itself_is_refused_in_words(
    tmp_path: Path, hub: sgen_ops.Hub, server: Api, command: tuple[str, ...]
) -> None:
    add_operators(hub)
    client = Client(tmp_path, server, "administrator")
    refused = client.run(*command)
    assert refused.returncode == 1, refused
    said = refused.stderr.strip()
    named = " ".join(command[:2] if command[0] in ("tokens", "operators", "db") else command[:1])
    assert said.startswith(f"sgen-ops: NeedsLocalStack: `sgen-ops {named}` works on the stack itself"), said
    assert f"only through the API at {server.url}" in said and "SGEN_OPS_HOME" in said
    assert "Traceback" not in said and len(said.splitlines()) == 1
    assert client.written() == [] and _redis_servers(client.cwd, client.home) == set()


def _same(snapshot: Snapshot, other: Snapshot) -> None:
    """The two answers alike but for when each was read."""
    assert dataclasses.replace(snapshot, at=other.at) == other


@pytest.mark.parametrize("role", ["administrator", "editor", "viewer"])
def test_workers_over_http_is_the_local_answer(hub: sgen_ops.Hub, api: Api, worker: SgenWorker, role: str) -> None:
    ops = add_operators(hub)
    add_operators(hub, account="acme", suffix="-acme")
    hub.enqueue("test.ok", {"n": 1})
    hub.enqueue("test.ok", {"n": 2}, account="acme", delay=3600)
    hub.enqueue("test.ok", {"n": 3}, priority="high", account="other")
    ops["administrator"].create_schedule("test.ok", every="5m")
    hub.archive()

    local, remote = ops[role].workers(), api.remote(role).workers()
    _same(local, remote)
    assert [(w.host, w.pid) for w in remote.workers] == [(socket.gethostname(), worker.pid)]
    queues = {q.priority: q for q in remote.queues}
    assert (queues["normal"].waiting, queues["normal"].delayed, queues["high"].waiting) == (1, 1, 1)
    assert remote.enabled_schedules == 1 and remote.archive is not None

    # Bound to one account: its jobs only, and no stack-wide archive totals.
    bound = hub.as_operator(f"{role}-acme").workers()
    _same(bound, api.remote(f"{role}-acme").workers())
    scoped = {q.priority: q for q in bound.queues}
    assert (scoped["normal"].waiting, scoped["normal"].delayed, scoped["high"].waiting) == (0, 1, 0)
    assert bound.archive is None


def test_workers_is_refused_as_reads_are(make_hub: Any) -> None:
    hub = make_hub(capabilities={"viewer": []})
    hub.add_operator("nobody", "viewer")
    with pytest.raises(sgen_ops.AccessDenied, match="may not workers"):
        hub.as_operator("nobody").workers()


def test_the_view_and_notebooks_run_from_a_token_only_kernel(tmp_path: Path, hub: sgen_ops.Hub, server: Api,
                                                             worker: SgenWorker) -> None:
    """The Workers view as a client of the API (a kernel with only the URL and the token) shows the worker."""
    add_operators(hub)
    client = Client(tmp_path, server, "viewer")
    code = (
        "from sgen_ops.ui import WorkersView, operator_session\n"
        "view = WorkersView(operator_session())\n"
        "print(view.status.value or 'no status')\n"
        "print(view.workers_table.value)\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=client.cwd, env=client.env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "no status" in shown.stdout and str(worker.pid) in shown.stdout and socket.gethostname() in shown.stdout
    assert client.written() == []
