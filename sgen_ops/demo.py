"""``sgen-ops demo`` / ``make demo``: the embedded stack, demo data, a worker, the scheduler and the API.

Interactive: starts the worker, the scheduler and ``sgen-ops serve`` in the background (``sgen-ops down``
stops them), prints the API's URL and an administrator's token, and opens JupyterLab on ``notebooks/``.
Headless: runs the queue in bursts, executes every notebook into ``$SGEN_OPS_HOME/reports/`` on the local
surface, then again into ``reports/served/`` as clients of the API, and exits non-zero if anything failed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import zmq
from sqlalchemy import func, select

from .config import load_settings
from .embedded import stop_process, stop_redis
from .hub import Hub, connect
from .store import Job

PROJECT = Path(__file__).resolve().parent.parent
NOTEBOOKS = PROJECT / "notebooks"
DEMO_OPERATOR = "ops-admin"
API_PORT = 8765


def _pid_dir(hub_home: Path) -> Path:
    path = hub_home / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_background(home: Path, name: str, argv: list[str]) -> int:
    """Start ``sgen-ops <argv>`` detached, logging to home/logs, its pid in home/pids."""
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pidfile = _pid_dir(home) / f"{name}.pid"
    if pidfile.exists():
        stop_process(int(pidfile.read_text()))
    env = dict(os.environ, SGEN_OPS_HOME=str(home))
    with (logs / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sgen_ops.cli", *argv],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop_background(home: Path, name: str) -> bool:
    """Stop what ``start_background`` started as ``name``; returns whether it was running."""
    pidfile = _pid_dir(home) / f"{name}.pid"
    if not pidfile.exists():
        return False
    stopped = stop_process(int(pidfile.read_text()))
    pidfile.unlink()
    return stopped


def state_summary(hub: Hub) -> dict[str, int]:
    with hub.ledger.read() as session:
        return dict(Counter(dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())))


def seed_once(hub: Hub) -> None:
    from worker import demo as demo_data

    marker = hub.home / "demo-seeded"
    if marker.exists():
        print(f"demo data already seeded in {hub.home}")
        return
    counts = demo_data.seed(hub, seed=int(os.environ.get("SGEN_OPS_DEMO_SEED", "42")))
    marker.write_text("1")
    print(f"seeded {counts['jobs']} demo jobs and {counts['schedules']} schedules in {hub.home}")


def _api_port() -> int:
    """8765 (the contract's default) if free, else any free port."""
    for port in (int(os.environ.get("SGEN_OPS_API_PORT", API_PORT)), 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port for the API")


def start_api(hub: Hub) -> tuple[str, str]:
    """``sgen-ops serve`` in the background on this home, once it answers; (its URL, an administrator token)."""
    port = _api_port()
    pid = start_background(hub.home, "api", ["serve", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API (pid {pid}) did not answer within 60 s; see {hub.home / 'logs' / 'api.log'}")
        time.sleep(0.2)
    return url, hub.create_token(DEMO_OPERATOR, expires_in="30d")


def main(*, headless: bool = False) -> int:
    hub = connect()
    os.environ.setdefault("SGEN_OPS_OPERATOR", DEMO_OPERATOR)
    seed_once(hub)
    if headless:
        hub.work(burst=True)
        if hasattr(hub, "tick"):
            try:
                hub.tick()
                hub.work(burst=True)
            except ImportError:
                pass
        summary = state_summary(hub)
        print("job states after a burst: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.items())))
        from . import notebooks_run

        local = notebooks_run.execute_all(hub.home, operator=os.environ["SGEN_OPS_OPERATOR"])
        url, token = start_api(hub)
        print(f"the notebooks again, as clients of the API at {url}:")
        os.environ.update(SGEN_OPS_API_URL=url, SGEN_OPS_API_TOKEN=token)
        try:
            served = notebooks_run.execute_all(hub.home, operator=DEMO_OPERATOR,
                                               reports=hub.home / "reports" / "served")
        finally:
            del os.environ["SGEN_OPS_API_URL"], os.environ["SGEN_OPS_API_TOKEN"]
            stop_background(hub.home, "api")
        return local or served
    start_background(hub.home, "worker", ["worker"])
    start_background(hub.home, "scheduler", ["scheduler"])
    url, token = start_api(hub)
    print(f"worker, scheduler and API running for {hub.home} (stop them with `make down`)")
    print(f"API: {url} (OpenAPI at {url}/docs)")
    print("To run the notebooks as clients of the API instead of on the ledger, start JupyterLab with")
    print(f"  SGEN_OPS_API_URL={url} SGEN_OPS_API_TOKEN=<the token below>")
    print(f"administrator token ({DEMO_OPERATOR}, expires in 30 days; shown once):")
    print(token, flush=True)
    env = dict(os.environ, SGEN_OPS_HOME=str(hub.home))
    argv = [sys.executable, "-m", "jupyter", "lab", str(NOTEBOOKS)]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI machines often run as root
    return subprocess.call(argv, env=env)


def down() -> None:
    """Stop the demo worker and scheduler of this home and its embedded Redis."""
    home = load_settings().home
    for pidfile in sorted(_pid_dir(home).glob("*.pid")):
        if stop_process(int(pidfile.read_text())):
            print(f"stopped {pidfile.stem}")
        pidfile.unlink()
    if stop_redis(home):
        print(f"stopped the embedded Redis of {home}")


def serve_app(port: int = 8866, *, host: str = "127.0.0.1", operator: str | None = None) -> int:
    """Serve the operator views as a Voila app (no code cells) on ``host``:``port``, as ``operator``."""
    home = load_settings().home
    env = dict(os.environ, SGEN_OPS_HOME=str(home))
    if operator:
        env["SGEN_OPS_OPERATOR"] = operator
    argv = [sys.executable, "-m", "voila", str(NOTEBOOKS / "app.ipynb"), f"--port={port}", f"--Voila.ip={host}",
            "--no-browser"]
    if zmq.has("curve"):
        # Kernels on an encrypted connection (as the runbooks'): no plain text on the socket, no warning about it.
        argv.append("--KernelManager.transport_encryption=auto")
    return subprocess.call(argv, env=env)
