"""``python -m bench.soak`` (``make soak SOAK_ARGS=...``): the chaos soak, then its checker's table.

A seeded mix of jobs (quick, failing, slow with checkpoints, timing out) is enqueued while worker
processes of both classes (``sgen-ops worker`` and ``sgen-ops worker --fork``) run under faults: random
SIGKILLs of workers and of fork work horses, Redis killed and started again on the same port with no
persistence, PostgreSQL backends of the soak's connections terminated, with ``--db-outage SECONDS`` the
database itself stopped (``pg_ctl stop -m immediate`` of a private PostgreSQL cluster the soak runs) for that
long halfway through the chaos, and operator threads calling rerun, cancel, retry_now, trigger, replay and
update_job on random jobs. Then a drain: the chaos stops,
the workers keep running, ``sgen-ops reconcile`` runs every few seconds until every job is terminal or
the drain's deadline passes. The tasks (``bench.soak_tasks``) log each attempt's start and finish to
an fsynced append-only log; the harness logs its enqueues, kills and restarts to the same file.
``bench.soak_check`` compares that log with the ledger and prints one table; the exit status is its
verdict. Every process the soak started is gone when it returns.

Run directory (``--workdir``, kept): ``attempts.log``, ``ledger.json`` (the rows checked),
``report.json``, the workers' output under ``workers/``, and the SQLite ledger.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, func, select, text

import sgen_ops
from sgen_ops.core.states import NON_TERMINAL
from sgen_ops.embedded import start_redis_server, stop_process
from sgen_ops.ledger.store import Job

from .common import record, sqlalchemy_url
from .eventlog import append_line
from .pgcluster import PrivateCluster
from .soak_check import Report, check, parse_log, read_ledger
from .soak_tasks import LOG_ENV

ROOT = Path(__file__).resolve().parent.parent
RUN_ENV = "SGEN_SOAK_RUN"  # marks every process of one soak, so that teardown finds strays by it
OPERATOR = "soak-admin"
OPERATIONS = ("update_job", "rerun", "retry_now", "trigger", "cancel", "replay")
OPERATION_WEIGHTS = (30, 20, 15, 15, 10, 10)


@dataclass
class Options:
    seconds: float = 300.0
    jobs: int = 2000
    workers: int = 4
    backend: str = "sqlite"
    database_url: str | None = None
    seed: int = 12
    long_share: float = 0.1
    kill_min: float = 2.0
    kill_max: float = 4.0
    kill_when: str = "any"
    horse_kills: bool = True
    redis_restarts: int = 2
    redis_outage: float = 2.0
    pg_every: float = 20.0
    operators: int = 2
    drain_seconds: float = 180.0
    reconcile_every: float = 5.0
    worker_lost_after: float = 10.0
    maintenance_interval: int = 5
    db_outage: float = 0.0  # seconds the database is stopped (PostgreSQL, a private cluster); 0: never
    db_outage_at: float = 0.5  # when, as a share of the chaos
    workdir: Path | None = None
    keep_database: bool = False
    record: bool = False

    def describe(self) -> str:
        kinds = ", ".join(worker_kind(i) for i in range(self.workers))
        kills = f"every {self.kill_min:g}-{self.kill_max:g} s ({self.kill_when}"
        kills += ", workers and horses)" if self.horse_kills else ", workers only)"
        pg = f"PostgreSQL backends terminated every {self.pg_every:g} s" if self.backend == "postgresql" else ""
        if self.backend == "postgresql" and self.db_outage:
            pg += (f"; the database stopped (pg_ctl stop -m immediate) for {self.db_outage:g} s at "
                   f"{self.db_outage_at:.0%} of the chaos")
        return "; ".join(
            p
            for p in (
                f"backend {self.backend}",
                f"{self.jobs} jobs (seed {self.seed}, {self.long_share:.0%} of the slow ones 12-20 s)",
                f"{self.workers} workers ({kinds})",
                f"{self.seconds:g} s of chaos",
                f"SIGKILL {kills}",
                f"{self.redis_restarts} Redis restarts ({self.redis_outage:g} s down)",
                pg,
                f"{self.operators} operator threads",
                f"drain up to {self.drain_seconds:g} s with reconcile every {self.reconcile_every:g} s",
                f"worker_lost_after {self.worker_lost_after:g} s, maintenance_interval {self.maintenance_interval} s",
            )
            if p
        )


def commit() -> str:
    """The checked-out commit, marked when the work tree differs from it (RESULTS.md, which runs write, aside)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/RESULTS.md")
    return head + (" (with uncommitted changes)" if changed else "")


def sgen_ops_cli() -> str:
    """The ``sgen-ops`` command of this interpreter's environment."""
    return shutil.which("sgen-ops", path=str(Path(sys.executable).parent)) or "sgen-ops"


def worker_kind(i: int) -> str:
    """Workers alternate between the two classes, the default one first."""
    return "simple" if i % 2 == 0 else "fork"


def job_mix(n: int, seed: int, long_share: float = 0.1) -> list[tuple[str, dict[str, Any]]]:
    """The seeded jobs: 60% quick, 15% failing (a third of them past their budget), 18% slow (``long_share``
    of them longer than the soak's worker_lost_after, so that a run outliving its worker shows), 7% timing out."""
    rng = random.Random(seed)
    jobs: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        r = rng.random()
        if r < 0.60:
            jobs.append(("soak.quick", {"i": i}))
        elif r < 0.75:
            jobs.append(("soak.failing", {"i": i, "succeed_on": rng.choice((2, 3, 4))}))
        elif r < 0.93:
            seconds = rng.uniform(12.0, 20.0) if rng.random() < long_share else rng.uniform(0.3, 1.5)
            jobs.append(("soak.slow", {"i": i, "seconds": round(seconds, 2)}))
        else:
            jobs.append(("soak.timeout", {"i": i, "seconds": 3}))
    return jobs


# -- processes ------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (a fork worker's work horse), found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def marked_processes(run_id: str) -> list[int]:
    """Every live process whose environment carries this soak's mark (workers, horses, reconcilers)."""
    mark = f"{RUN_ENV}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@dataclass
class Worker:
    kind: str
    popen: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    noted: bool = False  # its end is in the log

    @property
    def pid(self) -> int:
        return self.popen.pid


class Soak:
    """One soak run: its stores, its processes, its log."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.prefix = f"soak{self.run_id}"
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="sgen-soak-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "attempts.log"
        self.log_path.unlink(missing_ok=True)
        (self.workdir / "workers").mkdir(exist_ok=True)
        self.workers: list[Worker | None] = [None] * options.workers
        self.worker_serial = 0
        self.kills = 0  # SIGKILLs the chaos phase sent
        self.redis_pid = 0
        self.redis_pids: list[int] = []  # every redis-server the soak started
        self.redis_port = 0
        self.redis_url = ""
        self.database_url = ""
        self.pg_admin_url: str | None = None
        self.pg_schema: str | None = None
        self.cluster: PrivateCluster | None = None
        self.outage_ends = 0.0  # monotonic time the stopped database is started again; 0: not stopped
        self.app_name = f"sgen-soak-{self.run_id}"
        self.hub: sgen_ops.Hub | None = None
        self.stop_operators = threading.Event()
        self.operator_counts = {"done": 0, "refused": 0, "errors": 0}
        self.counts_lock = threading.Lock()
        self.acknowledged: list[int] = []
        self.enqueue_failures = 0
        self.quits = 0  # workers that ended on their own (not killed by the soak) before the teardown
        self.log_offset = 0
        self.open_attempts: dict[tuple[int, int, int, int], int] = {}  # (job, run, attempt, pid) -> ppid
        self.attempt_pids: set[int] = set()  # every process that logged a start

    # -- the log --------------------------------------------------------------------------------
    def note(self, event: str, **fields: Any) -> None:
        append_line(str(self.log_path), {"event": event, "mono": time.monotonic(), "wall": time.time(), **fields})

    def follow_log(self) -> None:
        """Read the log's new whole lines: which attempts are running in which process."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.log_offset += end
        for line in data[:end].splitlines():
            e = json.loads(line)
            if e["event"] == "start":
                self.attempt_pids.add(e["pid"])
                self.open_attempts[(e["job"], e["run"], e["attempt"], e["pid"])] = e["ppid"]
            elif e["event"] == "finish":
                self.open_attempts.pop((e["job"], e["run"], e["attempt"], e["pid"]), None)

    # -- stores ---------------------------------------------------------------------------------
    def start_stores(self) -> None:
        if self.o.backend == "sqlite":
            self.database_url = f"sqlite:///{self.workdir / 'ledger.db'}"
            (self.workdir / "ledger.db").unlink(missing_ok=True)
        else:
            base = self.o.database_url or os.environ.get("SGEN_OPS_SOAK_DATABASE_URL") or os.environ.get(
                "SGEN_OPS_TEST_DATABASE_URL"
            )
            if self.o.db_outage:
                # A server of the soak's own: it is stopped and started, which no shared server may be.
                self.cluster = PrivateCluster()
                self.cluster.init()
                base = self.cluster.url
            if not base:
                raise SystemExit(
                    "--backend postgresql needs --database-url (or SGEN_OPS_SOAK_DATABASE_URL): a database "
                    "the soak may make a schema in, e.g. postgresql://postgres@127.0.0.1:5432/postgres"
                )
            self.pg_admin_url = sqlalchemy_url(base)
            self.pg_schema = f"soak_{self.run_id}"
            admin = create_engine(self.pg_admin_url)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.pg_schema}"'))
            admin.dispose()
            sep = "&" if "?" in self.pg_admin_url else "?"
            options = quote(f"-csearch_path={self.pg_schema}")
            # The application name tells the soak's connections apart for pg_terminate_backend.
            self.database_url = f"{self.pg_admin_url}{sep}options={options}&application_name={self.app_name}"
        url, self.redis_pid = start_redis_server(self.workdir / "redis")
        self.redis_pids.append(self.redis_pid)
        self.redis_url = url
        self.redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.hub = sgen_ops.connect(**self.settings(), auto_upgrade=True)
        self.hub.add_operator(OPERATOR, "administrator")

    def settings(self) -> dict[str, Any]:
        return {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "home": self.workdir / "home",
            "task_modules": "bench.soak_tasks",
            "queue_prefix": self.prefix,
            "worker_lost_after": self.o.worker_lost_after,
            "maintenance_interval": self.o.maintenance_interval,
        }

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in self.settings().items():
            env[f"SGEN_OPS_{key.upper()}"] = str(value)
        env[LOG_ENV] = str(self.log_path)
        env[RUN_ENV] = self.run_id
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def restart_redis(self) -> None:
        """SIGKILL Redis, leave it down a while, start it again on the same port: empty."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.redis_pid, signal.SIGKILL)
        while alive(self.redis_pid):
            time.sleep(0.01)
        self.note("redis-restart", pid=self.redis_pid, outage=self.o.redis_outage)
        time.sleep(self.o.redis_outage)
        _url, self.redis_pid = start_redis_server(self.workdir / "redis", self.redis_port)
        self.redis_pids.append(self.redis_pid)

    def stop_database(self) -> None:
        """The database goes away as in a crash or a failover: every connection cut, nothing checkpointed."""
        assert self.cluster is not None
        self.cluster.stop()
        self.outage_ends = time.monotonic() + self.o.db_outage
        self.note("db-outage", outage=self.o.db_outage)

    def start_database(self) -> None:
        assert self.cluster is not None
        self.cluster.start()
        self.outage_ends = 0.0
        self.note("db-back")

    def terminate_pg_backends(self) -> None:
        assert self.pg_admin_url is not None
        admin = create_engine(self.pg_admin_url, connect_args={"application_name": "sgen-soak-harness"})
        try:
            with admin.begin() as conn:
                n = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": self.app_name},
                ).scalar()
        finally:
            admin.dispose()
        self.note("pg-terminate", count=int(n or 0))

    # -- workers --------------------------------------------------------------------------------
    def start_worker(self, slot: int) -> None:
        kind = worker_kind(slot)
        self.worker_serial += 1
        argv = [sgen_ops_cli(), "--log-level", "WARNING", "worker", "--concurrency", "1"]
        with (self.workdir / "workers" / f"{self.worker_serial:04d}-{kind}.log").open("wb") as out:
            popen = subprocess.Popen(
                [*argv, *(["--fork"] if kind == "fork" else [])],
                cwd=ROOT,
                env=self.child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers[slot] = Worker(kind, popen)
        self.note("worker-start", pid=popen.pid, kind=kind)

    def keep_workers(self) -> None:
        """Replace every worker that died (killed, or quit on its own) with a new one of its class."""
        for slot, worker in enumerate(self.workers):
            if worker is not None and worker.popen.poll() is None:
                continue
            if worker is not None:
                if not worker.noted:
                    worker.noted = True
                    self.quits += 1
                    self.note("exit", pid=worker.pid, what="worker", status=worker.popen.returncode)
                if time.monotonic() - worker.started < 1.0:
                    continue  # one that died at once (Redis down) is replaced a second after it started
            self.start_worker(slot)

    def kill_something(self) -> bool:
        """One SIGKILL: a work horse (sometimes, when there is one) or a worker. False if none was fit."""
        live = [w for w in self.workers if w is not None and w.popen.poll() is None]
        if not live:
            return False
        self.follow_log()
        if self.o.horse_kills and self.rng.random() < 0.35:
            horses = [h for w in live if w.kind == "fork" for h in children_of(w.pid)]
            if horses:
                pid = self.rng.choice(horses)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.note("kill", pid=pid, what="horse")
                return True
        if self.o.kill_when == "busy":
            # Only a worker inside an attempt (its own or its horse's): past the claim, before the record.
            busy = {k[3] for k in self.open_attempts} | set(self.open_attempts.values())
            live = [w for w in live if w.pid in busy]
            if not live:
                return False
        worker = self.rng.choice(live)
        worker.popen.kill()
        worker.popen.wait()
        worker.noted = True
        self.note("kill", pid=worker.pid, what="worker", kind=worker.kind)
        for key in [k for k, ppid in self.open_attempts.items() if worker.pid in (k[3], ppid)]:
            del self.open_attempts[key]
        self.start_worker(self.workers.index(worker))
        return True

    # -- the load -------------------------------------------------------------------------------
    def enqueue_all(self, window: float) -> None:
        assert self.hub is not None
        mix = job_mix(self.o.jobs, self.o.seed, self.o.long_share)
        batches = max(1, int(window / 0.5))
        size = max(1, -(-len(mix) // batches))
        for start in range(0, len(mix), size):
            batch = mix[start : start + size]
            by_task: dict[str, list[dict[str, Any]]] = {}
            for task, payload in batch:
                by_task.setdefault(task, []).append(payload)
            for task, payloads in by_task.items():
                while True:
                    try:
                        ids = self.hub.enqueue_many(task, payloads)
                    except Exception:  # noqa: BLE001 - a fault the soak made: not acknowledged, tried again
                        self.enqueue_failures += 1
                        time.sleep(0.5)
                        continue
                    self.note("enqueued", jobs=ids)
                    self.acknowledged += ids
                    break
            time.sleep(0.5)

    def operate(self, n: int) -> None:
        """An operator: random writes on random jobs; refusals (the state machine's) are expected."""
        assert self.hub is not None
        rng = random.Random(self.o.seed * 1000 + n)
        ops = None
        while not self.stop_operators.wait(rng.uniform(0.1, 0.6)):
            if not self.acknowledged:
                continue
            job_id = rng.choice(self.acknowledged)
            name = rng.choices(OPERATIONS, OPERATION_WEIGHTS)[0]
            try:
                ops = ops or self.hub.as_operator(OPERATOR)
                if name == "update_job":
                    ops.update_job(job_id, priority=rng.choice(("high", "normal", "low")))
                else:
                    getattr(ops, name)(job_id)
                outcome = "done"
            except sgen_ops.SgenOpsError:
                outcome = "refused"
            except Exception:  # noqa: BLE001 - Redis or the database went away under it: the soak's doing
                outcome = "errors"
            with self.counts_lock:
                self.operator_counts[outcome] += 1

    def waiting(self) -> int:
        assert self.hub is not None
        with self.hub.ledger.read() as session:
            states = [s.value for s in NON_TERMINAL]
            return int(session.scalar(select(func.count()).select_from(Job).where(Job.state.in_(states))) or 0)

    def reconcile(self) -> None:
        subprocess.run(
            [sgen_ops_cli(), "--log-level", "WARNING", "reconcile"],
            cwd=ROOT,
            env=self.child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )

    def markdown(self, report: Report, summary: dict[str, Any]) -> str:
        """The run's section of bench/RESULTS.md: when, on what, with which settings, and the table."""
        strays = summary["strays_killed_at_teardown"]
        return "\n".join(
            [
                f"### {self.o.backend}: {summary['date']}, commit {commit()}",
                "",
                f"Settings: {summary['settings']}.",
                "",
                report.table(),
                "",
                f"Verdict: {'passed' if report.ok else 'FAILED (' + ', '.join(report.failed) + ')'}. "
                f"Drain {summary['drain_seconds']:.0f} s; operator calls {summary['operators']}; "
                f"enqueue batches refused and sent again: {summary['enqueue_failures']}; workers that quit on their "
                f"own and were replaced: {summary['workers_quit']}; alive when the workers "
                f"were stopped, then killed: {strays['horses']} work horses, {strays['other']} other processes "
                "(RQ scheduler processes orphaned by killed workers).",
                *(["", "Jobs behind the counts:", "", *[f"- {line}" for line in report.details().splitlines()]]
                  if report.details() else []),
            ]
        )

    # -- the run --------------------------------------------------------------------------------
    def chaos(self) -> None:
        o = self.o
        begin = time.monotonic()
        end = begin + o.seconds
        restarts = [begin + o.seconds * (i + 1) / (o.redis_restarts + 1) for i in range(o.redis_restarts)]
        next_kill = begin + self.rng.uniform(o.kill_min, o.kill_max)
        next_pg = begin + o.pg_every
        outage_at = begin + o.seconds * o.db_outage_at if self.cluster is not None else math.inf
        # A chaos phase that killed nothing (on a loaded machine no worker may have been busy at the moments it
        # tried) goes on, up to twice its length again, until its first kill: a soak without one proves little.
        while (now := time.monotonic()) < end or self.outage_ends or (
                o.kill_max > 0 and self.kills == 0 and now < end + 2 * o.seconds):
            self.keep_workers()
            if self.outage_ends and now >= self.outage_ends:
                self.start_database()
            elif now >= outage_at:
                outage_at = math.inf
                self.stop_database()
            elif self.outage_ends:
                pass  # no backends to terminate while the server is down
            elif restarts and now >= restarts[0]:
                restarts.pop(0)
                self.restart_redis()
            elif o.backend == "postgresql" and o.pg_every > 0 and now >= next_pg:
                next_pg = now + o.pg_every
                with contextlib.suppress(Exception):
                    self.terminate_pg_backends()
            elif o.kill_max > 0 and now >= next_kill:
                killed = self.kill_something()
                self.kills += killed
                next_kill = now + (self.rng.uniform(o.kill_min, o.kill_max) if killed else 0.5)
            time.sleep(0.1)

    def drain(self) -> float:
        begin = time.monotonic()
        deadline = begin + self.o.drain_seconds
        while True:
            self.keep_workers()
            self.reconcile()
            left = None
            with contextlib.suppress(Exception):
                left = self.waiting()
            if left == 0 or time.monotonic() > deadline:
                return time.monotonic() - begin
            pause = time.monotonic() + self.o.reconcile_every
            while time.monotonic() < pause:
                self.keep_workers()
                time.sleep(0.2)

    def stop_processes(self) -> dict[str, int]:
        """Stop the workers, then SIGKILL anything of this soak still alive; returns the strays by kind: work
        horses (processes that ran an attempt) and others (RQ's scheduler process of a killed worker)."""
        for worker in self.workers:
            if worker is not None and worker.popen.poll() is None:
                worker.popen.terminate()
        for worker in self.workers:
            if worker is None:
                continue
            try:
                worker.popen.wait(15)
            except subprocess.TimeoutExpired:
                worker.popen.kill()
                worker.popen.wait()
            if not worker.noted:
                worker.noted = True
                self.note("exit", pid=worker.pid, what="worker", status=worker.popen.returncode)
        self.workers = [None] * len(self.workers)
        strays = marked_processes(self.run_id)
        self.follow_log()
        kinds = {"horses": 0, "other": 0}
        for pid in strays:
            kinds["horses" if pid in self.attempt_pids else "other"] += 1
            stat = _stat(pid)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmdline = "?"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.note("kill", pid=pid, what="stray", ppid=stat[1] if stat else None, cmdline=cmdline.strip())
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in strays) and time.monotonic() < deadline:
            time.sleep(0.05)
        return kinds

    def close_stores(self) -> None:
        if self.cluster is not None and not self.cluster.running:
            self.cluster.start()
        if self.hub is not None:
            self.hub.close()
            self.hub = None
        if self.redis_pid:
            stop_process(self.redis_pid)
            self.redis_pid = 0
        if self.pg_schema and self.pg_admin_url and not self.o.keep_database:
            admin = create_engine(self.pg_admin_url)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.pg_schema}" CASCADE'))
            admin.dispose()
        if self.cluster is not None:
            self.cluster.remove()
            self.cluster = None

    def run(self) -> int:
        o = self.o
        print(f"soak {self.run_id}: {o.describe()}\nrun directory: {self.workdir}", flush=True)
        # What the soak's own hub logs (Redis refusing deliveries while it is down) goes to the run directory.
        logging.basicConfig(
            filename=str(self.workdir / "harness.log"),
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            self.start_stores()
            assert self.hub is not None
            for slot in range(o.workers):
                self.start_worker(slot)
            loader = threading.Thread(target=self.enqueue_all, args=(o.seconds * 0.6,), daemon=True)
            loader.start()
            operators = [threading.Thread(target=self.operate, args=(n,), daemon=True) for n in range(o.operators)]
            for t in operators:
                t.start()
            self.chaos()
            self.stop_operators.set()
            for t in operators:
                t.join(60)
            loader.join()
            print(f"chaos over: {len(self.acknowledged)} jobs acknowledged; draining", flush=True)
            drained = self.drain()
            strays = self.stop_processes()
            rows = read_ledger(self.hub.ledger)
            verified = self.hub.as_operator(OPERATOR).verify_audit()
            rows.audit_ok, rows.audit_message = verified.ok, verified.message
        finally:
            self.stop_operators.set()
            leftover = self.stop_processes()
            self.close_stores()
        report = check(parse_log(self.log_path.read_text()), rows)
        (self.workdir / "ledger.json").write_text(json.dumps(rows.to_json()))
        summary = {
            "run_id": self.run_id,
            "settings": o.describe(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "drain_seconds": round(drained, 1),
            "strays_killed_at_teardown": strays,
            "strays_after_teardown": leftover,
            "redis_pids": self.redis_pids,
            "operators": self.operator_counts,
            "enqueue_failures": self.enqueue_failures,
            "workers_quit": self.quits,
            "report": report.to_json(),
        }
        (self.workdir / "report.json").write_text(json.dumps(summary, indent=1, default=str))
        print(report.table())
        details = report.details()
        if details:
            print(details)
        print(
            f"drain: {drained:.0f} s; operators: {self.operator_counts}; enqueue batches refused: "
            f"{self.enqueue_failures}; workers that quit on their own (replaced): {self.quits}; "
            "processes of the soak found alive after its workers stopped (killed): "
            f"{strays['horses']} work horses, {strays['other']} others (RQ scheduler processes of killed workers)"
        )
        if o.record:
            record(f"soak-{o.backend}", self.markdown(report, summary))
        if sum(leftover.values()):
            print(f"processes still alive after the teardown, killed: {leftover}", file=sys.stderr)
            return 1
        if not report.ok:
            print(f"soak FAILED: {', '.join(report.failed)}", file=sys.stderr)
            return 1
        return 0


@contextlib.contextmanager
def _quiet_sigterm() -> Iterator[None]:
    # SIGTERM (as from `make` interrupted) unwinds through the finally blocks: nothing is left behind.
    def raise_exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse(argv: list[str] | None = None) -> Options:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=d.seconds, help="chaos phase length")
    p.add_argument("--jobs", type=int, default=d.jobs, help="jobs enqueued during the first 60%% of the chaos")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes, alternating default and --fork")
    p.add_argument("--backend", choices=("sqlite", "postgresql"), default=d.backend)
    p.add_argument("--database-url", help="PostgreSQL server database the soak makes its schema in "
                   "(default: SGEN_OPS_SOAK_DATABASE_URL, then SGEN_OPS_TEST_DATABASE_URL)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--long-share", type=float, default=d.long_share,
                   help="share of the slow jobs that run 12-20 s, past the lease (default 0.1)")
    p.add_argument("--kill-every", nargs=2, type=float, default=(d.kill_min, d.kill_max), metavar=("MIN", "MAX"),
                   help="seconds between SIGKILLs, drawn uniformly (0 0: no kills)")
    p.add_argument("--kill-when", choices=("any", "busy"), default=d.kill_when,
                   help="any: a random worker at a random moment; busy: only a worker inside an attempt")
    p.add_argument("--no-horse-kills", dest="horse_kills", action="store_false")
    p.add_argument("--redis-restarts", type=int, default=d.redis_restarts)
    p.add_argument("--redis-outage", type=float, default=d.redis_outage, help="seconds Redis stays down")
    p.add_argument("--pg-every", type=float, default=d.pg_every,
                   help="seconds between PostgreSQL backend terminations (0: none)")
    p.add_argument("--operators", type=int, default=d.operators, help="operator threads")
    p.add_argument("--drain-seconds", type=float, default=d.drain_seconds)
    p.add_argument("--reconcile-every", type=float, default=d.reconcile_every)
    p.add_argument("--worker-lost-after", type=float, default=d.worker_lost_after)
    p.add_argument("--maintenance-interval", type=int, default=d.maintenance_interval)
    p.add_argument("--db-outage", type=float, default=d.db_outage, metavar="SECONDS",
                   help="PostgreSQL: stop the database (a private cluster the soak runs, not --database-url) for "
                   "this long (0: never)")
    p.add_argument("--db-outage-at", type=float, default=d.db_outage_at,
                   help="when the database stops, as a share of the chaos (default 0.5)")
    p.add_argument("--workdir", type=Path, help="run directory (default: a new one under the temp dir)")
    p.add_argument("--keep-database", action="store_true", help="keep the PostgreSQL schema")
    p.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md (soak-BACKEND)")
    a = vars(p.parse_args(argv))
    a["kill_min"], a["kill_max"] = a.pop("kill_every")
    return Options(**a)


def main(argv: list[str] | None = None) -> int:
    with _quiet_sigterm():
        return Soak(parse(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
