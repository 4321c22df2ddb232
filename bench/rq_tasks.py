"""Bare RQ's no-op job, importing nothing of sgen-ops (so that a bare RQ worker's memory is RQ's alone)."""


def noop(i: int) -> None:
    """Nothing."""
