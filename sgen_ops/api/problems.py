"""Errors as RFC 9457 problem details (``application/problem+json``): ``type``, ``title``, ``status``,
``detail`` (the surface's own words), and ``error``, the sgen-ops error class, which the remote client
raises again.

401 missing, unknown, expired or revoked token (and the admin gate); 403 the role lacks the capability;
404 missing, or another account's (the same body); 409 the state machine refuses; 422 bad input; 503 the ledger
(the database) or Redis cannot be reached, with ``Retry-After`` (the service named in words, no driver text).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AccessDenied, InvalidTransition, NotFound, SgenOpsError, Unavailable, ValidationError
from ..ledger.store.db import unavailable as ledger_unavailable
from ..transport.reach import unavailable as redis_unavailable

log = logging.getLogger("sgen_ops.api")

MEDIA_TYPE = "application/problem+json"
_TYPE = "urn:sgen-ops:problem:"


class Unauthenticated(SgenOpsError):
    """No token, or one this server does not accept, or its operator is not let in by the admin gate."""


# Error class -> (status, type suffix, title). Subclasses map as their first listed base does.
KINDS: dict[type[SgenOpsError], tuple[int, str, str]] = {
    Unauthenticated: (401, "unauthenticated", "Unauthorized"),
    AccessDenied: (403, "access-denied", "Forbidden"),
    NotFound: (404, "not-found", "Not Found"),
    InvalidTransition: (409, "invalid-transition", "Conflict"),
    ValidationError: (422, "validation-error", "Unprocessable Content"),
    Unavailable: (503, "unavailable", "Service Unavailable"),
}
# Status -> the error class the remote client raises for it.
ERRORS: dict[int, type[SgenOpsError]] = {status: cls for cls, (status, _, _) in KINDS.items()}


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str
    title: str
    status: int
    detail: str
    error: str | None = None


def kind_of(exc: SgenOpsError) -> tuple[int, str, str, str]:
    """(status, type, title, error class name) of an sgen-ops error."""
    for cls in type(exc).__mro__:
        if cls in KINDS:
            status, suffix, title = KINDS[cls]
            return status, _TYPE + suffix, title, cls.__name__
    return 422, _TYPE + "validation-error", "Unprocessable Content", "ValidationError"


def response(status: int, type_: str, title: str, detail: str, error: str | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(type=type_, title=title, status=status, detail=detail, error=error).model_dump()
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def of_error(exc: SgenOpsError) -> JSONResponse:
    status, type_, title, error = kind_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="sgen-ops"'} if status == 401 else None
    if isinstance(exc, Unavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return response(status, type_, title, str(exc), error, headers)


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] if isinstance(loc, list | tuple) else [str(loc)]
    return ".".join(parts) or "body"


def describe_invalid(exc: RequestValidationError) -> str:
    """The request's faults in one line: 'query.per_page: Input should be less than or equal to 10000'."""
    faults = []
    for err in exc.errors():
        where = _field(err.get("loc", ()))
        faults.append(f"{where}: {err.get('msg', 'is not valid')}")
    return "; ".join(faults) or "the request is not valid"


async def on_sgen_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SgenOpsError)
    return of_error(exc)


async def on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, type_, title = KINDS[ValidationError]
    return response(status, _TYPE + type_, title, describe_invalid(exc), "ValidationError")


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # The framework's "error parsing the body" (JSON that does not parse): bad input, as any other.
        status, suffix, title = KINDS[ValidationError]
        return response(status, _TYPE + suffix, title, f"the request body is not valid JSON ({exc.detail})",
                        "ValidationError")
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
    return response(exc.status_code, "about:blank", title, str(exc.detail), None, dict(exc.headers or {}))


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    hub = getattr(request.app.state, "hub", None)
    if hub is not None:
        # An outage met outside the ledger's and the transport's own translation: the same 503.
        gone = ledger_unavailable(exc, hub.ledger.engine.url) or redis_unavailable(exc, hub.redis)
        if gone is not None:
            log.warning("%s %s: %s", request.method, request.url.path, gone)
            return of_error(gone)
    log.error("unexpected error serving %s %s", request.method, request.url.path, exc_info=exc)
    return response(500, "about:blank", "Internal Server Error", "the server failed to answer this request")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of these error statuses, as problem+json."""
    titles = {401: "missing, unknown, expired or revoked token", 403: "the role lacks the capability",
              404: "not found (also another account's)", 409: "the state machine refuses",
              422: "bad input", 503: "the ledger or Redis cannot be reached (Retry-After)"}
    schema = {"$ref": "#/components/schemas/Problem"}
    return {status: {"description": titles[status], "content": {MEDIA_TYPE: {"schema": schema}}} for status in statuses}
