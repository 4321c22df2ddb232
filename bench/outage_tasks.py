"""Tasks of the outage scenarios (``bench.outage``, ``tests/outage``). Each attempt logs its start, a tick every
0.1 s while it runs, and its finish to the file its payload names (one fsynced line per event, as the soak's
tasks do), so that the log alone tells whether two attempts of a job ever ran at the same time, whoever ended
them and however."""

from __future__ import annotations

import os
import time
from typing import Any

import sgen_ops
from sgen_ops import TaskError

from .eventlog import append_line

TICK = 0.1


def _event(ctx: Any, path: str, event: str, **extra: Any) -> None:
    append_line(path, {"event": event, "job": ctx.job_id, "run": ctx.run, "attempt": ctx.attempt, "pid": os.getpid(),
                     "ppid": os.getppid(), "mono": time.monotonic(), **extra})


@sgen_ops.task("outage.run", max_attempts=4, backoff=0)
def run(ctx: Any, payload: dict[str, Any]) -> str:
    """Runs ``seconds`` (``retry_seconds`` after its first attempt), ticking, with a checkpoint at every tick
    unless ``checkpoints`` is false; with ``fail_first`` its first attempt fails at the end."""
    path = payload["log"]
    _event(ctx, path, "start")
    outcome = "error"
    seconds = payload.get("seconds", 0.2) if ctx.attempt == 1 else payload.get("retry_seconds", 0.2)
    try:
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            _event(ctx, path, "tick")
            if payload.get("checkpoints", True):
                ctx.checkpoint()
            time.sleep(TICK)
        if payload.get("fail_first") and ctx.attempt == 1:
            outcome = "failed"
            raise TaskError("first_attempt", "the first attempt fails on purpose")
        outcome = "ok"
        return "ok"
    except BaseException as exc:
        if outcome == "error":
            outcome = type(exc).__name__
        raise
    finally:
        _event(ctx, path, "finish", outcome=outcome)


@sgen_ops.task("outage.retry", max_attempts=3, backoff=0.5)
def retry(ctx: Any, payload: dict[str, Any]) -> str:
    """Fails its first attempt; the retry comes 0.5 s later."""
    path = payload["log"]
    _event(ctx, path, "start")
    _event(ctx, path, "finish", outcome="failed" if ctx.attempt == 1 else "ok")
    if ctx.attempt == 1:
        raise TaskError("first_attempt", "the first attempt fails on purpose")
    return "ok"
