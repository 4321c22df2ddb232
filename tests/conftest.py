"""Fixtures: real Redis (a private embedded server, or SGEN_OPS_TEST_REDIS_URL), SQLite per test,
and PostgreSQL per test in a schema of its own when SGEN_OPS_TEST_DATABASE_URL is set.

Every test gets its own queue prefix; at the end its Redis keys and its schema are removed, so a
test never touches data it did not create.

The ledger a test starts from is a copy of one the Alembic migrations brought up to head once per
session (the SQLite file copied, the PostgreSQL schema replayed from ``pg_dump``): the same tables,
triggers and rows as a fresh migration gives, without running every migration again for every test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from sqlalchemy import create_engine, text

import sgen_ops
from sgen_ops.embedded import start_redis_server, stop_process
from sgen_ops.ledger.store import Ledger

ROOT = Path(__file__).resolve().parent.parent
TASK_MODULES = "worker.catalog,tests.tasks"
PG_URL = os.environ.get("SGEN_OPS_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("SGEN_OPS_TEST_REDIS_URL")
    if given:
        yield given
        return
    url, pid = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(pid)


def _pg_url_with_schema(schema: str) -> str:
    assert PG_URL
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1) if PG_URL.startswith("postgresql://") else PG_URL
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger at the head revision, closed (no WAL left beside it), for tests to copy."""
    path = tmp_path_factory.mktemp("migrated") / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    ledger.upgrade()
    ledger.close()
    assert not path.with_name("ledger.db-wal").exists(), "the migrated ledger kept a write-ahead log"
    return path


def _pg_dump_of_migrated_schema(admin: Any) -> tuple[str, str] | None:
    """A schema migrated to head, as the SQL that recreates it (structure and rows, its name to replace),
    or None when no pg_dump can read this server (each test then runs the migrations itself)."""
    assert PG_URL
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        return None
    schema = f"t_migrated_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        ledger = Ledger(_pg_url_with_schema(schema))
        ledger.upgrade()
        ledger.close()
        dump = subprocess.run(
            [pg_dump, "--schema", schema, "--no-owner", "--no-privileges", "--inserts",
             PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)],
            capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    if dump.returncode != 0:
        return None
    # psql's meta-commands (\restrict ...) are not SQL.
    sql = "\n".join(line for line in dump.stdout.splitlines() if not line.startswith("\\"))
    return sql, schema


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[tuple[Any, tuple[str, str] | None]]:
    """A connection to the test database outside any test's schema, and the migrated schema's SQL."""
    admin = create_engine(_pg_url_with_schema("public"))
    try:
        yield admin, _pg_dump_of_migrated_schema(admin)
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"
        return
    admin, migrated = request.getfixturevalue("pg_admin")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if migrated is None:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    else:
        sql, name = migrated
        raw = admin.raw_connection()
        try:
            # The driver's own execute: no parameters, so the functions' % signs stay as they are.
            with raw.cursor() as cur:
                cur.execute(sql.replace(name, schema))
                cur.execute("RESET ALL")  # the dump's session settings (its empty search_path) end with it
            raw.commit()
        finally:
            raw.close()
    try:
        yield _pg_url_with_schema(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def cleanup_redis(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        for set_key in ("rq:workers", "rq:queues"):
            stale = [m for m in client.smembers(set_key) if prefix.encode() in m]
            if stale:
                client.srem(set_key, *stale)
    finally:
        client.close()


class Stack:
    """What a test needs to start more hubs or worker processes on its own stores."""

    def __init__(self, tmp_path: Path, database_url: str, redis_url: str) -> None:
        self.home = tmp_path / "home"
        self.database_url = database_url
        self.redis_url = redis_url
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.hubs: list[sgen_ops.Hub] = []

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "home": self.home,
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "queue_prefix": self.prefix,
            "task_modules": TASK_MODULES,
            "auto_upgrade": True,
        }
        values.update(overrides)
        return values

    def hub(self, **overrides: Any) -> sgen_ops.Hub:
        hub = sgen_ops.connect(**self.settings(**overrides))
        self.hubs.append(hub)
        return hub

    def env(self, **overrides: Any) -> dict[str, str]:
        """Environment for a subprocess (worker, scheduler, CLI) on this stack."""
        env = dict(os.environ)
        for key, value in self.settings(**overrides).items():
            env[f"SGEN_OPS_{key.upper()}"] = str(value)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def runs(self) -> list[str]:
        """The attempts the test tasks recorded, in order ("job:run:attempt")."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            return [v.decode() for v in client.lrange(f"{self.prefix}:runs", 0, -1)]
        finally:
            client.close()

    def close(self) -> None:
        for hub in self.hubs:
            hub.close()
        cleanup_redis(self.redis_url, self.prefix)


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path, database_url, redis_url)
    yield s
    s.close()


@pytest.fixture
def hub(stack: Stack) -> sgen_ops.Hub:
    return stack.hub()


@pytest.fixture
def make_hub(stack: Stack) -> Callable[..., sgen_ops.Hub]:
    return stack.hub


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The README blocks the README test did not run, with its reasons (here, so that xdist's controller has it)."""
    reasons: set[str] = set()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            properties = getattr(report, "user_properties", ())
            reasons.update(*(value for name, value in properties if name == "readme_not_run"))
    if reasons:
        terminalreporter.section("README blocks not run")
        for reason in sorted(reasons, key=lambda r: int(r.split()[2])):
            terminalreporter.write_line(reason)
