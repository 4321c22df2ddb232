"""The stack's processes and set-up: worker, scheduler, reconcile, demo, down, app, serve, db, operators,
tokens, and runbooks."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from . import table
from .base import UsageError, add_json, add_operator, hub, local_stack, opened, operator_from_env, print_json

APP_HOST = "127.0.0.1"
APP_PORT = 8866


def cmd_worker(args: argparse.Namespace) -> int:
    from ..core.backoff import ride_out
    from ..errors import Unavailable
    from ..runtime import execution, workers

    if args.horse_attempts is not None and (args.horse_attempts < 1 or not args.fork):
        raise UsageError("--horse-attempts takes a whole number of 1 or more, and goes with --fork")
    # A worker started while the ledger is down waits for it (and for Redis, as it starts).
    stack = ride_out(hub, retry_on=Unavailable, what="sgen-ops worker: starting")
    # A handler that outlives its lease ends this process (exit status 75), never runs beside a retry.
    execution.RUNTIME.leave_on_fence = True
    workers.run(
        stack,
        horse_attempts=args.horse_attempts,
        burst=args.burst,
        concurrency=args.concurrency,
        logging_level=args.log_level,
        worker_class="fork" if args.fork else "simple",
    )
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from ..runtime import scheduler

    h = hub()
    if args.once:
        print(json.dumps({"emitted": h.tick()}))
        return 0
    scheduler.run_forever(h, interval=args.interval)
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    h = hub()
    lost = h.recover_lost()
    resent = h.reconcile()
    if args.json:
        print_json({"re_enqueued": resent, "recovered_attempts": lost})
        return 0
    print(f"re-enqueued {resent} job(s) Redis had lost; recovered {lost} attempt(s) from lost workers")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..ledger.store import Ledger

    local_stack()
    ledger = opened(Ledger(load_settings().effective_database_url))
    ledger.upgrade(args.revision)
    print(f"ledger schema at {ledger.current_revision()} ({ledger.engine.url.render_as_string(hide_password=True)})")
    return 0


def cmd_operators_add(args: argparse.Namespace) -> int:
    op_id = hub().add_operator(args.name, args.role, account=args.account)
    scope = f"account {args.account}" if args.account else "every account"
    print(f"operator {args.name!r} ({args.role}, {scope}) registered with id {op_id}")
    return 0


def cmd_operators_enable(args: argparse.Namespace) -> int:
    enabled = args.operators_command == "enable"
    hub().set_operator_enabled(args.name, enabled)
    print(f"operator {args.name!r} {'enabled' if enabled else 'disabled'}")
    return 0


def cmd_operators_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ..ledger.store import Operator

    with hub().ledger.read() as session:
        found = list(session.scalars(select(Operator).order_by(Operator.name)))
    if args.json:
        print_json([{"name": op.name, "role": op.role, "account": op.account, "enabled": op.enabled} for op in found])
        return 0
    for op in found:
        print(f"{op.name}\t{op.role}\t{op.account or '*'}\t{'enabled' if op.enabled else 'disabled'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..api import server

    local_stack()
    return server.run(host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)


def cmd_tokens_create(args: argparse.Namespace) -> int:
    token = hub().create_token(args.operator, expires_in=args.expires_in)
    until = f"expires in {args.expires_in}" if args.expires_in else "never expires"
    print(f"token for operator {args.operator!r} ({until}); it is shown once, only its hash is kept:")
    print(token)
    return 0


TOKEN_COLUMNS = (
    table.Column("ID", "id", right=True),
    table.Column("OPERATOR", "operator"),
    table.Column("STATUS", "status"),
    table.Column("CREATED", "created_at", when=True),
    table.Column("EXPIRES", "expires_at", when=True),
    table.Column("LAST USED", "last_used_at", when=True),
)


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from ..ledger import tokens

    found = tokens.list_tokens(hub().ledger, operator=args.operator)
    if args.json:
        print_json([{**asdict(t), "status": t.status()} for t in found])
        return 0
    if not found:
        print("no tokens")
        return 0
    print(table.render([{**asdict(t), "status": t.status()} for t in found], TOKEN_COLUMNS))
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    if args.all:
        if not args.operator or args.id is not None:
            raise UsageError("give --operator NAME with --all (or a token id without them)")
        n = hub().revoke_tokens(args.operator)
        print(f"revoked {n} token(s) of operator {args.operator!r}")
        return 0
    if args.id is None or args.operator:
        raise UsageError("give a token id (`sgen-ops tokens list`), or --operator NAME --all")
    hub().revoke_token(args.id)
    print(f"revoked token {args.id}")
    return 0


def cmd_runbook(args: argparse.Namespace) -> int:
    from ..ops import runbooks

    params = dict(args.param or [])
    path = runbooks.run(args.name, params, operator=args.operator or operator_from_env())
    result = runbooks.result_of(path)
    if args.json:
        print_json({"runbook": args.name, "result": result, "executed_copy": str(path)})
        return 0
    for line in result:
        print(line)
    print(f"executed runbook {args.name}: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..ops import demo

    local_stack()
    return demo.main(headless=args.headless)


def cmd_down(args: argparse.Namespace) -> int:
    from ..ops import demo

    local_stack()
    demo.down()
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from ..api.client import served_session
    from ..ops import demo

    # The admin gate before Voila starts: refused there, the page shows only Voila's generic error and the
    # reason reaches the console as a coloured traceback.
    operator = args.operator or operator_from_env()
    served = served_session(operator)
    if served is not None:
        operator = served.name
        served.close()
    else:
        with hub() as h:
            operator = h.as_operator(operator).name
    print(f"serving the operator app as {operator} on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    return demo.serve_app(port=args.port, host=args.host, operator=operator)


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run a worker over the high, normal and low queues")
    p.add_argument(
        "--concurrency", type=int, default=None, help="worker processes (default: setting worker_concurrency)"
    )
    p.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    p.add_argument("--fork", action="store_true", help="fork a work horse per attempt (RQ's Worker)")
    p.add_argument(
        "--horse-attempts", type=int, default=None, metavar="N",
        help="with --fork: attempts a work horse runs before a fresh one is forked (default: setting "
        "horse_attempts, 1)",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("scheduler", help="emit schedule ticks as they come due")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default 1)")
    p.set_defaults(func=cmd_scheduler)

    p = sub.add_parser("reconcile", help="re-enqueue jobs Redis lost and recover attempts of lost workers")
    add_json(p)
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("demo", help="start the embedded demo stack and open JupyterLab")
    p.add_argument("--headless", action="store_true", help="execute every notebook instead of opening JupyterLab")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("down", help="stop this home's embedded stack (Redis, demo worker and scheduler)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("app", help="serve the operator views as a Voila app")
    p.add_argument("--operator", default=None,
                   help="the app's operator (default: SGEN_OPS_OPERATOR, else JUPYTERHUB_USER)")
    p.add_argument("--host", default=APP_HOST, help=f"address to listen on (default {APP_HOST})")
    p.add_argument("--port", type=int, default=APP_PORT, help=f"port (default {APP_PORT})")
    p.set_defaults(func=cmd_app)

    db = sub.add_parser("db", help="ledger schema").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply the ledger's migrations")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db_upgrade)

    ops = sub.add_parser("operators", help="operators and their roles").add_subparsers(
        dest="operators_command", required=True
    )
    p = ops.add_parser("add", help="register an operator")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["administrator", "editor", "viewer"])
    p.add_argument("--account", default=None, help="bind the operator to one account (default: every account)")
    p.set_defaults(func=cmd_operators_add)
    p = ops.add_parser("list", help="list operators: name, role, account (* every account), enabled")
    add_json(p)
    p.set_defaults(func=cmd_operators_list)
    for verb in ("disable", "enable"):
        p = ops.add_parser(verb, help=f"{verb} an operator (a disabled one is refused at the admin gate)")
        p.add_argument("name")
        p.set_defaults(func=cmd_operators_enable)

    p = sub.add_parser("serve", help="serve the Jobs surface over HTTP (token-authenticated)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.set_defaults(func=cmd_serve)

    tok = sub.add_parser("tokens", help="bearer tokens of the HTTP API").add_subparsers(
        dest="tokens_command", required=True
    )
    p = tok.add_parser("create", help="make a token for an operator; printed once, as the last line")
    p.add_argument("operator")
    p.add_argument("--expires-in", default=None, help="e.g. 30d, 12h (default: never)")
    p.set_defaults(func=cmd_tokens_create)
    p = tok.add_parser("list", help="list tokens (never the tokens themselves)")
    p.add_argument("--operator", default=None, help="only this operator's tokens")
    add_json(p)
    p.set_defaults(func=cmd_tokens_list)
    p = tok.add_parser("revoke", help="revoke a token by id, or every token of an operator")
    p.add_argument("id", nargs="?", type=int, default=None, help="the token id (`sgen-ops tokens list`)")
    p.add_argument("--operator", default=None, help="with --all: whose tokens")
    p.add_argument("--all", action="store_true", help="every token of --operator")
    p.set_defaults(func=cmd_tokens_revoke)

    p = sub.add_parser("runbook", help="execute a parameterised runbook notebook (papermill)")
    p.add_argument("name", help="runbook name, e.g. replay_dead_letters")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_runbook)
