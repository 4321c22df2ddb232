"""``sgen-ops audit``: verify the Activity Log's hash chain, and read the log with filters."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ValidationError
from . import table
from .base import add_json, opened, operations, print_json, time_arg


def _target_cell(entry: Any) -> str:
    from ..ledger.audit import target_label  # with pandas: not on the worker's import path

    return target_label(entry["target_type"], entry["target_id"], entry["change"])


COLUMNS = (
    table.Column("AT", "at"),
    table.Column("WHEN", "at", when=True),
    table.Column("OPERATOR", "operator"),
    table.Column("ACTION", "action"),
    table.Column("TARGET", lambda e: _target_cell(e)),
    table.Column("ACCOUNT", "account"),
    table.Column("CHANGE", lambda e: json.dumps(e["change"], sort_keys=True, default=str)
                 if not table.missing(e["change"]) else "", cut=True),
)


def cmd_verify(args: argparse.Namespace) -> int:
    from ..config import load_settings, served_only
    from ..ledger import audit
    from ..ledger.store import Ledger

    if served_only() is not None:
        # Through the API, as the token's operator (verify_audit is the administrators').
        result = operations(args).verify_audit()
    else:
        result = audit.verify(opened(Ledger(load_settings().effective_database_url)))
    if args.json:
        print_json(result)
    else:
        print(result.message)
    return 0 if result.ok else 1


def _target(text: str | None) -> tuple[str | None, int | None]:
    """'job:12' -> ('job', 12); '12' -> (None, 12): any kind of target with that id."""
    if text is None:
        return None, None
    kind, _, ident = text.rpartition(":")
    if not ident.isdigit():
        raise ValidationError(f"--target {text!r} is not valid; give an id (12) or a kind and an id (job:12, "
                              "schedule:3)")
    return kind or None, int(ident)


def cmd_log(args: argparse.Namespace) -> int:
    ops = operations(args)
    kind, ident = _target(args.target)
    frame = ops.activity_log(since=time_arg(args.since, "since"), until=time_arg(args.until, "until"),
                             operator=args.by)
    entries = [e for e in frame.to_dict("records")
               if (not args.action or e["action"] in args.action)
               and (ident is None or (e["target_id"] == ident and kind in (None, e["target_type"])))]
    if ops.can("verify_audit"):
        result = ops.verify_audit()
        chain: dict[str, Any] = {"verified": True, "ok": result.ok, "checked": result.checked,
                                 "first_bad_id": result.first_bad_id, "message": result.message}
    else:
        chain = {"verified": False, "ok": None, "message": f"not checked: a {ops.role} may not verify the chain"}
    if args.json:
        print_json({"entries": entries, "chain": chain})
        return 0
    if entries:
        shown = entries[-args.last:] if args.last else entries
        print(table.render(shown, COLUMNS))
        if len(shown) < len(entries):
            print(f"-- the last {len(shown)} of {len(entries)} entries (--last 0 shows all)")
    else:
        print("no Activity Log entries match")
    print(f"chain: {chain['message']}")
    return 0


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the Activity Log").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="check the Activity Log's hash chain; names the first altered entry")
    p.set_defaults(operator=None)  # through the API, the token's operator
    add_json(p)
    p.set_defaults(func=cmd_verify)

    p = audit.add_parser("log", help="the Activity Log, oldest first, with the chain's verification status")
    p.add_argument("--as", dest="operator", default=None,
                   help="acting operator (default: SGEN_OPS_OPERATOR); --operator filters the log")
    p.add_argument("--operator", dest="by", default=None, help="only entries written by this operator")
    p.add_argument("--action", action="append", default=None, help="only this action (rerun, cancel, ...); repeat")
    p.add_argument("--target", default=None, help="only entries about this target: 12, job:12, schedule:3")
    p.add_argument("--since", help="at or after: 24h, 7d (that long ago) or an ISO time")
    p.add_argument("--until", help="before: 24h, 7d (that long ago) or an ISO time")
    p.add_argument("--last", type=int, default=50, help="show the last N entries (default 50; 0: all)")
    add_json(p)
    p.set_defaults(func=cmd_log)
