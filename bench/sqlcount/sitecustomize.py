"""Counts the SQL a process sends through the DB-API, for bench/workers.py's counting runs.

Python imports ``sitecustomize`` at start-up from the first directory on ``sys.path`` that has one; the
benchmark puts this directory first on the PYTHONPATH of the worker processes it starts for counting, and
names a directory in ``BENCH_SQL_COUNT_DIR``. Nothing here changes what the product code runs: sqlite3
connections are made with a counting ``factory`` and psycopg's cursors and connections are wrapped, which
is where both sgen-ops' hot path (raw DB-API connections) and SQLAlchemy send their statements.

Counted per process:

- ``statements``: every statement executed (``execute``, ``executemany`` once per call, COPY), except
  transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...), which the drivers send implicitly on one
  backend and explicitly on the other;
- ``commits``: transactions committed: ``commit()`` that ended an open transaction, a COMMIT statement,
  and a statement run in autocommit mode outside a transaction (its own transaction; reads not counted);
- ``rollbacks``: transactions rolled back (``rollback()`` or a ROLLBACK statement ending one).

Each process writes its counts, if any, to ``<dir>/<pid>.<unique>.json`` when it ends: at exit (atexit),
in ``os._exit`` (forked work horses and the worker pool's children leave that way, without atexit), and on
SIGTERM where the process has not put its own handler in place. A forked child starts from zero.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sqlite3
import sqlite3.dbapi2
import threading
import time
from collections.abc import Callable
from typing import Any

DIR = os.environ.get("BENCH_SQL_COUNT_DIR", "")
_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})
_READS = frozenset({"SELECT", "PRAGMA", "SHOW", "SET", "EXPLAIN"})


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements = self.commits = self.rollbacks = 0

    def add(self, statements: int = 0, commits: int = 0, rollbacks: int = 0) -> None:
        with self.lock:
            self.statements += statements
            self.commits += commits
            self.rollbacks += rollbacks


COUNTS = _Counts()


def _keyword(sql: Any) -> str:
    if isinstance(sql, bytes):
        sql = sql.decode(errors="replace")
    elif not isinstance(sql, str):
        sql = str(sql)  # psycopg's sql.Composed and the like
    head = sql.lstrip().split(None, 1)
    return head[0].rstrip(";").upper() if head else ""


def _note(sql: Any, was_open: bool, autocommit: bool, is_open: bool) -> None:
    """Count one executed statement, given whether a transaction was open before and after it."""
    keyword = _keyword(sql)
    if keyword in _CONTROL:
        if was_open and not is_open:
            COUNTS.add(commits=int(keyword in ("COMMIT", "END")), rollbacks=int(keyword == "ROLLBACK"))
        return
    COUNTS.add(statements=1, commits=int(autocommit and not was_open and not is_open and keyword not in _READS))


# -- sqlite3 ----------------------------------------------------------------------------------------------
class CountingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._counted(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self._counted(super().executemany, sql, seq_of_parameters)

    def _counted(self, run: Callable[[str, Any], Any], sql: str, parameters: Any) -> Any:
        conn = self.connection
        was_open = conn.in_transaction
        try:
            return run(sql, parameters)
        finally:
            _note(sql, was_open, conn.isolation_level is None, conn.in_transaction)


class CountingConnection(sqlite3.Connection):
    # Connection.execute makes its own cursor without calling self.cursor(): counted here, once.
    def cursor(self, factory: Any = CountingCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, seq_of_parameters)

    def commit(self) -> None:
        was_open = self.in_transaction
        super().commit()
        COUNTS.add(commits=int(was_open))

    def rollback(self) -> None:
        was_open = self.in_transaction
        super().rollback()
        COUNTS.add(rollbacks=int(was_open))


def _counting_connect(connect: Callable[..., Any]) -> Callable[..., Any]:
    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("factory", CountingConnection)
        return connect(*args, **kwargs)

    return counting_connect


# -- psycopg (3) --------------------------------------------------------------------------------------------
def _psycopg() -> None:
    try:
        import psycopg
        from psycopg.pq import TransactionStatus
    except ImportError:
        return
    idle = TransactionStatus.IDLE

    def state(cur: Any) -> tuple[bool, bool]:
        conn = cur.connection
        return conn.info.transaction_status != idle, bool(conn.autocommit)

    def wrap_execute(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            was_open, autocommit = state(self)
            try:
                return original(self, query, *args, **kwargs)
            finally:
                _note(query, was_open, autocommit, state(self)[0])

        setattr(cls, name, counted)

    for cls in (psycopg.Cursor, psycopg.ServerCursor):
        for name in ("execute", "executemany"):
            if name in vars(cls):
                wrap_execute(cls, name)

    copy = psycopg.Cursor.copy

    def counted_copy(self: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
        was_open, autocommit = state(self)
        COUNTS.add(statements=1, commits=int(autocommit and not was_open))
        return copy(self, statement, *args, **kwargs)

    psycopg.Cursor.copy = counted_copy  # type: ignore[method-assign]

    def wrap_end(name: str, commit: bool) -> None:
        original = getattr(psycopg.Connection, name)

        def counted(self: Any) -> None:
            was_open = self.info.transaction_status != idle
            original(self)
            COUNTS.add(commits=int(was_open and commit), rollbacks=int(was_open and not commit))

        setattr(psycopg.Connection, name, counted)

    wrap_end("commit", True)
    wrap_end("rollback", False)


# -- writing the counts out ---------------------------------------------------------------------------------
def write_counts() -> None:
    """This process's counts into a file of its own (if it counted anything), then start again from zero."""
    with COUNTS.lock:
        counts = {
            "pid": os.getpid(),
            "statements": COUNTS.statements,
            "commits": COUNTS.commits,
            "rollbacks": COUNTS.rollbacks,
        }
        COUNTS.statements = COUNTS.commits = COUNTS.rollbacks = 0
    if not (counts["statements"] or counts["commits"] or counts["rollbacks"]):
        return
    path = os.path.join(DIR, f"{os.getpid()}.{time.monotonic_ns()}.json")
    with open(path + ".tmp", "w") as out:
        json.dump(counts, out)
    os.replace(path + ".tmp", path)


def _after_fork_in_child() -> None:
    global COUNTS
    COUNTS = _Counts()  # the parent's counts are the parent's; a lock held at the fork is not ours


def _counting_exit(exit: Callable[[int], Any]) -> Callable[[int], Any]:
    def counting_exit(status: int) -> Any:
        with contextlib.suppress(Exception):  # the exit must happen whatever the counting does
            write_counts()
        return exit(status)

    return counting_exit


def _on_sigterm(signum: int, _frame: Any) -> None:
    write_counts()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if DIR:
    sqlite3.connect = sqlite3.dbapi2.connect = _counting_connect(sqlite3.connect)
    _psycopg()
    os.register_at_fork(after_in_child=_after_fork_in_child)
    os._exit = _counting_exit(os._exit)
    atexit.register(write_counts)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
