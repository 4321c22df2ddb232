"""Runbooks: the parameterised notebooks under ``notebooks/runbooks/``, executed with papermill.

``sgen-ops runbook NAME -p KEY VALUE ... [--operator X]`` calls ``run``. Everything that can be
checked is checked before a kernel starts: the runbook's name, each ``-p`` against the parameters
the runbook declares (its cell tagged ``parameters``, read with papermill's inspection), each value
coerced to the declared type, and the operator (the admin gate, ``Hub.as_operator``). The kernel runs
against the caller's stack: it gets the caller's settings (home, ledger and Redis URLs, queue prefix, ...)
and operator in its environment and starts in the caller's working directory, so neither its folder nor a
missing ``SGEN_OPS_HOME`` can make it build a stack of its own. The executed copy is kept under
``$SGEN_OPS_HOME/runs/`` as ``<UTC time>_<runbook>_<operator>.ipynb``, also when a cell fails; the writes
themselves go through ``Operations``, so the Activity Log names the operator. ``result_of`` reads what the
run reported (its cells tagged ``result``) from the executed copy.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.localinterfaces import localhost
from jupyter_client.manager import AsyncKernelManager
from traitlets import Dict, default
from traitlets.config import Config

from ..config import ENV_PREFIX, Settings
from ..errors import SgenOpsError, ValidationError

RUNBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "runbooks"
KERNEL = "python3"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_NONE = frozenset({"", "none", "null"})
_OPTIONAL = re.compile(r"^Optional\[\s*(\w+)\s*\]$")
_UNSAFE = re.compile(r"[^\w.-]+")
RESULT_TAG = "result"
# Settings a kernel cannot be given through its environment (a mapping); it reads them where the caller does.
_NOT_IN_ENV = frozenset({"home", "capabilities"})


class RunbookFailed(SgenOpsError):
    """A cell of the runbook raised; ``path`` is the executed copy, kept for inspection."""

    def __init__(self, message: str, *, path: Path, ename: str, evalue: str, cell_index: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.ename = ename
        self.evalue = evalue
        self.cell_index = cell_index


@dataclass(frozen=True)
class Parameter:
    """A parameter a runbook declares: name, type (``bool``, ``int``, ``float``, ``str``), default, help."""

    name: str
    type: str
    optional: bool
    default: Any
    help: str

    def describe(self) -> str:
        """'dry_run (bool, default True)'."""
        kind = f"{self.type} or none" if self.optional else self.type
        return f"{self.name} ({kind}, default {self.default!r})"


def available() -> list[str]:
    """The runbook names, sorted."""
    return sorted(p.stem for p in RUNBOOKS.glob("*.ipynb"))


def path_of(name: str) -> Path:
    """The runbook notebook called ``name``; ValidationError listing the runbooks otherwise."""
    names = available()
    if not isinstance(name, str) or name not in names:
        raise ValidationError(f"no runbook named {name!r}; available runbooks: {', '.join(names) or 'none'}")
    return RUNBOOKS / f"{name}.ipynb"


def _literal(source: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def parameters(name: str) -> dict[str, Parameter]:
    """The parameters runbook ``name`` declares in its cell tagged ``parameters``, in order."""
    import papermill

    declared: dict[str, Parameter] = {}
    for pname, info in papermill.inspect_notebook(str(path_of(name))).items():
        default = _literal(info["default"])
        annotation = info["inferred_type_name"]
        optional_of = _OPTIONAL.match(annotation)
        if optional_of:
            kind, optional = optional_of.group(1), True
        elif annotation in ("bool", "int", "float", "str"):
            kind, optional = annotation, default is None
        else:  # not annotated: the type of the default value
            kind, optional = (type(default).__name__ if default is not None else "str"), default is None
        declared[pname] = Parameter(pname, kind, optional, default, info["help"])
    return declared


def coerce(param: Parameter, value: Any) -> Any:
    """``value`` (text from ``-p``, or already typed) as the parameter's type; ValidationError if it is not one."""
    if not isinstance(value, str):
        if value is None and param.optional:
            return None
        expected: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}
        numeric_bool = param.type in ("int", "float") and isinstance(value, bool)
        if isinstance(value, expected.get(param.type, (object,))) and not numeric_bool:
            return value
        raise ValidationError(f"{param.name}={value!r} is not valid; {param.name} takes {param.type} values")
    text = value.strip()
    if param.optional and text.lower() in _NONE:
        return None
    if param.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValidationError(f"{param.name}={value!r} is not valid; give true or false")
    if param.type in ("int", "float"):
        try:
            return int(text) if param.type == "int" else float(text)
        except ValueError:
            raise ValidationError(f"{param.name}={value!r} is not valid; give a number ({param.type})") from None
    return value


def resolve_parameters(
    name: str, params: Mapping[str, Any], declared: Mapping[str, Parameter] | None = None
) -> dict[str, Any]:
    """Check ``params`` against what runbook ``name`` declares and coerce each value to its type."""
    declared = parameters(name) if declared is None else declared
    unknown = sorted(set(params) - set(declared))
    if unknown:
        allowed = "; ".join(p.describe() for p in declared.values()) or "none"
        raise ValidationError(f"runbook {name} has no parameter(s) {', '.join(unknown)}; its parameters: {allowed}")
    return {key: coerce(declared[key], value) for key, value in params.items()}


class NotebookKernel(AsyncKernelManager):
    """The kernel of one notebook run: ``kernel_env`` added to its environment, its connection encrypted
    (CurveZMQ) where the kernel supports it, its sockets Unix sockets in a folder of its own, and shut down
    without a first interrupt."""

    kernel_env = Dict(config=True, help="variables added to the kernel's environment")

    @default("transport")
    def _unix_sockets(self) -> str:
        # Over TCP, jupyter_client picks five free ports, closes them, and the kernel binds them a moment later:
        # any process on the machine may take one meanwhile ("Address already in use", the kernel dies before
        # it answers). Unix sockets in a folder only this kernel uses cannot be taken.
        return "ipc"

    @default("ip")
    def _socket_folder(self) -> str:
        if self.transport != "ipc":
            return str(localhost())
        return os.path.join(tempfile.mkdtemp(prefix="sgen-ops-kernel-"), "kernel")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self.transport == "ipc":
            shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)

    cleanup_resources = _async_cleanup_resources

    @default("transport_encryption")
    def _encrypted(self) -> str:
        # Encrypted, the kernel's socket carries no plain text, and ipykernel does not warn that it does.
        return "auto" if zmq.has("curve") else "disabled"

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        kw["env"] = {**os.environ, **kw.get("env", {}), **self.kernel_env}
        await super().start_kernel(**kw)

    async def _async_interrupt_kernel(self) -> None:
        # jupyter_client interrupts before it shuts a kernel down; a notebook that has run leaves nothing to
        # interrupt, and ipykernel would print "KeyboardInterrupt caught in kernel" on the caller's terminal.
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def kernel_environment(settings: Settings, operator: str | None = None) -> dict[str, str]:
    """The ``SGEN_OPS_*`` variables that point a kernel at the stack of ``settings`` as ``operator``: every
    setting the caller resolved (from arguments, environment, ``sgen-ops.toml`` or defaults), with the home
    as an absolute path."""
    env = {f"{ENV_PREFIX}HOME": str(settings.home)}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name in _NOT_IN_ENV or value is None:
            continue
        env[ENV_PREFIX + f.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
    if operator:
        env[f"{ENV_PREFIX}OPERATOR"] = operator
    return env


def execute(
    notebook: Path,
    output: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """Execute ``notebook`` with papermill into ``output``, in a kernel with ``env`` added to this process's
    environment and started in ``cwd`` (default: the notebook's folder, as in JupyterLab).

    A failing cell raises ``RunbookFailed`` naming the cell and its exception; ``output`` is kept.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    config = Config({NotebookKernel.__name__: {"kernel_env": dict(env or {})}})
    try:
        # nbclient's resources path sets the kernel's folder without papermill's process-wide chdir, so
        # several notebooks may run at once.
        papermill.execute_notebook(
            str(notebook), str(output), parameters=dict(parameters or {}), kernel_name=KERNEL,
            progress_bar=False, log_output=False, resources={"metadata": {"path": str(cwd or notebook.parent)}},
            kernel_manager_class=NotebookKernel, config=config,
        )
    except PapermillExecutionError as exc:
        raise RunbookFailed(
            f"{notebook.stem} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
            f"(executed copy with the traceback: {output})",
            path=output, ename=exc.ename, evalue=exc.evalue, cell_index=exc.cell_index,
        ) from None
    return output


def result_of(path: Path) -> list[str]:
    """What an executed notebook reported: the text output of its cells tagged ``result`` (else of its last
    code cell with output), one item per line, blank lines dropped."""
    def text(value: str | list[str]) -> str:  # nbformat keeps multi-line text as a list of lines
        return value if isinstance(value, str) else "".join(value)

    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    tagged = [c for c in cells if RESULT_TAG in c.get("metadata", {}).get("tags", [])]
    lines: list[str] = []
    for cell in tagged or cells[-1:]:
        for out in cell["outputs"]:
            if out["output_type"] == "stream" and out["name"] == "stdout":
                said = text(out["text"])
            elif out["output_type"] in ("execute_result", "display_data"):
                said = text(out["data"].get("text/plain", ""))
            else:
                continue
            lines.extend(line for line in said.splitlines() if line.strip())
    return lines


def time_filter(text: str | None, name: str = "since") -> timedelta | str | None:
    """A runbook's time parameter as a filter: '24h', '7d' mean that long ago (a timedelta); any other
    text is passed on as an ISO time, which the surface checks. None: not filtered."""
    from ..core.durations import as_timedelta

    if text is None or not str(text).strip():
        return None
    try:
        return as_timedelta(str(text), name)
    except ValidationError:
        return str(text)


def run_path(home: Path, name: str, operator: str, now: datetime | None = None) -> Path:
    """Where the executed copy of a run goes: ``home/runs/<UTC time>_<runbook>_<operator>.ipynb``."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = home / "runs" / f"{stamp}_{name}_{_UNSAFE.sub('_', operator)}"
    path, n = base.with_suffix(".ipynb"), 1
    while path.exists():  # two runs in the same second keep both copies
        n += 1
        path = base.with_name(f"{base.name}-{n}.ipynb")
    return path


def run(name: str, params: Mapping[str, Any], operator: str | None = None) -> Path:
    """Execute runbook ``name`` as ``operator`` with ``params`` (``-p`` values, coerced to the declared
    types) on the caller's stack, in the caller's working directory, and return the executed copy under
    ``$SGEN_OPS_HOME/runs/`` (a client of the API that names no stack here: under ``ui.session.client_home()``).

    Raises ValidationError (unknown runbook or parameter, bad value), AccessDenied (no or unknown
    operator) before anything runs, and RunbookFailed when a cell fails.
    """
    from ..api.client import served_session
    from ..config import client_home, load_settings, served_only
    from ..hub import connect

    notebook = path_of(name)
    declared = parameters(name)
    values = resolve_parameters(name, params, declared)
    given = values.pop("operator", None)
    if operator and given and given != operator:
        raise ValidationError(f"two operators given: --operator {operator} and -p operator {given}; give one")
    acting = operator or given
    served = served_session(acting)
    if served is not None:
        # Served: the server's admin gate answered for the token, which names the acting operator.
        acting = served.name
        served.close()
        # A client of the API only keeps its copies in the user's data folder, not the working directory.
        home = client_home() if served_only() is not None else load_settings().home
        env = {f"{ENV_PREFIX}HOME": str(home), f"{ENV_PREFIX}OPERATOR": acting}
    else:
        hub = connect()
        try:
            hub.as_operator(acting)  # the admin gate, before a kernel starts
            home = hub.home
            env = kernel_environment(hub.settings, acting)
        finally:
            hub.close()
    assert acting  # as_operator refused an empty name
    if "operator" in declared:
        values["operator"] = acting
    return execute(notebook, run_path(home, name, acting), values, env=env, cwd=Path.cwd())
