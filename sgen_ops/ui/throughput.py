"""The throughput view: what the queue got done over a window, per task.

``ThroughputView(ops, charts="auto")`` has a window selector (15m, 1h, 24h, 7d; a week first) and shows, for the
window: counts per task over time (``ops.throughput_series``), failure rate per task and the
``ops.throughput`` table (succeeded, failed, dead-lettered, cancelled), and run-time p50/p95 per task
(``ops.run_time_percentiles``). Charts are plotly ``FigureWidget``s when plotly can make one (plotly 6+
needs the ``anywidget`` package for that), else pandas-styled HTML tables; ``charts="html"`` asks for
the tables. ``figures`` holds the plotly figures built for the window whenever plotly imports.

Widgets: ``window`` (ToggleButtons), ``refresh_button``, ``counts_chart``, ``failure_chart``,
``timing_chart`` (FigureWidget or HTML), ``throughput_table`` (HTML), ``summary`` (HTML), ``status``;
``charts_backend`` is "plotly" or "html"; ``loading`` is True while a window is read and drawn. Chart axes
fit their labels (no task name or axis title cut) and the legend lists every task under the chart.

CSS classes: ``sgen-throughput``, ``sgen-window``, ``sgen-refresh``, ``sgen-throughput-summary``,
``sgen-counts-chart``, ``sgen-failure-chart``, ``sgen-timing-chart``, ``sgen-throughput-table``,
``sgen-status``, ``sgen-loading`` (on the view while it reads).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from ..core.durations import as_timedelta
from ..core.times import utcnow
from . import render
from .base import View, button, close_tree

if TYPE_CHECKING:
    from ..surface.operations import Operations

WINDOWS = ("15m", "1h", "24h", "7d")
# The chart interval for each window: about 12 to 30 points.
INTERVALS = {"15m": "1m", "1h": "5m", "24h": "1h", "7d": "6h"}
COUNT_COLUMNS = ("succeeded", "failed", "dead_lettered", "cancelled")
# A chart over time names this many tasks, the busiest; the others are summed as OTHER.
TOP_TASKS = 6
OTHER = "other"
# The window shown first: a week, as much as the demo's history holds.
DEFAULT_WINDOW = "7d"
# Axes grow their margins to fit their labels, so task names and axis titles are never cut.
LAYOUT: dict[str, Any] = {"margin": {"t": 48, "b": 20, "l": 20, "r": 20}, "xaxis": {"automargin": True,
                                                                                     "tickangle": -20}}
# Fixed widths: a figure sized by a flex box it has not been laid out in yet draws wider than the box,
# which cuts its right side (and its legend); two half-width charts wrap under each other when narrow.
WIDE_PX, HALF_PX = 900, 440
BAR_COLOURS = {"succeeded": "#abefc6", "failed": "#fecdca", "dead_lettered": "#fda29b", "cancelled": "#eaecf0"}


@functools.cache
def plotly_widgets() -> bool:
    """True if plotly can make a ``FigureWidget`` here (plotly 6+ needs anywidget for it)."""
    try:
        import plotly.graph_objects as go

        go.FigureWidget().close()
    except Exception:  # noqa: BLE001  # any failure means: draw tables instead
        return False
    return True


def failure_rates(tp: pd.DataFrame) -> pd.DataFrame:
    """Per task: attempts that ended (succeeded + failed), failed, and the failure rate in percent."""
    out = tp[["task"]].copy()
    out["ended"] = tp["succeeded"] + tp["failed"]
    out["failed"] = tp["failed"]
    out["failure_rate"] = (100.0 * tp["failed"] / out["ended"].where(out["ended"] > 0)).fillna(0.0).round(1)
    return out


def events_over_time(series: pd.DataFrame, window: str, interval: str, *, top: int = TOP_TASKS,
                     now: datetime | None = None) -> pd.DataFrame:
    """Events per interval (rows: every interval of the window, zero where nothing happened, so a chart's line
    drops to zero instead of crossing the quiet hours) and task (columns: the ``top`` busiest, the rest summed
    as "other", so that the legend fits), from ``ops.throughput_series(window, interval)``."""
    step = as_timedelta(interval, "interval")
    end = pd.Timestamp(now or utcnow()).floor(step)
    start = (end - as_timedelta(window, "window")).floor(step)
    index = pd.date_range(start, end, freq=step, name="at")
    table = counts_by_task(series).reindex(index, fill_value=0)
    busiest = list(table.sum().sort_values(ascending=False, kind="stable").index[:top])
    folded = table[busiest].copy()
    rest = table.drop(columns=busiest)
    if len(rest.columns):
        folded[OTHER] = rest.sum(axis=1)
    folded.columns.name = "task"
    return folded.astype(int)


def counts_by_task(series: pd.DataFrame) -> pd.DataFrame:
    """Events per interval (rows) and task (columns), every state together."""
    if series.empty:
        return pd.DataFrame()
    return series.pivot_table(index="at", columns="task", values="count", aggfunc="sum", fill_value=0).sort_index()


# -- plotly figures -----------------------------------------------------------------------------
def counts_figure(series: pd.DataFrame, window: str) -> Any:
    import plotly.graph_objects as go

    table = counts_by_task(series)
    fig = go.Figure(layout={**LAYOUT, "title": f"Events per task ({window}, every {INTERVALS.get(window, window)})",
                            "barmode": "stack", "height": 440, "width": WIDE_PX,
                            "yaxis": {"title": "events", "automargin": True},
                            # The legend lists every task in full, on its own rows under the time axis's labels.
                            "legend": {"orientation": "h", "yanchor": "top", "y": -0.32, "x": 0}})
    for task in table.columns:
        fig.add_bar(x=list(table.index), y=[int(v) for v in table[task]], name=str(task))
    return fig


def failure_figure(tp: pd.DataFrame, window: str) -> Any:
    import plotly.graph_objects as go

    rates = failure_rates(tp)
    fig = go.Figure(layout={**LAYOUT, "title": f"Failure rate per task ({window})", "height": 340, "width": HALF_PX,
                            "yaxis": {"title": "% of attempts", "range": [0, 100], "automargin": True}})
    fig.add_bar(x=list(rates["task"]), y=list(rates["failure_rate"]), marker_color="#f04438", name="failure rate",
                customdata=list(zip(rates["failed"], rates["ended"], strict=True)),
                hovertemplate="%{x}: %{y}% (%{customdata[0]} of %{customdata[1]})<extra></extra>")
    return fig


def timing_figure(pct: pd.DataFrame, window: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(layout={**LAYOUT, "title": f"Run time per task ({window})", "barmode": "group", "height": 340,
                            "width": HALF_PX,
                            "yaxis": {"title": "seconds", "automargin": True},
                            # Above the bars, at the right: a legend beside a half-width chart gets cut.
                            "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1,
                                       "xanchor": "right"}})
    fig.add_bar(x=list(pct["task"]), y=[float(v) for v in pct["run_p50"]], name="p50", marker_color="#53b1fd")
    fig.add_bar(x=list(pct["task"]), y=[float(v) for v in pct["run_p95"]], name="p95", marker_color="#1849a9")
    return fig


# -- HTML tables --------------------------------------------------------------------------------
def styled(frame: pd.DataFrame, bars: dict[str, str], formats: dict[str, str] | None = None, *,
           shared: bool = False) -> str:
    """``frame`` as a pandas-styled table with in-cell bars (plain HTML if the Styler is unavailable).

    ``shared`` draws every bar column on one scale (counts of different tasks compare); otherwise each
    column has its own.
    """
    # A column of zeros has no bar to draw (and pandas would divide by zero).
    drawn = [c for c in bars if c in frame.columns and len(frame) and float(frame[c].max()) > 0]
    try:
        styler = frame.style.hide(axis="index")
        if shared and drawn:
            styler = styler.bar(subset=drawn, color=bars[drawn[0]], vmin=0, axis=None)
        else:
            for name in drawn:
                styler = styler.bar(subset=[name], color=bars[name], vmin=0)
        if formats:
            styler = styler.format({k: v for k, v in formats.items() if k in frame.columns})
        styler = styler.set_table_styles([
            {"selector": "", "props": f"border-collapse:collapse;{render.FONT}"},
            {"selector": "th",
             "props": "text-align:left;padding:4px 10px;border-bottom:2px solid #eaecf0;color:#475467"},
            {"selector": "td", "props": "padding:4px 10px;border-bottom:1px solid #f2f4f7;white-space:nowrap"},
        ])
        return str(styler.to_html())
    except ImportError:  # jinja2 missing: the Styler cannot render
        return str(frame.to_html(index=False))


def counts_table(series: pd.DataFrame) -> str:
    table = counts_by_task(series)
    if table.empty:
        return ""
    table = table.reset_index()
    table["at"] = table["at"].dt.strftime("%Y-%m-%d %H:%M UTC")
    return styled(table.rename(columns={"at": "interval from"}), {str(c): "#b2ddff" for c in table.columns[1:]},
                  shared=True)


def failure_table(tp: pd.DataFrame) -> str:
    frame = failure_rates(tp).rename(columns={"ended": "attempts ended", "failure_rate": "failure rate"})
    return styled(frame, {"failure rate": "#fda29b"}, {"failure rate": "{:.1f} %"})


def timing_table(pct: pd.DataFrame) -> str:
    frame = pct[["task", "attempts", "run_p50", "run_p95"]].rename(
        columns={"run_p50": "p50 run time", "run_p95": "p95 run time"})
    return styled(frame, {"p95 run time": "#b2ddff"}, {"p50 run time": "{:.3f} s", "p95 run time": "{:.3f} s"})


def totals_table(tp: pd.DataFrame) -> str:
    frame = tp.rename(columns={"dead_lettered": "dead-lettered"})
    return styled(frame, {c.replace("_", "-"): colour for c, colour in BAR_COLOURS.items()})


class ThroughputView(View):
    """Throughput charts and table over a chosen window; see the module docstring."""

    css_class = "sgen-throughput"

    def __init__(self, ops: Operations, charts: str = "auto") -> None:
        super().__init__(ops)
        if charts not in ("auto", "plotly", "html"):
            raise ValueError(f"charts={charts!r}; use 'auto', 'plotly' or 'html'")
        self.charts_backend = "plotly" if charts == "plotly" or (charts == "auto" and plotly_widgets()) else "html"
        self.figures: dict[str, Any] = {}
        self.data: dict[str, pd.DataFrame] = {}
        self.loading = False
        self.window = widgets.ToggleButtons(options=WINDOWS, value=DEFAULT_WINDOW, description="Window",
                                            tooltips=[f"the last {w}" for w in WINDOWS])
        self.window.add_class("sgen-window")
        self.window.observe(self.guard(lambda _c: self.refresh()), names="value")
        self.refresh_button = button("Refresh", "sgen-refresh", icon="refresh", tooltip="Count again")
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))
        self.summary = widgets.HTML()
        self.summary.add_class("sgen-throughput-summary")
        self.throughput_table = widgets.HTML()
        self.throughput_table.add_class("sgen-throughput-table")
        self.counts_chart: Any = widgets.HTML()
        self.failure_chart: Any = widgets.HTML()
        self.timing_chart: Any = widgets.HTML()
        self.counts_box = widgets.VBox([self.counts_chart])
        self.failure_box = widgets.VBox([self.failure_chart])
        self.timing_box = widgets.VBox([self.timing_chart])
        half = f"0 0 {HALF_PX + 10}px"
        self.children = (
            widgets.HTML(render.heading("Throughput", 2)),
            widgets.HBox([self.window, self.refresh_button], layout=widgets.Layout(align_items="center")),
            self.status,
            self.summary,
            self.counts_box,
            widgets.HBox([
                widgets.VBox([self.failure_box], layout=widgets.Layout(flex=half)),
                widgets.VBox([self.timing_box], layout=widgets.Layout(flex=half)),
            ], layout=widgets.Layout(flex_flow="row wrap")),
            self.throughput_table,  # full width under the charts: its columns are never cut
        )
        self.attempt(self.refresh)

    def refresh(self) -> None:
        """Count the chosen window again and redraw. While it does, the view is marked loading (the
        ``sgen-loading`` class, the summary saying so, the window buttons off), and the summary, the table and
        the charts change together at the end, so they never show two different windows."""
        window = self.window.value
        self.loading = True
        self.add_class("sgen-loading")
        self.window.disabled = True
        self.summary.value = render.muted(f"Loading the last {window}…")
        try:
            ok, data = self.attempt(self._read, window)
            if not ok or data is None:
                return
            self.data = data
            tp, series, pct = data["throughput"], data["series"], data["percentiles"]
            self._draw_charts(window, tp, series, pct)
            self.throughput_table.value = render.heading(f"Per task ({window})", 4) + (
                totals_table(tp) if len(tp) else render.muted(f"No jobs finished in the last {window}."))
            totals = {c: int(tp[c].sum()) if len(tp) else 0 for c in COUNT_COLUMNS}
            self.summary.value = (
                f"<div style='{render.FONT};font-size:14px'>Last {window}: "
                + " · ".join(f"<b>{totals[c]:,}</b> {c.replace('_', '-')}" for c in COUNT_COLUMNS)
                + "</div>"
            )
        finally:
            self.loading = False
            self.remove_class("sgen-loading")
            self.window.disabled = False

    def _read(self, window: str) -> dict[str, pd.DataFrame]:
        return {
            "throughput": self.ops.throughput(window),
            "series": self.ops.throughput_series(window, INTERVALS[window]),
            "percentiles": self.ops.run_time_percentiles(window),
        }

    def _draw_charts(self, window: str, tp: pd.DataFrame, series: pd.DataFrame, pct: pd.DataFrame) -> None:
        try:
            self.figures = {"counts": counts_figure(series, window), "failure": failure_figure(tp, window),
                            "timing": timing_figure(pct, window)}
        except ImportError:
            self.figures = {}
        empty = render.muted(f"No events in the last {window}.")
        if self.charts_backend == "plotly" and self.figures:
            import plotly.graph_objects as go

            charts = {name: go.FigureWidget(fig) for name, fig in self.figures.items()}
        else:
            charts = {
                "counts": widgets.HTML(render.heading(f"Events per task ({window}, every {INTERVALS[window]})", 4)
                                       + (counts_table(series) or empty)),
                "failure": widgets.HTML(render.heading(f"Failure rate per task ({window})", 4)
                                        + (failure_table(tp) if len(tp) else empty)),
                "timing": widgets.HTML(render.heading(f"Run time per task ({window})", 4)
                                       + (timing_table(pct) if len(pct) else empty)),
            }
        for name, css in (("counts", "sgen-counts-chart"), ("failure", "sgen-failure-chart"),
                          ("timing", "sgen-timing-chart")):
            charts[name].add_class(css)
        for old in (self.counts_chart, self.failure_chart, self.timing_chart):
            close_tree(old)
        self.counts_chart, self.failure_chart, self.timing_chart = charts["counts"], charts["failure"], charts["timing"]
        self.counts_box.children = (self.counts_chart,)
        self.failure_box.children = (self.failure_chart,)
        self.timing_box.children = (self.timing_chart,)
