"""The soak's checker: the attempt log against the ledger, in one table.

``check(lines, ledger)`` is a pure function of the log's lines (JSON, one event each: the tasks' starts
and finishes, the harness's enqueues, kills, exits and restarts) and the ledger's rows (jobs, attempts,
job_events, the Activity Log's verification). Every category but "re-runs after a truly lost outcome"
must be zero for the soak to pass:

* lost: an acknowledged job (``enqueue`` returned its id) missing from the ledger, or one that never
  reached a terminal state (no event into one, and not in one now).
* stuck: a job not in a terminal state at the end.
* attempts started twice: one (job, run, attempt) started more than once.
* overlapping runs: two starts of one job whose intervals overlap. An interval ends at its finish, else
  when its process was seen to die (killed or exited), else when its parent was (a work horse goes with
  its worker only where the platform makes it), else when its process or its parent started another
  attempt (a forking worker forks its next horse only after the last one reported or ended: a horse its
  worker killed because it could not renew the lease leaves no finish); one with none of these stays open.
* re-runs after a truly lost outcome (allowed, counted): the handler logged its finish, the ledger
  recorded that attempt as worker-lost, and the job started its next attempt.
* event-chain breaks: jobs whose job_events do not chain (a first event not from nothing, an event whose
  from_state is not the previous to_state) or whose last to_state is not jobs.state.
* audit verify: the Activity Log's hash chain.

Reported, not judged: the lateness of delayed retries (a backoff, so RQ's scheduler moved them), each one's start
minus its due time (the attempt's ``ready_at``; queueing behind busy workers counts too), and for the retries
due while the database was stopped (``--db-outage``), their start minus the moment it was back.

``python -m bench.soak_check LOG (--ledger-json FILE | --database-url URL)`` prints the table and exits
non-zero when the soak failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sgen_ops.core.states import ALL_STATES, NON_TERMINAL

TERMINAL = frozenset(ALL_STATES) - {s.value for s in NON_TERMINAL}
# The categories that fail the soak when not zero (audit verify fails it when broken).
MUST_BE_ZERO = ("lost", "stuck", "attempts started twice", "overlapping runs", "event-chain breaks")
ALLOWED = "re-runs after a truly lost outcome"


@dataclass
class LedgerRows:
    """What the checker reads of the ledger, as plain rows."""

    jobs: list[tuple[int, str]] = field(default_factory=list)  # (id, state)
    attempts: list[tuple[int, int, int, str | None]] = field(default_factory=list)  # (job, run, number, exit)
    events: list[tuple[int, int, str | None, str]] = field(default_factory=list)  # (id, job, from, to)
    # (job, run, number, ready_at, started_at, finished_at or 0) in seconds since the epoch: retry lateness
    timings: list[tuple[int, int, int, float, float, float]] = field(default_factory=list)
    audit_ok: bool = True
    audit_message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerRows:
        return cls(
            jobs=[(int(j), str(s)) for j, s in data["jobs"]],
            attempts=[(int(j), int(r), int(n), e) for j, r, n, e in data["attempts"]],
            events=[(int(i), int(j), f, str(t)) for i, j, f, t in data["events"]],
            timings=[(int(t[0]), int(t[1]), int(t[2]), float(t[3]), float(t[4]), float(t[5]) if len(t) > 5 else 0.0)
                     for t in data.get("timings", [])],
            audit_ok=bool(data["audit_ok"]),
            audit_message=str(data.get("audit_message", "")),
        )


@dataclass
class Report:
    """The table's figures, and the job ids behind each non-zero category."""

    jobs: int = 0
    ledger_jobs: int = 0
    worker_kills: int = 0
    horse_kills: int = 0
    redis_restarts: int = 0
    pg_terminations: int = 0
    db_outages: list[float] = field(default_factory=list)  # seconds each stop of the database lasted
    # Seconds from a retry's due time to its start: median, 95th percentile, largest, count.
    retry_lateness: dict[str, float] = field(default_factory=dict)
    # Of the retries due while the database was stopped: the largest lateness after it was back.
    outage_lateness: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # Of the re-runs after a truly lost outcome: those whose finish a work horse logged after its worker died.
    orphan_finishes: int = 0
    examples: dict[str, list[Any]] = field(default_factory=dict)
    audit_ok: bool = True

    @property
    def failed(self) -> list[str]:
        bad = [name for name in MUST_BE_ZERO if self.counts.get(name, 0)]
        return bad if self.audit_ok else [*bad, "audit verify"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def rows(self) -> list[tuple[str, str]]:
        jobs = f"{self.jobs:,}"
        if self.ledger_jobs != self.jobs:
            jobs += f" acknowledged ({self.ledger_jobs:,} in the ledger)"
        rows = [
            ("jobs", jobs),
            ("kills", f"{self.worker_kills + self.horse_kills} ({self.worker_kills} workers, "
                      f"{self.horse_kills} horses)"),
            ("restarts", f"{self.redis_restarts} (Redis); {self.pg_terminations} PostgreSQL backends terminated"
                         + (f"; database stopped {len(self.db_outages)} time(s) "
                            f"({', '.join(f'{d:.0f} s' for d in self.db_outages)})" if self.db_outages else "")),
        ]
        rows += [(name, str(self.counts.get(name, 0))) for name in MUST_BE_ZERO[:4]]
        reruns = str(self.counts.get(ALLOWED, 0))
        if self.orphan_finishes:
            reruns += f" ({self.orphan_finishes} finished by a work horse after its worker was killed)"
        rows += [(ALLOWED, reruns), (MUST_BE_ZERO[4], str(self.counts.get(MUST_BE_ZERO[4], 0)))]
        rows.append(("audit verify", "ok" if self.audit_ok else "broken"))
        if self.retry_lateness:
            late = self.retry_lateness
            rows.append(("delayed retries: start minus due", f"median {late['median']:.1f} s, p95 {late['p95']:.1f} s, "
                         f"max {late['max']:.1f} s ({int(late['count'])} retries)"))
        if self.outage_lateness is not None:
            rows.append(("retries due during the database outage: latest start after its return",
                         f"{self.outage_lateness:.1f} s"))
        return rows

    def table(self) -> str:
        lines = ["| measure | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in self.rows()]
        return "\n".join(lines)

    def details(self, limit: int = 10) -> str:
        out = []
        for name, ids in self.examples.items():
            if ids:
                shown = ", ".join(str(i) for i in ids[:limit])
                more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
                out.append(f"{name}: {shown}{more}")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "failed": self.failed}


def parse_log(text: str) -> list[dict[str, Any]]:
    """The log's events; a torn last line (a writer killed mid-write) is skipped, any other bad line is not."""
    lines = text.splitlines()
    events = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            if n == len(lines):
                continue
            raise ValueError(f"log line {n} is not JSON: {line[:200]!r}") from None
    return events


def _deaths(events: Iterable[dict[str, Any]]) -> dict[int, list[float]]:
    seen: dict[int, list[float]] = defaultdict(list)
    for e in events:
        if e["event"] in ("kill", "exit") and e.get("pid"):
            seen[int(e["pid"])].append(float(e["mono"]))
    return {pid: sorted(times) for pid, times in seen.items()}


def _death_after(deaths: dict[int, list[float]], pid: int, start: float) -> float | None:
    return next((t for t in deaths.get(pid, ()) if t >= start), None)


def check(lines: Sequence[dict[str, Any]], ledger: LedgerRows) -> Report:
    """Compare the attempt log with the ledger; see the module's docstring for each category."""
    report = Report(audit_ok=ledger.audit_ok)
    acknowledged: set[int] = set()
    starts: list[dict[str, Any]] = []
    finishes: dict[tuple[int, int, int, int], float] = {}
    finished_by: dict[tuple[int, int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in lines:
        kind = e["event"]
        if kind == "enqueued":
            acknowledged.update(int(j) for j in e["jobs"])
        elif kind == "start":
            starts.append(e)
        elif kind == "finish":
            key = (int(e["job"]), int(e["run"]), int(e["attempt"]))
            finishes.setdefault((*key, int(e["pid"])), float(e["mono"]))
            finished_by[key].append(e)
        elif kind == "kill":
            if e.get("what") == "horse":
                report.horse_kills += 1
            elif e.get("what") == "worker":
                report.worker_kills += 1
        elif kind == "redis-restart":
            report.redis_restarts += 1
        elif kind == "pg-terminate":
            report.pg_terminations += int(e.get("count", 0))
    report.jobs = len(acknowledged)
    report.ledger_jobs = len(ledger.jobs)
    _lateness(report, lines, ledger)
    state = dict(ledger.jobs)
    events_of: dict[int, list[tuple[int, str | None, str]]] = defaultdict(list)
    for event_id, job_id, src, dst in ledger.events:
        events_of[job_id].append((event_id, src, dst))

    # lost and stuck
    lost = []
    for job_id in sorted(acknowledged):
        never_terminal = not any(dst in TERMINAL for _, _, dst in events_of[job_id])
        if job_id not in state or (state[job_id] not in TERMINAL and never_terminal):
            lost.append(job_id)
    stuck = sorted(j for j, s in state.items() if s not in TERMINAL)

    # attempts started twice
    started = Counter((int(s["job"]), int(s["run"]), int(s["attempt"])) for s in starts)
    twice = sorted(k for k, n in started.items() if n > 1)

    # overlapping runs
    deaths = _deaths(lines)
    # The next attempt each forking worker's horses started after each start: it forks its next horse only after
    # the last one reported or ended.
    forking = {int(e["pid"]) for e in lines if e["event"] == "worker-start" and e.get("kind") == "fork"}
    by_process: dict[int, list[float]] = defaultdict(list)
    for s in starts:
        if int(s.get("ppid") or 0) in forking:
            by_process[int(s["ppid"])].append(float(s["mono"]))
    next_start: dict[tuple[int, float], float] = {}
    for proc, times in by_process.items():
        times.sort()
        for a, b in itertools.pairwise(times):
            next_start[(proc, a)] = b
    intervals: dict[int, list[tuple[float, float, tuple[int, int, int]]]] = defaultdict(list)
    for s in starts:
        key = (int(s["job"]), int(s["run"]), int(s["attempt"]))
        begin, pid = float(s["mono"]), int(s["pid"])
        end = finishes.get((*key, pid))
        if end is None:
            ppid = int(s.get("ppid") or 0)
            bounds = [_death_after(deaths, pid, begin), _death_after(deaths, ppid, begin) if ppid else None,
                      next_start.get((ppid, begin))]
            end = min((b for b in bounds if b is not None), default=None)
        intervals[key[0]].append((begin, math.inf if end is None else end, key))
    overlaps = []
    for job_id, spans in intervals.items():
        spans.sort()
        for i, (_, end_a, key_a) in enumerate(spans):
            for begin_b, _, key_b in spans[i + 1 :]:
                if begin_b < end_a:
                    overlaps.append((job_id, key_a[1:], key_b[1:]))

    # re-runs after a truly lost outcome
    exits = {(j, r, n): x for j, r, n, x in ledger.attempts}
    reruns = sorted(
        k for k in finished_by if exits.get(k) == "worker-lost" and (k[0], k[1], k[2] + 1) in exits
    )
    # The parent as the start saw it: an orphaned horse's own ppid is no longer its worker's at its finish.
    start_ppid = {(int(s["job"]), int(s["run"]), int(s["attempt"]), int(s["pid"])): int(s.get("ppid") or 0)
                  for s in starts}
    for k in reruns:
        for e in finished_by[k]:
            worker = start_ppid.get((*k, int(e["pid"])), 0)
            worker_died = _death_after(deaths, worker, -math.inf)
            if worker_died is not None and worker_died < float(e["mono"]):
                report.orphan_finishes += 1
                break

    # event-chain breaks
    breaks = []
    for job_id, current in state.items():
        chain = sorted(events_of.get(job_id, []))
        previous: str | None = None
        intact = bool(chain)
        for _, src, dst in chain:
            if src != previous:
                intact = False
                break
            previous = dst
        if not intact or previous != current:
            breaks.append(job_id)

    found: dict[str, list[Any]] = {
        "lost": lost,
        "stuck": stuck,
        "attempts started twice": twice,
        "overlapping runs": overlaps,
        ALLOWED: reruns,
        "event-chain breaks": sorted(breaks),
    }
    report.counts = {name: len(ids) for name, ids in found.items()}
    report.examples = found
    return report


def _lateness(report: Report, lines: Sequence[dict[str, Any]], ledger: LedgerRows) -> None:
    """Retry lateness from the ledger's attempts, and around each database outage the log notes."""
    windows: list[tuple[float, float]] = []  # (stopped, back) in wall seconds
    stopped: float | None = None
    for e in lines:
        if e["event"] == "db-outage":
            stopped = float(e["wall"])
        elif e["event"] == "db-back" and stopped is not None:
            windows.append((stopped, float(e["wall"])))
            stopped = None
    report.db_outages = [round(back - start, 1) for start, back in windows]
    finished = {(j, r, n): f for j, r, n, _ready, _started, f in ledger.timings}
    # Retries that waited out a backoff: due after the attempt before them ended, so RQ's scheduler moved them.
    delayed = [(number, ready, started) for j, r, number, ready, started, _f in ledger.timings
               if number > 1 and ready > finished.get((j, r, number - 1), ready) + 0.2]
    late = sorted(started - ready for _n, ready, started in delayed)
    if late:
        report.retry_lateness = {
            "median": late[len(late) // 2],
            "p95": late[min(len(late) - 1, int(len(late) * 0.95))],
            "max": late[-1],
            "count": float(len(late)),
        }
    after = [started - back for _n, ready, started in delayed for start, back in windows if start <= ready <= back]
    if after:
        report.outage_lateness = max(after)


def read_ledger(ledger: Any) -> LedgerRows:
    """The rows the checker needs, read from an ``sgen_ops.ledger.store.Ledger`` (its own audit verification too)."""
    from sqlalchemy import select

    from sgen_ops.ledger import audit
    from sgen_ops.ledger.store import Attempt, Job, JobEvent

    with ledger.read() as session:
        jobs = [(int(i), str(s)) for i, s in session.execute(select(Job.id, Job.state))]
        attempts = [
            (int(j), int(r), int(n), x)
            for j, r, n, x in session.execute(select(Attempt.job_id, Attempt.run, Attempt.number, Attempt.exit))
        ]
        timings = [
            (int(j), int(r), int(n), ready.timestamp(), started.timestamp(), done.timestamp() if done else 0.0)
            for j, r, n, ready, started, done in session.execute(
                select(Attempt.job_id, Attempt.run, Attempt.number, Attempt.ready_at, Attempt.started_at,
                       Attempt.finished_at))
            if ready is not None and started is not None
        ]
        events = [
            (int(i), int(j), f, str(t))
            for i, j, f, t in session.execute(
                select(JobEvent.id, JobEvent.job_id, JobEvent.from_state, JobEvent.to_state)
            )
        ]
    verified = audit.verify(ledger)
    return LedgerRows(jobs, attempts, events, timings, verified.ok, verified.message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_check", description=__doc__.split("\n")[0])
    parser.add_argument("log", type=Path, help="the soak's attempt log")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ledger-json", type=Path, help="the ledger rows the soak saved (ledger.json)")
    source.add_argument("--database-url", help="read the ledger itself (SQLAlchemy URL)")
    args = parser.parse_args(argv)
    if args.ledger_json:
        rows = LedgerRows.from_json(json.loads(args.ledger_json.read_text()))
    else:
        from sgen_ops.ledger.store import Ledger

        ledger = Ledger(args.database_url)
        try:
            rows = read_ledger(ledger)
        finally:
            ledger.close()
    report = check(parse_log(args.log.read_text()), rows)
    print(report.table())
    details = report.details()
    if details:
        print(details)
    if not report.ok:
        print(f"soak FAILED: {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
