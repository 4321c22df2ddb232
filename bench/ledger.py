"""A generated ledger for the operator-query, triage and memory benchmarks.

``N`` jobs of the five catalog tasks over 30 days, 20 accounts, every state, realistic error codes,
with their attempts and state-change events in the proportions the worker writes them. Rows go in
with bulk Core-level inserts (``executemany`` on SQLite, ``COPY`` on PostgreSQL) into the schema the
migrations create: the secondary indexes are dropped for the load and recreated after it, from the
migrations' own DDL. Nothing goes through ``enqueue``.

The SQLite ledger is cached (``$SGEN_BENCH_CACHE``, default ``~/.cache/sgen-ops-bench``) at the first
migration's schema; each run copies it and upgrades the copy to head, which also times the
migrations on a big ledger. Times in a cached ledger are relative to when it was generated, so the
benchmark runs with ``clock(info.anchor)``: every ``utcnow`` in sgen-ops reads the generation time plus
a minute, fixed, so that every total can be checked exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text

from sgen_ops.config import DEFAULT_SENSITIVE_KEYS
from sgen_ops.core.masking import MaskingRule
from sgen_ops.ledger.store import Ledger

from .common import BenchmarkError, check, sqlalchemy_url

GEN_VERSION = 4
BASE_REVISION = "0001"
DAYS = 30
SEED = 20261123
RECENT = 6 * 3600  # jobs younger than this may still be waiting, running or retrying

ACCOUNTS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "massive",
    "vandelay",
    "oscorp",
    "monarch",
    "dunder",
    "prestige",
    "vehement",
    "gringotts",
)
ACCOUNT_WEIGHTS = tuple(1 / (k + 1) ** 0.8 for k in range(len(ACCOUNTS)))


@dataclass(frozen=True)
class TaskShape:
    name: str
    weight: int
    max_attempts: int
    priority: str
    backoff: float
    run_seconds: tuple[float, float]  # lognormal mu, sigma of the run time
    errors: tuple[str, ...]
    sensitive: tuple[str, ...]
    schedule_id: int | None = None
    retention_days: float | None = None


TASKS = (
    TaskShape(
        "webhook.dispatch",
        40,
        5,
        "high",
        30,
        (-1.2, 0.8),
        ("webhook_timeout", "invalid_endpoint"),
        ("headers.*", "secret"),
    ),
    TaskShape(
        "email.digest",
        20,
        3,
        "normal",
        60,
        (0.0, 0.6),
        ("smtp_rejected",),
        ("recipients.*.email", "smtp.password"),
        schedule_id=3,
    ),
    TaskShape(
        "import.products",
        15,
        3,
        "normal",
        30,
        (1.5, 0.9),
        ("bad_row", "provider_timeout"),
        ("credentials.api_key", "customer.email"),
    ),
    TaskShape("cache.warm", 15, 2, "low", 0, (-0.5, 0.5), ("ConnectionError",), (), schedule_id=2, retention_days=1.0),
    TaskShape(
        "report.weekly",
        10,
        3,
        "low",
        120,
        (2.5, 0.7),
        ("storage_quota", "unknown_report"),
        ("storage.access_token",),
        schedule_id=1,
    ),
)
BY_NAME = {t.name: t for t in TASKS}

# Bulk triage targets: exactly ``n // 100`` dead letters each (10,000 in a million-job ledger).
REPLAY_FILTER = {"task": "webhook.dispatch", "error_code": "webhook_timeout"}
DISMISS_FILTER = {"task": "import.products", "error_code": "provider_timeout"}

# Terminal states of jobs older than RECENT, and the states of recent ones (on top of the triage dead letters).
OLD_STATES = (
    ("succeeded", 0.935),
    ("failed", 0.008),
    ("cancelled", 0.015),
    ("resolved", 0.012),
    ("dead-letter", 0.010),
)
RECENT_STATES = (
    ("queued", 0.30),
    ("running", 0.02),
    ("retrying", 0.05),
    ("succeeded", 0.56),
    ("failed", 0.01),
    ("cancelled", 0.03),
    ("dead-letter", 0.03),
)

JOB_COLUMNS = (
    "id",
    "task",
    "payload",
    "state",
    "attempts",
    "max_attempts",
    "scheduled_for",
    "priority",
    "schedule_id",
    "originating_user_id",
    "account",
    "created_at",
    "updated_at",
    "last_error_code",
    "last_error_detail",
    "error_log",
    "worker",
    "cancel_requested",
    "run",
    "rq_job_id",
    "enqueue_seq",
    "lease_until",
    "retention_days",
    "replayed_from_id",
    "replayed_as_id",
    "dead_letter_reason",
    "resolution_note",
    "search_masked",
)
ATTEMPT_COLUMNS = (
    "job_id",
    "task",
    "run",
    "number",
    "ready_at",
    "started_at",
    "finished_at",
    "exit",
    "error_code",
    "error",
    "worker",
)
EVENT_COLUMNS = ("job_id", "task", "account", "from_state", "to_state", "at")
TIME_COLUMNS = {
    "jobs": {"scheduled_for", "created_at", "updated_at", "lease_until"},
    "attempts": {"ready_at", "started_at", "finished_at"},
    "job_events": {"at"},
}
WORKERS = tuple(f"sgen-worker-{h}-{p}" for h in ("a", "b", "c") for p in (4711, 4712, 5120, 5121))
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/sgen/sgen_ops/execution.py", line 251, in run_attempt\n'
    "    spec.handler(ctx, ctx.payload)\n"
    '  File "/srv/sgen/worker/catalog.py", line {line}, in {func}\n'
    "    raise TaskError({code!r}, detail)\n"
    "sgen_ops.errors.TaskError: [{code}] {detail}"
)


@dataclass
class Generated:
    """What a generated ledger holds: the expected counts a benchmark checks before it measures."""

    n: int
    anchor: datetime
    states: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    events: int = 0
    replay_ids: int = 0
    dismiss_ids: int = 0
    rare_terms: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "anchor": self.anchor.isoformat(),
            "states": dict(self.states),
            "attempts": self.attempts,
            "events": self.events,
            "replay_ids": self.replay_ids,
            "dismiss_ids": self.dismiss_ids,
            "rare_terms": self.rare_terms,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generated:
        g = cls(n=data["n"], anchor=datetime.fromisoformat(data["anchor"]))
        g.states = Counter(data["states"])
        g.attempts, g.events = data["attempts"], data["events"]
        g.replay_ids, g.dismiss_ids = data["replay_ids"], data["dismiss_ids"]
        g.rare_terms, g.seconds = data["rare_terms"], data["seconds"]
        return g


# -- the data --------------------------------------------------------------------------------------
class _Maker:
    """Builds job, attempt and event rows; times are epoch seconds until written."""

    def __init__(self, n: int, anchor: datetime) -> None:
        self.n = n
        self.rng = random.Random(SEED)
        self.anchor = anchor.timestamp()
        self.start = self.anchor - DAYS * 86400
        self.rules = {t.name: MaskingRule(t.sensitive, DEFAULT_SENSITIVE_KEYS) for t in TASKS}
        self.triage = n // 100
        self.info = Generated(n=n, anchor=anchor)

    def plan(self) -> tuple[list[float], list[TaskShape], dict[int, str]]:
        """Creation times (sorted), tasks, and the jobs forced into a triage dead letter (index -> code)."""
        rng = self.rng
        created = sorted(self.start + rng.random() * DAYS * 86400 for _ in range(self.n))
        tasks = rng.choices(TASKS, weights=[t.weight for t in TASKS], k=self.n)
        forced: dict[int, str] = {}
        old = self.anchor - RECENT - 3600
        for want in (REPLAY_FILTER, DISMISS_FILTER):
            pool = [i for i in range(self.n) if tasks[i].name == want["task"] and created[i] < old and i not in forced]
            check(len(pool) >= self.triage, f"not enough {want['task']} jobs for {self.triage} triage dead letters")
            for i in rng.sample(pool, self.triage):
                forced[i] = want["error_code"]
        return created, tasks, forced

    def payload(self, task: str, account: str) -> dict[str, Any]:
        rng = self.rng
        if task == "webhook.dispatch":
            host = rng.choices(["hooks", "flaky", "api.down"], weights=[85, 12, 3])[0]
            return {
                "url": f"https://{host}.{account}.example.com/sgen/events",
                "event": rng.choice(["order.created", "order.paid", "customer.updated", "refund.issued"]),
                "event_id": f"evt_{rng.getrandbits(48):012x}",
                "headers": {"Authorization": f"Bearer whsec_{rng.getrandbits(64):016x}"},
                "secret": f"sig_{rng.getrandbits(64):016x}",
                "body": {"order_id": rng.randint(1000, 9_999_999), "total": round(rng.uniform(5, 500), 2)},
            }
        if task == "email.digest":
            return {
                "period": f"2026-11-{rng.randint(1, 22):02d}",
                "recipients": [
                    {
                        "email": (
                            f"{rng.choice(['ana', 'bo', 'chen', 'dara', 'eli'])}{rng.randint(1, 999)}"
                            f"@{account}.example.com"
                        ),
                        "name": "Subscriber",
                    }
                    for _ in range(rng.randint(1, 4))
                ],
                "smtp": {"host": "smtp.sgen.example.com", "password": f"smtp-{rng.getrandbits(40):010x}"},
            }
        if task == "import.products":
            return {
                "source_url": f"sftp://feeds.{account}.example.com/products-{rng.randint(1, 99999):05d}.csv",
                "credentials": {"user": f"{account}-import", "api_key": f"key_{rng.getrandbits(64):016x}"},
                "customer": {"email": f"buyer{rng.randint(1, 500)}@{account}.example.com"},
                "rows": [
                    {"sku": f"SKU-{rng.randint(1000, 99999)}", "price": round(rng.uniform(1, 300), 2)}
                    for _ in range(rng.randint(2, 6))
                ],
            }
        if task == "cache.warm":
            return {
                "keys": rng.sample(["home", "catalog", "search", "cart", "pricing"], k=rng.randint(1, 4)),
                "account": account,
            }
        return {
            "report": rng.choices(["sales", "inventory", "traffic", "forecast"], weights=[40, 30, 25, 5])[0],
            "period": f"2026-W{rng.randint(40, 47)}",
            "storage": {"bucket": f"{account}-reports", "access_token": f"tok_{rng.getrandbits(64):016x}"},
        }

    def error(self, task: str, code: str, payload: dict[str, Any]) -> str:
        rng = self.rng
        if code == "webhook_timeout":
            return f"POST {payload['url']} timed out after 10s"
        if code == "invalid_endpoint":
            return f"webhook endpoint {payload['url'].replace('https', 'http')!r} must be an https:// URL"
        if code == "smtp_rejected":
            return f"550 mailbox unavailable for {payload['recipients'][0]['email']}"
        if code == "bad_row":
            row = payload["rows"][0]
            return f"row {rng.randint(0, 5)} (sku {row['sku']}): price {-row['price']!r} is not a non-negative number"
        if code == "provider_timeout":
            return "supplier feed connection timed out after 30s"
        if code == "ConnectionError":
            return f"Error 111 connecting to cache-{rng.randint(1, 4)}.internal:6379. Connection refused."
        if code == "storage_quota":
            return "report storage quota exceeded (507 Insufficient Storage)"
        if code == "unknown_report":
            return f"no report named {payload['report']!r}; known: sales, inventory, traffic"
        return f"worker {rng.choice(WORKERS)} stopped renewing its lease (worker_lost_after=60.0s)"

    def code_for(self, shape: TaskShape, dead: bool) -> str:
        rng = self.rng
        if rng.random() < 0.03:
            return "worker-lost"
        codes = shape.errors
        if dead:
            # The triage dead letters own their codes; other dead letters of those tasks fail otherwise.
            codes = tuple(c for c in codes if c not in (REPLAY_FILTER["error_code"], DISMISS_FILTER["error_code"]))
            codes = codes or shape.errors
        return rng.choice(codes)

    def job(
        self, i: int, created: float, shape: TaskShape, forced: str | None
    ) -> tuple[tuple, list[tuple], list[tuple]]:
        rng = self.rng
        job_id = i + 1
        task = shape.name
        account = rng.choices(ACCOUNTS, weights=ACCOUNT_WEIGHTS)[0]
        payload = self.payload(task, account)
        age = self.anchor - created
        if forced is not None:
            state = "dead-letter"
        else:
            table = RECENT_STATES if age < RECENT else OLD_STATES
            r, acc, state = rng.random(), 0.0, "succeeded"
            for s, p in table:
                acc += p
                if r < acc:
                    state = s
                    break
        max_attempts = shape.max_attempts
        # How many attempts failed, and whether one more ran (succeeded, or is running now).
        if state == "succeeded":
            r = rng.random()
            failures = 0 if r < 0.93 else (1 if r < 0.98 else 2)
            failures = min(failures, max_attempts - 1)
        elif state in ("dead-letter", "failed", "resolved"):
            failures = max_attempts
        elif state == "retrying":
            failures = rng.randint(1, max_attempts - 1)
        elif state == "running":
            failures = 0 if rng.random() < 0.9 else 1
        elif state == "cancelled":
            failures = 1 if rng.random() < 0.2 else 0
        else:
            failures = 0
        code = forced or (self.code_for(shape, state == "dead-letter") if failures else None)
        worker = rng.choice(WORKERS)
        events: list[tuple] = [(job_id, task, account, None, "queued", created)]
        attempts: list[tuple] = []
        t = created + rng.expovariate(1 / 2.0)  # queue wait
        ready = created
        detail = None
        log_parts: list[str] = []
        run_mu, run_sigma = shape.run_seconds
        n_attempts = failures + (1 if state in ("succeeded", "running") else 0)
        cancel_after_failure = state == "cancelled" and failures
        for number in range(1, n_attempts + 1):
            if number > 1:
                events.append((job_id, task, account, "retrying", "queued", t))
            events.append((job_id, task, account, "queued", "running", t))
            started = t
            if number <= failures:
                end = started + min(rng.lognormvariate(run_mu, run_sigma), 600)
                detail = self.error(task, code, payload) if code else "failed"
                attempts.append(
                    (
                        job_id,
                        task,
                        1,
                        number,
                        ready,
                        started,
                        end,
                        "failed" if code != "worker-lost" else "worker-lost",
                        code,
                        detail[:500],
                        worker,
                    )
                )
                log_parts.append(
                    f"--- run 1 attempt {number} at {datetime.fromtimestamp(end, UTC).isoformat()} [{code}]\n"
                    + TRACEBACK.format(line=rng.randint(40, 99), func=task.replace(".", "_"), code=code, detail=detail)
                    + "\n"
                )
                events.append((job_id, task, account, "running", "failed", end))
                if number < max_attempts and not (cancel_after_failure and number == failures):
                    events.append((job_id, task, account, "failed", "retrying", end))
                    ready = end + shape.backoff * 2 ** (number - 1)
                    t = ready + rng.expovariate(1 / 2.0)
                else:
                    t = end
            elif state == "running":
                attempts.append((job_id, task, 1, number, ready, started, None, None, None, None, worker))
            else:
                end = started + min(rng.lognormvariate(run_mu, run_sigma), 600)
                attempts.append((job_id, task, 1, number, ready, started, end, "succeeded", None, None, worker))
                events.append((job_id, task, account, "running", "succeeded", end))
                t = end
        scheduled_for = ready
        reason = note = None
        lease = None
        if state == "dead-letter":
            events.append((job_id, task, account, "failed", "dead-letter", t))
        elif state == "resolved":
            events.append((job_id, task, account, "failed", "dead-letter", t))
            t += rng.uniform(600, 2 * 86400)
            t = min(t, self.anchor - 1)
            events.append((job_id, task, account, "dead-letter", "resolved", t))
            note = rng.choice(
                [
                    "customer fixed the endpoint; replayed by hand",
                    "duplicate of an earlier import",
                    "provider outage, data re-sent next cycle",
                    f"handled in ticket OPS-{rng.randint(1000, 9999)}",
                ]
            )
        elif state == "cancelled":
            t += rng.uniform(1, 300)
            src = "retrying" if cancel_after_failure else "queued"
            events.append((job_id, task, account, src, "cancelled", t))
        elif state == "retrying":
            scheduled_for = max(ready, self.anchor + rng.uniform(1, shape.backoff * 4 or 30))
        elif state == "running":
            lease = self.anchor + 60
        elif state == "queued":
            t = created
        if forced is None and state == "dead-letter" and rng.random() < 0.05:
            reason = "sent by operator: endpoint decommissioned"
        t = min(t, self.anchor - 0.001) if state != "retrying" else t
        updated = max(created, min(t, self.anchor))
        error_log = "".join(log_parts)[-64 * 1024 :] or None
        rule = self.rules[task]
        masked = json.dumps(rule.mask_payload(payload), sort_keys=True)
        if detail:
            masked += "\n" + (rule.mask_text(detail, payload) or "")
        seq = max(1, n_attempts + (1 if state == "retrying" else 0))
        row = (
            job_id,
            task,
            payload,
            state,
            n_attempts,
            max_attempts,
            scheduled_for,
            shape.priority,
            shape.schedule_id,
            (1 + i % 4) if rng.random() < 0.03 else None,
            account,
            created,
            updated,
            code,
            detail,
            error_log,
            worker if n_attempts else None,
            False,
            1,
            f"sgen-{job_id}-{seq}",
            seq,
            lease,
            shape.retention_days,
            None,
            None,
            reason,
            note,
            masked,
        )
        # Search terms an operator would paste: the event id of a webhook that did not go through.
        if (
            task == "webhook.dispatch"
            and state != "succeeded"
            and len(self.info.rare_terms) < 40
            and rng.random() < 0.02
        ):
            self.info.rare_terms.append(payload["event_id"])
        return row, attempts, events

    def chunks(self, size: int = 20_000) -> Iterator[tuple[list[tuple], list[tuple], list[tuple]]]:
        created, tasks, forced = self.plan()
        for lo in range(0, self.n, size):
            jobs: list[tuple] = []
            attempts: list[tuple] = []
            events: list[tuple] = []
            for i in range(lo, min(self.n, lo + size)):
                row, a, e = self.job(i, created[i], tasks[i], forced.get(i))
                jobs.append(row)
                attempts.extend(a)
                events.extend(e)
                self.info.states[row[3]] += 1
                if i in forced:
                    if forced[i] == REPLAY_FILTER["error_code"]:
                        self.info.replay_ids += 1
                    else:
                        self.info.dismiss_ids += 1
            self.info.attempts += len(attempts)
            self.info.events += len(events)
            yield jobs, attempts, events


# -- writing ---------------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1)


def _sqlite_time(t: float | None) -> str | None:
    if t is None:
        return None
    return f"{_EPOCH + timedelta(seconds=t):%Y-%m-%d %H:%M:%S.%f}"


def _pg_time(t: float | None) -> datetime | None:
    return None if t is None else _EPOCH + timedelta(seconds=t)


def _convert(table: str, columns: tuple[str, ...], rows: list[tuple], to_time: Any, pg: bool) -> list[tuple]:
    times = [k for k, c in enumerate(columns) if c in TIME_COLUMNS[table]]
    payload_at = columns.index("payload") if "payload" in columns else None
    bools = [k for k, c in enumerate(columns) if c == "cancel_requested"]
    out = []
    for r in rows:
        v = list(r)
        for k in times:
            v[k] = to_time(v[k])
        if payload_at is not None:
            v[payload_at] = json.dumps(v[payload_at])
        if not pg:
            for k in bools:
                v[k] = int(v[k])
        out.append(tuple(v))
    return out


def _secondary_indexes_sqlite(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
        "AND tbl_name IN ('jobs', 'attempts', 'job_events')"
    ).fetchall()


def _write_sqlite(path: Path, maker: _Maker, say: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("PRAGMA temp_store=MEMORY")
    indexes = _secondary_indexes_sqlite(conn)
    conn.execute("BEGIN")
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    jobs_sql = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
    att_sql = f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})"
    ev_sql = f"INSERT INTO job_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
    _seed_fixtures(conn.execute, _sqlite_time(maker.start), "?", "1")
    done = 0
    for jobs, attempts, events in maker.chunks():
        conn.executemany(jobs_sql, _convert("jobs", JOB_COLUMNS, jobs, _sqlite_time, False))
        conn.executemany(att_sql, _convert("attempts", ATTEMPT_COLUMNS, attempts, _sqlite_time, False))
        conn.executemany(ev_sql, _convert("job_events", EVENT_COLUMNS, events, _sqlite_time, False))
        done += len(jobs)
        if done % 200_000 == 0:
            say(f"  {done:,} jobs written")
    say("  recreating indexes")
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


OPERATORS = (
    ("bench-admin", "administrator"),
    ("bench-editor", "editor"),
    ("bench-viewer", "viewer"),
    ("ops-oncall", "administrator"),
)
SCHEDULES = (
    (1, "report.weekly", "0 6 * * 1", None, None),
    (2, "cache.warm", None, 300.0, 1.0),
    (3, "email.digest", "0 7 * * *", None, None),
)
_OPERATOR_SQL = (
    "INSERT INTO operators (id, name, role, account, enabled, created_at) VALUES ({p},{p},{p},NULL,{true},{p})"
)
_SCHEDULE_SQL = (
    "INSERT INTO schedules (id, task, cron, timezone, every_seconds, payload_template, max_attempts, "
    "retention_days, priority, account, enabled, anchor_at, next_run, last_run, created_by, created_at, "
    "updated_at) VALUES ({p},{p},{p},'UTC',{p},NULL,NULL,{p},'normal',NULL,{true},{p},NULL,NULL,1,{p},{p})"
)


def _seed_fixtures(execute: Any, now: Any, mark: str, true: str) -> None:
    """The operators and schedules every generated ledger has, through a driver's ``execute``."""
    for k, (name, role) in enumerate(OPERATORS, start=1):
        execute(_OPERATOR_SQL.format(p=mark, true=true), (k, name, role, now))
    for sid, task, cron, every, retention in SCHEDULES:
        execute(_SCHEDULE_SQL.format(p=mark, true=true), (sid, task, cron, every, retention, now, now, now))


def _write_postgres(url: str, maker: _Maker, say: Any) -> None:
    import psycopg

    with psycopg.connect(_libpq_url(url), autocommit=False) as conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename IN ('jobs', 'attempts', 'job_events') AND indexname NOT LIKE 'pk_%' "
            "AND indexname NOT LIKE 'uq_%'"
        )
        indexes = cur.fetchall()
        for name, _sql in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        # The generated history brings its own events: the trigger that records a new job's first state
        # (migration 0007) sits out the load.
        cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'jobs_state_event_after_insert'")
        first_state = cur.fetchone() is not None  # not at the base revision the load is written at
        if first_state:
            cur.execute("ALTER TABLE jobs DISABLE TRIGGER jobs_state_event_after_insert")
        _seed_fixtures(cur.execute, _pg_time(maker.start), "%s", "true")
        done = 0
        for jobs, attempts, events in maker.chunks():
            for table, columns, rows in (
                ("jobs", JOB_COLUMNS, jobs),
                ("attempts", ATTEMPT_COLUMNS, attempts),
                ("job_events", EVENT_COLUMNS, events),
            ):
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in _convert(table, columns, rows, _pg_time, True):
                        copy.write_row(row)
            done += len(jobs)
            if done % 200_000 == 0:
                say(f"  {done:,} jobs written")
        for table in ("jobs", "operators", "schedules"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        if first_state:
            cur.execute("ALTER TABLE jobs ENABLE TRIGGER jobs_state_event_after_insert")
        say("  recreating indexes")
        cur.execute("SET maintenance_work_mem = '512MB'")
        for _name, sql in indexes:
            cur.execute(sql)
        conn.commit()
        conn.autocommit = True
        say("  VACUUM ANALYZE")
        cur.execute("VACUUM ANALYZE")


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- the ledgers a benchmark uses --------------------------------------------------------------------
def cache_dir() -> Path:
    path = Path(os.environ.get("SGEN_BENCH_CACHE", Path.home() / ".cache" / "sgen-ops-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _key(n: int) -> str:
    return hashlib.sha256(f"{GEN_VERSION}|{n}|{SEED}|{BASE_REVISION}".encode()).hexdigest()[:12]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sqlite_ledger(n: int, work_dir: Path, *, revision: str = "head") -> tuple[str, Generated, dict[str, float]]:
    """A private copy of the cached n-job SQLite ledger, upgraded to ``revision``; returns its URL, what it
    holds, and timings (generation, copy, migration)."""
    cached = cache_dir() / f"ledger-{n}-{_key(n)}.db"
    meta = cached.with_suffix(".json")
    timings: dict[str, float] = {}
    if not (cached.exists() and meta.exists()):
        _say(f"generating a {n:,}-job SQLite ledger (cached at {cached}) ...")
        start = time.perf_counter()
        tmp = cached.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        ledger = Ledger(f"sqlite:///{tmp}")
        ledger.upgrade(BASE_REVISION)
        ledger.close()
        maker = _Maker(n, datetime.now(UTC).replace(microsecond=0))
        _write_sqlite(tmp, maker, _say)
        maker.info.seconds = time.perf_counter() - start
        tmp.rename(cached)
        meta.write_text(json.dumps(maker.info.to_json()))
        timings["generate"] = maker.info.seconds
        _say(f"  generated in {maker.info.seconds:.0f} s")
    info = Generated.from_json(json.loads(meta.read_text()))
    work = work_dir / "ledger.db"
    start = time.perf_counter()
    shutil.copyfile(cached, work)
    timings["copy"] = time.perf_counter() - start
    url = f"sqlite:///{work}"
    start = time.perf_counter()
    ledger = Ledger(url)
    ledger.upgrade(revision)
    ledger.close()
    timings["migrate"] = time.perf_counter() - start
    verify(url, info)
    return url, info, timings


PG_LEDGER = "sgen_bench_ledger"
# The PostgreSQL ledger generated in this process (generation takes minutes): admin URL -> (url, info, timings).
_PG_MADE: dict[tuple[str, int], tuple[str, Generated, dict[str, float]]] = {}
_PG_DATABASES: set[tuple[str, str]] = set()


def postgres_ledger(admin_url: str, n: int, *, copy: str | None = None) -> tuple[str, Generated, dict[str, float]]:
    """The n-job PostgreSQL ledger of this run, generated on first use into database ``sgen_bench_ledger``
    on the server of ``admin_url``; with ``copy``, a private copy of it under that name (for benchmarks
    that change it). ``cleanup`` drops them all."""
    key = (admin_url, n)
    if key not in _PG_MADE:
        _PG_MADE[key] = _kept_postgres(admin_url, n) or _generate_postgres(admin_url, n, PG_LEDGER)
    url, info, timings = _PG_MADE[key]
    if copy is None:
        return url, info, timings
    start = time.perf_counter()
    _PG_DATABASES.add((admin_url, copy))
    copied = create_database(admin_url, copy, template=PG_LEDGER)
    return copied, info, {**timings, "copy": time.perf_counter() - start}


def cleanup(admin_url: str | None) -> None:
    """Drop every PostgreSQL database this process made."""
    for admin, database in sorted(_PG_DATABASES):
        if admin_url is None or admin == admin_url:
            drop_database(admin, database)
            if database == PG_LEDGER:
                for meta in cache_dir().glob(f"postgres-*-{PG_LEDGER}-*.json"):
                    meta.unlink(missing_ok=True)
    _PG_DATABASES.clear()
    _PG_MADE.clear()


def _kept_meta(admin_url: str, n: int) -> Path:
    server = hashlib.sha256(sqlalchemy_url(admin_url).encode()).hexdigest()[:8]
    return cache_dir() / f"postgres-{server}-{PG_LEDGER}-{_key(n)}.json"


def _kept_postgres(admin_url: str, n: int) -> tuple[str, Generated, dict[str, float]] | None:
    """The ledger a ``--keep-postgres`` run left on this server, if it is the same generation; upgraded."""
    meta = _kept_meta(admin_url, n)
    if not meta.exists():
        return None
    url = urlsplit(sqlalchemy_url(admin_url))._replace(path=f"/{PG_LEDGER}").geturl()
    try:
        info = Generated.from_json(json.loads(meta.read_text()))
        start = time.perf_counter()
        ledger = Ledger(url)
        ledger.upgrade()
        ledger.close()
        migrate = time.perf_counter() - start
        verify(url, info)
    except Exception as exc:  # noqa: BLE001 - anything wrong with a kept ledger: generate a new one
        _say(f"not reusing the kept PostgreSQL ledger ({exc})")
        meta.unlink(missing_ok=True)
        return None
    _say(f"reusing the PostgreSQL ledger kept in database {PG_LEDGER}")
    _PG_DATABASES.add((admin_url, PG_LEDGER))
    return url, info, {"generate": info.seconds, "migrate": migrate, "reused": 1.0}


def _generate_postgres(
    admin_url: str, n: int, database: str, revision: str = "head"
) -> tuple[str, Generated, dict[str, float]]:
    _PG_DATABASES.add((admin_url, database))
    url = create_database(admin_url, database)
    timings: dict[str, float] = {}
    _say(f"generating a {n:,}-job PostgreSQL ledger in database {database} ...")
    start = time.perf_counter()
    ledger = Ledger(url)
    ledger.upgrade(BASE_REVISION)
    ledger.close()
    maker = _Maker(n, datetime.now(UTC).replace(microsecond=0))
    _write_postgres(url, maker, _say)
    maker.info.seconds = timings["generate"] = time.perf_counter() - start
    _say(f"  generated in {maker.info.seconds:.0f} s")
    _kept_meta(admin_url, n).write_text(json.dumps(maker.info.to_json()))
    start = time.perf_counter()
    ledger = Ledger(url)
    ledger.upgrade(revision)
    ledger.close()
    timings["migrate"] = time.perf_counter() - start
    verify(url, maker.info)
    return url, maker.info, timings


def create_database(admin_url: str, database: str, template: str | None = None) -> str:
    """A new, empty (or copied from ``template``) database on the server of ``admin_url``; returns its URL."""
    admin = sqlalchemy_url(admin_url)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{database}"' + (f' TEMPLATE "{template}"' if template else "")))
    engine.dispose()
    return urlsplit(admin)._replace(path=f"/{database}").geturl()


def drop_database(admin_url: str, database: str) -> None:
    engine = create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    engine.dispose()


def verify(url: str, info: Generated) -> None:
    """The ledger holds what was generated: a benchmark never measures a wrong ledger."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            states = dict(conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all())
            attempts = conn.execute(text("SELECT count(*) FROM attempts")).scalar()
            events = conn.execute(text("SELECT count(*) FROM job_events")).scalar()
    finally:
        engine.dispose()
    if states != dict(info.states) or attempts != info.attempts or events != info.events:
        raise BenchmarkError(
            f"generated ledger at {url} is not what was generated: states {states} vs {dict(info.states)}, "
            f"attempts {attempts} vs {info.attempts}, events {events} vs {info.events}"
        )


@contextlib.contextmanager
def clock(anchor: datetime, after: timedelta = timedelta(minutes=1)) -> Iterator[datetime]:
    """Run sgen-ops with its clock stopped at ``anchor + after`` (the ledger's generation time plus a
    minute): every query sees the same now, so a benchmark can check each total exactly."""
    import importlib

    for module_name in ("surface.operations", "surface.write", "ledger.stats", "ledger.jobs", "transport.queue",
                        "ledger.audit", "runtime.execution", "ledger.schedules", "runtime.scheduler", "hub"):
        importlib.import_module(f"sgen_ops.{module_name}")
    now = anchor + after

    def utcnow() -> datetime:
        return now

    patched = []
    for name, module in list(sys.modules.items()):
        if (name == "sgen_ops" or name.startswith("sgen_ops.")) and getattr(module, "utcnow", None) is not None:
            patched.append((module, module.utcnow))
            module.utcnow = utcnow
    try:
        yield now
    finally:
        for module, original in patched:
            module.utcnow = original
