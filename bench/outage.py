"""``python -m bench.outage``: what happens to running workers, the CLI, the API and ``enqueue`` when the ledger or
Redis goes away, in one table (issue 20). Each scenario runs real processes on services of its own, and
``tests/outage`` asserts on the same figures.

* ``database``: a private PostgreSQL cluster stopped with ``pg_ctl stop -m immediate`` for longer than the lease
  while four workers (two ``--fork``, two simple) run: a long attempt on each class (it outlives the lease, so
  its worker must stop it), a short one on each class that finishes during the outage (its outcome must be
  kept), deliveries waiting on the queues (none may be dropped), a delayed job due during the outage, a retry.
  During the outage: ``sgen-ops jobs list``, the API (``sgen-ops serve``), and ``enqueue``.
* ``checkpoints``: the same outage over a simple worker whose handler has no checkpoints.
* ``redis``: a private redis-server killed with ``kill -9`` and started again empty on its port while attempts
  run on both classes; a delayed job and a retry fall due during the outage; ``sgen-ops info`` and
  ``GET /healthz`` (which need Redis) are called during it.
* ``start``: a worker started while the database is down, and one started while Redis is down.
* ``scheduler``: the worker whose RQ scheduler moves delayed jobs is killed (SIGKILL); a delayed job falls due.

Figures per scenario: overlapping attempt intervals (from the tasks' tick log: an attempt ran from its start to
its finish or its last tick), jobs lost (not terminal at the end), outcomes thrown away (an attempt whose
handler finished without error but which the ledger recorded otherwise, and the job ran again), deliveries
dropped (workers' "could not run delivery"), tracebacks in the workers' output, the answers of the CLI, the API
and ``enqueue``, and the lateness of delayed jobs and retries: an attempt's start minus the later of its due
time and the service's return.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

import sgen_ops
from sgen_ops.embedded import start_redis_server, stop_process

from .outage_tasks import TICK
from .pgcluster import free_port, private_cluster

ROOT = Path(__file__).resolve().parent.parent
TASKS = "worker.catalog,bench.outage_tasks"
ADMIN = "outage-admin"
TERMINAL = frozenset({"succeeded", "failed", "dead-letter", "cancelled", "resolved"})


# -- the tasks' log ----------------------------------------------------------------------------------
@dataclass
class Span:
    job: int
    run: int
    attempt: int
    pid: int
    ppid: int
    start: float
    end: float  # its finish, else its last tick plus a tick: it did not run past that
    outcome: str | None  # what its finish said; None when it never finished (its process was killed)


def spans(log: Path) -> list[Span]:
    found: dict[tuple[int, int, int, int], Span] = {}
    if not log.exists():
        return []
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        key = (e["job"], e["run"], e["attempt"], e["pid"])
        if e["event"] == "start":
            found[key] = Span(e["job"], e["run"], e["attempt"], e["pid"], e["ppid"], e["mono"], e["mono"] + TICK, None)
        elif key in found:
            span = found[key]
            if e["event"] == "tick":
                span.end = max(span.end, e["mono"] + TICK)
            elif e["event"] == "finish":
                span.end, span.outcome = e["mono"], e["outcome"]
    return sorted(found.values(), key=lambda s: s.start)


def overlaps(all_spans: list[Span]) -> list[tuple[int, tuple[int, int], tuple[int, int], float]]:
    """(job, (run, attempt), (run, attempt), seconds) for every two attempts of one job that ran at once."""
    by_job: dict[int, list[Span]] = defaultdict(list)
    for span in all_spans:
        by_job[span.job].append(span)
    found = []
    for runs in by_job.values():
        runs.sort(key=lambda s: s.start)
        for i, a in enumerate(runs):
            found += [(a.job, (a.run, a.attempt), (b.run, b.attempt), round(min(a.end, b.end) - b.start, 2))
                      for b in runs[i + 1:] if b.start < a.end]
    return found


# -- processes -------------------------------------------------------------------------------------
class Proc:
    """A child process whose output goes to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_until(condition: Callable[[], Any], timeout: float, what: str = "") -> Any:
    """Poll ``condition`` (errors count as not yet) until it is truthy; None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a service on its way back
            value = None
        if value:
            return value
        time.sleep(0.05)
    return None


class Redis:
    """A private redis-server that can be killed and started again, empty, on its port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url, self.pid = start_redis_server(directory)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        wait_until(lambda: not alive(self.pid), 10)

    def start(self) -> None:
        self.url, self.pid = start_redis_server(self.directory, self.port)

    def stop(self) -> None:
        if self.pid:
            stop_process(self.pid)
            self.pid = 0


# -- one scenario's stack ----------------------------------------------------------------------------
@dataclass
class Result:
    """What one scenario saw."""

    scenario: str
    jobs: int = 0
    overlaps: list[Any] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    thrown_away: list[Any] = field(default_factory=list)
    # Attempts whose handler the outage itself broke (a driver error raised into it, as by a checkpoint).
    broken: list[Any] = field(default_factory=list)
    reruns: int = 0
    fenced: int = 0
    dropped: int = 0
    tracebacks: int = 0
    worker_exits: list[str] = field(default_factory=list)
    cli: str = ""
    api: str = ""
    enqueue: str = ""
    lateness: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        def late(v: float | None) -> str:
            return "never" if v is None else f"{v:.1f} s"

        rows = [
            ("jobs", str(self.jobs)),
            ("overlapping attempts", str(len(self.overlaps)) + (f" {self.overlaps[:3]}" if self.overlaps else "")),
            ("jobs lost (not terminal)", str(len(self.lost))),
            ("outcomes thrown away (run again)", str(len(self.thrown_away))),
            ("handlers failed by the outage itself", str(len(self.broken))
             + (f" ({', '.join(sorted({b[-1] for b in self.broken}))})" if self.broken else "")),
            ("attempts stopped by their worker (fenced)", str(self.fenced)),
            ("re-runs", str(self.reruns)),
            ("deliveries dropped", str(self.dropped)),
            ("tracebacks in worker output", str(self.tracebacks)),
        ]
        if self.worker_exits:
            rows.append(("workers that ended", "; ".join(self.worker_exits)))
        rows += [(f"lateness: {name}", late(v)) for name, v in self.lateness.items()]
        for name, value in (("CLI", self.cli), ("API", self.api), ("enqueue", self.enqueue)):
            if value:
                rows.append((name, value))
        rows += [("note", n) for n in self.notes]
        return rows


class Scene:
    """The stack of one scenario: ledger URL, a private Redis, the processes, the tasks' log."""

    def __init__(self, workdir: Path, database_url: str, redis: Redis, lease: float) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.redis = redis
        self.lease = lease
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "runs.log"
        self.prefix = f"o{uuid.uuid4().hex[:8]}"
        self.procs: list[Proc] = []
        self.workers: list[tuple[str, Proc]] = []
        self.hub = sgen_ops.connect(**self.settings(), auto_upgrade=True)
        self.ids: list[int] = []
        self.token = ""
        self.details: dict[str, Any] = {}
        self.remote: Any = None
        self.local: Any = None

    def settings(self) -> dict[str, Any]:
        return {"database_url": self.database_url, "redis_url": self.redis.url, "home": self.home,
                "task_modules": TASKS, "queue_prefix": self.prefix, "worker_lost_after": self.lease,
                "maintenance_interval": 1}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in self.settings().items():
            env[f"SGEN_OPS_{key.upper()}"] = str(value)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["SGEN_OPS_OPERATOR"] = ADMIN
        return env

    def worker(self, kind: str) -> Proc:
        argv = [sys.executable, "-m", "worker", "--concurrency", "1", *(["--fork"] if kind == "fork" else [])]
        proc = Proc(argv, self.env(), self.home / f"worker-{len(self.workers)}-{kind}.log")
        self.procs.append(proc)
        self.workers.append((kind, proc))
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sgen_ops.cli", *args], cwd=ROOT, env=self.env(),
                              capture_output=True, text=True, timeout=120, check=False)

    def serve(self) -> str:
        """``sgen-ops serve`` on a free port, up; returns its URL."""
        self.hub.add_operator(ADMIN, "administrator")
        self.token = self.hub.create_token(ADMIN)
        port = free_port()
        proc = Proc([sys.executable, "-m", "sgen_ops.cli", "--log-level", "WARNING", "serve", "--port", str(port)],
                    self.env(), self.home / "serve.log")
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        if not wait_until(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, 60):
            raise RuntimeError(f"the API did not start:\n{proc.output()[-2000:]}")
        return url

    def ask_api(self, url: str, path: str) -> str:
        """One call of the API, summed up (and kept whole in ``details["api_answers"]``)."""
        try:
            answer = httpx.get(url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        except httpx.HTTPError as exc:
            return f"no answer ({type(exc).__name__})"
        try:
            body = answer.json()
            detail = str(body.get("detail", "")) if isinstance(body, dict) and "detail" in body else answer.text
        except ValueError:
            detail = answer.text
        retry = answer.headers.get("retry-after")
        kind = answer.headers.get("content-type", "").split(";")[0]
        self.details.setdefault("api_answers", {})[path] = {
            "status": answer.status_code, "type": kind, "retry_after": retry, "detail": detail, "text": answer.text}
        return f"{answer.status_code} {kind}{f', Retry-After {retry}' if retry else ''}: {detail[:140]}"

    def ask_cli(self, *args: str) -> str:
        """One CLI command, summed up (and kept whole in ``details["cli_answers"]``)."""
        done = self.cli(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        self.details.setdefault("cli_answers", {})[" ".join(args)] = {
            "status": done.returncode, "stderr": lines, "stdout": done.stdout}
        first = lines[0][:160] if lines else ""
        traceback = " (with a traceback)" if "Traceback" in done.stderr else ""
        return f"exit {done.returncode}, {len(lines)} line(s) on stderr{traceback}: {first}"

    def ask_ops(self) -> dict[str, str]:
        """Operations as an administrator, locally and through the API's remote client: what each raised."""
        answers = {}
        for where, ops in (("local", self.local), ("remote", self.remote)):
            if ops is None:
                continue
            calls = {
                "list_jobs": lambda o: o.list_jobs(),
                "get_job": lambda o: o.get_job(self.ids[0]),
                "cancel": lambda o: o.cancel(self.ids[0]),
                "rerun": lambda o: o.rerun(self.ids[0]),
                "throughput": lambda o: o.throughput(),
                "activity_log": lambda o: o.activity_log(),
                "create_schedule": lambda o: o.create_schedule("outage.run", every="1h", payload={"log": "-"}),
            }
            for name, call in calls.items():
                try:
                    call(ops)
                    answers[f"{where} {name}"] = "returned"
                except Exception as exc:  # noqa: BLE001 - what an outage raises is what is measured
                    answers[f"{where} {name}"] = f"{type(exc).__module__}.{type(exc).__name__}"
        return answers

    def ledger_jobs(self) -> int:
        from sqlalchemy import func

        from sgen_ops.ledger.store import Job

        with self.hub.ledger.read() as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)

    def try_enqueue(self) -> str:
        try:
            job_id = self.hub.enqueue("outage.run", {"log": str(self.log), "seconds": 0.1})
        except Exception as exc:  # noqa: BLE001 - what an outage raises is what is measured
            self.details["enqueue_error"] = f"{type(exc).__module__}.{type(exc).__name__}"
            return f"raised {type(exc).__module__}.{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        self.ids.append(job_id)
        return f"returned job {job_id}"

    def job(self, seconds: float, *, delay: float | None = None, **payload: Any) -> int:
        job_id = self.hub.enqueue("outage.run", {"log": str(self.log), "seconds": seconds, **payload}, delay=delay)
        self.ids.append(job_id)
        return job_id

    def wait_listening(self, proc: Proc, timeout: float = 60) -> None:
        if not wait_until(lambda: "Listening on" in proc.output(), timeout):
            raise RuntimeError(f"worker {proc.pid} did not start:\n{proc.output()[-2000:]}")

    def started(self, job_id: int, attempt: int = 1) -> Span | None:
        return next((s for s in spans(self.log) if s.job == job_id and s.attempt == attempt), None)

    def wait_started(self, job_id: int, timeout: float = 90) -> Span:
        span = wait_until(lambda: self.started(job_id), timeout)
        if span is None:
            raise RuntimeError(f"job {job_id} did not start within {timeout:g} s; workers said:\n"
                               + "\n".join(p.output()[-1500:] for _, p in self.workers))
        return span

    def rows(self) -> dict[int, tuple[str, list[tuple[int, int, str | None, datetime | None, datetime | None]]]]:
        from sgen_ops.ledger.store import Attempt, Job

        with self.hub.ledger.read() as session:
            jobs = {j.id: j.state for j in session.scalars(select(Job).where(Job.id.in_(self.ids)))}
            attempts: dict[int, list[Any]] = defaultdict(list)
            for a in session.scalars(select(Attempt).where(Attempt.job_id.in_(self.ids))
                                     .order_by(Attempt.run, Attempt.number)):
                attempts[a.job_id].append((a.run, a.number, a.exit, a.ready_at, a.started_at))
            errors = {a.job_id: a.error for a in session.scalars(select(Attempt).where(Attempt.job_id.in_(self.ids)))
                      if a.exit == "worker-lost"}
        self.details["lost_errors"] = errors
        return {job_id: (jobs.get(job_id, "missing"), attempts.get(job_id, [])) for job_id in self.ids}

    def settled(self) -> bool:
        return all(state in TERMINAL for state, _ in self.rows().values())

    def result(self, name: str) -> Result:
        result = Result(name, jobs=len(self.ids))
        found = spans(self.log)
        result.overlaps = overlaps(found)
        rows = self.rows()
        result.lost = sorted(j for j, (state, _) in rows.items() if state not in TERMINAL)
        if result.lost:
            from sgen_ops.ledger.store import Job

            with self.hub.ledger.read() as session:
                self.details["lost_rows"] = [
                    (j.id, j.state, j.rq_job_id, j.attempts, str(j.scheduled_for), j.cancel_requested)
                    for j in session.scalars(select(Job).where(Job.id.in_(result.lost)))]
                self.details["lost_in_redis"] = {
                    str(rq): self.hub.redis.hgetall(f"rq:job:{rq}") for _, _, rq, *_ in self.details["lost_rows"]}
        finished_ok = {(s.job, s.run, s.attempt) for s in found if s.outcome == "ok"}
        expected = {"ok", "failed", "JobCancelled", "AttemptFenced", None}
        result.broken = [(s.job, s.attempt, s.outcome) for s in found if s.outcome not in expected]
        for job_id, (_state, attempts) in rows.items():
            result.reruns += max(0, len(attempts) - 1)
            exits = {(r, n): x for r, n, x, _, _ in attempts}
            for run, number, exit_, _, _ in attempts:
                if (job_id, run, number) in finished_ok and exit_ != "succeeded" and (run, number + 1) in exits:
                    result.thrown_away.append((job_id, run, number, exit_))
        result.fenced = sum(1 for e in self.details.get("lost_errors", {}).values() if e and "fenc" in e)
        for kind, proc in self.workers:
            out = proc.output()
            result.dropped += out.count("could not run delivery")
            result.tracebacks += out.count("Traceback")
            if not proc.alive():
                result.worker_exits.append(f"{kind} worker {proc.pid}: exit {proc.popen.returncode}")
        result.details = dict(self.details)
        return result

    def lateness(self, job_id: int, back: float | None = None, number: int = 1) -> float | None:
        """Seconds between the later of attempt ``number``'s due time and ``back`` (a wall time) and its start."""
        for run, n, _exit, ready, started in self.rows()[job_id][1]:
            if run == 1 and n == number and started is not None and ready is not None:
                due = ready.timestamp() if back is None else max(ready.timestamp(), back)
                return round(started.timestamp() - due, 2)
        return None

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.remote is not None:
            with contextlib.suppress(Exception):
                self.remote.close()
        self.hub.close()


@contextlib.contextmanager
def scene(workdir: Path, database_url: str | None, lease: float) -> Iterator[Scene]:
    redis = Redis(workdir / "redis")
    try:
        url = database_url or f"sqlite:///{workdir / 'ledger.db'}"
        s = Scene(workdir, url, redis, lease)
        try:
            yield s
        finally:
            s.close()
    finally:
        if not redis.pid:
            with contextlib.suppress(Exception):
                redis.start()
        redis.stop()


# -- the scenarios -------------------------------------------------------------------------------------
def database_outage(workdir: Path, lease: float = 3.0, outage: float | None = None) -> Result:
    """The ledger (a private PostgreSQL) stopped for longer than the lease under both worker classes."""
    outage = outage if outage is not None else 2 * lease + 2
    with private_cluster() as pg, scene(workdir, pg.url, lease) as s:
        api = s.serve()
        s.local = s.hub.as_operator(ADMIN)
        with contextlib.suppress(Exception):
            s.remote = sgen_ops.remote(api, token=s.token)
        # One worker at a time takes the job meant for it: each class gets a long attempt (it must be stopped;
        # its retries are short) ...
        # The fork worker's long attempt never reaches a checkpoint (only killing its horse stops it); the simple
        # worker's has one at every tick.
        long_jobs = []
        for kind in ("fork", "simple"):
            s.worker(kind)
            long_jobs.append(s.job(60.0, retry_seconds=0.5, checkpoints=kind == "simple"))
            s.wait_started(long_jobs[-1])
        # ... and a short one, which ends inside the outage.
        for proc in [s.worker("fork"), s.worker("simple")]:
            s.wait_listening(proc)
        short_jobs = [s.job(lease / 2) for _ in range(2)]
        waiting = [s.job(0.2) for _ in range(4)]  # on the queues: the workers are busy
        retry = s.hub.enqueue("outage.retry", {"log": str(s.log)})
        s.ids.append(retry)
        delayed = s.job(0.2, delay=outage / 2 + 1.0)
        for job_id in short_jobs:
            s.wait_started(job_id)
        pg.stop()
        down = time.monotonic()
        time.sleep(1.0)
        s.details["cli"] = s.ask_cli("jobs", "list", "--operator", ADMIN)
        s.details["api"] = s.ask_api(api, "/api/accounts/*/jobs")
        s.details["enqueue"] = s.try_enqueue()
        s.details["ops"] = s.ask_ops()
        time.sleep(max(0.0, outage - (time.monotonic() - down)))
        pg.start()
        back = time.time()
        s.details["outage_seconds"] = round(time.monotonic() - down, 1)
        wait_until(s.settled, 120)
        s.details["ledger_jobs"] = s.ledger_jobs()
        result = s.result("database")
        result.cli, result.api, result.enqueue = s.details["cli"], s.details["api"], s.details["enqueue"]
        raised = sorted(set(s.details["ops"].values()))
        result.notes.append(f"{len(s.details['ops'])} operations during the outage (local and remote) raised: "
                            + ", ".join(raised))
        result.notes.append(f"jobs in the ledger afterwards: {s.details['ledger_jobs']} "
                            f"(acknowledged: {len(s.ids)})")
        result.lateness = {
            "delayed job due during the outage": s.lateness(delayed, back),
            "retry (0.5 s backoff)": s.lateness(retry, number=2),
            "queued delivery claimed after the outage": max(
                (v for v in (s.lateness(j, back) for j in waiting) if v is not None), default=None),
        }
        result.details.update(long=long_jobs, short=short_jobs, waiting=waiting, delayed=delayed, retry=retry,
                              attempts={j: [a[:3] for a in att] for j, (_, att) in s.rows().items()})
        return result


def without_checkpoints(workdir: Path, lease: float = 3.0, outage: float | None = None) -> Result:
    """A simple worker's handler without checkpoints, caught by a database outage longer than the lease: nothing can
    stop it but leaving the process (exit status 75); a second worker runs the retry."""
    outage = outage if outage is not None else 2 * lease + 2
    with private_cluster() as pg, scene(workdir, pg.url, lease) as s:
        first = s.worker("simple")
        job_id = s.job(30.0, retry_seconds=0.5, checkpoints=False)
        s.wait_started(job_id)
        pg.stop()
        time.sleep(outage)
        pg.start()
        second = s.worker("simple")
        wait_until(s.settled, 120)
        result = s.result("without checkpoints")
        result.details.update(first_exit=first.popen.poll(), second_alive=second.alive(),
                              attempts={j: [a[:3] for a in att] for j, (_, att) in s.rows().items()})
        return result


def redis_restart(workdir: Path, database_url: str | None = None, lease: float = 3.0, outage: float = 3.0) -> Result:
    """Redis killed with SIGKILL and started again empty on its port, under both worker classes."""
    with scene(workdir, database_url, lease) as s:
        api = s.serve()
        attempts = []
        for kind in ("fork", "simple"):
            s.worker(kind)
            job_id = s.job(outage + 3.0)
            attempts.append(job_id)
            s.wait_started(job_id)
        delayed = s.job(0.2, delay=outage / 2 + 1.0)
        horses = {span.pid for span in spans(s.log)}
        schedulers = [pid for _kind, w in s.workers for pid in children_of(w.pid) if pid not in horses]
        s.redis.kill()
        down = time.monotonic()
        retry = s.hub.enqueue("outage.retry", {"log": str(s.log)})  # the ledger records it; its delivery waits
        s.ids.append(retry)
        time.sleep(0.5)
        s.details["cli"] = s.ask_cli("info")
        s.details["api"] = s.ask_api(api, "/healthz")
        time.sleep(max(0.0, outage - (time.monotonic() - down)))
        s.redis.start()
        back = time.time()
        later = s.job(0.2, delay=2.0)  # RQ's scheduler must still be moving delayed deliveries
        wait_until(s.settled, 90)
        result = s.result("redis")
        result.cli, result.api = s.details["cli"], s.details["api"]
        result.enqueue = f"job {retry} recorded during the outage: " + (
            "ran" if s.rows()[retry][0] in TERMINAL else "never ran")
        result.lateness = {
            "delayed job due during the outage": s.lateness(delayed, back),
            "job enqueued during the outage": s.lateness(retry, back),
            "delayed job due 2 s after the restart": s.lateness(later),
        }
        survivors = [pid for pid in schedulers if alive(pid)]
        result.notes.append(f"RQ scheduler processes alive after the restart: {len(survivors)} of {len(schedulers)}")
        result.details.update(schedulers=len(schedulers), schedulers_alive=len(survivors))
        return result


def start_while_down(workdir: Path, lease: float = 3.0) -> Result:
    """A worker started while the database is down, and one started while Redis is down: each must wait."""
    with private_cluster() as pg, scene(workdir, pg.url, lease) as s:
        result = Result("start")
        pg.stop()
        db_worker = s.worker("simple")
        time.sleep(4.0)
        db_alive = db_worker.alive()
        pg.start()
        first = s.job(0.2)
        ran_db = wait_until(lambda: s.started(first), 60) is not None
        s.redis.kill()
        redis_worker = s.worker("fork")
        time.sleep(4.0)
        redis_alive = redis_worker.alive()
        s.redis.start()
        db_worker.stop()  # the second worker must run the next job
        second = s.job(0.2)
        ran_redis = wait_until(lambda: s.started(second), 60) is not None
        wait_until(s.settled, 60)
        base = s.result("start")
        result.jobs, result.lost, result.tracebacks = base.jobs, base.lost, base.tracebacks
        result.notes.append(f"started while the database was down: {'waited' if db_alive else 'exited'} "
                            f"({db_worker.popen.returncode if not db_alive else 'alive'}), "
                            f"then {'ran' if ran_db else 'did not run'} a job")
        result.notes.append(f"started while Redis was down: {'waited' if redis_alive else 'exited'} "
                            f"({redis_worker.popen.returncode if not redis_alive else 'alive'}), "
                            f"then {'ran' if ran_redis else 'did not run'} a job")
        result.details.update(db_waited=db_alive, db_ran=ran_db, redis_waited=redis_alive, redis_ran=ran_redis)
        return result


def scheduler_kill(workdir: Path, database_url: str | None = None, lease: float = 3.0) -> Result:
    """The worker holding RQ's scheduler lock is killed; a delayed job falls due 1 s later."""
    with scene(workdir, database_url, lease) as s:
        for _ in range(2):
            s.worker("simple")
        for _ in s.workers:
            job_id = s.job(0.1)
            s.wait_started(job_id)
        holder = wait_until(lambda: next((w for _k, w in s.workers if children_of(w.pid)), None), 30)
        result = Result("scheduler")
        if holder is None:
            result.notes.append("no worker runs RQ's scheduler process")
            return result
        holder.popen.kill()
        holder.popen.wait()
        delayed = s.job(0.2, delay=1.0)
        wait_until(s.settled, 90)
        base = s.result("scheduler")
        base.lateness = {"delayed job due 1 s after the kill": s.lateness(delayed)}
        base.worker_exits = []
        base.notes.append("the worker running RQ's scheduler was killed with SIGKILL; no worker was started after")
        return base


SCENARIOS: dict[str, Callable[[Path], Result]] = {
    "database": database_outage,
    "checkpoints": without_checkpoints,
    "redis": redis_restart,
    "start": start_while_down,
    "scheduler": scheduler_kill,
}


def table(results: list[Result]) -> str:
    lines = []
    for result in results:
        lines += [f"#### {result.scenario}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {name} | {str(value).replace('|', '/')} |" for name, value in result.rows()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every result here too")
    args = parser.parse_args(argv)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="sgen-outage-"))
    results = []
    for name in args.scenarios:
        workdir = base / name
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = SCENARIOS[name](workdir)
        result.notes.append(f"scenario took {time.monotonic() - started:.0f} s "
                            f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, run directory {workdir})")
        results.append(result)
        print(table([result]), flush=True)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
