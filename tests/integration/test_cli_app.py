"""``sgen-ops app``: its options and defaults, the admin gate before Voila starts, the app served where the
options say, as the operator they name, and the page saying in words why it cannot open."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

import sgen_ops
from sgen_ops.ops import runbooks

from ..conftest import ROOT, Stack
from ..helpers import run_cli, wait_for
from .test_cli_jobs import cli


def test_app_help_shows_the_options_and_their_defaults() -> None:
    out = run_cli(["app", "--help"], os.environ)
    assert out.returncode == 0
    flat = " ".join(out.stdout.split())
    assert "--operator OPERATOR the app's operator (default: SGEN_OPS_OPERATOR, else JUPYTERHUB_USER)" in flat
    assert "--host HOST address to listen on (default 127.0.0.1)" in flat
    assert "--port PORT port (default 8866)" in flat


def test_app_without_an_operator_says_why_plainly(stack: Stack, hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "administrator")
    nobody = cli(stack, "app", "--port", "1", SGEN_OPS_OPERATOR="", JUPYTERHUB_USER="")
    assert nobody.returncode == 1
    assert nobody.stderr.startswith("sgen-ops: AccessDenied: no operator given: set SGEN_OPS_OPERATOR")
    assert "\x1b[" not in nobody.stderr and "Traceback" not in nobody.stderr and nobody.stdout == ""
    unknown = cli(stack, "app", "--operator", "mallory", "--port", "1")
    assert unknown.returncode == 1 and "operator 'mallory' is not registered" in unknown.stderr
    assert "\x1b[" not in unknown.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app_process(stack: Stack, hub: sgen_ops.Hub) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``sgen-ops app --operator dana --host 127.0.0.1 --port P`` in a session of its own; at the end the whole
    session (Voila and its kernels) is stopped and waited for."""
    hub.add_operator("dana", "administrator")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgen_ops.cli", "app", "--operator", "dana", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={**stack.env(), "SGEN_OPS_OPERATOR": ""}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()

        def session_gone() -> bool:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        try:
            wait_for(session_gone, timeout=30, what="Voila and its kernels to stop")
        except AssertionError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise


def test_app_serves_as_the_operator_on_the_given_host_and_port(app_process: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = app_process
    assert proc.stdout is not None
    said = proc.stdout.readline().strip()
    assert said == f"serving the operator app as dana on http://127.0.0.1:{port}/ (Ctrl-C stops it)"

    def answered() -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=120)
        except httpx.TransportError:
            assert proc.poll() is None, "the app exited"
            return None

    page = wait_for(answered, timeout=120, what="the app to answer")
    assert page.status_code == 200
    assert "AccessDenied" not in page.text
    os.killpg(proc.pid, signal.SIGTERM)
    console = proc.stdout.read()  # to the end: Voila and its kernels have gone
    assert "Kernel started" in console
    assert "without encryption" not in console and "\x1b[" not in console, console


def _app_outputs(stack: Stack, tmp_path: Path, operator: str) -> list[Any]:
    """The outputs of notebooks/app.ipynb run as Voila runs it, by ``operator`` ("" for nobody)."""
    env = {**{k: v for k, v in stack.env().items() if k.startswith("SGEN_OPS_") or k == "PYTHONPATH"},
           "SGEN_OPS_OPERATOR": operator, "JUPYTERHUB_USER": ""}
    out = tmp_path / f"app-{operator or 'nobody'}.ipynb"
    runbooks.execute(ROOT / "notebooks" / "app.ipynb", out, env=env)
    [cell] = nbformat.read(str(out), as_version=4).cells
    return list(cell.outputs)


def test_the_app_page_says_why_it_cannot_open(stack: Stack, hub: sgen_ops.Hub, tmp_path: Path) -> None:
    hub.add_operator("dana", "administrator")
    [refused] = _app_outputs(stack, tmp_path, "")
    page = refused["data"]["text/html"]
    assert "The operator app cannot open: no operator given: set SGEN_OPS_OPERATOR" in page
    assert "sgen-message-error" in page and "\x1b[" not in page
    [unknown] = _app_outputs(stack, tmp_path, "mallory")
    assert "operator &#x27;mallory&#x27; is not registered" in unknown["data"]["text/html"]
    [shown] = _app_outputs(stack, tmp_path, "dana")
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
