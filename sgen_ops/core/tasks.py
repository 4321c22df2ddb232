"""The task registry: ``@sgen_ops.task`` and each task's retry policy and masking rule."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ValidationError
from .validate import describe

PRIORITIES = ("high", "normal", "low")

Backoff = float | Callable[[int], float]


class TaskContext(Protocol):
    job_id: int
    attempt: int
    payload: Any

    def checkpoint(self) -> None: ...


Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    handler: Handler
    sensitive: tuple[str, ...] = ()
    max_attempts: int | None = None  # None: the settings' default retry budget
    priority: str = "normal"
    backoff: Backoff = 0.0
    timeout: int | None = None  # seconds; None: RQ's default
    dead_letter: bool = True  # False: an exhausted job stays failed instead of dead-lettered
    description: str = field(default="")

    def backoff_seconds(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based)."""
        if callable(self.backoff):
            return max(0.0, float(self.backoff(attempt)))
        return float(self.backoff) * (2 ** (attempt - 1)) if self.backoff else 0.0


_REGISTRY: dict[str, TaskSpec] = {}


def task(
    name: str,
    *,
    sensitive: Sequence[str] = (),
    max_attempts: int | None = None,
    priority: str = "normal",
    backoff: Backoff = 0.0,
    timeout: int | None = None,
    dead_letter: bool = True,
) -> Callable[[Handler], Handler]:
    """Register ``handler(ctx, payload)`` as the task ``name``.

    ``sensitive`` are dotted payload paths masked for every role but Administrator (``*`` matches
    any one key or list index). ``backoff`` is the seconds before the first retry, doubling on each
    later one (0: retry at once), or a function of the attempt number returning seconds.
    """
    if not name or not isinstance(name, str):
        raise ValidationError("a task needs a non-empty string name such as 'report.weekly'")
    if priority not in PRIORITIES:
        raise ValidationError(f"task {name}: priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    if max_attempts is not None and max_attempts < 1:
        raise ValidationError(f"task {name}: max_attempts must be at least 1")
    if not callable(backoff) and float(backoff) < 0:
        raise ValidationError(f"task {name}: backoff must be >= 0 seconds or a function of the attempt")
    from .masking import MaskingRule

    MaskingRule(tuple(sensitive))  # validates the paths at registration, not at first view

    def register(handler: Handler) -> Handler:
        _REGISTRY[name] = TaskSpec(
            name=name,
            handler=handler,
            sensitive=tuple(sensitive),
            max_attempts=max_attempts,
            priority=priority,
            backoff=backoff,
            timeout=timeout,
            dead_letter=dead_letter,
            description=(handler.__doc__ or "").strip().split("\n")[0],
        )
        return handler

    return register


def get_task(name: Any) -> TaskSpec:
    """The registered task, or a ValidationError listing the registered ones."""
    known = ", ".join(sorted(_REGISTRY)) or "none registered"
    if not isinstance(name, str):
        raise ValidationError(f"task {describe(name)} is not valid: give a registered task name ({known})")
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValidationError(f"unknown task {describe(name)}; registered tasks: {known}")
    return spec


def find_task(name: str) -> TaskSpec | None:
    return _REGISTRY.get(name)


def registered() -> dict[str, TaskSpec]:
    return dict(_REGISTRY)


def import_task_modules(modules: Sequence[str]) -> None:
    """Import the modules that declare tasks, so the registry is complete in this process."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValidationError(
                f"cannot import task module {module!r} (setting task_modules / SGEN_OPS_TASK_MODULES): {exc}"
            ) from exc
