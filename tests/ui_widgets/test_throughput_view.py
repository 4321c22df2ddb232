"""The throughput view: charts and table for a window with data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ipywidgets as widgets
import pandas as pd
import pytest

import sgen_ops
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import ThroughputView
from sgen_ops.ui.throughput import OTHER, TOP_TASKS, events_over_time, plotly_widgets

from .helpers import text


@pytest.fixture
def finished(hub: sgen_ops.Hub) -> None:
    """3 test.ok succeeded, 1 test.boom dead-lettered after 2 failures, 1 test.flaky succeeded on its 2nd try."""
    hub.enqueue_many("test.ok", [{"n": i} for i in range(3)])
    hub.enqueue("test.boom")
    hub.enqueue("test.flaky", {"succeed_on": 2})
    hub.work()


def test_charts_as_tables_for_a_window_with_data(admin: Operations, finished: None) -> None:
    view = ThroughputView(admin, charts="html")
    view.window.value = "1h"
    assert view.status_kind == ""
    assert view.charts_backend == "html"
    table = text(view.throughput_table.value)
    assert "test.ok 3 0 0 0" in table and "test.boom 0 2 1 0" in table and "test.flaky 1 1 0 0" in table
    assert text(view.summary.value) == "Last 1h: 4 succeeded · 3 failed · 1 dead-lettered · 0 cancelled"
    counts = text(view.counts_chart.value)
    assert counts.startswith("Events per task (1h, every 5m)")
    assert all(task in counts for task in ("test.ok", "test.boom", "test.flaky"))
    failure = text(view.failure_chart.value)
    assert "test.boom 2 2 100.0 %" in failure and "test.ok 3 0 0.0 %" in failure and "test.flaky 2 1 50.0 %" in failure
    timing = text(view.timing_chart.value)
    assert "test.ok 3" in timing and " s" in timing
    assert "sgen-counts-chart" in view.counts_chart._dom_classes


def test_plotly_figures_hold_the_window(admin: Operations, finished: None) -> None:
    pytest.importorskip("plotly")
    view = ThroughputView(admin, charts="html")
    for window in ("15m", "24h", "7d"):
        view.window.value = window
        counts = view.figures["counts"]
        assert {trace.name for trace in counts.data} == {"test.ok", "test.boom", "test.flaky"}
        assert sum(sum(trace.y) for trace in counts.data) == 4 + 3 + 1  # every counted event
        failure = view.figures["failure"].data[0]
        assert dict(zip(failure.x, failure.y, strict=True)) == {"test.boom": 100.0, "test.flaky": 50.0, "test.ok": 0.0}
        timing = view.figures["timing"]
        assert [t.name for t in timing.data] == ["p50", "p95"]
        assert set(timing.data[0].x) == {"test.ok", "test.boom", "test.flaky"}


def test_auto_uses_figure_widgets_when_plotly_can(admin: Operations, finished: None) -> None:
    view = ThroughputView(admin)
    if plotly_widgets():
        assert view.charts_backend == "plotly"
        assert len(view.counts_chart.data) == 3
    else:
        assert view.charts_backend == "html"
        assert isinstance(view.counts_chart, widgets.HTML)
        assert "test.ok" in text(view.counts_chart.value)


def test_an_empty_window_says_so(admin: Operations) -> None:
    view = ThroughputView(admin, charts="html")
    assert "No jobs finished in the last 7d." in text(view.throughput_table.value)  # a week first
    assert "No events in the last 7d." in text(view.counts_chart.value)


def test_a_failed_read_is_shown(admin: Operations, finished: None) -> None:
    view = ThroughputView(admin, charts="html")

    def refuse(*args: object, **kwargs: object) -> None:
        raise sgen_ops.AccessDenied("operator 'administrator' (administrator) may not throughput; allowed for: no role")

    admin.throughput = refuse  # type: ignore[method-assign, assignment]
    view.refresh_button.click()
    assert view.status_kind == "error" and "may not throughput" in view.status_text
    assert "test.ok" in text(view.throughput_table.value)  # the last good numbers stay


def test_a_window_loads_visibly_and_summary_and_charts_change_together(admin: Operations, finished: None) -> None:
    """While the new window is read the view says it is loading (the summary of the old window is gone);
    afterwards the summary, table and charts all speak of the new window."""
    view = ThroughputView(admin, charts="html")
    seen: list[tuple[bool, bool, str, bool]] = []
    real = admin.throughput

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((view.loading, "sgen-loading" in view._dom_classes, text(view.summary.value),
                     view.window.disabled))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    admin.throughput = spy  # type: ignore[method-assign, assignment]
    view.window.value = "15m"
    assert seen == [(True, True, "Loading the last 15m…", True)]
    assert not view.loading and "sgen-loading" not in view._dom_classes and not view.window.disabled
    assert text(view.summary.value).startswith("Last 15m:")
    assert text(view.counts_chart.value).startswith("Events per task (15m")


def test_chart_axes_fit_their_labels_and_the_legend_sits_below(admin: Operations, finished: None) -> None:
    pytest.importorskip("plotly")
    view = ThroughputView(admin, charts="html")
    for name, fig in view.figures.items():
        assert fig.layout.xaxis.automargin is True and fig.layout.yaxis.automargin is True, name
    legend = view.figures["counts"].layout.legend
    assert legend.orientation == "h" and legend.y < 0  # under the axis, not over the bars or cut at the top
    timing = view.figures["timing"].layout.legend
    assert timing.orientation == "h" and timing.y >= 1  # above the bars, not beside them where it is cut
    # Task names in full on the axis.
    assert set(view.figures["failure"].data[0].x) == {"test.ok", "test.boom", "test.flaky"}


def test_events_over_time_fill_quiet_intervals_with_zeros_and_fold_small_tasks() -> None:
    """The notebook's hourly chart: every hour of the window, zero where nothing happened; the busiest tasks
    by name, the rest summed as "other"."""
    now = datetime(2026, 1, 10, 12, 30, tzinfo=UTC)
    hour = pd.Timestamp("2026-01-10 08:00", tz="UTC")
    rows = [(hour, "big", "succeeded", 50), (hour + timedelta(hours=3), "big", "failed", 5)]
    rows += [(hour, f"small{i}", "succeeded", i + 1) for i in range(TOP_TASKS + 1)]
    series = pd.DataFrame(rows, columns=["at", "task", "state", "count"])
    table = events_over_time(series, "24h", "1h", now=now)
    assert len(table) == 25 and table.index[-1] == pd.Timestamp("2026-01-10 12:00", tz="UTC")
    assert table.loc[hour + timedelta(hours=1)].sum() == 0  # a quiet hour is a zero, not a gap
    assert list(table.columns)[:2] == ["big", f"small{TOP_TASKS}"] and list(table.columns)[-1] == OTHER
    assert len(table.columns) == TOP_TASKS + 1
    assert int(table.to_numpy().sum()) == int(series["count"].sum())
    assert table.loc[hour + timedelta(hours=3), "big"] == 5
