"""Fixtures: real Redis (a private embedded server, or SGEN_OPS_TEST_REDIS_URL), SQLite per test,
and PostgreSQL per test in a schema of its own when SGEN_OPS_TEST_DATABASE_URL is set.

Every test gets its own queue prefix; at the end its Redis keys and its schema are removed, so a
test never touches data it did not create.

The ledger a test starts from is a copy of one the Alembic migrations brought up to head once per
run (the SQLite file copied, the PostgreSQL schema replayed from ``pg_dump``): the same tables,
triggers and rows as a fresh migration gives, without running every migration again for every test.

Under pytest-xdist (``make test`` runs ``-n``) each worker process is a session of its own: its own
redis-server, its own PostgreSQL database (``<database>_<worker>``, created empty and dropped at the end),
its own temporary directories. The migrated ledgers are made once per run, by the first worker to take a
file lock, and read by the others (``shared_once``).
"""

from __future__ import annotations

import contextlib
import json
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
from filelock import FileLock
from sqlalchemy import create_engine, make_url, text

import sgen_ops
from sgen_ops.embedded import start_redis_server, stop_process
from sgen_ops.ledger.store import Ledger

ROOT = Path(__file__).resolve().parent.parent
TASK_MODULES = "worker.catalog,tests.tasks"
# "gw0", "gw1", ... in a pytest-xdist worker; None in a run without workers.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
# The database the run was given: the run's shared template is made in it.
GIVEN_PG_URL = os.environ.get("SGEN_OPS_TEST_DATABASE_URL")


def _database_url(url: str, database: str) -> str:
    """``url`` with another database on the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _worker_database_url(url: str | None) -> str | None:
    """This worker's database on the given server (``<database>_<worker>``), or the given one without workers:
    database-wide state (advisory locks, pg_stat_activity) is then never shared by tests running at once."""
    if not url or not XDIST_WORKER:
        return url
    return _database_url(url, f"{make_url(url).database}_{XDIST_WORKER}")


# The database this process's tests work in (each test in a schema of its own).
PG_URL = _worker_database_url(GIVEN_PG_URL)
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def template_database() -> str:
    """The name of the run's template database under xdist: the given one's name + ``_template``."""
    assert GIVEN_PG_URL
    return f"{make_url(GIVEN_PG_URL).database}_template"


def shared_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A file made once per run and shared by every xdist worker: the first to take the lock calls
    ``make(path)``, the others wait for it and read what it wrote (without workers: made by this session)."""
    root = tmp_path_factory.getbasetemp()
    if XDIST_WORKER:
        root = root.parent  # the run's directory; each worker's basetemp is below it
    path = root / name
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            partial = path.with_name(path.name + ".partial")
            make(partial)
            partial.rename(path)
    return path


def _psycopg(url: str) -> str:
    """``url`` with SQLAlchemy's driver named: psycopg 3 (SQLAlchemy's default for postgresql:// is psycopg2)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def _pg_url_with_schema(schema: str, database_url: str | None = None) -> str:
    """The URL of ``schema`` in this process's test database (or in ``database_url``)."""
    base = database_url or PG_URL
    assert base
    url = _psycopg(base)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def _on_server(*statements: str) -> None:
    """Statements outside any transaction (CREATE and DROP DATABASE), from a connection to the given database."""
    assert GIVEN_PG_URL
    server = create_engine(_psycopg(GIVEN_PG_URL), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        server.dispose()


def _pg_dump_of_migrated_schema(database_url: str) -> tuple[str, str] | None:
    """A schema migrated to head in ``database_url``, as the SQL that recreates it (structure and rows, its
    name to replace), or None when no pg_dump can read this server (each test then runs the migrations
    itself). The schema is dropped once dumped; what the migrations installed database-wide (the pg_trgm
    extension) stays."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        return None
    schema = f"t_migrated_{uuid.uuid4().hex[:12]}"
    database = create_engine(_pg_url_with_schema("public", database_url))
    try:
        with database.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            ledger = Ledger(_pg_url_with_schema(schema, database_url))
            ledger.upgrade()
            ledger.close()
            dump = subprocess.run(
                [pg_dump, "--schema", schema, "--no-owner", "--no-privileges", "--inserts",
                 database_url.replace("postgresql+psycopg://", "postgresql://", 1)],
                capture_output=True, text=True, timeout=120, check=False,
            )
        finally:
            with database.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        database.dispose()
    if dump.returncode != 0:
        return None
    # psql's meta-commands (\restrict ...) are not SQL.
    sql = "\n".join(line for line in dump.stdout.splitlines() if not line.startswith("\\"))
    return sql, schema


def _make_pg_template(path: Path) -> None:
    """Once per run: the migrated schema's SQL, written to ``path``. Under xdist it is made in the run's
    template database, created here, which then holds what the migrations install database-wide and from
    which each worker's database is copied (the last process of the run drops it: pytest_sessionfinish)."""
    assert GIVEN_PG_URL
    source = GIVEN_PG_URL
    if XDIST_WORKER:
        template = template_database()
        _on_server(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)', f'CREATE DATABASE "{template}"')
        source = _database_url(GIVEN_PG_URL, template)
    path.write_text(json.dumps(_pg_dump_of_migrated_schema(source)))


def _pg_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str] | None:
    dumped = json.loads(shared_once(tmp_path_factory, "migrated-schema.json", _make_pg_template).read_text())
    return (dumped[0], dumped[1]) if dumped is not None else None


@pytest.fixture(scope="session", autouse=True)
def worker_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """This process's PostgreSQL database (None without one). Under xdist each worker has its own, copied
    from the run's template database at its first test and dropped after its last; without workers it is
    the given database, used as it is."""
    if PG_URL is None or PG_URL == GIVEN_PG_URL:
        yield PG_URL
        return
    _pg_template(tmp_path_factory)  # the template exists once this returns
    name = make_url(PG_URL).database
    # DROP first: the database of a run that was killed before its end.
    _on_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
               f'CREATE DATABASE "{name}" TEMPLATE "{template_database()}"')
    try:
        yield PG_URL
    finally:
        _on_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's template database goes when the run ends: in the process that ran xdist's workers. Then no
    process the tests started may outlive them: the run fails if one still works in, or names, the run's
    temporary directory (a home's embedded Redis, a worker, a server, a kernel)."""
    if GIVEN_PG_URL and XDIST_WORKER is None and session.config.pluginmanager.hasplugin("dsession"):
        _on_server(f'DROP DATABASE IF EXISTS "{template_database()}" WITH (FORCE)')
    if XDIST_WORKER is None:
        left = outliving(session.config._tmp_path_factory.getbasetemp())
        if left:
            print("\nprocesses the tests started outlived them (stopped now):\n" + "\n".join(left))
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def outliving(root: Path, grace: float = 10.0) -> list[str]:
    """The processes working in ``root`` or naming it, still running ``grace`` seconds on; each is described,
    then stopped."""
    import time

    import psutil

    def found() -> list[psutil.Process]:
        alive = []
        for p in psutil.process_iter(["cmdline", "cwd", "status"]):
            if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if (p.info["cwd"] or "").startswith(str(root)) or str(root) in " ".join(p.info["cmdline"] or ()):
                alive.append(p)
        return alive

    deadline = time.monotonic() + grace
    while (left := found()) and time.monotonic() < deadline:
        time.sleep(0.5)
    described = []
    for p in left:
        with contextlib.suppress(psutil.Error):
            described.append(f"  pid {p.pid}: {' '.join(p.cmdline())} (in {p.cwd()})")
            stop_process(p.pid)
    return described


# Started first (under xdist: handed out first), so that no long test starts last and ends the run alone: the
# browser tests (one unit of work, SAME_WORKER), then the other multi-process and long tests.
FIRST = (
    "tests/notebooks/", "tests/integration/test_cli_runbook.py", "tests/api/test_schemathesis.py",
    "tests/integration/test_text_search_index.py::test_migration_indexes_existing_rows_and_downgrades",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("browser"):
            return 0
        if item.get_closest_marker("slow") or item.nodeid.startswith(FIRST):
            return 1
        return 2

    items.sort(key=rank)  # stable: the order within each rank (and pytest's grouping by fixture) is kept


# Tests that share a fixture wider than one test (a module's server, say) run on one xdist worker: under
# --dist loadgroup the tests whose ids start with one of these are one unit of work. (pytest-xdist 3.8's
# xdist_group mark has no effect under pytest 9.2: it renames item._nodeid, which pytest 9.2 no longer reads.)
SAME_WORKER = ("tests/browser/test_voila_app.py::", "tests/browser/test_voila_editor.py::")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SameWorker(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            together = next((prefix for prefix in SAME_WORKER if nodeid.startswith(prefix)), None)
            return together or super()._split_scope(nodeid)

    return SameWorker(config, log)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("SGEN_OPS_TEST_REDIS_URL")
    if given:
        yield given
        return
    url, pid = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(pid)


def _migrate_sqlite(path: Path) -> None:
    ledger = Ledger(f"sqlite:///{path}")
    ledger.upgrade()
    ledger.close()
    assert not Path(f"{path}-wal").exists(), "the migrated ledger kept a write-ahead log"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger at the head revision, closed (no WAL left beside it), for tests to copy (never to
    open: every worker of the run copies the same file)."""
    return shared_once(tmp_path_factory, "migrated-ledger.db", _migrate_sqlite)


@pytest.fixture(scope="session")
def pg_admin(
    tmp_path_factory: pytest.TempPathFactory, worker_database: str | None
) -> Iterator[tuple[Any, tuple[str, str] | None]]:
    """A connection to this process's test database outside any test's schema, and the migrated schema's
    SQL (made once per run)."""
    migrated = _pg_template(tmp_path_factory)
    admin = create_engine(_pg_url_with_schema("public"))
    try:
        yield admin, migrated
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
