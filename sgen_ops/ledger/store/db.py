"""The ledger's engine and sessions, with SQLite tuned for several processes sharing one file."""

from __future__ import annotations

import os
import select
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Dialect, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from ...errors import Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision under migrations/versions: a process tells that the ledger is current with one query
# (``Ledger.at_head``) instead of importing Alembic and loading every migration script. A test holds it
# to Alembic's own head, so a new migration cannot be added without moving it.
HEAD_REVISION = "0011"
# A pooled server connection idle for longer than this is pinged before it is handed out (see _ping_when_idle).
PING_AFTER_IDLE = 1.0
_IDLE = "sgen_idle_since"


def _sqlite_tuning(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN; take it over so writers can BEGIN IMMEDIATE
    # and never deadlock upgrading a read lock to a write lock across processes.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


# PostgreSQL SQLSTATEs that mean the server cannot serve this client now: its connection exceptions (class 08),
# the server shutting down, crashing or starting up, no connection slot free, and a read-only standby (what a
# client reaches during a failover before the new primary is promoted).
_PG_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "25006"})
# Seconds a connection attempt to PostgreSQL may take before it counts as an outage (a host that drops packets
# would otherwise hold a caller for the operating system's TCP timeout, minutes); a URL or connect_args may say
# otherwise.
CONNECT_TIMEOUT = 10
# Words for what went wrong, by what the driver's message says (checked in order); never the driver's text.
_REASONS = (
    (("refused",), "connection refused"),
    (("read-only", "read only"), "it is read-only (a standby, as during a failover)"),
    (("shutting down", "terminating connection", "admin_shutdown", "crash"), "the server is shutting down"),
    (("starting up", "not yet accepting", "recovery mode"), "the server is starting up"),
    (("timeout", "timed out"), "the connection timed out"),
    (("translate host name", "name or service not known", "nodename nor servname"), "its host name does not resolve"),
    (("too many", "remaining connection slots"), "it has no connection to spare"),
    (("unable to open",), "its file cannot be opened"),
    (("disk i/o",), "its file cannot be read or written"),
    (("closed", "lost", "consuming input failed", "eof", "ssl syscall", "broken pipe", "reset by peer"),
     "the connection was closed"),
)


def address(url: URL | str) -> str:
    """Where a ledger is, in words: ``host:port``, or the SQLite file."""
    url = make_url(url) if isinstance(url, str) else url
    if url.get_backend_name() == "sqlite":
        return url.database or "an in-memory SQLite database"
    host = url.host or "the local socket"
    port = url.port or (5432 if url.get_backend_name() == "postgresql" else None)
    return f"{host}:{port}" if port else host


def unavailable(exc: BaseException, url: URL | str) -> Unavailable | None:
    """``Unavailable`` for an error that means the ledger at ``url`` cannot be reached (an outage, a restart, a
    failover), else None. Takes SQLAlchemy's errors and the drivers' own (psycopg, psycopg2, sqlite3)."""
    if isinstance(exc, Unavailable):
        return exc
    orig = getattr(exc, "orig", None) or exc
    kind = type(orig).__name__
    module = type(orig).__module__.split(".")[0]
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig).lower()
    if module in ("psycopg", "psycopg2"):
        lost = state in _PG_OUTAGE_STATES or (
            kind in ("OperationalError", "InterfaceError") and (state is None or str(state).startswith("08"))
        )
        if not lost and getattr(exc, "connection_invalidated", False):
            lost = True
    elif module == "sqlite3":
        lost = kind == "OperationalError" and ("unable to open" in text or "disk i/o" in text)
    else:
        lost = bool(getattr(exc, "connection_invalidated", False)) or isinstance(exc, sa_exc.DisconnectionError)
    if not lost:
        return None
    if state == "25006":
        reason = "it is read-only (a standby, as during a failover)"
    else:
        reason = next((words for marks, words in _REASONS if any(m in text for m in marks)), "it does not answer")
    return Unavailable("ledger", address(url), reason)


def driver_error(
    dialect: Dialect, exc: Exception, statement: str | None = None, *, invalidated: bool = False
) -> sa_exc.StatementError:
    """A driver's error from a connection used outside SQLAlchemy's execution (raw DBAPI, COPY), as
    SQLAlchemy would have raised it: ``DBAPIError`` of the matching kind (IntegrityError, ...)."""
    return sa_exc.DBAPIError.instance(
        statement, None, exc, dialect.loaded_dbapi.Error, dialect=dialect, connection_invalidated=invalidated
    )


def _without_jit(url: str, connect_args: dict[str, Any]) -> None:
    """PostgreSQL sessions of the ledger run with ``jit = off``. Its operator queries are short, but their
    cost estimates at a million jobs pass ``jit_above_cost``, and compiling took 25-35 ms of each one
    (EXPLAIN ANALYZE of a text search: 355 ms with JIT, 281 ms without). Options given in the URL's
    ``options`` or in ``connect_args`` come after, so an explicit ``-c jit=on`` wins."""
    given = connect_args.get("options") or make_url(url).query.get("options")
    if isinstance(given, tuple):
        given = " ".join(given)
    connect_args["options"] = "-c jit=off" + (f" {given}" if given else "")


def _socket_quiet(dbapi_conn: Any) -> bool:
    """Nothing to read on an idle connection's socket: a server that ends the session (restart, shutdown,
    pg_terminate_backend, idle timeout) says so or closes it, and the socket turns readable."""
    try:
        fd = dbapi_conn.fileno()
        if hasattr(select, "poll"):  # select() cannot watch descriptors past FD_SETSIZE
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError, AttributeError):
        return False
    return not readable


def _ping_when_idle(ledger: Ledger) -> None:
    """SQLAlchemy's ``pool_pre_ping``, without its round trip for a connection back in the pool for less
    than ``ledger.ping_after_idle`` seconds whose socket is quiet (``_socket_quiet``).

    A ping on every checkout was one of the round trips of every single enqueue. A connection the server
    has ended is still found before use, as before; one dropped silently (no FIN: a network fault) within
    that second is found by the statement that uses it, which then fails as any statement in flight
    when the connection drops does, and the pool replaces it.
    """
    engine = ledger.engine
    dialect = engine.dialect
    owner = weakref.ref(ledger)  # the engine's listeners must not keep the ledger alive

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is not None:
            record.info[_IDLE] = (record.starttime, time.monotonic())

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        started, since = record.info.get(_IDLE, (None, 0.0))
        if started != record.starttime:
            return  # a connection just made for this checkout
        held = owner()
        after = held.ping_after_idle if held is not None else PING_AFTER_IDLE
        if time.monotonic() - since < after and _socket_quiet(dbapi_conn):
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and hands out a new one.
            raise sa_exc.DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


class Ledger:
    """Owns the SQLAlchemy engine; ``read()`` and ``write()`` hand out short-lived sessions."""

    def __init__(self, url: str, *, echo: bool = False, **engine_kwargs: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.ping_after_idle = PING_AFTER_IDLE
        idle_ping = False
        if self.is_sqlite:
            engine_kwargs.setdefault("connect_args", {}).setdefault("timeout", 60)
        else:
            if "pool_pre_ping" not in engine_kwargs:
                idle_ping = True
            if url.startswith("postgresql"):
                _without_jit(url, engine_kwargs.setdefault("connect_args", {}))
            if url.startswith("postgresql") and "connect_timeout" not in make_url(url).query:
                engine_kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
        self.engine = create_engine(url, echo=echo, **engine_kwargs)
        if idle_ping:
            _ping_when_idle(self)
        if self.is_sqlite:
            _sqlite_tuning(self.engine)
            write_engine: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            write_engine = self.engine
        self._write_engine = write_engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine, expire_on_commit=False)
        self._pid = os.getpid()

    def unavailable(self, exc: BaseException) -> Unavailable | None:
        """``Unavailable`` if ``exc`` means this ledger cannot be reached, else None."""
        return unavailable(exc, self.engine.url)

    @contextmanager
    def reaching(self) -> Iterator[None]:
        """Errors that mean the ledger cannot be reached leave as ``Unavailable``; others as they are."""
        try:
            yield
        except Unavailable:
            raise
        except Exception as exc:
            gone = self.unavailable(exc)
            if gone is None:
                raise
            raise gone from exc

    def _own_process(self) -> None:
        # A forked child (a work horse running a checkpoint, say) must never use its parent's connections.
        if self._pid != os.getpid():
            self.after_fork()

    @contextmanager
    def read(self) -> Iterator[Session]:
        self._own_process()
        with self.reaching(), self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error."""
        self._own_process()
        with self.reaching(), self._write() as session, session.begin():
            yield session

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """A Core connection in a write transaction: the worker's hot path, without ORM bookkeeping."""
        self._own_process()
        with self.reaching(), self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def autocommit_dbapi(self) -> Iterator[Any]:
        """A pooled DBAPI connection on which each statement commits by itself, atomically (PostgreSQL):
        for a write that is one statement, without the round trips of BEGIN and COMMIT, and without the
        cost of SQLAlchemy's execution machinery (the single enqueue's path). A driver error leaves as
        SQLAlchemy's own exception (``DBAPIError`` and its kinds), and a dropped connection is not
        handed out again."""
        if self.is_sqlite:
            raise RuntimeError("autocommit_dbapi is for PostgreSQL; SQLite writes go through write_conn")
        self._own_process()
        dialect = self.engine.dialect
        with self.reaching():
            fairy = self.engine.raw_connection()
        dbapi: Any = fairy.dbapi_connection
        try:
            dbapi.autocommit = True
            yield dbapi
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, dbapi, None)
            if lost:
                fairy.invalidate(exc)
            error = driver_error(dialect, exc, invalidated=lost)
            raise (self.unavailable(error) or error) from exc
        finally:
            try:
                if not dbapi.closed:
                    dbapi.autocommit = False
            except Exception:  # noqa: BLE001 - a connection in an unknown state is not pooled again
                fairy.invalidate()
            fairy.close()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` through the Alembic migrations."""
        from alembic import command

        self._own_process()
        with self.reaching(), self.engine.begin() as conn:
            config = alembic_config(conn)
            command.upgrade(config, revision)

    def at_head(self) -> bool:
        """Whether the schema is at ``HEAD_REVISION``: one read of ``alembic_version``, without Alembic. False
        also when the table is missing or holds several heads; ``upgrade`` and ``current_revision`` say more."""
        self._own_process()
        try:
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except sa_exc.DBAPIError as exc:
            gone = self.unavailable(exc)
            if gone is not None:
                raise gone from exc
            return False  # no alembic_version yet: a ledger never upgraded
        return [row[0] for row in rows] == [HEAD_REVISION]

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        self._own_process()
        with self.reaching(), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config(None)).get_current_head()

    def after_fork(self) -> None:
        """Drop pooled connections inherited from a parent process without closing the parent's."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self.engine.dispose(close=False)

    def close(self) -> None:
        self.engine.dispose()


def alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config
