"""The ``sgen-ops`` command line, in the style of ``rq`` and ``kubectl``: readable tables by default, ``--json``
for scripts, and every operation through the Jobs surface as the acting operator.

Exit status: 0 done; 1 an operation was refused (a ``SgenOpsError``: the reason on stderr, no traceback), or
the command needs the stack itself where only the API is reached (``base.NeedsLocalStack``);
2 the command line itself was wrong (argparse's usage errors); 69 the ledger or Redis (or the API) could not be
reached (``Unavailable``: one line on stderr, nothing recorded; try again later).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from ..errors import SgenOpsError, Unavailable
from . import archive, audit, info, jobs, pauses, schedules, stack
from .base import COMMAND, UsageError, close_opened, operator_from_env

__all__ = ["build_parser", "main", "operator_from_env"]

REFUSED = 1
USAGE = 2
# The ledger, Redis or the API could not be reached (sysexits.h's EX_UNAVAILABLE).
UNAVAILABLE = 69
# A shell's status for a command whose reader went away (128 + SIGPIPE), as `yes | head` gives.
PIPE_CLOSED = 141


def _version() -> str:
    try:
        return f"sgen-ops {version('sgen-ops')}"
    except PackageNotFoundError:
        return "sgen-ops (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgen-ops", description="Operate SGEN's background-job queue.",
        epilog="exit status: 0 done, 1 an operation was refused (reason on stderr), 2 a usage error, "
        "69 the ledger, Redis or the API could not be reached",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--log-level", default=None,
                        help="logging level (default INFO for sgen-ops' own lines, WARNING for the libraries')")
    sub = parser.add_subparsers(dest="command", required=True)
    stack.register(sub)
    jobs.register(sub)
    schedules.register(sub)
    info.register(sub)
    audit.register(sub)
    pauses.register(sub)
    archive.register(sub)
    return parser


def _quiet_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null, so that the interpreter's last flush
    does not fail again on exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _redis_unavailable(exc: BaseException) -> Unavailable:
    """A command that needed Redis found it gone: ``Unavailable`` naming the Redis of this stack's settings."""
    import redis

    from ..config import load_settings
    from ..transport.reach import unavailable

    try:
        settings = load_settings()
        url = settings.redis_url or (settings.home / "redis.url").read_text().strip()
    except (OSError, SgenOpsError):
        url = "redis://localhost:6379"
    return unavailable(exc, redis.Redis.from_url(url)) or Unavailable("redis", url, "it does not answer")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    asked, args.log_level = args.log_level, (args.log_level or "INFO").upper()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A library's own lines (httpx logs every request at INFO) only when --log-level asks for them.
    for chatty in ("alembic", "papermill", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING if asked is None else logging.NOTSET)
    COMMAND[1:] = [args.command, *filter(None, [getattr(args, f"{args.command}_command", None)])]
    try:
        status = int(args.func(args))
        sys.stdout.flush()
        return status
    except Unavailable as exc:
        print(f"sgen-ops: {exc}", file=sys.stderr)
        return UNAVAILABLE

    except SgenOpsError as exc:
        print(f"sgen-ops: {type(exc).__name__}: {exc}", file=sys.stderr)
        return REFUSED
    except UsageError as exc:
        print(f"sgen-ops {args.command}: error: {exc}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:
        _quiet_stdout()
        return PIPE_CLOSED
    except Exception as exc:  # after BrokenPipeError, itself a ConnectionError
        # Redis's errors are named here, not at import: `--version` and `--help` load neither redis nor the hub.
        from ..transport.reach import REDIS_DOWN

        if not isinstance(exc, REDIS_DOWN):
            raise
        print(f"sgen-ops: {_redis_unavailable(exc)}", file=sys.stderr)
        return UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    finally:
        close_opened()
