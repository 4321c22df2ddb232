"""``sgen-ops audit``: verify the Activity Log's hash chain, and read the log."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_verify(args: argparse.Namespace) -> int:
    from .. import audit
    from ..config import load_settings
    from ..store import Ledger

    result = audit.verify(Ledger(load_settings().effective_database_url))
    print(result.message)
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the Activity Log").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="check the Activity Log's hash chain; names the first altered entry")
    p.set_defaults(func=cmd_verify)
