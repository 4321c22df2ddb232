"""``sgen-ops archive [--dry-run]``: move terminal jobs older than ``archive_after_days`` out of the live ledger
into the Parquet archive (the scheduler does it hourly by itself); the run is recorded and shown by
``sgen-ops info``."""

from __future__ import annotations

import argparse
from typing import Any

from .base import add_json, hub, print_json


def cmd_archive(args: argparse.Namespace) -> int:
    from ..ledger import archive

    h = hub()
    try:
        result = archive.run(h.ledger, h.settings, dry_run=args.dry_run)
    finally:
        h.close()
    if args.json:
        print_json(result)
        return 0
    if result.cutoff is None:
        print("archiving is off (archive_after_days = 0)")
    elif args.dry_run:
        print(f"DRY RUN: would archive {result.jobs} job(s) last changed before {result.cutoff:%Y-%m-%d %H:%M} UTC "
              f"into {h.settings.effective_archive_url}")
    elif result.run_id is None and not result.jobs:
        print(f"nothing to archive: no terminal job last changed before {result.cutoff:%Y-%m-%d %H:%M} UTC")
    else:
        print(f"archived {result.jobs} job(s) last changed before {result.cutoff:%Y-%m-%d %H:%M} UTC into "
              f"{result.files} file(s) under {h.settings.effective_archive_url} (run {result.run_id})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("archive", help="move old terminal jobs out of the live ledger into the Parquet archive")
    p.add_argument("--dry-run", action="store_true", help="only count what would move")
    add_json(p)
    p.set_defaults(func=cmd_archive)
