"""Job states and the transitions between them: the single source of the seed's state machine."""

from __future__ import annotations

from enum import StrEnum

from ..errors import InvalidTransition


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD_LETTER = "dead-letter"
    CANCELLED = "cancelled"
    RESOLVED = "resolved"


ALL_STATES: tuple[str, ...] = tuple(s.value for s in State)

# queued -> running -> (succeeded | failed); failed -> retrying -> queued under budget,
# failed -> dead-letter when exhausted; any non-terminal -> cancelled; dead-letter -> queued on replay;
# re-run rewinds failed/succeeded/dead-letter to queued; resolve marks a failure handled (seed 003).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED, State.DEAD_LETTER}),
    State.RUNNING: frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED}),
    State.RETRYING: frozenset({State.QUEUED, State.CANCELLED, State.DEAD_LETTER, State.RESOLVED}),
    State.FAILED: frozenset({State.RETRYING, State.DEAD_LETTER, State.QUEUED, State.RESOLVED}),
    State.SUCCEEDED: frozenset({State.QUEUED}),
    State.DEAD_LETTER: frozenset({State.QUEUED, State.RESOLVED}),
    State.CANCELLED: frozenset(),
    State.RESOLVED: frozenset(),
}

# States a job can still move on from without an operator rewinding it.
NON_TERMINAL: frozenset[State] = frozenset({State.QUEUED, State.RUNNING, State.RETRYING})
# States waiting in the live queue for a worker: the one definition, imported wherever it is needed.
WAITING: frozenset[State] = frozenset({State.QUEUED, State.RETRYING})
# The same as the plain strings a query binds, in a fixed order.
WAITING_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in WAITING))

# State changes that one write makes through an intermediate state, each recorded as its two steps:
# the claim of a retry (retrying -> queued -> running) and a failed attempt's decision (running ->
# failed -> retrying or dead-letter).
THROUGH: dict[tuple[State, State], State] = {
    (State.RETRYING, State.RUNNING): State.QUEUED,
    (State.RUNNING, State.RETRYING): State.FAILED,
    (State.RUNNING, State.DEAD_LETTER): State.FAILED,
}


def state_paths() -> list[tuple[str, str, int, str, str]]:
    """Every state change a write may make, as the events it records: (from, to, step, step's from, step's
    to). The ledger's state-change trigger reads these rows (table ``job_state_paths``): a change not
    listed is refused, and a listed one writes its events; no caller writes an event itself."""
    rows = []
    for src in State:
        for dst in sorted(TRANSITIONS[src]):
            rows.append((src.value, dst.value, 1, src.value, dst.value))
    for (src, dst), via in THROUGH.items():
        if via not in TRANSITIONS[src] or dst not in TRANSITIONS[via]:
            raise AssertionError(f"{src} -> {via} -> {dst} is not a path of the state machine")
        rows += [(src.value, dst.value, 1, src.value, via.value), (src.value, dst.value, 2, via.value, dst.value)]
    return rows


def check_transition(current: str, target: str, *, job_id: int | None = None) -> None:
    """Raise InvalidTransition unless the state machine allows ``current -> target``."""
    src, dst = State(current), State(target)
    if dst not in TRANSITIONS[src]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[src])) or "nothing (terminal state)"
        who = f"job {job_id} " if job_id is not None else ""
        raise InvalidTransition(
            f"{who}cannot move from {src.value} to {dst.value}; from {src.value} it may move to: {allowed}"
        )
