"""Role capabilities: the README's table of who may do what (seed 000's map, and what every other operation
counts as), overrides and refusal messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sgen_ops.core.permissions import (
    ARGUMENT_ACTIONS,
    DEFAULT_CAPABILITIES,
    PERMISSIONS,
    ROLES,
    SEED_CAPABILITIES,
    Policy,
)
from sgen_ops.errors import AccessDenied, ValidationError
from sgen_ops.surface.declarations import OPERATIONS, READS

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `(?P<action>[a-z_]+)` \| (?P<counts>[^|]+) \| (?P<roles>[a-z, ]+) \| (?P<why>.+) \|$")


def readme_permissions() -> dict[str, tuple[str, frozenset[str], str]]:
    """The README's "Who may do what" table: operation -> (counts as, roles, why)."""
    text = README.read_text()
    section = text[text.index("## Who may do what"):]
    section = section[: section.index("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        found = _ROW.match(line)
        if found:
            roles = frozenset(r.strip() for r in found["roles"].split(","))
            rows[found["action"]] = (found["counts"].strip(), roles, found["why"].strip())
    return rows


# Seed 000's capability table, written out here from the seed independently of the module under test.
SEED = {
    "List jobs": set(ROLES), "View job detail": set(ROLES), "Re-run job": {"administrator", "editor"},
    "Cancel job": {"administrator", "editor"}, "Send to dead letter": {"administrator"},
    "Replay from dead letter": {"administrator"}, "Edit and replay": {"administrator"},
    "Dismiss": {"administrator"}, "Create schedule": {"administrator"}, "Edit schedule": {"administrator"},
    "Run schedule now": {"administrator", "editor"}, "View throughput stats": set(ROLES),
}


def test_the_seed_table_is_seed_000s() -> None:
    assert {k: set(v) for k, v in SEED_CAPABILITIES.items()} == SEED


def test_the_readme_table_is_the_code_table() -> None:
    shown = readme_permissions()
    assert list(shown) == list(PERMISSIONS)
    for action, (counts, roles, why) in shown.items():
        assert (counts, why) == (PERMISSIONS[action].capability, PERMISSIONS[action].why), action
        assert roles == DEFAULT_CAPABILITIES[action] == SEED[counts], action


def test_every_operation_counts_as_a_seed_capability() -> None:
    declared = set(OPERATIONS) | {a for a, r in READS.items() if r.checked}
    stricter = {action for action, _ in ARGUMENT_ACTIONS.values()}
    assert set(PERMISSIONS) == declared | stricter
    assert {c.capability for c in PERMISSIONS.values()} <= set(SEED)
    # Each seed capability is counted by at least the operation that is it.
    assert set(SEED) == {c.capability for c in PERMISSIONS.values()}


def test_an_editor_may_not_change_what_a_job_runs() -> None:
    policy = Policy()
    assert policy.allows("editor", "update_job") and not policy.allows("editor", "update_job_payload")
    with pytest.raises(AccessDenied) as info:
        policy.check_arguments("editor", "update_job", {"payload": {}, "priority": "high"}, "ed")
    assert str(info.value) == ("operator 'ed' (editor) may not update_job_payload: only administrators can change "
                               "what a job runs; you are signed in as an editor")
    policy.check_arguments("editor", "update_job", {"priority": "high", "max_attempts": 5}, "ed")
    policy.check_arguments("administrator", "update_job", {"payload": {}}, "ann")
    # The capabilities setting can grant it.
    Policy({"editor": [*policy.actions_for("editor"), "update_job_payload"]}).check_arguments(
        "editor", "update_job", {"payload": {}}, "ed")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(PERMISSIONS))
def test_role_action_matrix(role: str, action: str) -> None:
    assert Policy().allows(role, action) is (role in readme_permissions()[action][1])


def test_override_replaces_the_roles_whole_list() -> None:
    policy = Policy({"viewer": ["list_jobs", "rerun"]})
    assert policy.actions_for("viewer") == frozenset({"list_jobs", "rerun"})
    assert policy.allows("viewer", "rerun")
    assert not policy.allows("viewer", "get_job")
    assert policy.actions_for("editor") == frozenset(a for a, r in DEFAULT_CAPABILITIES.items() if "editor" in r)


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
    policy = Policy({"editor": sorted(PERMISSIONS)})
    assert [policy.unmasked(r) for r in ROLES] == [True, False, False]
    with pytest.raises(ValidationError):
        policy.unmasked("superuser")
