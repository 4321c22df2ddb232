"""``sgen-ops serve``: the app under uvicorn, on the stack the environment configures (the embedded one by
default, or ``SGEN_OPS_DATABASE_URL`` and ``SGEN_OPS_REDIS_URL``)."""

from __future__ import annotations

import os
import shutil

from fastapi import FastAPI

from ..config import load_settings


def from_environment() -> FastAPI:
    """The app on ``sgen_ops.connect()``'s stack: uvicorn's factory, called once in each worker process."""
    from ..hub import connect
    from .app import create_app

    return create_app(connect())


def run(host: str = "127.0.0.1", port: int = 8765, workers: int = 1, log_level: str = "info") -> int:
    """Serve until interrupted. With several worker processes their metrics counters are summed through
    prometheus_client's multiprocess directory, kept under the home."""
    import uvicorn

    settings = load_settings()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = settings.home / "metrics" / str(port)
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    print(f"sgen-ops API on http://{host}:{port} (OpenAPI at /openapi.json; {workers} worker process(es))",
          flush=True)
    uvicorn.run("sgen_ops.api.server:from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level.lower(), access_log=False)
    return 0
