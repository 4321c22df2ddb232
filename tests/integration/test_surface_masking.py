"""Payload masking on the surface: what each role sees of sensitive values, wherever they appear."""

from __future__ import annotations

import json
from typing import Any

import pytest

import sgen_ops
from sgen_ops.core.masking import MASK
from sgen_ops.errors import InvalidTransition
from tests.integration.test_surface_fixtures import SECRET_PAYLOAD, SECRET_VALUES, add_operators, log_entries

MASKED_PAYLOAD = {
    "credentials": {"api_key": MASK, "user": "bob"},  # nested path
    "rows": [{"card": MASK, "id": 1}, {"card": MASK, "id": 2}],  # listed: rows.*.card
    "headers": {"X-Trace": MASK, "Accept": MASK},  # wildcard: headers.*
    "password": MASK,  # global key pattern
    "region": "eu-west-1",
}


@pytest.fixture
def secret_job(hub: sgen_ops.Hub) -> int:
    # test.secret fails with the api key in its error text, so the error detail and log quote it.
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD)
    hub.work()
    return job_id


def leaks(value: Any) -> list[str]:
    text = json.dumps(value, default=str)
    return [s for s in SECRET_VALUES if s in text]


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_detail_is_masked_for_non_administrators(hub: sgen_ops.Hub, secret_job: int, role: str) -> None:
    detail = add_operators(hub)[role].get_job(secret_job)
    assert detail.payload == MASKED_PAYLOAD
    assert detail.last_error_detail == f"provider rejected key {MASK}"
    assert detail.error_log and "sk-live-51HxQ" not in detail.error_log and MASK in detail.error_log
    assert [a.error for a in detail.attempt_history] == [f"provider rejected key {MASK}"]
    assert leaks(detail.__dict__) == []


def test_administrator_sees_payloads_in_clear_and_task_text_as_the_ledger_keeps_it(
    hub: sgen_ops.Hub, secret_job: int
) -> None:
    """Text a task produced is scrubbed of the job's secrets when the worker records it, for everyone."""
    ops = add_operators(hub)
    detail = ops["administrator"].get_job(secret_job)
    assert detail.payload == SECRET_PAYLOAD
    assert detail.last_error_detail == f"provider rejected key {MASK}"
    assert [a.error for a in detail.attempt_history] == [f"provider rejected key {MASK}"]
    assert ops["administrator"].list_jobs().items[0].last_error_excerpt == f"provider rejected key {MASK}"
    assert leaks([detail.last_error_detail, detail.error_log]) == []


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_list_excerpts_and_frames_are_masked(hub: sgen_ops.Hub, secret_job: int, role: str) -> None:
    page = add_operators(hub)[role].list_jobs()
    assert page.items[0].last_error_excerpt == f"provider rejected key {MASK}"
    frame = page.to_frame()
    assert leaks(frame.to_dict("records")) == []
    assert frame.loc[0, "last_error_excerpt"] == f"provider rejected key {MASK}"


def test_excerpt_is_masked_before_it_is_cut(hub: sgen_ops.Hub) -> None:
    # A secret straddling the 120-character cut must not leave its first half behind.
    payload = {**SECRET_PAYLOAD, "credentials": {"api_key": "k" * 30 + "-SECRETTAIL"}}
    job_id = hub.enqueue("test.secret", payload)
    hub.work()
    item = add_operators(hub)["viewer"].list_jobs().items[0]
    assert item.id == job_id and "kkkk" not in (item.last_error_excerpt or "")


def test_text_search_never_matches_a_masked_value_for_non_administrators(hub: sgen_ops.Hub, secret_job: int) -> None:
    ops = add_operators(hub)
    for secret in ("sk-live-51HxQ", "4111111111111111", "hunter2"):
        assert ops["administrator"].list_jobs(text=secret).total == 1, secret
        assert ops["editor"].list_jobs(text=secret).total == 0, secret
        assert ops["viewer"].list_jobs(text=secret).total == 0, secret
    assert ops["viewer"].list_jobs(text="EU-WEST").total == 1  # visible values stay searchable
    assert ops["viewer"].list_jobs(text="provider rejected").total == 1
    assert ops["viewer"].list_jobs(text="100%_").total == 0  # LIKE wildcards are escaped


def test_non_administrator_views_are_logged_with_the_masked_shape(hub: sgen_ops.Hub, secret_job: int) -> None:
    ops = add_operators(hub)
    ops["administrator"].get_job(secret_job)
    assert log_entries(hub) == []  # administrators' views are not logged
    ops["viewer"].get_job(secret_job)
    [entry] = log_entries(hub)
    assert (entry.operator, entry.action, entry.target_type, entry.target_id) == ("viewer", "get_job", "job",
                                                                                   secret_job)
    assert entry.change["shown"]["payload"] == MASKED_PAYLOAD
    assert leaks(entry.change) == []


def test_activity_log_masks_administrator_entries_for_other_readers(hub: sgen_ops.Hub, secret_job: int) -> None:
    ops = add_operators(hub)
    other = hub.enqueue("test.secret", SECRET_PAYLOAD)
    hub.work()
    new_id = ops["administrator"].edit_and_replay(secret_job, {**SECRET_PAYLOAD, "region": "us-east-1"})
    with pytest.raises(InvalidTransition, match=f"replayed as job {new_id}"):
        ops["administrator"].dismiss(secret_job)  # the original is kept for audit, out of the dead letter
    ops["administrator"].dismiss(other)
    raw = ops["administrator"].activity_log()
    assert leaks(raw["change"].tolist()) == []  # the log never holds a secret, whoever wrote the entry
    shown = ops["editor"].activity_log()
    assert leaks(shown["change"].tolist()) == []
    created = shown[(shown["target_id"] == new_id)].iloc[0]["change"]
    assert created["after"]["payload"] == {**MASKED_PAYLOAD, "region": "us-east-1"}
    snapshot = shown[shown["action"] == "dismiss"].iloc[0]["change"]["before"]
    assert snapshot["last_error_detail"] == f"provider rejected key {MASK}"


def test_a_payload_update_is_logged_masked(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD, delay=3600)
    ops["administrator"].update_job(job_id, payload={**SECRET_PAYLOAD, "credentials": {"api_key": "sk-new-999"}})
    [entry] = log_entries(hub)
    assert entry.change["before"]["payload"] == MASKED_PAYLOAD
    assert entry.change["after"]["payload"]["credentials"] == {"api_key": MASK}
    assert "sk-new-999" not in json.dumps(entry.change) and leaks(entry.change) == []


def test_non_administrators_find_visible_non_ascii_words_and_never_the_mask(hub: sgen_ops.Hub) -> None:
    ops = add_operators(hub)
    hub.enqueue("test.secret", {**SECRET_PAYLOAD, "region": "Zürich-Süd"}, delay=3600)
    for role in ("viewer", "editor"):
        assert ops[role].list_jobs(text="Zürich-Süd").total == 1, role
        assert ops[role].list_jobs(text="zürich-süd").total == 1, role
        for term in ("u2022", "\\u2022", MASK, "••"):
            assert ops[role].list_jobs(text=term).total == 0, (role, term)
