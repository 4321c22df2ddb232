"""Fixtures for the widget tests: one operator per role and a job maker, on real Redis and SQL."""

from __future__ import annotations

import pytest

import sgen_ops
from sgen_ops.surface import Operations
from tests.integration.test_surface_fixtures import Jobs, add_operators


@pytest.fixture
def ops(hub: sgen_ops.Hub) -> dict[str, Operations]:
    """{role: Operations} for administrator, editor and viewer."""
    return add_operators(hub)


@pytest.fixture
def admin(ops: dict[str, Operations]) -> Operations:
    return ops["administrator"]


@pytest.fixture
def jobs(hub: sgen_ops.Hub, admin: Operations) -> Jobs:
    return Jobs(hub, admin)

