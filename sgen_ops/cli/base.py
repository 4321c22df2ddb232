"""What every command shares: the acting operator, the surface it acts through, ``--json`` output and
time arguments."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import SgenOpsError, Unavailable, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from ..api.client import RemoteOperations
    from ..hub import Hub
    from ..surface.operations import Operations


_Closable = TypeVar("_Closable")
# What the running command opened (hubs, remote clients, ledgers): main() closes them when the command ends,
# so that it can run in a process that goes on (a test, a notebook) without leaving connections behind.
_OPENED: list[Any] = []


def opened(thing: _Closable) -> _Closable:
    """``thing`` (anything with ``close()``), to be closed when the command ends."""
    _OPENED.append(thing)
    return thing


def close_opened() -> None:
    """Close what the command opened, last opened first."""
    while _OPENED:
        _OPENED.pop().close()


class UsageError(Exception):
    """Arguments that do not go together: reported as argparse reports its own errors (exit status 2)."""


def operator_from_env() -> str | None:
    """The acting operator: SGEN_OPS_OPERATOR, else JupyterHub's authenticated user, else nobody."""
    return os.environ.get("SGEN_OPS_OPERATOR") or os.environ.get("JUPYTERHUB_USER") or None


class NeedsLocalStack(SgenOpsError):
    """A command that works on the stack itself (its ledger, its Redis, its processes), run where only the API
    is reached: ``SGEN_OPS_API_URL`` set and no stack named here."""


# The command running, for refusals ("sgen-ops tokens create"); main() sets it.
COMMAND = ["sgen-ops"]


def local_stack() -> None:
    """Refuse, in words, a command that needs the stack itself when this shell reaches only the API: it would
    otherwise create a ledger and start a Redis server here."""
    from ..config import served_only

    url = served_only()
    if url is not None:
        raise NeedsLocalStack(
            f"`{' '.join(COMMAND)}` works on the stack itself (its ledger and Redis), which this shell reaches "
            f"only through the API at {url} (SGEN_OPS_API_URL), and the API does not offer it; run it on the "
            "machine that runs `sgen-ops serve`, or name a stack here with SGEN_OPS_HOME or SGEN_OPS_DATABASE_URL"
        )


def hub() -> Hub:
    """The stack's hub (the embedded stack of SGEN_OPS_HOME, or the URLs); refused when only the API is reached
    (``local_stack``)."""
    from ..hub import connect

    local_stack()
    return opened(connect())


def operations(args: argparse.Namespace) -> Operations | RemoteOperations:
    """The Jobs surface as the command's operator (``--operator``, else SGEN_OPS_OPERATOR): the server's when
    SGEN_OPS_API_URL is set, else the ledger's. Capability, account scope, masking and the Activity Log apply
    as in Python."""
    from ..api.client import served_session

    served = served_session(args.operator)
    if served is not None:
        return opened(served)
    return hub().as_operator(args.operator or operator_from_env())


def add_operator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", "--as", dest="operator", default=None,
                   help="acting operator (default: SGEN_OPS_OPERATOR)")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def print_json(data: Any) -> None:
    """``data`` (dataclasses, lists, dicts, times, DataFrames) as JSON on stdout: times in ISO 8601, blanks null."""
    # pandas and wire only here: the worker command imports this module and never prints a frame.
    import pandas as pd

    from ..api import wire

    plain = wire.encode_frame(data)["items"] if isinstance(data, pd.DataFrame) else wire.encode(data)
    json.dump(plain, sys.stdout)
    sys.stdout.write("\n")


def print_frame(args: argparse.Namespace, frame: pd.DataFrame, columns: Any, empty: str) -> int:
    """A listing command's output: ``frame`` as JSON with ``--json``, else as a table of ``columns``, or the
    line ``empty`` when it has no rows."""
    from . import table

    if args.json:
        print_json(frame)
    elif frame.empty:
        print(empty)
    else:
        print(table.render(frame.to_dict("records"), columns))
    return 0


def time_arg(value: str | None, name: str) -> timedelta | str | None:
    """A time argument as the runbooks take it: '24h', '7d' mean that long ago; other text is an ISO time."""
    from ..ops.runbooks import time_filter

    return time_filter(value, name)


def json_arg(value: str | None, name: str, example: str) -> Any:
    """A JSON argument (None: not given); ValidationError saying where it stops being JSON."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{name} is not JSON ({exc.msg} at character {exc.pos}); give e.g. '{example}'") from None


def each(args: argparse.Namespace, what: str, act: Callable[[Any, Any], str]) -> int:
    """``act(ops, id)`` on every id of ``args.ids``, as the operator: a line per id ("job 12: cancelled"), each
    refusal on stderr with its reason (or all as JSON with ``--json``); status 1 if any was refused."""
    ops = operations(args)
    results: list[dict[str, Any]] = []
    for ident in args.ids:
        try:
            done = act(ops, ident)
        except Unavailable:
            raise  # not a refusal of this id: the command stops with one line (exit status 69)
        except SgenOpsError as exc:
            results.append({"id": ident, "ok": False, "error": type(exc).__name__, "reason": str(exc)})
            if not args.json:
                print(f"sgen-ops: {what} {ident}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        results.append({"id": ident, "ok": True, "result": done})
        if not args.json:
            print(f"{what} {ident}: {done}")
    if args.json:
        print_json(results)
    return 0 if all(r["ok"] for r in results) else 1
