"""Benchmark tasks: the same no-op for bare RQ and for sgen-ops."""

from __future__ import annotations

from typing import Any

import sgen_ops


def noop(i: int) -> None:
    """Bare RQ's job: nothing."""


@sgen_ops.task("bench.noop", max_attempts=1)
def sgen_noop(ctx: Any, payload: Any) -> None:
    """sgen-ops' job: nothing."""
