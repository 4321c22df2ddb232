"""Query plans of the ledger's reads: the statements a call runs, each one's plan from the backend's own
EXPLAIN, and the steps of a plan that read the history rather than a page of it.

A read costs a page when every access to a table that grows with the history (``HISTORY_TABLES``) is a
search of an index, or a walk of an index in its order that a LIMIT stops, and nothing is sorted or
gathered whole before that LIMIT: a table scan, a sort of every match, or (PostgreSQL) a bitmap of every
match would each read as much as the history holds. ``tests/integration/test_read_plans.py`` holds every
operator read of the views and the API to this on both backends; docs/totals.md explains why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# Tables whose rows accumulate with every job; the others (operators, schedules, pauses, ...) stay small.
HISTORY_TABLES = ("jobs", "attempts", "job_events", "activity_log", "job_texts", "jobs_fts")

# PostgreSQL: a tiny test ledger would be read whole because that is cheapest there; with these off, the
# planner takes an index wherever one can serve the statement, as it does on a big ledger.
_PG_PREFER_INDEXES = ("SET LOCAL enable_seqscan = off", "SET LOCAL enable_bitmapscan = off",
                      "SET LOCAL enable_sort = off")


@dataclass(frozen=True)
class Statement:
    """One statement a call ran, with its parameters as the driver got them."""

    sql: str
    parameters: Any


@contextmanager
def captured(engine: Engine) -> Iterator[list[Statement]]:
    """The reads (SELECT and WITH statements) run on ``engine`` inside the block, in order."""
    seen: list[Statement] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(Statement(statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain(engine: Engine, statement: Statement) -> list[str]:
    """The plan of ``statement`` as its backend words it, one line per step."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.parameters)
            return [str(row[3]) for row in cursor.fetchall()]
        for setting in _PG_PREFER_INDEXES:
            cursor.execute(setting)
        cursor.execute("EXPLAIN " + statement.sql, statement.parameters)
        lines = [str(row[0]) for row in cursor.fetchall()]
        raw.rollback()
        return lines
    finally:
        raw.close()


_TABLES = "|".join(HISTORY_TABLES)
_SQLITE_TABLE_SCAN = re.compile(rf"^SCAN ({_TABLES})\b(?! USING)")
_SQLITE_SORT = re.compile(r"USE TEMP B-TREE FOR (ORDER BY|GROUP BY|DISTINCT)")
_PG_TABLE_SCAN = re.compile(rf"(Seq Scan|Bitmap Heap Scan) on ({_TABLES})\b")
_PG_HISTORY = re.compile(rf" on ({_TABLES})\b")
_PG_SORT = re.compile(r"(?<!Incremental )\bSort\b(?! Key)|HashAggregate|GroupAggregate")


def history_reads(plan: list[str], dialect: str, sql: str = "") -> list[str]:
    """The steps of ``plan`` (of the statement ``sql``) that read every row of a history table, or every
    match before a LIMIT."""
    if dialect == "sqlite":
        return [line for line in plan
                if (_SQLITE_TABLE_SCAN.search(line.strip()) and not _rowid_walk(line, sql))
                or _SQLITE_SORT.search(line)]
    if not any(_PG_HISTORY.search(line) for line in plan):
        return []  # a sort of a few rows of a small table (an operator's notes) is no read of the history
    return [line for line in plan if _PG_TABLE_SCAN.search(line) or _PG_SORT.search(line)]


def _rowid_walk(line: str, sql: str) -> bool:
    """SQLite words a walk of a table in its rowid order, which a LIMIT stops, as a scan too."""
    table = line.strip().split()[1]
    return bool(re.search(rf"ORDER BY {table}\.id( DESC)?\s+LIMIT", sql))


def indexes_used(plan: list[str]) -> set[str]:
    """The names of the indexes ``plan`` reads (``ix_...``, ``pk_...``, and SQLite's integer primary key)."""
    found = set(re.findall(r"\b((?:ix|pk|uq)_[a-z0-9_]+)", " ".join(plan)))
    if any("INTEGER PRIMARY KEY" in line for line in plan):
        found.add("rowid")
    return found
