"""Procrastinate's side of ``bench.workers``: its app and no-op task, run only by the interpreter of a venv of
its own (``--procrastinate-venv``, with ``pip install procrastinate psycopg[binary]``), never by the project's.

``python -m bench.procrastinate_app setup N``: apply Procrastinate's schema to the empty schema that
BENCH_PROCRASTINATE_DSN's search_path names, and defer N no-op jobs; ``... count``: print how many succeeded.
The workers are ``procrastinate --app bench.procrastinate_app.app worker --one-shot``.
"""

from __future__ import annotations

import os
import sys

from procrastinate import App, PsycopgConnector, SyncPsycopgConnector  # type: ignore[import-not-found,unused-ignore]

DSN = os.environ["BENCH_PROCRASTINATE_DSN"]
app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="noop")  # type: ignore[untyped-decorator,unused-ignore]
def noop(i: int) -> None:
    """Nothing."""


def main() -> None:
    command = sys.argv[1]
    with app.replace_connector(SyncPsycopgConnector(conninfo=DSN)) as sync_app, sync_app.open():
        if command == "setup":
            sync_app.schema_manager.apply_schema()
            n = int(sys.argv[2])
            for start in range(0, n, 1000):
                sync_app.tasks["noop"].batch_defer(*({"i": i} for i in range(start, min(n, start + 1000))))
        else:
            rows = sync_app.connector.execute_query_all(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
            )
            print(rows[0]["n"])


if __name__ == "__main__":
    main()
