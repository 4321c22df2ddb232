"""The embedded stack's files hold every payload in clear: only their owner may read them."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import sgen_ops
from sgen_ops.embedded import start_redis_server, stop_process

from ..conftest import TASK_MODULES, cleanup_redis


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_the_embedded_ledger_is_readable_by_its_owner_only(tmp_path: Path, redis_url: str) -> None:
    home, prefix = tmp_path / "home", f"t{uuid.uuid4().hex[:10]}"
    hub = sgen_ops.connect(home=home, redis_url=redis_url, task_modules=TASK_MODULES, queue_prefix=prefix)
    try:
        hub.enqueue("test.ok", {"password": "hunter2-pass"})
        hub.work()
        files = [p for p in home.iterdir() if p.name.startswith(("ledger.db", ".ledger"))]
        assert {p.name for p in files} >= {"ledger.db", ".ledger.lock"}
        assert private(home) and all(private(p) for p in files), {p.name: oct(p.stat().st_mode) for p in files}
    finally:
        hub.close()
        cleanup_redis(redis_url, prefix)


def test_the_embedded_redis_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    _url, pid = start_redis_server(tmp_path / "redis")
    try:
        files = list((tmp_path / "redis").iterdir())
        assert {p.name for p in files} >= {"redis.log", "redis.pid"}
        assert private(tmp_path / "redis") and all(private(p) for p in files)
    finally:
        stop_process(pid)
