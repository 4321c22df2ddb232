"""schemathesis against the app's own OpenAPI document, in process (bounded examples per operation):
no 500, every response matches its declared schema and status, every error is problem+json.

``SGEN_OPS_SCHEMATHESIS_EXAMPLES`` sets the examples per operation (default 25)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode

import sgen_ops
from sgen_ops.api import create_app
from sgen_ops.surface.operations import Operations
from tests.integration.test_surface_fixtures import Jobs, add_operators

from .conftest import IN_PROCESS_URL, Api, InProcess

EXAMPLES = int(os.environ.get("SGEN_OPS_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]


@pytest.fixture
def fuzzed(hub: sgen_ops.Hub) -> Iterator[tuple[Api, Any]]:
    """The app over a stack with jobs in every state and a schedule, and its schema for schemathesis."""
    ops = add_operators(hub)
    Jobs(hub, ops["administrator"]).make_all()
    Jobs(hub, ops["administrator"]).make_all(["failed", "dead-letter"], account="acme")
    ops["administrator"].create_schedule("test.ok", every="1h", account="acme")
    app = create_app(hub, hub_users=None)
    api = Api(hub, IN_PROCESS_URL, InProcess(app))
    yield api, schemathesis.openapi.from_asgi("/openapi.json", app)
    api.close()


def problem_json(response: Any) -> None:
    """Every error is RFC 9457 problem+json with its own status."""
    if response.status_code < 400:
        return
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == response.status_code, body


def fuzz(api: Api, schema: Any, only: str | None = None) -> tuple[int, int, list[str]]:
    """Every operation (or the one whose path is ``only``), with schema-valid and schema-breaking examples:
    (operations, examples, failures)."""
    http = api.http("administrator")
    auth = {"Authorization": f"Bearer {api.token('administrator')}"}
    operations, examples, failures = 0, 0, []

    def send(case: Any) -> None:
        nonlocal examples
        kwargs = case.as_transport_kwargs(base_url=IN_PROCESS_URL)
        kwargs.pop("cookies", None)
        headers = {**(kwargs.pop("headers", None) or {}), **auth}
        if "data" in kwargs:
            kwargs["content"] = kwargs.pop("data")
        try:
            response = http.request(headers=headers, **kwargs)
        except httpx.InvalidURL:
            reject()  # a URL no client sends (a query string past httpx's 64 KiB): not a request to judge
        examples += 1
        case.validate_response(response, checks=CHECKS)
        problem_json(response)

    for found in schema.get_all_operations():
        operation = found.ok()
        if only is not None and operation.path != only:
            continue
        operations += 1
        for mode in GenerationMode:

            @settings(max_examples=EXAMPLES if mode is GenerationMode.POSITIVE else max(1, EXAMPLES // 2),
                      deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                send(case)

            try:
                run()
            except Unsatisfiable:
                pass  # an operation without parameters has no schema-breaking request to make
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation is tried; all reported
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return operations, examples, failures


def test_the_api_keeps_its_own_openapi_document(fuzzed: tuple[Api, Any]) -> None:
    operations, examples, failures = fuzz(*fuzzed)
    print(f"\nschemathesis: {operations} operations, {examples} examples, {len(failures)} failures")
    assert operations >= 30
    assert failures == [], "\n\n".join(failures)


def test_the_checks_find_a_server_error_and_an_answer_off_its_schema(
    fuzzed: tuple[Api, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness above can fail: a handler that raises, and one that answers a shape it did not declare."""
    api, schema = fuzzed

    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Operations, "verify_audit", broken)
    _, examples, failures = fuzz(api, schema, only="/api/audit/verify")
    assert examples and failures and "Server error" in failures[0]
    monkeypatch.setattr(Operations, "verify_audit", lambda self: {"ok": "perhaps"})
    _, _, failures = fuzz(api, schema, only="/api/audit/verify")
    assert failures
