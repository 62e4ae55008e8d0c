"""SPC view: the control charts the monitor runs per charted signal (the profile's own,
which raises the SPC alerts, and those run beside it: EWMA, I-MR, X̄-R, X̄-S, CUSUM),
over time or build layer, with their rule violations, and where the baseline came from.

The monitor keeps each chart's statistic as it streams (:meth:`LiveMonitor.spc_series`:
the newest points of every batch with their time and build layer) and its violations
(:meth:`LiveMonitor.spc_violations`). Every tick (while the SPC tab is shown) this view
reads the chosen chart and signal over the chosen window, thins it to at most
``max_points`` and replaces the plot's data; centre line and control limits come from
:meth:`LiveMonitor.spc_state` of that chart. A new build or a replay starts a new
series there, so the chart starts over with its new baseline.

>>> chart_frame(np.array([[1.0, 3.0, 0.0], [2.0, 3.0, 1.0], [4.0, 4.0, 2.0]]),
...             np.array([0, 500_000, 1_000_000]))["layer"].tolist()
[3.0, 3.5, 4.0]
"""

from __future__ import annotations

import time
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from am_qadf.machine_view import ChartState, MonitorSnapshot

from .markup import esc
from .theme import SEVERITY_COLORS
from .view_base import MonitorView, control_row, html_pane

__all__ = ["CHART_LABELS", "SPCView", "baseline_html", "chart_frame"]

#: Names operators know the chart kinds by.
CHART_LABELS = {
    "ewma": "EWMA",
    "imr": "I-MR",
    "xbar_r": "X̄-R",
    "xbar_s": "X̄-S",
    "cusum": "CUSUM",
}

_STATISTIC = {
    "ewma": "EWMA of {}",
    "imr": "{}",
    "xbar_r": "subgroup mean of {}",
    "xbar_s": "subgroup mean of {}",
    "cusum": "CUSUM of {}",
}

#: Window choices: label -> seconds (None: everything the monitor kept).
WINDOWS = {"last 2 min": 120.0, "last 10 min": 600.0, "last 30 min": 1800.0, "all kept": None}


def baseline_html(b: dict[str, Any] | None, message: str = "") -> str:
    """Where the SPC baseline comes from (``LiveMonitor.baseline_info()``), escaped.

    >>> out = baseline_html({"origin": "stored", "machine_id": "m2", "material": "316L",
    ...                      "build_id": "job-1", "learned_at": "2026-01-01T00:00:00+00:00"})
    >>> "stored for m2 / 316L, learned from build job-1" in out
    True
    """
    if not b:
        return ""
    origin = str(b.get("origin", ""))
    who = f"{b.get('machine_id', '')} / {b.get('material') or 'no material'}"
    where = f"from build {b.get('build_id') or '–'} at {b.get('learned_at') or '–'}"
    text = {
        "stored": f"baseline: stored for {who}, learned {where}",
        "learned": f"baseline: learned from this build and saved for {who} ({where})"
        if b.get("saved")
        else "baseline: learned from this build (saving it failed)",
        "learning": f"baseline: learning from this build (none stored for {who})",
        "relearning": f"baseline: re-learning from the coming points for {who}",
        "none": "no SPC: the machine profile charts no signal",
    }.get(origin, f"baseline: {origin}")
    if b.get("learned_by"):
        text += f", by {b['learned_by']}"
    extra = f' <span class="amq-baseline-msg">{esc(message)}</span>' if message else ""
    return f'<div class="amq-baseline-src" data-origin="{esc(origin)}">{esc(text)}{extra}</div>'


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.Series(dtype="datetime64[ns]"),
            "layer": pd.Series(dtype="float64"),
            "stat": pd.Series(dtype="float64"),
        }
    )


def chart_frame(rows: np.ndarray, epoch_us: np.ndarray) -> pd.DataFrame:
    """Plot rows from :meth:`LiveMonitor.spc_series`: ``time`` (UTC), ``layer`` (the
    build layer, plus the point's fraction of its layer so a layer's points spread
    over it instead of stacking on one x) and ``stat``."""
    if epoch_us.size == 0:
        return _empty()
    layer = rows[:, 1]
    starts = np.flatnonzero(np.concatenate(([True], layer[1:] != layer[:-1])))
    lengths = np.diff(np.append(starts, layer.size))
    pos = np.arange(layer.size) - np.repeat(starts, lengths)
    frac = pos / np.repeat(lengths, lengths)
    return pd.DataFrame(
        {
            "time": epoch_us.astype("datetime64[us]").astype("datetime64[ns]"),
            "layer": layer + frac,
            "stat": rows[:, 0],
        }
    )


def _thin(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """At most ``n`` rows, evenly spaced, the newest always kept."""
    if len(frame) <= n:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, n).round().astype(np.int64))
    return frame.iloc[keep]


class SPCView(MonitorView):
    """Control chart (statistic, centre, UCL/LCL, rule violations) of a chosen chart
    kind and signal, over time or build layer."""

    signal = param.Selector(default=None, objects=[], doc="A signal the profile charts.")

    chart = param.Selector(
        default=None, objects=[], doc="Chart kind (those the monitor runs on the signal)."
    )

    x_axis = param.Selector(default="time", objects=["time", "layer"], doc="Time or build layer.")

    window = param.Selector(default="last 10 min", objects=list(WINDOWS))

    max_points = param.Integer(default=3000, bounds=(100, 100_000))

    update_seconds = param.Number(default=1.0, bounds=(0.0, 60.0))

    message = param.String(default="", doc="Outcome of the latest re-learn request.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._baseline = html_pane("", sizing_mode="stretch_width", css_classes=["amq-baseline"])
        self._relearn = pn.widgets.Button(
            name="Re-learn baseline",
            button_type="warning",
            width=160,
            css_classes=["amq-relearn"],
            disabled=self.kiosk or not self.permitted("relearn_baseline"),
        )
        self._relearn.on_click(lambda _e: self.relearn_baseline())
        charted = list(self.profile.spc_signals)
        self.param.signal.objects = charted
        with param.parameterized.discard_events(self):  # no view built yet
            if self.signal not in charted:
                self.signal = charted[0] if charted else None
            self._set_kinds()
        self._data = hv.streams.Pipe(data=_empty())
        self._marks = hv.streams.Pipe(data=_empty())
        self._limits = hv.streams.Pipe(data=(np.nan, np.nan, np.nan))
        self._summary = html_pane("", sizing_mode="stretch_width", css_classes=["amq-spc-summary"])
        self._state: ChartState | None = None
        self._chart_widget: pn.widgets.RadioButtonGroup | None = None
        self.points_shown = 0
        self.marks_shown = 0
        self._plot = pn.pane.HoloViews(
            self._make_plot(), sizing_mode="stretch_both", css_classes=["amq-spc-plot"]
        )
        self._last_time = 0.0

    def _set_kinds(self) -> None:
        """Offer the chart kinds the monitor runs on the chosen signal (its own first)."""
        kinds = self.monitor.spc_kinds(self.signal) if self.signal is not None else []
        self.param.chart.objects = kinds
        if self.chart not in kinds:
            self.chart = kinds[0] if kinds else None

    def _make_plot(self) -> hv.Overlay:
        def dims() -> tuple[hv.Dimension, hv.Dimension]:
            info = self.spec_of(self.signal or "value")
            label = _STATISTIC.get(self.chart, "{}").format(info.label.lower())
            y = hv.Dimension("stat", label=label, unit=info.unit or None)
            x = (
                hv.Dimension("time", label="time (UTC)")
                if self.x_axis == "time"
                else hv.Dimension("layer", label="build layer")
            )
            return x, y

        def stat(data: pd.DataFrame) -> hv.Curve:
            x, y = dims()
            return hv.Curve(data, kdims=[x], vdims=[y]).opts(color=self.color(self.signal or ""))

        def marks(data: pd.DataFrame) -> hv.Scatter:
            x, y = dims()
            return hv.Scatter(data, kdims=[x], vdims=[y])

        def limits(data: tuple[float, float, float]) -> hv.Overlay:
            center, lcl, ucl = data
            return (
                hv.HLine(center).opts(color="#343a40", line_width=1)
                * hv.HLine(lcl).opts(color="#e5484d", line_dash="dashed", line_width=1.5)
                * hv.HLine(ucl).opts(color="#e5484d", line_dash="dashed", line_width=1.5)
            )

        return (
            hv.DynamicMap(stat, streams=[self._data]).opts(line_width=1.5)
            * hv.DynamicMap(marks, streams=[self._marks]).opts(
                color=SEVERITY_COLORS["critical"], size=8, marker="x", line_width=2
            )
            * hv.DynamicMap(limits, streams=[self._limits])
        ).opts(
            hv.opts.Overlay(
                responsive=True,
                min_height=260,
                show_grid=True,
                framewise=True,
                default_tools=["pan", "wheel_zoom", "reset"],
                toolbar="right",
            )
        )

    @param.depends("signal", watch=True)
    def _on_signal(self) -> None:
        self._set_kinds()
        if self._chart_widget is not None:  # options and value at once: never a None between
            self._chart_widget.param.update(
                options={CHART_LABELS.get(k, k): k for k in self.param.chart.objects},
                value=self.chart,
            )

    def _on_chart_widget(self, event: param.parameterized.Event) -> None:
        if event.new is not None and event.new in self.param.chart.objects:
            self.chart = event.new

    @param.depends("signal", "chart", "x_axis", "window", watch=True)
    def _on_choice(self) -> None:
        # axis labels and x dimension change: a new plot, then its data at once
        self._plot.object = self._make_plot()
        self._last_time = 0.0
        self.refresh(MonitorSnapshot())

    def refresh(self, snapshot: MonitorSnapshot) -> None:
        if time.monotonic() - self._last_time < self.update_seconds:
            return
        self._last_time = time.monotonic()
        if snapshot.baseline:
            self._baseline.object = baseline_html(snapshot.baseline, self.message)
        mon = self.monitor
        if self.signal is None or self.chart is None:
            self._state = None
            self._summary.object = self._summary_html()
            return
        rows, us = mon.spc_series(self.chart, self.signal, WINDOWS[self.window])
        frame = _thin(chart_frame(rows, us), self.max_points)
        self.points_shown = len(frame)
        self._data.send(frame)
        self._state = s = mon.chart_states(self.chart).get(self.signal)
        lim = (np.nan, np.nan, np.nan)
        if s is not None and not s.learning:
            lim = tuple(np.nan if v is None else v for v in s.limits)
        if not np.allclose(lim, self._limits.data, equal_nan=True):
            self._limits.send(lim)
        self._send_marks(frame)
        self._summary.object = self._summary_html()

    def relearn_baseline(self) -> None:
        """Learn the SPC limits again from the coming points (operators only, checked
        here on the server); the new baseline replaces the stored one when learned."""
        reason = self.refuse("relearn_baseline")
        if reason is not None:
            self.message = reason
        else:
            try:
                self.monitor.relearn_baseline(by=self.user or "anonymous")
                self.message = f"re-learning requested at {time.strftime('%H:%M:%S')}"
            except (RuntimeError, TimeoutError) as exc:
                self.message = f"could not re-learn: {exc}"
        self._baseline.object = baseline_html(self.monitor.baseline_info(), self.message)

    def _send_marks(self, frame: pd.DataFrame) -> None:
        """Violations within the shown window, at their time and layer."""
        marks = [
            m
            for m in self.monitor.rule_violations(self.chart, self.signal)
            # residual statistics are prediction errors and variance ratios, not points
            # of this chart's statistic
            if m.time is not None and not m.is_residual
        ]
        if not marks or frame.empty:
            self.marks_shown = 0
            self._marks.send(_empty())
            return
        us = np.array([pd.Timestamp(m.time).value // 1000 for m in marks], dtype=np.int64)
        rows = np.array(
            [
                [
                    np.nan if m.value is None else m.value,
                    np.nan if m.layer is None else float(m.layer),
                    float(m.index),
                ]
                for m in marks
            ]
        )
        out = chart_frame(rows, us)
        out = out[out["time"] >= frame["time"].iloc[0]]
        self.marks_shown = len(out)
        self._marks.send(out)

    def _summary_html(self) -> str:
        if self.signal is None:
            return (
                '<div class="amq-spc-kv">the machine profile charts no signal (spc = "none")</div>'
            )
        s = self._state
        info = self.spec_of(self.signal)
        if s is None:
            return '<div class="amq-spc-kv">waiting for SPC results…</div>'
        kind = CHART_LABELS.get(self.chart or "", self.chart or "–")
        if s.lam is not None:
            kind += f" (λ = {s.lam:g})"
        status = f"learning baseline {s.baseline_progress:.0%}" if s.learning else s.status or "–"
        cells = [
            ("chart", kind),
            ("status", status),
            ("centre", info.fmt(s.center)),
            ("σ", info.fmt(s.sigma)),
            ("LCL", info.fmt(s.lcl)),
            ("UCL", info.fmt(s.ucl)),
            ("violations shown", f"{self.marks_shown:,}"),
        ]
        body = "".join(
            f'<div><span class="amq-k">{esc(k)}</span><span class="amq-v">{esc(v)}</span></div>'
            for k, v in cells
        )
        return f'<div class="amq-spc-kv" data-points="{self.points_shown}">{body}</div>'

    def __panel__(self) -> pn.viewable.Viewable:
        signal = pn.widgets.RadioButtonGroup.from_param(
            self.param.signal,
            name="Signal",
            button_type="light",
            options={self.spec_of(s).label: s for s in self.param.signal.objects},
            css_classes=["amq-spc-signal"],
        )
        # not from_param: its options follow the chosen signal, set together with the
        # value (a param link would pass through an option list with None in it)
        chart = self._chart_widget = pn.widgets.RadioButtonGroup(
            name="Chart",
            button_type="light",
            options={CHART_LABELS.get(k, k): k for k in self.param.chart.objects},
            value=self.chart,
            css_classes=["amq-spc-chart"],
        )
        chart.param.watch(self._on_chart_widget, "value")
        x_axis = pn.widgets.RadioButtonGroup.from_param(
            self.param.x_axis,
            name="x axis",
            button_type="light",
            options={"Time": "time", "Build layer": "layer"},
            css_classes=["amq-spc-x"],
        )
        window = pn.widgets.Select.from_param(
            self.param.window, name="", width=130, css_classes=["amq-spc-window"]
        )
        return pn.Column(
            control_row(signal, chart, x_axis, window, sizing_mode="stretch_width"),
            control_row(self._baseline, self._relearn, sizing_mode="stretch_width"),
            self._summary,
            self._plot,
            sizing_mode="stretch_both",
            css_classes=["amq-spc-view"],
        )
