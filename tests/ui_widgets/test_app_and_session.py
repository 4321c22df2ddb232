"""The tabbed app and the operator session a notebook starts from."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

import sgen_ops
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import QueueView, SchedulesView, ThroughputView, TriageView, app, operator_session
from tests.conftest import Stack


def test_app_has_the_four_views_built_on_first_use(admin: Operations) -> None:
    tab = app(admin)
    assert isinstance(tab, widgets.Tab)
    assert tab.titles == ("Queue", "Dead letter", "Schedules", "Throughput", "Workers", "Activity Log")
    assert isinstance(tab.children[0], QueueView)
    assert "sgen-app" in tab._dom_classes
    assert not isinstance(tab.children[1], TriageView)  # not read until opened
    for index, kind in ((1, TriageView), (2, SchedulesView), (3, ThroughputView)):
        tab.selected_index = index
        assert isinstance(tab.children[index], kind)
        assert tab.children[index].status_kind == ""


def test_returning_to_a_tab_refreshes_it(hub: sgen_ops.Hub, admin: Operations) -> None:
    tab = app(admin)
    queue = tab.children[0]
    assert queue.rows.options == ()
    tab.selected_index = 3
    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    tab.selected_index = 0
    assert queue.rows.options == (job_id,)


def test_operator_session_from_the_environment(hub: sgen_ops.Hub, ops: dict[str, Operations],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SGEN_OPS_OPERATOR", raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", "editor")
    assert operator_session(hub).name == "editor"
    monkeypatch.setenv("SGEN_OPS_OPERATOR", "viewer")  # the explicit setting wins
    assert operator_session(hub).role == "viewer"


def test_operator_session_without_an_operator_says_how_to_register(
    hub: sgen_ops.Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SGEN_OPS_OPERATOR", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    with pytest.raises(sgen_ops.AccessDenied, match=r"SGEN_OPS_OPERATOR.*sgen-ops operators add"):
        operator_session(hub)
    monkeypatch.setenv("SGEN_OPS_OPERATOR", "nobody")
    with pytest.raises(sgen_ops.AccessDenied, match="'nobody' is not registered"):
        operator_session(hub)


def test_operator_session_connects_when_no_hub_is_given(stack: Stack, hub: sgen_ops.Hub,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_operator("ada", "administrator")
    for key, value in stack.settings().items():
        monkeypatch.setenv(f"SGEN_OPS_{key.upper()}", str(value))
    monkeypatch.setenv("SGEN_OPS_OPERATOR", "ada")
    ops = operator_session()
    try:
        assert (ops.name, ops.role) == ("ada", "administrator")
        assert ops.hub is not hub
    finally:
        ops.hub.close()
