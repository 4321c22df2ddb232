"""Masked values round-trip: a payload saved as a masked reader saw it keeps the secrets stored under the
masks, as a password field does; a mask anywhere else is refused and changes nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import sgen_ops
from sgen_ops import ValidationError
from sgen_ops.core.masking import MASK

from .test_surface_fixtures import SECRET_PAYLOAD, add_operators, job_row, ledger_state


def test_a_masked_payload_saved_back_keeps_the_secrets(hub: sgen_ops.Hub) -> None:
    """An administrator saves what an editor's masked view showed (the payload is the administrators' to change)."""
    ops = add_operators(hub)
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD, delay=3600)
    shown = ops["editor"].get_job(job_id).payload
    assert shown["credentials"]["api_key"] == MASK
    edited = copy.deepcopy(shown)
    edited["region"] = "us-east-1"
    edited["rows"].append({"card": "4000000000000002", "id": 3})
    ops["administrator"].update_job(job_id, payload=edited)
    stored = job_row(hub, job_id)["payload"]
    assert stored == {**SECRET_PAYLOAD, "region": "us-east-1",
                      "rows": [*SECRET_PAYLOAD["rows"], {"card": "4000000000000002", "id": 3}]}


def test_edit_and_replay_of_a_masked_payload_keeps_the_secrets(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD)
    hub.work()
    # An administrator replays what a masked view shows (copied from an editor's screen, say).
    shown = ops["editor"].get_job(job_id).payload
    new_id = ops["administrator"].edit_and_replay(job_id, {**shown, "region": "ap-south-1"})
    assert job_row(hub, new_id)["payload"] == {**SECRET_PAYLOAD, "region": "ap-south-1"}


def test_a_schedule_template_round_trips_through_its_masked_view(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    schedule_id = ops["administrator"].create_schedule("test.secret", every="1h", payload=SECRET_PAYLOAD)
    shown = ops["viewer"].list_schedules().iloc[0]["payload"]
    assert shown["credentials"]["api_key"] == MASK
    ops["administrator"].edit_schedule(schedule_id, payload={**shown, "region": "eu-central-1"})
    job_id = ops["administrator"].run_schedule_now(schedule_id)
    assert job_row(hub, job_id)["payload"] == {**SECRET_PAYLOAD, "region": "eu-central-1"}


@pytest.mark.parametrize(
    "payload",
    [
        {**SECRET_PAYLOAD, "region": MASK},  # a field that is not sensitive
        {**SECRET_PAYLOAD, "credentials": {"api_key": MASK, "extra_key": MASK}},  # no stored value there
        {**SECRET_PAYLOAD, "note": f"was {MASK}"},  # inside other text
    ],
)
def test_a_mask_anywhere_else_is_refused_and_changes_nothing(hub: sgen_ops.Hub, payload: dict[str, Any]) -> None:
    ops = add_operators(hub)
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD, delay=3600)
    before = ledger_state(hub)
    with pytest.raises(ValidationError, match="mask"):
        ops["administrator"].update_job(job_id, payload=payload)
    assert ledger_state(hub) == before


@pytest.mark.parametrize("where", ["enqueue", "create_schedule"])
def test_a_new_payload_holding_the_mask_is_refused(hub: sgen_ops.Hub, where: str) -> None:
    admin = add_operators(hub)["administrator"]
    before = ledger_state(hub)
    call = (
        (lambda: hub.enqueue("test.secret", {**SECRET_PAYLOAD, "password": MASK})) if where == "enqueue"
        else (lambda: admin.create_schedule("test.secret", every="1h", payload={"password": MASK}))
    )
    with pytest.raises(ValidationError, match="mask"):
        call()
    assert ledger_state(hub) == before
