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
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
import zmq
from sqlalchemy import func, select

from ..config import load_settings
from ..embedded import REDIS_URL_FILE, stop_process, stop_redis
from ..errors import SgenOpsError
from ..hub import Hub, connect
from ..ledger.store import Job
from ..runtime.execution import bind_hub
from ..runtime.workers import SgenWorker, worker_name

PROJECT = Path(__file__).resolve().parents[2]
NOTEBOOKS = PROJECT / "notebooks"
DEMO_OPERATOR = "ops-admin"
# The hash of the administrator token the demo made last (the next run revokes it).
DEMO_TOKEN_FILE = "demo-token.sha256"
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


class DemoClock:
    """sgen-ops's clock moved into the past for seeding history: inside ``running()`` every ``utcnow()`` of
    the package returns the moment last ``set``, plus the wall time elapsed since, times ``speedup`` (so a
    handler's few milliseconds of work become seconds of recorded run time). Everything else, the
    enqueue path, the worker, retries, backoff and the Activity Log, runs unchanged."""

    def __init__(self, start: datetime, speedup: float) -> None:
        self.speedup = speedup
        self.set(start)

    def set(self, moment: datetime) -> None:
        self._base, self._wall = moment, time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=(time.monotonic() - self._wall) * self.speedup)

    @contextlib.contextmanager
    def running(self) -> Iterator[DemoClock]:
        import importlib

        package = __name__.split(".")[0]
        for part in ("surface.declarations", "surface.operations", "surface.write", "ledger.stats", "ledger.jobs",
                     "transport.queue", "ledger.audit", "runtime.execution", "ledger.schedules", "runtime.scheduler",
                     "hub"):
            importlib.import_module(f"{package}.{part}")
        patched = [
            (module, module.utcnow)
            for name, module in list(sys.modules.items())
            if name.split(".")[0] == package and callable(getattr(module, "utcnow", None))
        ]
        for module, _original in patched:
            module.utcnow = self.now  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            for module, original in patched:
                module.utcnow = original  # type: ignore[attr-defined]


# Relative arrivals per hour of the day (UTC): quiet nights, a morning ramp, a busy working day.
HOURLY = (2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 9, 11, 12, 12, 11, 9, 7, 6, 5, 4, 3, 2)
WEEKEND = 0.35
SLICE = timedelta(minutes=5)
# Real milliseconds of handler work (median) per task; the demo clock's speedup turns them into seconds.
WORK_MS = {"webhook.dispatch": 3.0, "email.digest": 10.0, "import.products": 40.0, "cache.warm": 1.0,
           "report.weekly": 100.0}
SPEEDUP = 300.0
# Days of thinner history seeded before the week, so that some of it lies past the archive horizon.
OLDER_DAYS = 33


class _HistoryWorker(SgenWorker):
    """The burst worker without its pubsub channel (only for stop commands to a live worker), whose
    teardown would cost a fifth of a second per slice of history."""

    def subscribe(self) -> None:
        pass


def _run_due(hub: Hub) -> None:
    """``hub.work(burst=True)`` with the worker above."""
    bind_hub(hub)
    while True:
        hub.recover_lost()
        hub.transport.move_due()
        worker = _HistoryWorker(
            hub.transport.ordered_queues, connection=hub.redis, name=worker_name(hub.settings.queue_prefix)
        )
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
        if not hub.transport.has_due_work():
            return


def seed_history(hub: Hub, *, days: int = 7, per_day: int = 50, seed: int = 42, end: datetime | None = None,
                 step: timedelta = SLICE, incident: bool = True) -> int:
    """A week (``days``) of history before ``end`` (default now), through the ledger's own paths: jobs
    arrive at a rate that follows the hour of day and the weekday, a burst worker runs what is due every
    five minutes (``step``), and failing jobs retry on their backoff and dead-letter as they would live. Run
    times vary by task; a webhook endpoint goes down for an afternoon mid-week (timeouts, retries, dead letters
    that an administrator dismisses and an editor re-runs; ``incident`` False: none), and each morning's email
    digest and Monday's weekly report arrive on time. Returns the number of jobs created."""
    from worker import demo as demo_data

    rng = random.Random(seed)
    end = (end or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end.replace(minute=0) - timedelta(days=days)
    midday = datetime.combine(start.date() + timedelta(days=days // 2), datetime.min.time(), UTC)
    outage = (midday + timedelta(hours=14), midday + timedelta(hours=15, minutes=30))
    weekday_units = sum(HOURLY) * (days * 5 / 7 + days * 2 / 7 * WEEKEND)
    per_unit = per_day * days / weekday_units / (timedelta(hours=1) / step)
    clock = DemoClock(start, SPEEDUP)
    created = 0
    with clock.running():
        for name, role, account in demo_data.OPERATORS:
            with contextlib.suppress(SgenOpsError):
                hub.add_operator(name, role, account=account)
        moment = start
        while moment + step <= end:
            mean = per_unit * HOURLY[moment.hour] * (WEEKEND if moment.weekday() >= 5 else 1.0)
            count = _poisson(rng, mean)
            # Reports come from Monday's schedule only.
            specs = [spec for spec in demo_data.job_specs(rng, count) if spec[0] != "report.weekly"]
            if moment.minute == 0 and moment.hour == 7 and step <= timedelta(hours=1):
                specs += [s for s in demo_data.job_specs(rng, 40) if s[0] == "email.digest"][:3]
            if moment.minute == 0 and moment.hour == 6 and moment.weekday() == 0 and step <= timedelta(hours=1):
                specs += [s for s in demo_data.job_specs(rng, 40) if s[0] == "report.weekly"][:4]
            if incident and outage[0] <= moment < outage[1]:
                specs += _outage(demo_data.job_specs(rng, 3))
            arrivals = sorted(moment + timedelta(seconds=rng.uniform(0, step.total_seconds())) for _ in specs)
            for (task, payload, account), at in zip(specs, arrivals, strict=True):
                payload["work_ms"] = round(rng.lognormvariate(0, 0.6) * WORK_MS[task], 2)
                clock.set(at)
                hub.enqueue(task, payload, account=account)
            created += len(specs)
            clock.set(max(moment + step, clock.now()))
            if hub.transport.has_due_work():
                _run_due(hub)
            if incident and moment == outage[1] + timedelta(minutes=30):
                _triage_incident(hub, clock)
            moment += step
        clock.set(max(end, clock.now()))
        _run_due(hub)
    return created


def _poisson(rng: random.Random, mean: float) -> int:
    count, threshold, product = 0, math.exp(-mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _outage(specs: list[tuple[str, dict[str, Any], str]]) -> list[tuple[str, dict[str, Any], str]]:
    """Webhooks to one partner whose endpoint is down: every attempt times out."""
    return [
        ("webhook.dispatch", {**payload, "url": "https://hooks.globex.down.invalid/sgen/events", "flakiness": 0.0},
         "globex")
        for task, payload, _account in specs
        if task == "webhook.dispatch"
    ]


def _triage_incident(hub: Hub, clock: DemoClock) -> None:
    """After the outage: the administrator dismisses the outage's dead letters (the partner re-sent the
    events); the next morning an editor re-runs the imports that failed overnight."""
    admin, editor = hub.as_operator(DEMO_OPERATOR), hub.as_operator("ops-editor")
    for item in admin.list_jobs(state="dead-letter", task="webhook.dispatch", text="globex.down", per_page=100).items:
        admin.dismiss(item.id)
    clock.set(clock.now() + timedelta(hours=17))
    for item in editor.list_jobs(state="dead-letter", task="import.products", per_page=3).items:
        editor.rerun(item.id)


def seed_once(hub: Hub) -> None:
    from worker import demo as demo_data

    marker = hub.home / "demo-seeded"
    if marker.exists():
        print(f"demo data already seeded in {hub.home}")
        return
    seed = int(os.environ.get("SGEN_OPS_DEMO_SEED", "42"))
    started = time.monotonic()
    week = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    # A thinner month before the week, so that the history crosses the archive horizon (archive_after_days).
    older = seed_history(hub, days=OLDER_DAYS, per_day=8, seed=seed + 1, end=week, step=timedelta(hours=3),
                         incident=False)
    history = seed_history(hub, seed=seed)
    archived = hub.archive()
    counts = demo_data.seed(hub, seed=seed, jobs=40)
    marker.write_text("1")
    print(f"seeded {OLDER_DAYS + 7} days of history ({older + history} jobs, {archived} of them archived, "
          f"{time.monotonic() - started:.0f} s), {counts['jobs']} jobs now and {counts['schedules']} schedules in "
          f"{hub.home}")


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
    return url, demo_token(hub)


def demo_token(hub: Hub) -> str:
    """A new 30-day administrator token for this run of the demo; the one its last run made is revoked first,
    so that runs do not pile up live administrator tokens (a headless run's was never shown to anyone).
    Only the token's hash is kept, in ``DEMO_TOKEN_FILE`` under the home."""
    from ..ledger import tokens

    revoke_demo_token(hub)
    token = hub.create_token(DEMO_OPERATOR, expires_in="30d")
    hub.home.mkdir(parents=True, exist_ok=True)
    (hub.home / DEMO_TOKEN_FILE).write_text(tokens.digest(token) + "\n")
    return token


def revoke_demo_token(hub: Hub) -> bool:
    """Revoke the token the demo made last (if still live); True if there was one to revoke."""
    from ..ledger import tokens

    record = hub.home / DEMO_TOKEN_FILE
    if not record.exists() or not tokens.revoke_digest(hub.ledger, record.read_text().strip()):
        return False
    hub.access_changed()
    return True


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
        revoke_demo_token(hub)  # nobody was shown it
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
    print(f"administrator token ({DEMO_OPERATOR}, expires in 30 days; shown once; the next `make demo` revokes it):")
    print(token, flush=True)
    notebooks = workspace(hub.home)
    print(f"JupyterLab opens a working copy of notebooks/ in {notebooks} (the checkout stays clean)", flush=True)
    argv = [sys.executable, "-m", "jupyter", "lab", *lab_arguments(hub.home, notebooks)]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI machines often run as root
    lab = start_background(hub.home, "jupyterlab", argv, logged=False)
    return wait_for(lab, children)


# JupyterLab's settings the demo overrides: no "get notified about official Jupyter news?" prompt (it shows
# while fetchNews is "none", whatever the server's news_url) and no update check: the demo is about the queue.
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def lab_arguments(home: Path, notebooks: Path) -> list[str]:
    """``jupyter lab``'s arguments for the demo: the working copy of the notebooks, no news and no update
    check; the settings overrides go to a folder of the home (the operator's own settings stay as they are)."""
    settings = home / "jupyterlab-settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(LAB_OVERRIDES, indent=2) + "\n")
    return [f"--notebook-dir={notebooks}", f"--LabApp.app_settings_dir={settings}", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *kernel_arguments()]


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
    try:
        import psutil  # with ipykernel, which JupyterLab needs
    except ImportError:
        return stop_process(pid)
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


def serve_app(port: int = 8866, *, host: str = "127.0.0.1", operator: str | None = None) -> int:
    """Serve the operator views as a Voila app (no code cells) on ``host``:``port``, as ``operator``."""
    from ..config import served_only

    env = dict(os.environ)
    if served_only() is None:  # a client of the API names no home: its kernels keep nothing here
        env["SGEN_OPS_HOME"] = str(load_settings().home)
    if operator:
        env["SGEN_OPS_OPERATOR"] = operator
    argv = [sys.executable, "-m", "voila", str(NOTEBOOKS / "app.ipynb"), f"--port={port}", f"--Voila.ip={host}",
            "--no-browser", *kernel_arguments()]
    return subprocess.call(argv, env=env)


def kernel_arguments() -> list[str]:
    """The Jupyter server's kernel settings for the app and the demo: an encrypted connection where the kernel
    supports it, as the runbooks' kernels have (no plain text on the socket, no warning about it). Their
    sockets stay TCP: a Unix socket is named after the kernel's connection file, and under a long
    ``JUPYTER_RUNTIME_DIR`` that name passes the 107 bytes a socket's path may have."""
    return ["--KernelManager.transport_encryption=auto"] if zmq.has("curve") else []
