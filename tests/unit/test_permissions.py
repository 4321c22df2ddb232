"""Role capabilities: the product spec's role x action map, overrides and refusal messages."""

from __future__ import annotations

import pytest

from sgen_ops.core.permissions import DEFAULT_CAPABILITIES, ROLES, Policy
from sgen_ops.errors import AccessDenied, ValidationError

# The product spec's map, written out independently of the module under test.
EVERYONE = ["list_jobs", "get_job", "throughput", "list_schedules"]
EDITORS = [
    "rerun",
    "cancel",
    "run_schedule_now",
    "retry_now",
    "trigger",
    "resolve",
    "update_job",
    "activity_log",
    "enqueue",  # an integration's (or an operator's) new job over HTTP, as Run schedule now emits one
]
ADMINS = [
    "send_to_dead_letter",
    "replay",
    "edit_and_replay",
    "dismiss",
    "create_schedule",
    "edit_schedule",
    "pause_schedule",
    "resume_schedule",
    "delete_job",
    "delete_jobs",
    "replay_dead_letters",
    "dismiss_dead_letters",
    "verify_audit",
    "pause_task",  # issue 14: pausing a task or a priority queue is an Administrator's
    "resume_task",
    "pause_queue",
    "resume_queue",
]
SPEC = {
    **{a: {"administrator", "editor", "viewer"} for a in EVERYONE},
    **{a: {"administrator", "editor"} for a in EDITORS},
    **{a: {"administrator"} for a in ADMINS},
}


def test_known_actions_are_exactly_the_spec() -> None:
    assert set(DEFAULT_CAPABILITIES) == set(SPEC)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(SPEC))
def test_role_action_matrix(role: str, action: str) -> None:
    assert Policy().allows(role, action) is (role in SPEC[action])


def test_override_replaces_the_roles_whole_list() -> None:
    policy = Policy({"viewer": ["list_jobs", "rerun"]})
    assert policy.actions_for("viewer") == frozenset({"list_jobs", "rerun"})
    assert policy.allows("viewer", "rerun")
    assert not policy.allows("viewer", "get_job")
    assert policy.actions_for("editor") == frozenset(a for a, r in SPEC.items() if "editor" in r)


def test_override_unknown_role_or_action_rejected() -> None:
    with pytest.raises(ValidationError, match="administrator, editor, viewer"):
        Policy({"owner": ["list_jobs"]})
    with pytest.raises(ValidationError, match=r"unknown action 'rerunn'.*rerun"):
        Policy({"editor": ["rerunn"]})


def test_unknown_role_or_action_is_an_error_not_a_denial() -> None:
    policy = Policy()
    with pytest.raises(ValidationError, match="roles are: administrator, editor, viewer"):
        policy.allows("admin", "list_jobs")
    with pytest.raises(ValidationError, match=r"known actions:.*dismiss"):
        policy.allows("administrator", "dismis")
    with pytest.raises(ValidationError):
        policy.check("administrator", "dismis", "ann")
    with pytest.raises(ValidationError):
        policy.actions_for("root")


def test_check_message_names_operator_action_role_and_allowed_roles() -> None:
    with pytest.raises(AccessDenied) as info:
        Policy().check("editor", "dismiss", "ed")
    assert str(info.value) == "operator 'ed' (editor) may not dismiss; allowed for: administrator"
    with pytest.raises(AccessDenied, match=r"allowed for: administrator, editor$"):
        Policy().check("viewer", "rerun", "vi")


def test_check_passes_silently_when_allowed() -> None:
    Policy().check("viewer", "get_job", "vi")


def test_unmasked_only_for_administrator_even_with_overrides() -> None:
    policy = Policy({"editor": sorted(SPEC)})
    assert [policy.unmasked(r) for r in ROLES] == [True, False, False]
    with pytest.raises(ValidationError):
        policy.unmasked("superuser")
