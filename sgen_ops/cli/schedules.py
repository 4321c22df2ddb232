"""``sgen-ops schedules``: list, create, pause, resume and run now, through the surface as the operator."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from . import table
from .base import add_json, add_operator, each, json_arg, operations, print_frame, print_json


def _timing(row: Mapping[str, Any]) -> str:
    if not table.missing(row.get("cron")) and row.get("cron"):
        zone = row.get("timezone")
        return f"cron {row['cron']}" + (f" ({zone})" if zone and zone != "UTC" else "")
    return f"every {row['every']}"


def _recent(row: Mapping[str, Any]) -> str:
    runs = row.get("recent_runs")
    if table.missing(runs) or not runs:
        return ""
    return ", ".join(f"#{run[0]} {run[1]}" for run in runs)


COLUMNS = (
    table.Column("ID", "id", right=True),
    table.Column("TASK", "task"),
    table.Column("TIMING", _timing),
    table.Column("STATE", lambda r: "enabled" if r["enabled"] else "paused"),
    table.Column("NEXT RUN", "next_run", when=True),
    table.Column("LAST RUN", "last_run", when=True),
    table.Column("ATTEMPTS", "max_attempts", right=True),
    table.Column("RETENTION", lambda r: f"{float(r['retention']):g}d", right=True),
    table.Column("PRIORITY", "priority"),
    table.Column("ACCOUNT", "account"),
    table.Column("RECENT RUNS", _recent, cut=True),
)


def cmd_list(args: argparse.Namespace) -> int:
    return print_frame(args, operations(args).list_schedules(), COLUMNS, "no schedules")


def cmd_create(args: argparse.Namespace) -> int:
    payload = json_arg(args.payload, "--payload", '{"day": "{tick:%Y-%m-%d}"}')
    schedule_id = operations(args).create_schedule(
        args.task, cron=args.cron, every=args.every, timezone=args.timezone, payload=payload,
        max_attempts=args.max_attempts, retention=args.retention, priority=args.priority, account=args.account,
    )
    if args.json:
        print_json({"id": schedule_id})
    else:
        timing = f"cron {args.cron}" if args.cron else f"every {args.every}"
        print(f"created schedule {schedule_id} ({args.task}, {timing})")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    def act(ops: Any, schedule_id: int) -> str:
        ops.pause_schedule(schedule_id)
        return "paused"

    return each(args, "schedule", act)


def cmd_resume(args: argparse.Namespace) -> int:
    def act(ops: Any, schedule_id: int) -> str:
        ops.resume_schedule(schedule_id)
        return "resumed from its next fire time"

    return each(args, "schedule", act)


def cmd_run(args: argparse.Namespace) -> int:
    def act(ops: Any, schedule_id: int) -> str:
        return f"emitted job {ops.run_schedule_now(schedule_id)}"

    return each(args, "schedule", act)


def register(sub: Any) -> None:
    schedules = sub.add_parser("schedules", help="recurring jobs").add_subparsers(
        dest="schedules_command", required=True
    )
    p = schedules.add_parser("list", help="the schedules, with next and last run and recent runs")
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_list)

    p = schedules.add_parser("create", help="register a recurring job: --cron or --every")
    p.add_argument("task")
    timing = p.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help="a cron expression, e.g. '0 3 * * *'")
    timing.add_argument("--every", help="an interval: 30s, 15m, 1h30m")
    p.add_argument("--timezone", default=None, help="the cron's time zone (default UTC)")
    p.add_argument("--payload", default=None, help="the payload template as JSON ({tick:%%Y-%%m-%%d} places the tick)")
    p.add_argument("--max-attempts", type=int, default=None)
    p.add_argument("--retention", default=None, help="keep succeeded jobs this long: 7d, 12h")
    p.add_argument("--priority", choices=["high", "normal", "low"], default=None)
    p.add_argument("--account", default=None, help="the schedule's account (within the operator's own)")
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_create)

    for name, func, what in (
        ("pause", cmd_pause, "stop schedules' ticks"),
        ("resume", cmd_resume, "start paused schedules again"),
        ("run", cmd_run, "emit one job from each schedule now"),
    ):
        p = schedules.add_parser(name, help=f"{what} (by id)")
        p.add_argument("ids", nargs="+", type=int, metavar="ID")
        add_operator(p)
        add_json(p)
        p.set_defaults(func=func)
