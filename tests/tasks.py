"""Tasks used by the tests. Imported by test hubs and by worker subprocesses (task_modules)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import sgen_ops
from sgen_ops import TaskError
from sgen_ops.runtime.execution import current_hub


def record_run(ctx: Any) -> None:
    """Remember that this attempt ran, in a Redis list private to the test's queue prefix."""
    hub = current_hub()
    hub.redis.rpush(f"{hub.settings.queue_prefix}:runs", f"{ctx.job_id}:{ctx.run}:{ctx.attempt}")


@sgen_ops.task("test.ok", max_attempts=3)
def ok(ctx: Any, payload: Any) -> str:
    record_run(ctx)
    return "ok"


@sgen_ops.task("test.flaky", max_attempts=3, backoff=0)
def flaky(ctx: Any, payload: dict[str, Any]) -> str:
    record_run(ctx)
    if ctx.attempt < payload["succeed_on"]:
        raise TaskError("flaky_error", f"attempt {ctx.attempt} failed on purpose")
    return "ok"


@sgen_ops.task("test.boom", max_attempts=2)
def boom(ctx: Any, payload: Any) -> None:
    record_run(ctx)
    raise ValueError("kaboom: the handler broke")


@sgen_ops.task("test.nodl", max_attempts=1, dead_letter=False)
def no_dead_letter(ctx: Any, payload: Any) -> None:
    raise TaskError("always", "this task never succeeds")


@sgen_ops.task("test.backoff", max_attempts=3, backoff=3600)
def slow_retry(ctx: Any, payload: Any) -> None:
    raise TaskError("later", "retry in an hour")


@sgen_ops.task("test.slow", max_attempts=2)
def slow(ctx: Any, payload: dict[str, Any]) -> str:
    """Sleeps, with a checkpoint every 50 ms unless the payload says otherwise."""
    record_run(ctx)
    hub = current_hub()
    hub.redis.set(f"{hub.settings.queue_prefix}:started:{ctx.job_id}", ctx.attempt)
    only_first = payload.get("only_first_attempt", False)
    if only_first and ctx.attempt > 1:
        return "quick"
    deadline = time.monotonic() + payload.get("seconds", 1.0)
    while time.monotonic() < deadline:
        if payload.get("checkpoints", True):
            ctx.checkpoint()
        time.sleep(0.05)
    return "slept"


@sgen_ops.task("test.secret", sensitive=["credentials.api_key", "rows.*.card", "headers.*"], max_attempts=1)
def secret(ctx: Any, payload: dict[str, Any]) -> None:
    raise TaskError("auth_failed", f"provider rejected key {payload['credentials']['api_key']}")


@sgen_ops.task("test.hang", max_attempts=1, timeout=1)
def hang(ctx: Any, payload: Any) -> None:
    time.sleep(5)


@sgen_ops.task("test.die", max_attempts=2, backoff=0)
def die(ctx: Any, payload: dict[str, Any]) -> str:
    """Its first attempt kills the process running it: a forking worker's horse, never the test itself."""
    record_run(ctx)
    if ctx.attempt == 1:
        if os.getpid() == payload["test_pid"]:
            raise TaskError("not_forked", "test.die runs only in a work horse")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@sgen_ops.task("test.verbose", max_attempts=1)
def verbose(ctx: Any, payload: dict[str, Any]) -> None:
    """Fails with ``text``, or a detail of ``size`` characters (bigger than a pipe's buffer)."""
    raise TaskError("verbose", payload.get("text") or "x" * payload["size"] + "END")


@sgen_ops.task("test.where", max_attempts=2, backoff=0)
def where(ctx: Any, payload: dict[str, Any]) -> str:
    """Records which process ran the attempt; with ``die`` its first attempt kills that process."""
    hub = current_hub()
    hub.redis.rpush(f"{hub.settings.queue_prefix}:pids", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    if payload.get("die") and ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "here"


@sgen_ops.task("test.imports", max_attempts=1)
def imports(ctx: Any, payload: dict[str, Any]) -> None:
    """Records which of the payload's ``modules`` the process running the attempt has imported."""
    hub = current_hub()
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(payload["modules"]))
    hub.redis.rpush(f"{hub.settings.queue_prefix}:imports", json.dumps(loaded))
