"""Waiting out an outage: the one helper for every wait with backoff (a worker's ledger writes, Redis, a worker
starting while either is down, RQ's scheduler process). Built on tenacity.

Tries come 0.1 s apart at first, doubling, with jitter, to at most ``max_wait`` (1 s by default: a service that
is back is found within about a second, so a delayed job or a retry is not held up longer than that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    stop_never,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

T = TypeVar("T")

FIRST_WAIT = 0.1
MAX_WAIT = 1.0
# While a wait goes on, it is logged again at most this often.
LOG_EVERY = 30.0

log = logging.getLogger(__name__)


class _StopWhen(stop_base):
    """Stop once ``check()`` is true (a worker asked to stop)."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self.check = check

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.check()


def ride_out(
    call: Callable[[], T],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    what: str,
    patience: float | None = None,
    max_wait: float = MAX_WAIT,
    should_stop: Callable[[], bool] | None = None,
    on_wait: Callable[[BaseException], None] | None = None,
    logger: logging.Logger | None = None,
) -> T:
    """``call()``, tried again with backoff while it raises ``retry_on`` (an outage). Gives up, raising the last
    error, after ``patience`` seconds (None: never) or as soon as ``should_stop()`` is true. ``on_wait`` hears
    every failure before its wait (a worker keeps its registration alive there); ``what`` names the wait in
    the log: its first failure, then every LOG_EVERY seconds, and the return."""
    out = logger or log
    started = time.monotonic()
    logged = [0.0]

    stop: stop_base = stop_never if patience is None else stop_after_delay(patience)
    if should_stop is not None:
        stop = stop_any(stop, _StopWhen(should_stop))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None:
            return
        if on_wait is not None:
            on_wait(exc)
        waited = time.monotonic() - started
        if state.attempt_number == 1 or waited - logged[0] >= LOG_EVERY:
            logged[0] = waited
            if state.attempt_number == 1:
                out.warning("%s: %s; waiting for it", what, exc)
            else:
                out.warning("%s: still waiting after %.0f s (%s)", what, waited, exc)

    retrying = Retrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_exponential(multiplier=FIRST_WAIT, max=max_wait) + wait_random(0, FIRST_WAIT),
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    result = retrying(call)
    attempts = retrying.statistics.get("attempt_number", 1)
    if attempts > 1:
        out.warning("%s: reached again after %.1f s", what, time.monotonic() - started)
    return result
