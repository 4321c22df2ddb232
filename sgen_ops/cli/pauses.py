"""``sgen-ops tasks|queues pause|resume`` and ``sgen-ops paused``: hold a task's or a priority queue's waiting
jobs back from the workers, and let them go again, through the surface as the operator (Administrator by
default; every pause is in the Activity Log)."""

from __future__ import annotations

import argparse
from typing import Any

from . import table
from .base import add_json, add_operator, each, operations, print_frame

COLUMNS = (
    table.Column("KIND", "kind"),
    table.Column("NAME", "name"),
    table.Column("PAUSED", "paused_at", when=True),
    table.Column("BY", "paused_by"),
)


def cmd_paused(args: argparse.Namespace) -> int:
    return print_frame(args, operations(args).paused(), COLUMNS, "nothing is paused")


def _acting(verb: str, kind: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        def act(ops: Any, name: str) -> str:
            getattr(ops, f"{verb}_{kind}")(name)
            return ("paused: its waiting jobs stay queued until resumed" if verb == "pause"
                    else "resumed: its waiting jobs are delivered again")

        return each(args, kind, act)

    return cmd


def register(sub: Any) -> None:
    p = sub.add_parser("paused", help="the paused tasks and priority queues")
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_paused)
    for kind, group, metavar, what in (
        ("task", "tasks", "TASK", "tasks"),
        ("queue", "queues", "PRIORITY", "priority queues (high, normal, low)"),
    ):
        verbs = sub.add_parser(group, help=f"pause and resume {what}").add_subparsers(
            dest=f"{group}_command", required=True)
        for verb, doing in (("pause", "hold back the waiting jobs of"), ("resume", "deliver again the jobs of")):
            p = verbs.add_parser(verb, help=f"{doing} {what}")
            p.add_argument("ids", nargs="+", metavar=metavar)
            add_operator(p)
            add_json(p)
            p.set_defaults(func=_acting(verb, kind))
