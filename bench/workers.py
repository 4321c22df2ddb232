"""Whole worker processes: ``sgen-ops worker --burst`` against RQ's own ``rq worker --burst``.

Unlike ``throughput`` (both workers in the benchmark's process), each run here starts the command a user
starts, as a fresh process, on N jobs enqueued beforehand on the same private Redis, and times it from
spawn to exit. Rounds are interleaved (sgen-ops, RQ, sgen-ops, RQ, ...); the table gives medians.

Setups: ``simple:1`` (``sgen-ops worker --concurrency 1`` / ``rq worker -w rq.worker.SimpleWorker``),
``fork:1`` (``--fork`` / RQ's default forking ``rq worker``), ``simple:2`` (``--concurrency 2`` /
``rq worker-pool -n 2 -w rq.worker.SimpleWorker``) and ``fork:2`` (``--concurrency 2 --fork`` /
``rq worker-pool -n 2``, RQ's default forking Worker). Both systems run at their default log level (INFO),
their output going to a file.

Bare RQ's jobs go onto three queues served in order, JSON-serialised (the shape of sgen-ops' transport),
with RQ's default result TTL, so that each job's hash still says ``finished`` when checked. sgen-ops' jobs
are checked in the ledger: every job succeeded, with exactly one attempt, which succeeded.

Also measured per run: Redis commands per job (``INFO commandstats`` calls summed, after minus before
the process, divided by N) and the time from spawn to the first job's start (the earliest start the
ledger's attempts / RQ's job hashes record).

SQL statements and commits per job come from one more, un-timed run of sgen-ops per setup (``count_jobs``
jobs, every one checked as above), whose processes load ``bench/sqlcount/sitecustomize.py``: it counts what
each process sends through the DB-API (sqlite3, psycopg), where both the worker's hot path and SQLAlchemy
send it, and each process writes its counts to a file when it ends. The timed runs load none of it. Bare RQ
has no SQL database: its 0 is by construction, not measured.

``--postgres URL``: the PostgreSQL ledger lives in a fresh schema (``bench_workers``) of the database in
the URL, dropped at the end; the SQLite ledger is a fresh file per run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, func, select, text

import sgen_ops
from sgen_ops.ledger.store import Attempt, Job

from .common import bench_hub, check, flush, median, percentile, sqlalchemy_url
from .soak import ROOT, commit, sgen_ops_cli
from .throughput import _truncate

RQ_QUEUES = ("rqbench-high", "rqbench-normal", "rqbench-low")
SCHEMA = "bench_workers"
SQL_COUNTING = Path(__file__).with_name("sqlcount")  # holds the counting sitecustomize.py
SETUPS = ("simple:1", "fork:1", "simple:2", "fork:2", "simple:4", "fork:4", "prefork:1", "prefork:2")
# prefork: sgen-ops' forking worker with a work horse reused for this many attempts (--horse-attempts),
# against RQ's forking worker, which forks a horse per job.
PREFORK_ATTEMPTS = 100
_LABELS = {"prefork": f"fork, --horse-attempts {PREFORK_ATTEMPTS} (bare RQ: fork)"}
RQ_SIMPLE = "rq.worker.SimpleWorker"


@dataclass(frozen=True)
class Run:
    seconds: float  # spawn to exit
    commands: int  # Redis commands the run issued
    first_job: float  # spawn to the first job's start


@dataclass(frozen=True)
class SqlCounts:
    """What the processes of one run sent through the DB-API, per job (start-up and exit included)."""

    statements: float  # transaction control (BEGIN, COMMIT, ...) aside
    commits: float  # transactions committed, a statement in autocommit mode its own
    rollbacks: float


def _commands(conn: redis.Redis) -> int:
    return sum(int(stats["calls"]) for stats in conn.info("commandstats").values())


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGEN_OPS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _sgen_env(home: str, database_url: str, redis_url: str) -> dict[str, str]:
    """What ``sgen-ops worker`` reads to find the benchmark's stack (sgen_ops.config: SGEN_OPS_*)."""
    return _env(
        SGEN_OPS_HOME=home,
        SGEN_OPS_DATABASE_URL=database_url,
        SGEN_OPS_REDIS_URL=redis_url,
        SGEN_OPS_TASK_MODULES="bench.tasks",
        SGEN_OPS_QUEUE_PREFIX="bench",
    )


@contextmanager
def _sgen_stack(redis_url: str, database_url: str | None) -> Iterator[tuple[sgen_ops.Hub, dict[str, str], Path]]:
    """An empty Redis and ledger (``database_url`` None: a fresh SQLite file), a hub on them, the environment
    that points ``sgen-ops worker`` at them, and the directory to run it in."""
    flush(redis_url)
    with tempfile.TemporaryDirectory(prefix="sgen-bench-workers-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        hub = bench_hub(redis_url, url, tmp)
        try:
            if database_url:
                _truncate(hub)
            yield hub, _sgen_env(tmp, url, redis_url), Path(tmp)
        finally:
            hub.close()


def _timed_process(
    cmd: list[str], env: dict[str, str], cwd: Path, conn: redis.Redis, n: int
) -> tuple[float, float, int]:
    """Run one whole process; returns (wall-clock spawn time, seconds to exit, Redis commands issued)."""
    log = cwd / "worker.log"
    before = _commands(conn)
    with log.open("wb") as out:
        spawned = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(120.0, n / 5))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        seconds = time.perf_counter() - start
    commands = _commands(conn) - before - 1  # the INFO of the reading after
    tail = log.read_text(errors="replace")[-2000:]
    check(rc == 0, f"{' '.join(cmd)} exited {rc}:\n{tail}")
    return spawned, seconds, commands


def sgen_run(
    redis_url: str, database_url: str | None, n: int, worker_class: str, processes: int, count_sql: Path | None = None,
    beside: Callable[[dict[str, str], Path], AbstractContextManager[object]] | None = None,
) -> Run:
    """One run of ``sgen-ops worker --burst``, timed; ``count_sql``: a directory for the SQL counts of its
    processes (bench/sqlcount), which then load the counting ``sitecustomize``; ``beside``: a process to run
    on the same stack while the worker runs (``rollup_cost``)."""
    cmd = [sgen_ops_cli(), "worker", "--burst", "--concurrency", str(processes)]
    if worker_class in ("fork", "prefork"):
        cmd.append("--fork")
    if worker_class == "prefork":
        cmd += ["--horse-attempts", str(PREFORK_ATTEMPTS)]
    with _sgen_stack(redis_url, database_url) as (hub, env, tmp):
        if count_sql is not None:
            env["BENCH_SQL_COUNT_DIR"] = str(count_sql)
            env["PYTHONPATH"] = str(SQL_COUNTING) + os.pathsep + env["PYTHONPATH"]
        hub.enqueue_many("bench.noop", [{"i": i} for i in range(n)])
        with beside(env, tmp) if beside is not None else nullcontext():
            spawned, seconds, commands = _timed_process(cmd, env, tmp, hub.redis, n)
        with hub.ledger.read() as session:
            done = session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded"))
            attempts, jobs, ok, first = session.execute(
                select(
                    func.count(),
                    func.count(Attempt.job_id.distinct()),
                    func.count().filter(Attempt.exit == "succeeded"),
                    func.min(Attempt.started_at),
                )
            ).one()
    check(done == n, f"sgen-ops: {done} of {n} jobs succeeded")
    check(attempts == jobs == ok == n, f"sgen-ops: {attempts} attempts ({ok} succeeded) for {jobs} of {n} jobs")
    return Run(seconds, commands, first.timestamp() - spawned)


def sgen_sql(redis_url: str, database_url: str | None, n: int, worker_class: str, processes: int) -> SqlCounts:
    """SQL statements, commits and rollbacks per job of one un-timed run of ``n`` jobs, summed over the
    files its processes wrote."""
    with tempfile.TemporaryDirectory(prefix="sgen-bench-sql-") as tmp:
        sgen_run(redis_url, database_url, n, worker_class, processes, count_sql=Path(tmp))
        totals: Counter[str] = Counter()
        files = list(Path(tmp).glob("*.json"))
        for path in files:
            counts = json.loads(path.read_text())
            totals.update({k: counts[k] for k in ("statements", "commits", "rollbacks")})
    check(totals["statements"] > 0, f"no SQL counted in {len(files)} file(s): the counting did not load")
    return SqlCounts(totals["statements"] / n, totals["commits"] / n, totals["rollbacks"] / n)


def rq_run(redis_url: str, n: int, worker_class: str, processes: int) -> Run:
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    queues = [Queue(name, connection=conn, serializer=JSONSerializer) for name in RQ_QUEUES]
    jobs = queues[1].enqueue_many([Queue.prepare_data("bench.rq_tasks.noop", args=(i,)) for i in range(n)])
    ids = [job.id for job in jobs]
    cmd = ["worker-pool", "--burst", "-n", str(processes)] if processes > 1 else ["worker", "--burst"]
    if worker_class == "simple":
        cmd += ["-w", RQ_SIMPLE]
    cmd = [str(Path(sys.executable).with_name("rq")), *cmd, "-u", redis_url, "-S", "json", *RQ_QUEUES]
    try:
        with tempfile.TemporaryDirectory(prefix="rq-bench-workers-") as tmp:
            spawned, seconds, commands = _timed_process(cmd, _env(), Path(tmp), conn, n)
        pipe = conn.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(f"rq:job:{job_id}", "status", "started_at")
        rows = pipe.execute()
        left = sum(q.count for q in queues)
    finally:
        conn.close()
    finished = sum(1 for status, _ in rows if status == b"finished")
    check(left == 0, f"bare RQ left {left} jobs on the queues")
    check(finished == n, f"bare RQ: {finished} of {n} jobs finished")
    return Run(seconds, commands, min(_rq_time(started) for _, started in rows) - spawned)


@contextmanager
def _idle_worker(cmd: list[str], env: dict[str, str], cwd: Path) -> Iterator[None]:
    """A long-running worker process for the latency runs, stopped (SIGTERM, then SIGKILL) at the end."""
    with (cwd / "worker.log").open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield
            check(proc.poll() is None, f"{' '.join(cmd)} exited {proc.returncode} while idle")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_for(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        check(time.monotonic() < deadline, f"timed out waiting for {what}")
        time.sleep(0.02)


def sgen_latency(redis_url: str, database_url: str | None, k: int, gap: float) -> list[float]:
    """Enqueue -> start (the attempt's start minus the job's due time) of ``k`` jobs, one every ``gap`` s,
    to an idle ``sgen-ops worker --concurrency 1``; the first job (start-up) is not counted."""
    with _sgen_stack(redis_url, database_url) as (hub, env, tmp):

        def succeeded() -> int:
            with hub.ledger.read() as session:
                return int(session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded")) or 0)

        with _idle_worker([sgen_ops_cli(), "worker", "--concurrency", "1"], env, tmp):
            hub.enqueue("bench.noop", {"i": -1})
            _wait_for(lambda: succeeded() == 1, "sgen-ops' first job")
            for i in range(k):
                hub.enqueue("bench.noop", {"i": i})
                time.sleep(gap)
            _wait_for(lambda: succeeded() == k + 1, f"sgen-ops' {k} jobs")
        with hub.ledger.read() as session:
            rows = session.execute(select(Attempt.ready_at, Attempt.started_at).order_by(Attempt.job_id)).all()
    check(len(rows) == k + 1, f"sgen-ops: {len(rows)} attempts for {k + 1} jobs")
    waits = [(started - ready).total_seconds() for ready, started in rows[1:] if ready is not None]
    check(len(waits) == k, f"sgen-ops: {k - len(waits)} attempts without a due time")
    return waits


def rq_latency(redis_url: str, k: int, gap: float) -> list[float]:
    """The same for RQ's ``rq worker -w rq.worker.SimpleWorker``: started_at minus enqueued_at."""
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(RQ_QUEUES[1], connection=conn, serializer=JSONSerializer)
    cmd = [str(Path(sys.executable).with_name("rq")), "worker", "-w", RQ_SIMPLE, "-u", redis_url, "-S", "json"]
    ids: list[str] = []

    def finished() -> int:
        pipe = conn.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        return sum(1 for status in pipe.execute() if status == b"finished")

    try:
        with (
            tempfile.TemporaryDirectory(prefix="rq-bench-latency-") as tmp,
            _idle_worker([*cmd, *RQ_QUEUES], _env(), Path(tmp)),
        ):
            ids.append(queue.enqueue("bench.rq_tasks.noop", -1).id)
            _wait_for(lambda: finished() == 1, "RQ's first job")
            for i in range(k):
                ids.append(queue.enqueue("bench.rq_tasks.noop", i).id)
                time.sleep(gap)
            _wait_for(lambda: finished() == k + 1, f"RQ's {k} jobs")
        pipe = conn.pipeline(transaction=False)
        for job_id in ids[1:]:
            pipe.hmget(f"rq:job:{job_id}", "enqueued_at", "started_at")
        rows = pipe.execute()
    finally:
        conn.close()
    return [(_rq_time(started) - _rq_time(enqueued)) for enqueued, started in rows]


def _rq_time(value: bytes) -> float:
    return datetime.strptime(value.decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def latency(redis_url: str, *, k: int, database_url: str | None = None, gap: float = 0.05) -> str:
    sgen = sgen_latency(redis_url, database_url, k, gap)
    bare = rq_latency(redis_url, k, gap)
    line = (
        f"| enqueue -> start, idle simple worker, {k} jobs {gap * 1000:.0f} ms apart, p50 / p95 (ms) "
        f"| {percentile(sgen, 50) * 1000:.1f} / {percentile(sgen, 95) * 1000:.1f} "
        f"| {percentile(bare, 50) * 1000:.1f} / {percentile(bare, 95) * 1000:.1f} "
        f"| {percentile(sgen, 50) / percentile(bare, 50):.2f}x |"
    )
    print(line, flush=True)
    return "\n".join(["", "| | sgen-ops | bare RQ | ratio of p50 |", "|---|---|---|---|", line])


@contextmanager
def pg_schema(url: str, schema: str = SCHEMA) -> Iterator[str]:
    """A fresh schema in the database of ``url``; yields a URL whose sessions use it; dropped at the end."""
    engine = create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    parts = urlsplit(sqlalchemy_url(url))
    query = dict(parse_qsl(parts.query))
    query["options"] = (query.get("options", "") + f" -c search_path={schema}").strip()
    try:
        yield parts._replace(query=urlencode(query)).geturl()
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


def _sql_cell(counts: SqlCounts | None) -> str:
    if counts is None:
        return "not counted"
    cell = f"{counts.statements:.2f} / {counts.commits:.2f}"
    return cell + (f" (+{counts.rollbacks:.2f} rollbacks)" if counts.rollbacks else "")


def compare(
    redis_url: str,
    *,
    n: int,
    rounds: int,
    setups: tuple[str, ...],
    count_jobs: int = 0,
    database_url: str | None = None,
) -> str:
    backend = "PostgreSQL" if database_url else "SQLite"
    counted = (
        f"; SQL counted in a separate, un-timed run of {count_jobs:,} jobs per setup"
        if count_jobs
        else "; SQL not counted"
    )
    lines = [
        f"#### Ledger on {backend}: {n:,} no-op jobs, median of {rounds} interleaved rounds{counted}",
        "",
        "| worker class, processes | sgen-ops jobs/s | bare RQ jobs/s | ratio | ratio after start-up "
        "| Redis commands/job, sgen-ops / RQ | SQL statements / commits per job, sgen-ops "
        "(bare RQ: 0 / 0, no SQL database) | spawn to first job (s), sgen-ops / RQ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setup in setups:
        worker_class, processes = setup.split(":")
        sgen_runs, rq_runs = [], []
        for _ in range(rounds):
            sgen_runs.append(sgen_run(redis_url, database_url, n, worker_class, int(processes)))
            rq_runs.append(rq_run(redis_url, n, worker_class, int(processes)))
        sql = sgen_sql(redis_url, database_url, count_jobs, worker_class, int(processes)) if count_jobs else None
        sgen_rate = n / median([r.seconds for r in sgen_runs])
        rq_rate = n / median([r.seconds for r in rq_runs])
        # The same runs from the first job's start to exit: the per-job cost without the start-up.
        after = median([r.seconds - r.first_job for r in rq_runs]) / median(
            [r.seconds - r.first_job for r in sgen_runs]
        )
        lines.append(
            f"| {_LABELS.get(worker_class, worker_class)}, {processes} "
            f"| {sgen_rate:,.0f} | {rq_rate:,.0f} | {sgen_rate / rq_rate:.2f}x "
            f"| {after:.2f}x "
            f"| {median([r.commands / n for r in sgen_runs]):.1f} / {median([r.commands / n for r in rq_runs]):.1f} "
            f"| {_sql_cell(sql)} "
            f"| {median([r.first_job for r in sgen_runs]):.2f} / {median([r.first_job for r in rq_runs]):.2f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


ROLLUP_EVERY = 1.0  # the scheduler rolls up every 60 s: this is 60 times as often


@contextmanager
def _rolling(env: dict[str, str], cwd: Path) -> Iterator[None]:
    """The roll-up loop (``python -m bench.archive roll``) beside the worker, stopped after it."""
    with (cwd / "roll.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.archive", "roll", str(ROLLUP_EVERY)], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(1.0)  # connected and past its first pass
        yield
        check(proc.poll() is None, f"the roll-up loop exited {proc.returncode}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def rollup_cost(redis_url: str, *, n: int, rounds: int, setup: str = "simple:1",
                database_url: str | None = None) -> str:
    """What keeping the statistics' rollups up costs a worker: ``sgen-ops worker --burst`` on ``n`` jobs alone
    and with a roll-up pass every ROLLUP_EVERY seconds beside it, interleaved; medians."""
    worker_class, processes = setup.split(":")
    alone, rolling = [], []
    for _ in range(rounds):
        alone.append(sgen_run(redis_url, database_url, n, worker_class, int(processes)).seconds)
        rolling.append(sgen_run(redis_url, database_url, n, worker_class, int(processes), beside=_rolling).seconds)
    a, r = n / median(alone), n / median(rolling)
    backend = "PostgreSQL" if database_url else "SQLite"
    line = (f"| {backend}, {setup}, {n:,} jobs, median of {rounds} | {a:,.0f} | {r:,.0f} | {r / a:.3f}x "
            f"| {100 * (1 - r / a):+.1f} % |")
    print(line, flush=True)
    return line


PROCRASTINATE_SCHEMA = "bench_procrastinate"


def procrastinate_rates(venv: Path, url: str, *, n: int, rounds: int, processes: tuple[int, ...]) -> str:
    """Procrastinate (``bench.procrastinate_app``, in the venv ``venv`` of its own) on the same PostgreSQL:
    ``p`` processes of ``procrastinate worker --one-shot`` over ``n`` no-op jobs deferred beforehand, timed from
    spawn to the last exit, every job checked succeeded; a fresh schema per run. Skipped without that venv."""
    python, cli = venv / "bin" / "python", venv / "bin" / "procrastinate"
    if not cli.exists():
        return f"(Procrastinate skipped: {cli} not found; `pip install procrastinate psycopg[binary]` into {venv})"
    lines = [f"| processes | Procrastinate jobs/s, median of {rounds} |", "|---|---|"]
    for p in processes:
        rates = []
        for _ in range(rounds):
            with pg_schema(url, schema=PROCRASTINATE_SCHEMA):
                base = sqlalchemy_url(url).split("?")[0].replace("postgresql+psycopg://", "postgresql://", 1)
                env = _env(BENCH_PROCRASTINATE_DSN=f"{base}?options=-csearch_path%3D{PROCRASTINATE_SCHEMA}")
                app = [str(python), "-m", "bench.procrastinate_app"]
                subprocess.run([*app, "setup", str(n)], env=env, cwd=ROOT, check=True, capture_output=True)
                start = time.perf_counter()
                workers = [
                    subprocess.Popen([str(cli), "--app", "bench.procrastinate_app.app", "worker", "--one-shot"],
                                     env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    for _ in range(p)
                ]
                codes = [w.wait(timeout=max(120.0, n / 5)) for w in workers]
                seconds = time.perf_counter() - start
                done = int(subprocess.run([*app, "count"], env=env, cwd=ROOT, check=True, capture_output=True,
                                          text=True).stdout.split()[-1])
            check(codes == [0] * p, f"procrastinate workers exited {codes}")
            check(done == n, f"procrastinate: {done} of {n} jobs succeeded")
            rates.append(n / seconds)
        lines.append(f"| {p} | {median(rates):,.0f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run(redis_url: str, args: argparse.Namespace) -> str:
    setups = tuple(s for s in args.worker_setups.split(",") if s)
    unknown = sorted(set(setups) - set(SETUPS))
    check(not unknown, f"unknown worker setup(s) {unknown}; known: {', '.join(SETUPS)}")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = _load()
    each = functools.partial(
        compare, redis_url, n=args.jobs, rounds=args.repeats, setups=setups, count_jobs=min(args.count_jobs, args.jobs)
    )
    parts = [each()]
    if args.latency_jobs:
        parts[-1] += "\n" + latency(redis_url, k=args.latency_jobs)
    if args.postgres:
        with pg_schema(args.postgres) as url:
            parts.append(each(database_url=url))
            if args.latency_jobs:
                parts[-1] += "\n" + latency(redis_url, k=args.latency_jobs, database_url=url)
    if args.postgres and getattr(args, "procrastinate_venv", None):
        counts = tuple(sorted({int(s.split(":")[1]) for s in setups}))
        parts.append("#### Procrastinate on the same PostgreSQL (run after the rounds above, not interleaved)\n\n"
                     + procrastinate_rates(Path(args.procrastinate_venv), args.postgres, n=args.jobs,
                                           rounds=args.repeats, processes=counts))
    if getattr(args, "rollup_rounds", 0):
        rows = [rollup_cost(redis_url, n=args.jobs, rounds=args.rollup_rounds)]
        if args.postgres:
            with pg_schema(args.postgres) as url:
                rows.append(rollup_cost(redis_url, n=args.jobs, rounds=args.rollup_rounds, database_url=url))
        parts.append("\n".join([
            f"#### What keeping the rollups up costs the worker: a roll-up pass every {ROLLUP_EVERY:g} s beside it "
            "(the scheduler's is every 60 s)", "",
            "| setup | jobs/s alone | jobs/s with roll-ups | ratio | cost |", "|---|---|---|---|---|", *rows]))
    head = (
        "### Whole-process worker vs bare RQ" + (f", {args.label}" if args.label else "") + "\n\n"
        "`sgen-ops worker --burst` against `rq worker --burst` / `rq worker-pool --burst` (RQ's CLI), each a "
        "fresh process. "
        f"{started}, commit {commit()}; load average (1/5/15 min) {load_before} before, {_load()} after. "
        "Jobs/s from spawn to exit of the whole process; ratio = sgen-ops / bare RQ. "
        "Every job checked (ledger: succeeded, one attempt each; RQ: every job hash `finished`). "
        "SQL per job: what sgen-ops' processes sent through the DB-API (sqlite3, psycopg), start-up and exit "
        "included, counted in a separate un-timed run so that the timed runs carry no counting; statements "
        "leave out transaction control (BEGIN, COMMIT, ...), commits count transactions committed (a write "
        "in autocommit mode is its own)."
    )
    return "\n\n".join([head, *parts])
