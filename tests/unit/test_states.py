"""The state machine is exactly the seed's, and nothing more."""

from __future__ import annotations

import itertools

import pytest

from sgen_ops import InvalidTransition
from sgen_ops.core.states import ALL_STATES, TRANSITIONS, check_transition

# Written out from seeds 000 and 003, independently of the module's table.
SEED_TRANSITIONS = {
    ("queued", "running"),  # a worker claims it
    ("running", "succeeded"),
    ("running", "failed"),
    ("failed", "retrying"),  # under budget
    ("retrying", "queued"),  # its backoff is over
    ("failed", "dead-letter"),  # budget exhausted
    ("queued", "cancelled"),  # any non-terminal -> cancelled
    ("running", "cancelled"),
    ("retrying", "cancelled"),
    ("dead-letter", "queued"),  # replay
    ("failed", "queued"),  # re-run
    ("succeeded", "queued"),  # re-run
    ("queued", "dead-letter"),  # send to dead letter, from the live queue
    ("retrying", "dead-letter"),
    ("failed", "resolved"),  # resolve (seed 003)
    ("retrying", "resolved"),
    ("dead-letter", "resolved"),
}


def test_states_are_the_contract_strings() -> None:
    assert set(ALL_STATES) == {
        "queued",
        "running",
        "retrying",
        "succeeded",
        "failed",
        "dead-letter",
        "cancelled",
        "resolved",
    }


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(ALL_STATES, ALL_STATES)))
def test_every_pair_is_allowed_exactly_when_the_seed_allows_it(src: str, dst: str) -> None:
    if (src, dst) in SEED_TRANSITIONS:
        check_transition(src, dst)
    else:
        with pytest.raises(InvalidTransition, match=f"cannot move from {src} to {dst}"):
            check_transition(src, dst)


def test_the_error_says_what_is_allowed() -> None:
    with pytest.raises(InvalidTransition, match=r"job 7 cannot move from cancelled to queued; .*terminal"):
        check_transition("cancelled", "queued", job_id=7)
    with pytest.raises(InvalidTransition, match="may move to: queued, resolved"):
        check_transition("dead-letter", "running")


def test_table_covers_every_state() -> None:
    assert {s.value for s in TRANSITIONS} == set(ALL_STATES)
