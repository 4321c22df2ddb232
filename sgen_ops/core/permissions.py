"""Role capabilities: which operator roles may perform which operations, in one place.

Seed 000's capability table names twelve capabilities and the roles that hold them. Every operation of the
surface counts as exactly one of them (``PERMISSIONS``: the operation, the capability it counts as, and why),
and by default it is allowed to that capability's roles. Where an argument changes more than the operation
otherwise does, it is an action of its own (``update_job`` with a ``payload`` is ``update_job_payload``:
``ARGUMENT_ACTIONS``). The capabilities setting (``Settings.capabilities``) replaces a role's whole list of
actions, so any action can still be granted to any role. README's "Who may do what" shows this table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import AccessDenied, ValidationError

ROLES = ("administrator", "editor", "viewer")

_EVERYONE = frozenset(ROLES)
_EDITORS = frozenset({"administrator", "editor"})
_ADMINS = frozenset({"administrator"})

# Seed 000's capability table, as it ships: capability -> the roles that hold it (a viewer's job detail is masked).
SEED_CAPABILITIES: Mapping[str, frozenset[str]] = MappingProxyType({
    "List jobs": _EVERYONE,
    "View job detail": _EVERYONE,
    "Re-run job": _EDITORS,
    "Cancel job": _EDITORS,
    "Send to dead letter": _ADMINS,
    "Replay from dead letter": _ADMINS,
    "Edit and replay": _ADMINS,
    "Dismiss": _ADMINS,
    "Create schedule": _ADMINS,
    "Edit schedule": _ADMINS,
    "Run schedule now": _EDITORS,
    "View throughput stats": _EVERYONE,
})


@dataclass(frozen=True)
class CountsAs:
    """The seed 000 capability an operation counts as, and why, in one line."""

    capability: str
    why: str


# Every operation (its method name, the Activity Log's action, and what the capabilities setting grants) ->
# the seed 000 capability it counts as. An operation seed 000 names counts as itself; seed 003's and this
# project's others count as the capability whose effect they share, never a wider one.
PERMISSIONS: Mapping[str, CountsAs] = MappingProxyType({
    # -- reads --
    "list_jobs": CountsAs("List jobs", "seed 000's List jobs; seed 003's List jobs and Search jobs"),
    "get_job": CountsAs("View job detail", "seed 000's View job detail (masked for all but administrators); "
                                           "seed 003's Get job"),
    "history": CountsAs("View job detail", "every job's record over months, ledger and archive together, masked as "
                                           "get_job masks it"),
    "archive_runs": CountsAs("View throughput stats", "when the archive ran and how much it moved: counts and sizes, "
                                                      "no job's data"),
    "dead_letter_groups": CountsAs("List jobs", "counts the dead letters the queue list shows, by task and error code"),
    "paused": CountsAs("List jobs", "which tasks and queues are held back, as the queue list marks them"),
    "workers": CountsAs("List jobs", "which workers run which jobs and how many wait in each queue, as the queue "
                                     "list shows the jobs; another account's job is not named"),
    "list_schedules": CountsAs("List jobs", "the schedule list is the Jobs module's third view, beside the queue; "
                                            "its templates are masked as payloads are"),
    "preview_schedule": CountsAs("List jobs", "the fire times of a timing not yet saved: it reads no record"),
    "throughput": CountsAs("View throughput stats", "seed 000's View throughput stats"),
    "throughput_series": CountsAs("View throughput stats", "the same counts, per interval"),
    "run_time_percentiles": CountsAs("View throughput stats", "run and queue-wait times over a window: "
                                                              "aggregates, as the counts are"),
    "activity_log": CountsAs("Re-run job", "the record of operators' writes, for the roles that write; "
                                           "Re-run is the write every such role holds"),
    "verify_audit": CountsAs("Dismiss", "checks the log that keeps what Dismiss purges, for the role that purges"),
    # -- writes on one job --
    "rerun": CountsAs("Re-run job", "seed 000's Re-run job; seed 003's Retry job"),
    "cancel": CountsAs("Cancel job", "seed 000's Cancel job"),
    "retry_now": CountsAs("Re-run job", "seed 000's Retry now, which its table leaves out: it moves a retry's time, "
                                        "not what runs, nor the budget"),
    "trigger": CountsAs("Re-run job", "seed 003's Trigger job runs a waiting job's own payload now: only when it "
                                      "runs changes, as with Retry now"),
    "update_job": CountsAs("Re-run job", "seed 003's Update job of priority, scheduled time and retry budget: "
                                         "when and how often the job runs, as Re-run and Retry now change them"),
    "update_job_payload": CountsAs("Edit and replay", "a new payload changes what the job runs, which seed 000 "
                                                      "leaves to administrators (Edit and replay, Edit schedule)"),
    "resolve": CountsAs("Cancel job", "seed 003's Resolve job marks a failure handled so that it is not retried: "
                                      "what Cancel does to a waiting job; nothing runs, nothing is purged"),
    "send_to_dead_letter": CountsAs("Send to dead letter", "seed 000's Send to dead letter"),
    "replay": CountsAs("Replay from dead letter", "seed 000's Replay from dead letter"),
    "edit_and_replay": CountsAs("Edit and replay", "seed 000's Edit and replay"),
    "dismiss": CountsAs("Dismiss", "seed 000's Dismiss"),
    "delete_job": CountsAs("Dismiss", "seed 003's Delete job purges a record, as Dismiss purges a dead letter"),
    # -- writes on many jobs --
    "delete_jobs": CountsAs("Dismiss", "seed 003's Delete jobs by search: a purge of every job a filter matches"),
    "replay_dead_letters": CountsAs("Replay from dead letter", "Replay of every dead letter a filter matches"),
    "dismiss_dead_letters": CountsAs("Dismiss", "Dismiss of every dead letter a filter matches"),
    # -- new jobs and schedules --
    "enqueue": CountsAs("Run schedule now", "a new job of a registered task, as Run schedule now emits one; "
                                            "integrations start their work this way (see below)"),
    "create_schedule": CountsAs("Create schedule", "seed 000's Create schedule"),
    "edit_schedule": CountsAs("Edit schedule", "seed 000's Edit schedule"),
    "pause_schedule": CountsAs("Edit schedule", "seed 000: pausing a schedule is a special edit"),
    "resume_schedule": CountsAs("Edit schedule", "seed 000: resuming is the same special edit, undone"),
    "run_schedule_now": CountsAs("Run schedule now", "seed 000's Run schedule now"),
    # -- pauses --
    "pause_task": CountsAs("Edit schedule", "holds back every waiting job of a task, in every account, as "
                                            "pausing a schedule holds back its ticks"),
    "resume_task": CountsAs("Edit schedule", "lifts that hold"),
    "pause_queue": CountsAs("Edit schedule", "holds back every waiting job of a priority, in every account"),
    "resume_queue": CountsAs("Edit schedule", "lifts that hold"),
})

# Arguments that make an operation count as more than it otherwise does: (operation, argument) -> the action
# also checked when the argument is given, and what it does in plain words (for the refusal).
ARGUMENT_ACTIONS: Mapping[tuple[str, str], tuple[str, str]] = MappingProxyType({
    ("update_job", "payload"): ("update_job_payload", "change what a job runs"),
})

# Action -> roles allowed to perform it by default; read-only so no caller edits policy.
DEFAULT_CAPABILITIES: Mapping[str, frozenset[str]] = MappingProxyType(
    {action: SEED_CAPABILITIES[counts.capability] for action, counts in PERMISSIONS.items()}
)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")


def _check_action(action: str) -> None:
    if action not in DEFAULT_CAPABILITIES:
        known = ", ".join(sorted(DEFAULT_CAPABILITIES))
        raise ValidationError(f"unknown action {action!r}; known actions: {known}")


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


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

    def check_arguments(self, role: str, action: str, arguments: Mapping[str, Any], operator_name: str) -> None:
        """Raise AccessDenied, with the reason in plain words, if an argument given makes ``action`` count as
        an action ``role`` may not perform (``ARGUMENT_ACTIONS``)."""
        for (operation, argument), (stricter, words) in ARGUMENT_ACTIONS.items():
            if operation == action and argument in arguments and not self.allows(role, stricter):
                raise AccessDenied(
                    f"operator {operator_name!r} ({role}) may not {stricter}: {self.refusal(role, stricter, words)}"
                )

    def refusal(self, role: str, action: str, words: str) -> str:
        """Why ``role`` may not ``action`` (``words``: what it does), in plain words: "only administrators can
        change what a job runs; you are signed in as an editor"."""
        roles = self.roles_for(action)
        who = f"only {' and '.join(f'{r}s' for r in roles)}" if roles else "no role"
        return f"{who} can {words}; you are signed in as {_a(role)}"

    def unmasked(self, role: str) -> bool:
        """True if ``role`` sees sensitive payload fields in clear: Administrator only, despite overrides."""
        _check_role(role)
        return role == "administrator"
