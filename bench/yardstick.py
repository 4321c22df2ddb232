"""The bare yardstick of bench/http.py: the least an HTTP endpoint over the ledger can do. A Starlette app
that checks the bearer token with one indexed query joining its operator, then answers the job's row, or
the first 50 rows of the account, newest first: no roles, no masking, no Activity Log, no problem+json.
``uvicorn bench.yardstick:app`` with ``SGEN_BENCH_YARDSTICK_URL`` naming the ledger."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

engine = create_engine(os.environ.get("SGEN_BENCH_YARDSTICK_URL", "sqlite://"), pool_size=8)
COLUMNS = ("id, task, payload, state, attempts, max_attempts, scheduled_for, priority, account, created_at, "
           "updated_at, last_error_code, last_error_detail, worker")
TOKEN = text("SELECT o.id, o.account, o.enabled, t.expires_at, t.revoked_at FROM api_tokens t "
             "JOIN operators o ON o.id = t.operator_id WHERE t.token_hash = :digest")
ONE = text(f"SELECT {COLUMNS} FROM jobs WHERE id = :id")
FIRST = text(f"SELECT {COLUMNS} FROM jobs WHERE account = :account ORDER BY created_at DESC, id DESC LIMIT 50")


def _row(row: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row._mapping.items()}


def _operator(conn: Any, request: Request) -> Any:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    found = conn.execute(TOKEN, {"digest": hashlib.sha256(token.encode()).hexdigest()}).first()
    if found is None or not found.enabled or found.revoked_at is not None:
        return None
    return found if found.expires_at is None or found.expires_at > datetime.now() else None


def job(request: Request) -> JSONResponse:
    with engine.connect() as conn:
        if _operator(conn, request) is None:
            return JSONResponse({"detail": "unauthorized"}, 401)
        row = conn.execute(ONE, {"id": int(request.path_params["job_id"])}).first()
    return JSONResponse(_row(row)) if row else JSONResponse({"detail": "not found"}, 404)


def first_page(request: Request) -> JSONResponse:
    with engine.connect() as conn:
        if _operator(conn, request) is None:
            return JSONResponse({"detail": "unauthorized"}, 401)
        rows = conn.execute(FIRST, {"account": request.path_params["account"]}).all()
    return JSONResponse({"items": [_row(r) for r in rows]})


app = Starlette(routes=[Route("/api/jobs/{job_id:int}", job), Route("/api/accounts/{account}/jobs", first_page)])
