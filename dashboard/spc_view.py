"""SPC view: the control chart the SPC processor runs, per charted signal, with violations.

Every tick takes the latest chart statistics from :meth:`LiveMonitor.spc_state` (the
newest points of the last batch, with their global point index) and streams the new
ones into a ``hv.streams.Buffer``; centre line and control limits come from the same
state, violations from the alerts the SPC rules raised (rule ``spc:...``), which carry
the point index and value.

>>> view = SPCView(monitor=get_monitor())  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from .markup import esc
from .theme import SEVERITY_COLORS
from .view_base import MonitorView, html_pane

__all__ = ["SPCView"]

_STAT_LABEL = {
    "ewma": "EWMA",
    "cusum": "CUSUM",
    "imr": "individual",
    "xbar_r": "subgroup mean",
    "xbar_s": "subgroup mean",
}


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


def _chart_text(s: dict[str, Any]) -> str:
    """Chart kind with its main option, e.g. ``EWMA (λ = 0.01)``.

    >>> _chart_text({"chart": "ewma", "lam": 0.01}), _chart_text({"chart": "imr"})
    ('EWMA (λ = 0.01)', 'IMR')
    """
    kind = str(s.get("chart", "")).upper()
    return f"{kind} (λ = {s['lam']})" if s.get("lam") is not None else kind


class _Chart:
    """Streams of one signal's chart: statistic, violations and limits."""

    def __init__(self, name: str, length: int) -> None:
        self.name = name
        self.last_index = -1
        self.stat = hv.streams.Buffer(
            pd.DataFrame({"index": pd.Series(dtype="int64"), "ewma": pd.Series(dtype="float64")}),
            length=length,
            index=False,
        )
        self.violations = hv.streams.Buffer(
            pd.DataFrame({"index": pd.Series(dtype="int64"), "ewma": pd.Series(dtype="float64")}),
            length=500,
            index=False,
        )
        self.limits = hv.streams.Pipe(data=(np.nan, np.nan, np.nan))
        self.seen_alerts: set[str] = set()
        self.summary: dict[str, Any] = {}

    def reset(self) -> None:
        self.last_index = -1
        self.stat.clear()
        self.violations.clear()
        self.seen_alerts.clear()


class SPCView(MonitorView):
    """Control chart (statistic, centre, UCL/LCL, rule violations) of a chosen signal:
    the signals and chart kinds the machine profile charts."""

    signal = param.Selector(default=None, objects=[])

    history_points = param.Integer(default=4000, bounds=(100, 100_000))

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
        if self.signal not in charted:
            with param.parameterized.discard_events(self):  # no view built yet
                self.signal = charted[0] if charted else None
        self._charts = {s: _Chart(s, self.history_points) for s in charted}
        self._summary = html_pane("", sizing_mode="stretch_width", css_classes=["amq-spc-summary"])
        self._plots = {s: self._make_plot(c) for s, c in self._charts.items()}
        self._holder = pn.Column(
            *([self._plots[self.signal]] if self.signal else []), sizing_mode="stretch_both"
        )
        self._last_time = 0.0

    def _make_plot(self, chart: _Chart) -> pn.pane.HoloViews:
        info = self.spec_of(chart.name)
        color = self.color(chart.name)
        kind = _STAT_LABEL.get(info.spc, info.spc)
        ydim = hv.Dimension("ewma", label=f"{kind} of {info.label.lower()}", unit=info.unit or None)
        xdim = hv.Dimension("index", label="point index")

        def stat(data: pd.DataFrame) -> hv.Curve:
            return hv.Curve(data, kdims=[xdim], vdims=[ydim])

        def viol(data: pd.DataFrame) -> hv.Scatter:
            return hv.Scatter(data, kdims=[xdim], vdims=[ydim])

        def limits(data: tuple[float, float, float]) -> hv.Overlay:
            center, lcl, ucl = data
            return (
                hv.HLine(center).opts(color="#343a40", line_width=1)
                * hv.HLine(lcl).opts(color="#e5484d", line_dash="dashed", line_width=1.5)
                * hv.HLine(ucl).opts(color="#e5484d", line_dash="dashed", line_width=1.5)
            )

        overlay = (
            hv.DynamicMap(stat, streams=[chart.stat]).opts(color=color, line_width=1.5)
            * hv.DynamicMap(viol, streams=[chart.violations]).opts(
                color=SEVERITY_COLORS["critical"], size=8, marker="x", line_width=2
            )
            * hv.DynamicMap(limits, streams=[chart.limits])
        ).opts(
            hv.opts.Overlay(
                responsive=True,
                min_height=260,
                title=f"{info.spc.upper()} chart: {info.title}",
                show_grid=True,
                framewise=True,
                default_tools=["pan", "wheel_zoom", "reset"],
                toolbar="right",
            )
        )
        return pn.pane.HoloViews(overlay, sizing_mode="stretch_both", css_classes=["amq-spc-plot"])

    @param.depends("signal", watch=True)
    def _on_signal(self) -> None:
        self._holder.objects = [self._plots[self.signal]] if self.signal else []
        self._summary.object = self._summary_html()

    def refresh(self, snapshot: dict[str, Any]) -> None:
        if time.monotonic() - self._last_time < self.update_seconds:
            return
        self._last_time = time.monotonic()
        mon = self.monitor
        state = (mon.spc_state() or {}).get("signals", {})
        for name, chart in self._charts.items():
            s = state.get(name)
            if not s:
                continue
            chart.summary = s
            latest = s.get("latest") or {}
            idx = np.asarray(latest.get("index") or [], dtype=np.int64)
            val = np.asarray([np.nan if v is None else v for v in latest.get("value") or []])
            if idx.size and idx[-1] < chart.last_index:
                chart.reset()  # the pipeline replays from the beginning
            new = idx > chart.last_index
            if new.any():
                chart.stat.send(pd.DataFrame({"index": idx[new], "ewma": val[new]}))
                chart.last_index = int(idx[new][-1])
            lim = tuple(
                np.nan if s.get(k) is None else float(s[k]) for k in ("center", "lcl", "ucl")
            )
            if s.get("status") == "baseline":
                lim = (np.nan, np.nan, np.nan)
            if not np.allclose(lim, chart.limits.data, equal_nan=True):
                chart.limits.send(lim)
        self._pull_violations()
        self._summary.object = self._summary_html()
        self._baseline.object = baseline_html(snapshot.get("baseline"), self.message)

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
        for chart in self._charts.values():
            chart.reset()
        self._baseline.object = baseline_html(self.monitor.baseline_info(), self.message)

    def _pull_violations(self) -> None:
        alerts = self.monitor.alerts.history(limit=300)
        for name, chart in self._charts.items():
            rows = [
                a
                for a in alerts
                if a.metric == name
                and a.rule.startswith("spc:")
                # residual statistics are prediction errors and variance ratios, not points
                # of this chart's statistic
                and not a.rule.startswith("spc:residual")
                and a.index is not None
                and a.id not in chart.seen_alerts
            ]
            if not rows:
                continue
            chart.seen_alerts.update(a.id for a in rows)
            chart.violations.send(
                pd.DataFrame({"index": [a.index for a in rows], "ewma": [a.value for a in rows]})
            )

    def _summary_html(self) -> str:
        if self.signal is None:
            return (
                '<div class="amq-spc-kv">the machine profile charts no signal (spc = "none")</div>'
            )
        chart = self._charts[self.signal]
        s = chart.summary
        info = self.spec_of(self.signal)
        if not s:
            return '<div class="amq-spc-kv">waiting for SPC results…</div>'
        status = str(s.get("status", "–"))
        progress = float(s.get("baseline_progress") or 0.0)
        cells = [
            ("chart", _chart_text(s)),
            ("status", status if status != "baseline" else f"learning baseline {progress:.0%}"),
            ("centre", info.fmt(s.get("center"))),
            ("σ", info.fmt(s.get("sigma"))),
            ("LCL", info.fmt(s.get("lcl"))),
            ("UCL", info.fmt(s.get("ucl"))),
            ("violations marked", f"{len(chart.seen_alerts):,}"),
        ]
        body = "".join(
            f'<div><span class="amq-k">{esc(k)}</span><span class="amq-v">{esc(v)}</span></div>'
            for k, v in cells
        )
        return f'<div class="amq-spc-kv">{body}</div>'

    def __panel__(self) -> pn.viewable.Viewable:
        select = pn.widgets.RadioButtonGroup.from_param(
            self.param.signal,
            name="Signal",
            button_type="light",
            options={self.spec_of(s).label: s for s in self._charts},
            css_classes=["amq-spc-signal"],
        )
        return pn.Column(
            pn.Row(select, sizing_mode="stretch_width"),
            pn.Row(self._baseline, self._relearn, sizing_mode="stretch_width"),
            self._summary,
            self._holder,
            sizing_mode="stretch_both",
            css_classes=["amq-spc-view"],
        )
