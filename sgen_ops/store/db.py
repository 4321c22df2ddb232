"""The ledger's engine and sessions, with SQLite tuned for several processes sharing one file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


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


class Ledger:
    """Owns the SQLAlchemy engine; ``read()`` and ``write()`` hand out short-lived sessions."""

    def __init__(self, url: str, *, echo: bool = False, **engine_kwargs: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            engine_kwargs.setdefault("connect_args", {}).setdefault("timeout", 60)
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
        self.engine = create_engine(url, echo=echo, **engine_kwargs)
        if self.is_sqlite:
            _sqlite_tuning(self.engine)
            write_engine: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            write_engine = self.engine
        self._write_engine = write_engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine, expire_on_commit=False)
        self._pid = os.getpid()

    def _own_process(self) -> None:
        # A forked child (a work horse running a checkpoint, say) must never use its parent's connections.
        if self._pid != os.getpid():
            self.after_fork()

    @contextmanager
    def read(self) -> Iterator[Session]:
        self._own_process()
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error."""
        self._own_process()
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """A Core connection in a write transaction: the worker's hot path, without ORM bookkeeping."""
        self._own_process()
        with self._write_engine.begin() as conn:
            yield conn

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` through the Alembic migrations."""
        from alembic import command

        self._own_process()
        with self.engine.begin() as conn:
            config = alembic_config(conn)
            command.upgrade(config, revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        self._own_process()
        with self.engine.connect() as conn:
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
