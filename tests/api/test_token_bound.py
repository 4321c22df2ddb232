"""The gate remembers a checked token for ``TOKEN_CHECK_SECONDS`` with the access epoch (docs/totals.md, "The
HTTP path"): a request then reads one Redis key and no table before its own work. What that allows and what
it never does: a token revoked, or an operator disabled, through sgen-ops (``Hub.revoke_token``,
``revoke_tokens``, ``set_operator_enabled``, the CLI) is refused on the very next request, however long the
bound; a revocation written around sgen-ops (the ledger's table by hand) once the bound has passed; an
expired token on its next request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import sgen_ops
from sgen_ops.api import create_app
from sgen_ops.api.auth import TOKEN_CHECK_SECONDS
from sgen_ops.ledger import tokens
from tests.integration.test_surface_fixtures import add_operators

from .conftest import IN_PROCESS_URL, Api, InProcess


@pytest.fixture
def served(hub: sgen_ops.Hub) -> Iterator[tuple[Api, object]]:
    app = create_app(hub, hub_users=None)
    api = Api(hub, IN_PROCESS_URL, InProcess(app))
    yield api, app.state.gate
    api.close()


def _status(api: Api, token: str) -> tuple[int, str]:
    answer = api.http(token=token).get("/api/me")
    return answer.status_code, answer.json().get("detail", "")


def test_a_revocation_through_sgen_ops_is_refused_on_the_next_request(
        hub: sgen_ops.Hub, served: tuple[Api, object]) -> None:
    api, gate = served
    add_operators(hub)
    gate.check_seconds = 3600.0  # type: ignore[attr-defined]
    one, other, third = (hub.create_token("editor"), hub.create_token("editor"), hub.create_token("viewer"))
    for token in (one, other, third):
        assert _status(api, token)[0] == 200  # each checked, and remembered for the hour
    first = min(t.id for t in tokens.list_tokens(hub.ledger, "editor"))
    hub.revoke_token(first)
    assert _status(api, one) == (401, "the bearer token was revoked")
    assert _status(api, other)[0] == 200  # the other tokens stay good: checked again, not refused
    assert hub.revoke_tokens("editor") == 1
    assert _status(api, other) == (401, "the bearer token was revoked")
    hub.set_operator_enabled("viewer", False)
    status, detail = _status(api, third)
    assert status == 401 and "not registered or is disabled" in detail
    hub.set_operator_enabled("viewer", True)
    assert _status(api, third)[0] == 200


def test_a_revocation_written_around_sgen_ops_is_refused_once_the_bound_has_passed(
        hub: sgen_ops.Hub, served: tuple[Api, object]) -> None:
    api, gate = served
    add_operators(hub)
    token = hub.create_token("editor")
    assert _status(api, token)[0] == 200
    [info] = tokens.list_tokens(hub.ledger)
    tokens.revoke(hub.ledger, info.id)
    gate.check_seconds = 3600.0  # type: ignore[attr-defined]
    assert _status(api, token)[0] == 200  # remembered: within the bound, the revocation is not read yet
    gate.check_seconds = TOKEN_CHECK_SECONDS  # type: ignore[attr-defined]
    time.sleep(TOKEN_CHECK_SECONDS)
    assert _status(api, token) == (401, "the bearer token was revoked")
    assert _status(api, token)[0] == 401  # and stays refused


def test_a_disabled_operator_is_refused_once_the_bound_has_passed(hub: sgen_ops.Hub,
                                                                   served: tuple[Api, object]) -> None:
    api, _ = served
    add_operators(hub)
    token = hub.create_token("viewer")
    assert _status(api, token)[0] == 200
    hub.set_operator_enabled("viewer", False)
    time.sleep(TOKEN_CHECK_SECONDS)
    status, detail = _status(api, token)
    assert status == 401 and "not registered or is disabled" in detail


def test_an_expired_token_is_refused_on_its_next_request_whatever_the_bound(
        hub: sgen_ops.Hub, served: tuple[Api, object]) -> None:
    api, gate = served
    add_operators(hub)
    gate.check_seconds = 3600.0  # type: ignore[attr-defined]
    token = hub.create_token("editor", expires_in="2s")
    assert _status(api, token)[0] == 200
    time.sleep(2.2)
    assert _status(api, token) == (401, "the bearer token has expired")
