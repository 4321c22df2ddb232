"""``sgen-ops demo`` / ``make demo``: the embedded stack, demo data, a worker and the scheduler.

Interactive: starts the worker and the scheduler in the background (``sgen-ops down`` stops them)
and opens JupyterLab on ``notebooks/``. Headless: runs the queue in bursts, executes every notebook
into ``$SGEN_OPS_HOME/reports/`` and exits non-zero if anything failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from .config import load_settings
from .embedded import stop_process, stop_redis
from .hub import Hub, connect
from .store import Job

PROJECT = Path(__file__).resolve().parent.parent
NOTEBOOKS = PROJECT / "notebooks"
DEMO_OPERATOR = "ops-admin"


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

        return notebooks_run.execute_all(hub.home, operator=os.environ["SGEN_OPS_OPERATOR"])
    start_background(hub.home, "worker", ["worker"])
    start_background(hub.home, "scheduler", ["scheduler"])
    print(f"worker and scheduler running for {hub.home} (stop them with `make down`)")
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


def serve_app(port: int = 8866) -> int:
    """Serve the operator views as a Voila app (no code cells)."""
    home = load_settings().home
    env = dict(os.environ, SGEN_OPS_HOME=str(home))
    return subprocess.call(
        [sys.executable, "-m", "voila", str(NOTEBOOKS / "app.ipynb"), f"--port={port}", "--no-browser"], env=env
    )
