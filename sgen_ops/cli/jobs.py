"""``sgen-ops jobs``: list, show, the writes on one or several jobs, and enqueue; each through the surface as
the acting operator."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ValidationError
from . import table
from .base import add_json, add_operator, each, json_arg, operations, print_json, time_arg

LIST_COLUMNS = (
    table.Column("ID", "id", right=True),
    table.Column("TASK", "task"),
    table.Column("STATE", "state"),
    table.Column("ATTEMPTS", "attempts_label"),
    table.Column("NEXT RUN", "next_run", when=True),
    table.Column("ERROR", table.joined("last_error_code", "last_error_excerpt"), cut=True),
    table.Column("ACCOUNT", "account"),
    table.Column("CREATED", "created_at", when=True),
)
ATTEMPT_COLUMNS = (
    table.Column("#", "number", right=True),
    table.Column("RUN", "run", right=True),
    table.Column("STARTED", "started_at", when=True),
    table.Column("TOOK", lambda a: f"{a['duration_s']:.2f}s" if a["duration_s"] is not None else None, right=True),
    table.Column("EXIT", "exit"),
    table.Column("ERROR", table.joined("error_code", "error"), cut=True),
    table.Column("WORKER", "worker", cut=True),
)
# The writes on jobs by id, each the surface's method of that name: command -> what the job became.
WRITES: dict[str, str] = {
    "rerun": "queued again with a fresh attempt counter",
    "cancel": "cancelled (a running job: at its next checkpoint)",
    "replay": "replayed from the dead letter",
    "dismiss": "dismissed (purged; the Activity Log keeps a snapshot)",
    "resolve": "resolved",
    "trigger": "triggered: due now",
}


def check_tasks(ops: Any, tasks: list[str] | None) -> None:
    """An unknown task name is a mistake, not an empty list: say so, naming the tasks there are. (Served, the
    tasks are the server's to know.)"""
    hub = getattr(ops, "hub", None)
    if not tasks or hub is None:
        return
    from sqlalchemy import select

    from ..core.tasks import registered
    from ..ledger.store import TaskRule

    with hub.ledger.read() as session:
        known = set(registered()) | set(session.scalars(select(TaskRule.task)))
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValidationError(
            f"unknown task {', '.join(repr(t) for t in unknown)}; known tasks: {', '.join(sorted(known)) or 'none'}"
        )


def cmd_list(args: argparse.Namespace) -> int:
    ops = operations(args)
    check_tasks(ops, args.task)
    filters = {
        "state": args.state, "task": args.task, "since": time_arg(args.since, "since"),
        "until": time_arg(args.until, "until"), "error_code": args.error_code, "text": args.text,
    }
    paging = {"after_id": args.after_id} if args.after_id is not None else {"page": args.page}
    page = ops.list_jobs(
        **{k: v for k, v in filters.items() if v is not None},
        include_old_succeeded=args.include_old_succeeded, per_page=args.per_page, **paging,
    )
    if args.json:
        print_json(page.items)
        return 0
    if args.ids:
        print("\n".join(str(r.id) for r in page.items))
        return 0
    if not page.items:
        where = f"after job {args.after_id}" if args.after_id is not None else f"on page {page.page}"
        print("no jobs match" if page.total == 0 else f"no jobs {where}; {page.total_text} job(s) match")
        return 0
    print(table.render([vars(r) for r in page.items], LIST_COLUMNS))
    where = f"after job {args.after_id}" if args.after_id is not None else (
        f"page {page.page} of {page.pages}" if page.total_is_exact else f"page {page.page}")
    more = f"; --after-id {page.items[-1].id} for the next page" if page.more_after(
        None if args.after_id is None else 0) else ""
    print(f"-- {where}, {len(page.items)} of {page.total_text} job(s){more}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    detail = operations(args).get_job(args.id)
    if args.json:
        print_json(detail)
        return 0
    fields: list[tuple[str, Any]] = [
        ("id", detail.id), ("task", detail.task), ("state", detail.state),
        ("attempts", f"{detail.attempts} of {detail.max_attempts}"), ("priority", detail.priority),
        ("scheduled for", f"{table.text(detail.scheduled_for)} ({table.relative(detail.scheduled_for)})"),
        ("account", detail.account), ("originating user", detail.originating_user),
        ("schedule", detail.schedule_id),
        ("created", f"{table.text(detail.created_at)} ({table.relative(detail.created_at)})"),
        ("updated", f"{table.text(detail.updated_at)} ({table.relative(detail.updated_at)})"),
        ("worker", getattr(detail, "worker", None)), ("last error", detail.last_error_code),
    ]
    for extra in ("dead_letter_reason", "resolution_note", "replayed_from", "replaced_by"):
        if getattr(detail, extra, None) not in (None, ""):
            fields.append((extra.replace("_", " "), getattr(detail, extra)))
    label = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key + ':':<{label + 1}} {table.text(value)}")
    print("payload:")
    print("  " + json.dumps(detail.payload, indent=2, sort_keys=True, default=str).replace("\n", "\n  "))
    if detail.last_error_detail:
        print("last error detail:")
        print("  " + detail.last_error_detail.strip().replace("\n", "\n  "))
    if detail.attempt_history:
        print("attempts:")
        rows = [vars(a) for a in detail.attempt_history]
        print("  " + table.render(rows, ATTEMPT_COLUMNS, max_width=table.width() - 2).replace("\n", "\n  "))
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    method = args.jobs_command

    def act(ops: Any, job_id: int) -> str:
        if method == "resolve":
            ops.resolve(job_id, args.note)
        else:
            getattr(ops, method)(job_id)
        return WRITES[method]

    return each(args, "job", act)


def cmd_update(args: argparse.Namespace) -> int:
    """Change waiting jobs' priority, scheduled time, retry budget or (administrators) payload."""
    fields: dict[str, Any] = {"priority": args.priority, "max_attempts": args.max_attempts}
    if args.scheduled_for is not None:
        fields["scheduled_for"] = time_arg(args.scheduled_for, "scheduled_for")  # 15m: that long from now
    if args.payload is not None:
        fields["payload"] = json_arg(args.payload, "--payload", '{"sku": "A-1"}')
    changes = {k: v for k, v in fields.items() if v is not None or k == "payload"}

    def act(ops: Any, job_id: int) -> str:
        ops.update_job(job_id, **changes)
        return f"updated ({', '.join(changes) or 'nothing'})"

    return each(args, "job", act)


def cmd_enqueue(args: argparse.Namespace) -> int:
    payload = json_arg(args.payload, "--payload", '{"sku": "A-1"}')
    delay = time_arg(args.delay, "delay") if args.delay else None
    if isinstance(delay, str):
        raise ValidationError(f"--delay {args.delay!r} is not a duration; give e.g. 30s, 15m, 2h")
    job_id = operations(args).enqueue(
        args.task, payload, priority=args.priority, delay=delay, max_attempts=args.max_attempts,
        account=args.account,
    )
    if args.json:
        print_json({"id": job_id})
    else:
        print(f"enqueued job {job_id} ({args.task})")
    return 0


def register(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="the job queue").add_subparsers(dest="jobs_command", required=True)

    p = jobs.add_parser("list", help="list jobs, newest first, with the same filters as list_jobs")
    add_operator(p)
    p.add_argument("--state", action="append", default=None, help="state; repeat for several")
    p.add_argument("--task", action="append", default=None, help="task name; repeat for several")
    p.add_argument("--since", help="created at or after: 24h, 7d (that long ago) or an ISO date or time")
    p.add_argument("--until", help="created before: 24h, 7d (that long ago) or an ISO date or time")
    p.add_argument("--error-code")
    p.add_argument("--text", help="search payload and error text")
    p.add_argument("--include-old-succeeded", action="store_true")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--after-id", type=int, default=None,
                   help="the jobs listed after this one (the last of the page before): as cheap deep in the list")
    p.add_argument("--per-page", type=int, default=50)
    add_json(p)
    p.add_argument("--ids", action="store_true", help="print only the ids, one a line (for $(...) in scripts)")
    p.set_defaults(func=cmd_list)

    p = jobs.add_parser("show", help="one job's record: payload (masked for your role), attempts, errors")
    p.add_argument("id", type=int)
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_show)

    for name, done in WRITES.items():
        p = jobs.add_parser(name, help=f"{name} jobs by id (each: {done})")
        p.add_argument("ids", nargs="+", type=int, metavar="ID")
        if name == "resolve":
            p.add_argument("--note", required=True, help="how the job was handled (kept with it, audited)")
        add_operator(p)
        add_json(p)
        p.set_defaults(func=cmd_write)

    p = jobs.add_parser("update", help="change waiting jobs: priority, scheduled time, retry budget, payload")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.add_argument("--priority", choices=["high", "normal", "low"], default=None)
    p.add_argument("--scheduled-for", default=None, help="when it may run: 15m, 2h (from now) or an ISO time")
    p.add_argument("--max-attempts", type=int, default=None, help="the retry budget")
    p.add_argument("--payload", default=None,
                   help="the new payload as JSON, before the job's first attempt (administrators by default)")
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_update)

    p = jobs.add_parser("enqueue", help="queue a new job as the operator")
    p.add_argument("task")
    p.add_argument("--payload", default=None, help="the payload as JSON")
    p.add_argument("--priority", choices=["high", "normal", "low"], default=None)
    p.add_argument("--delay", default=None, help="run after this long: 30s, 15m, 2h")
    p.add_argument("--max-attempts", type=int, default=None)
    p.add_argument("--account", default=None, help="the job's account (within the operator's own)")
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_enqueue)
