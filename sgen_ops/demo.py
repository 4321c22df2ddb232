"""``sgen-ops demo`` / ``make demo``: the embedded stack, demo data, a worker, the scheduler and the API.

Interactive: starts the worker, the scheduler and ``sgen-ops serve`` in the background (``sgen-ops down``
stops them), prints the API's URL and an administrator's token, and opens JupyterLab on a working copy of
``notebooks/`` under ``$SGEN_OPS_HOME/notebooks`` (JupyterLab saves outputs there, never into the checkout).
Headless: runs the queue in bursts, executes every notebook into ``$SGEN_OPS_HOME/reports/`` on the local
surface, then again into ``reports/served/`` as clients of the API, stops the embedded Redis it started, and
exits non-zero if anything failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

from .config import load_settings
from .embedded import REDIS_URL_FILE, stop_process, stop_redis
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


def start_background(home: Path, name: str, argv: list[str], *, logged: bool = True) -> subprocess.Popen[bytes]:
    """Start ``sgen-ops <argv>`` (or ``argv`` itself when it starts with an absolute path) in a session of
    its own, its pid in home/pids; output goes to home/logs/<name>.log, or to this terminal when not
    ``logged``."""
    pidfile = _pid_dir(home) / f"{name}.pid"
    if pidfile.exists():
        stop_tree(int(pidfile.read_text()))
    env = dict(os.environ, SGEN_OPS_HOME=str(home))
    command = argv if Path(argv[0]).is_absolute() else [sys.executable, "-m", "sgen_ops.cli", *argv]
    with contextlib.ExitStack() as stack:
        out: Any = None
        if logged:
            logs = home / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context((logs / f"{name}.log").open("ab"))
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT if logged else None, start_new_session=True
        )
    pidfile.write_text(str(proc.pid))
    return proc


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
    pid = start_background(hub.home, "api", ["serve", "--port", str(port)]).pid
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


def workspace(home: Path) -> Path:
    """A working copy of ``notebooks/`` (runbooks included) under the home, for JupyterLab to save into.

    A notebook is copied when the copy is missing or the tracked one changed since it was copied (the copy
    keeps the tracked file's modification time); an operator's edits to the copy stay otherwise."""
    target = home / "notebooks"
    for source in [*NOTEBOOKS.glob("*.ipynb"), *NOTEBOOKS.glob("runbooks/*.ipynb")]:
        copy = target / source.relative_to(NOTEBOOKS)
        if not copy.exists() or source.stat().st_mtime > copy.stat().st_mtime:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
    return target


def _redis_to_leave_up(home: Path) -> bool:
    """Whether a headless run leaves Redis up when it ends: a configured one, or this home's embedded
    one that was already answering (a ``make demo`` in another terminal); only one it started goes."""
    if load_settings().redis_url is not None:
        return True
    url_file = home / REDIS_URL_FILE
    if not url_file.exists():
        return False
    client = redis.Redis.from_url(url_file.read_text().strip(), socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def run_headless(hub: Hub) -> int:
    hub.work(burst=True)
    hub.tick()
    hub.work(burst=True)
    summary = state_summary(hub)
    print("job states after a burst: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.items())))
    from . import notebooks_run

    local = notebooks_run.execute_all(hub.home, operator=os.environ["SGEN_OPS_OPERATOR"])
    url, token = start_api(hub)
    print(f"the notebooks again, as clients of the API at {url}:")
    os.environ.update(SGEN_OPS_API_URL=url, SGEN_OPS_API_TOKEN=token)
    try:
        served = notebooks_run.execute_all(hub.home, operator=DEMO_OPERATOR, reports=hub.home / "reports" / "served")
    finally:
        del os.environ["SGEN_OPS_API_URL"], os.environ["SGEN_OPS_API_TOKEN"]
        stop_background(hub.home, "api")
    return local or served


def main(*, headless: bool = False) -> int:
    home = load_settings().home
    leave_redis = _redis_to_leave_up(home)
    hub = connect()
    os.environ.setdefault("SGEN_OPS_OPERATOR", DEMO_OPERATOR)
    seed_once(hub)
    if headless:
        try:
            return run_headless(hub)
        finally:
            hub.close()
            if not leave_redis and stop_redis(hub.home):
                print(f"stopped the embedded Redis this run started for {hub.home}")
    children = [start_background(hub.home, name, [name]).pid for name in ("worker", "scheduler")]
    url, token = start_api(hub)
    children.append(int((_pid_dir(hub.home) / "api.pid").read_text()))
    print(f"worker, scheduler and API running for {hub.home} (stop them with `make down`)")
    print(f"API: {url} (OpenAPI at {url}/docs)")
    print("To run the notebooks as clients of the API instead of on the ledger, start JupyterLab with")
    print(f"  SGEN_OPS_API_URL={url} SGEN_OPS_API_TOKEN=<the token below>")
    print(f"administrator token ({DEMO_OPERATOR}, expires in 30 days; shown once):")
    print(token, flush=True)
    notebooks = workspace(hub.home)
    print(f"JupyterLab opens a working copy of notebooks/ in {notebooks} (the checkout stays clean)", flush=True)
    argv = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={notebooks}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI machines often run as root
    lab = start_background(hub.home, "jupyterlab", argv, logged=False)
    return wait_for(lab, children)


def wait_for(lab: subprocess.Popen[bytes], children: list[int]) -> int:
    """Wait for JupyterLab to end, reaping ``children`` (this process started them) when ``sgen-ops down``
    stops them meanwhile: unreaped, they would stay zombies. Ctrl-C stops JupyterLab, whose own session
    does not see the terminal's interrupt."""

    def reap() -> None:
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    try:
        while lab.poll() is None:
            reap()
            with contextlib.suppress(subprocess.TimeoutExpired):
                lab.wait(timeout=0.5)
    except KeyboardInterrupt:
        stop_tree(lab.pid)
        lab.wait()
    reap()
    return 0 if lab.returncode in (0, -signal.SIGTERM) else int(lab.returncode)


def stop_tree(pid: int) -> bool:
    """Stop a process and everything it started (JupyterLab and its kernels, each in a session of its
    own): SIGTERM the process, let it shut its children down, then stop whichever are left."""
    import psutil

    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    stopped = stop_process(pid)
    _gone, alive = psutil.wait_procs(descendants, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return stopped


def down() -> None:
    """Stop this home's demo processes (worker, scheduler, API, JupyterLab and its kernels) and its
    embedded Redis."""
    home = load_settings().home
    for pidfile in sorted(_pid_dir(home).glob("*.pid")):
        if stop_tree(int(pidfile.read_text())):
            print(f"stopped {pidfile.stem}")
        pidfile.unlink()
    if stop_redis(home):
        print(f"stopped the embedded Redis of {home}")


def serve_app(port: int = 8866) -> int:
    """Serve the operator views as a Voila app (no code cells)."""
    home = load_settings().home
    env = dict(os.environ, SGEN_OPS_HOME=str(home))
    return subprocess.call(
        [sys.executable, "-m", "voila", str(NOTEBOOKS / "app.ipynb"), f"--port={port}", "--no-browser"], env=env
    )
