"""The tasks the soak's workers run: each attempt writes its start and finish to the soak's log.

The log (``SGEN_SOAK_LOG``) is append-only: one JSON line per event, written with a single ``write`` on
an ``O_APPEND`` descriptor and fsynced before the handler goes on, so a line the checker reads was on
disk before whatever the handler did next. A SIGKILLed process leaves a start without a finish.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sgen_ops
from sgen_ops import TaskError

from .eventlog import append_line

LOG_ENV = "SGEN_SOAK_LOG"


def _event(ctx: Any, event: str, **extra: Any) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        raise TaskError("soak_log_unset", f"the soak's tasks need {LOG_ENV}: the file they log attempts to")
    append_line(
        path,
        {
            "event": event,
            "job": ctx.job_id,
            "run": ctx.run,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "mono": time.monotonic(),
            "wall": time.time(),
            **extra,
        },
    )


def _logged(ctx: Any, body: Any) -> None:
    """Run ``body`` between a logged start and a logged finish that says how the handler ended."""
    _event(ctx, "start")
    outcome = "error"
    try:
        body()
        outcome = "ok"
    except sgen_ops.JobCancelled:
        outcome = "cancelled"
        raise
    except TaskError:
        outcome = "failed"
        raise
    except BaseException as exc:
        # RQ's job timeout arrives as an exception raised inside the handler.
        outcome = "timeout" if type(exc).__name__ == "JobTimeoutException" else "error"
        raise
    finally:
        _event(ctx, "finish", outcome=outcome)


def _sleep(ctx: Any, seconds: float, checkpoints: bool) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if checkpoints:
            ctx.checkpoint()
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


@sgen_ops.task("soak.quick", max_attempts=3)
def quick(ctx: Any, payload: Any) -> None:
    """Returns at once."""
    _logged(ctx, lambda: None)


@sgen_ops.task("soak.failing", max_attempts=3, backoff=0.5)
def failing(ctx: Any, payload: dict[str, Any]) -> None:
    """Fails until attempt ``succeed_on`` (beyond the budget: always, then dead-lettered); each retry comes after a
    backoff of 0.5 s (then 1 s), through RQ's scheduler, so that the soak measures how late delayed work starts."""

    def body() -> None:
        if ctx.attempt < payload["succeed_on"]:
            raise TaskError("soak_failure", f"attempt {ctx.attempt} fails on purpose")

    _logged(ctx, body)


@sgen_ops.task("soak.slow", max_attempts=3)
def slow(ctx: Any, payload: dict[str, Any]) -> None:
    """Sleeps ``seconds`` with a checkpoint every 0.1 s."""
    _logged(ctx, lambda: _sleep(ctx, payload["seconds"], checkpoints=True))


@sgen_ops.task("soak.timeout", max_attempts=2, timeout=1)
def timing_out(ctx: Any, payload: dict[str, Any]) -> None:
    """Sleeps past its one-second timeout, without checkpoints: RQ stops it."""
    _logged(ctx, lambda: _sleep(ctx, payload["seconds"], checkpoints=False))


TASKS = ("soak.quick", "soak.failing", "soak.slow", "soak.timeout")
