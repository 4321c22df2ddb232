"""Role capabilities: which operator roles may perform which operator actions, in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ..errors import AccessDenied, ValidationError

ROLES = ("administrator", "editor", "viewer")

_EVERYONE = frozenset(ROLES)
_EDITORS = frozenset({"administrator", "editor"})
_ADMINS = frozenset({"administrator"})

_READ = ("list_jobs", "get_job", "throughput", "list_schedules")
# retry_now, trigger, resolve and update_job count as Re-run; activity_log reads the audit log.
_EDIT = (
    "rerun",
    "cancel",
    "run_schedule_now",
    "retry_now",
    "trigger",
    "resolve",
    "update_job",
    "activity_log",
    "enqueue",  # an operator's (or an integration's) new job, as Run schedule now emits one
)
# delete_job and delete_jobs count as Dismiss.
_ADMIN = (
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
    "pause_task",
    "resume_task",
    "pause_queue",
    "resume_queue",
)

# Action (operator method name) -> roles allowed to perform it; read-only so no caller edits policy.
DEFAULT_CAPABILITIES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        **dict.fromkeys(_READ, _EVERYONE),
        **dict.fromkeys(_EDIT, _EDITORS),
        **dict.fromkeys(_ADMIN, _ADMINS),
    }
)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")


def _check_action(action: str) -> None:
    if action not in DEFAULT_CAPABILITIES:
        known = ", ".join(sorted(DEFAULT_CAPABILITIES))
        raise ValidationError(f"unknown action {action!r}; known actions: {known}")


class Policy:
    """The role -> actions table, defaults optionally replaced per role."""

    def __init__(self, overrides: Mapping[str, Iterable[str]] | None = None) -> None:
        by_role = {
            role: frozenset(a for a, roles in DEFAULT_CAPABILITIES.items() if role in roles) for role in ROLES
        }
        for role, actions in (overrides or {}).items():
            _check_role(role)
            if isinstance(actions, str):
                # A bare string would be read letter by letter; demand the full list instead.
                raise ValidationError(
                    f"override for role {role!r} must be a list of actions, not the string {actions!r}"
                )
            chosen = frozenset(actions)
            for action in sorted(chosen, key=str):
                _check_action(action)
            by_role[role] = chosen
        self._by_role: dict[str, frozenset[str]] = by_role

    def actions_for(self, role: str) -> frozenset[str]:
        """Every action ``role`` may perform."""
        _check_role(role)
        return self._by_role[role]

    def allows(self, role: str, action: str) -> bool:
        """True if ``role`` may perform ``action``; unknown roles or actions raise ValidationError."""
        _check_role(role)
        _check_action(action)
        return action in self._by_role[role]

    def roles_for(self, action: str) -> tuple[str, ...]:
        """The roles that may perform ``action``, in ROLES order."""
        _check_action(action)
        return tuple(role for role in ROLES if action in self._by_role[role])

    def check(self, role: str, action: str, operator_name: str) -> None:
        """Raise AccessDenied, naming who, what, their role and who may, unless ``role`` may do ``action``."""
        if self.allows(role, action):
            return
        allowed = ", ".join(self.roles_for(action)) or "no role"
        raise AccessDenied(f"operator {operator_name!r} ({role}) may not {action}; allowed for: {allowed}")

    def unmasked(self, role: str) -> bool:
        """True if ``role`` sees sensitive payload fields in clear: Administrator only, despite overrides."""
        _check_role(role)
        return role == "administrator"
