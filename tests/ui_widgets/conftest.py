"""Fixtures for the widget tests: one operator per role and a job maker, on real Redis and SQL.

Every view test runs twice: on the local surface, and through the remote client of the HTTP API (the
app in this process), the way a served notebook drives the views."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sgen_ops
from sgen_ops.api import create_app
from sgen_ops.surface.operations import Operations
from tests.api.conftest import IN_PROCESS_URL, Api, InProcess
from tests.integration.test_surface_fixtures import Jobs, add_operators


@pytest.fixture(params=["local", "remote"])
def ops(request: pytest.FixtureRequest, hub: sgen_ops.Hub) -> Iterator[dict[str, Any]]:
    """{role: Operations} for administrator, editor and viewer (local, or their remote clients)."""
    local = add_operators(hub)
    if request.param == "local":
        yield local
        return
    api = Api(hub, IN_PROCESS_URL, InProcess(create_app(hub, hub_users=None)))
    try:
        yield {role: api.remote(role) for role in local}
    finally:
        api.close()


@pytest.fixture
def admin(ops: dict[str, Operations]) -> Operations:
    return ops["administrator"]


@pytest.fixture
def jobs(hub: sgen_ops.Hub, admin: Operations) -> Jobs:
    return Jobs(hub, hub.as_operator("administrator"))
