"""Live signals: the last N seconds of each live signal of the machine profile.

Each tick reads, per signal, only the rows that arrived since the previous tick from
the pipeline's signal buffer, folds them into fixed time bins (min and max of each
bin, so a one-sample spike is never averaged away) and sends just those rows to a
``hv.streams.Buffer``; Bokeh then streams them to the browser. SPC lines (centre and
centre ± 3σ of the baseline the SPC processor learned) and the alarm thresholds are
Bokeh spans added to each figure by a plot hook and moved in place when the SPC
baseline changes: as HoloViews elements in the same overlay they were recomputed on
every data update (a third of its cost).

>>> import numpy as np
>>> t = np.array([0.0, 0.25, 0.5, 1.25, 1.5, 2.75])
>>> v = np.array([1.0, 5.0, 3.0, 3.0, np.nan, 9.0])
>>> tb, lo, hi, mean = minmax_bins(t, v, 1.0)
>>> tb.tolist(), lo.tolist(), hi.tolist(), mean.tolist()
([0.5, 1.5, 2.5], [1.0, 3.0, 9.0], [5.0, 3.0, 9.0], [3.0, 3.0, 9.0])
"""

from __future__ import annotations

import functools
import time
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import DatetimeTickFormatter, Span

from am_qadf.machine_view import MonitorSnapshot

from .markup import esc
from .view_base import MonitorView, html_pane

__all__ = ["LiveSignals", "last_seconds", "minmax_bins", "with_gaps"]


def _empty_frame(name: str) -> pd.DataFrame:
    cols = {"time": pd.Series(dtype="datetime64[ns]")}
    for c in (name, f"{name}_min", f"{name}_max"):
        cols[c] = pd.Series(dtype="float64")
    return pd.DataFrame(cols)


def minmax_bins(
    t: np.ndarray, v: np.ndarray, width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Min, max and mean of ``v`` per time bin ``[k * width, (k + 1) * width)``.

    ``t`` (seconds, ascending) and ``v`` are 1-D. Returns the centres of the non-empty
    bins and the NaN-ignoring min, max and mean of each (NaN where a bin held only NaN).
    """
    if t.size == 0:
        empty = np.empty(0)
        return empty, empty, empty, empty
    b = np.floor(t / width).astype(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], b[1:] != b[:-1])))
    finite = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.fmin.reduceat(v, starts)
        hi = np.fmax.reduceat(v, starts)
        total = np.add.reduceat(np.where(finite, v, 0.0), starts)
        mean = total / np.add.reduceat(finite.astype(np.int64), starts)
    return (b[starts] + 0.5) * width, lo, hi, mean


def _to_datetime64(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds as naive UTC ``datetime64[ns]`` (what Bokeh's datetime axis wants)."""
    return (seconds * 1e9).astype("int64").astype("datetime64[ns]")


_TIME = hv.Dimension("time", label="time (UTC)")


def _plain_time_ticks(plot: Any, element: Any) -> None:
    """Time ticks on one line: HoloViews' formatter adds the date under them, which
    costs a short plot its height (a Bokeh hook, set on every render)."""
    for axis in plot.state.xaxis:
        if axis.ticker.desired_num_ticks != 4:
            axis.ticker.desired_num_ticks = 4  # labels 8 characters wide must not collide
        f = axis.formatter
        if isinstance(f, DatetimeTickFormatter) and f.context is None and f.minutes == "%H:%M":
            continue  # set on an earlier render: no new model for the browser
        axis.formatter = DatetimeTickFormatter(
            microseconds="%H:%M:%S",  # an empty plot's range
            milliseconds="%H:%M:%S.%3N",
            seconds="%H:%M:%S",
            minsec="%H:%M:%S",
            minutes="%H:%M",
            hourmin="%H:%M",
        )


class _SignalTrace:
    """The streamed trace of one signal: a time cursor, a Buffer and SPC lines."""

    def __init__(self, name: str, length: int, due: float) -> None:
        self.name = name
        self.cursor: float | None = None  # end (epoch s) of the last bin sent
        self.last_bin: float | None = None  # centre (epoch s) of the last bin sent
        self.buffer = hv.streams.Buffer(_empty_frame(name), length=length, index=False)
        self.spc: tuple[float, float, float] = (np.nan, np.nan, np.nan)  # centre, LCL, UCL
        self.spans: list[Span] = []  # the SPC lines of the figure shown
        self.figure: str | None = None  # Bokeh id of that figure
        self.last_value = np.nan
        self.due = due  # time.monotonic() of its next update

    def reset(self) -> None:
        self.cursor = None
        self.last_bin = None
        self.buffer.clear()
        self.last_value = np.nan

    def set_spc(self, lines: tuple[float, float, float]) -> None:
        """Move the SPC lines (NaN: hidden) of the figure shown."""
        self.spc = lines
        if not self.spans:  # not drawn yet: add_lines places them at self.spc
            return
        for span, y in zip(self.spans, lines, strict=True):
            span.update(location=float(y) if np.isfinite(y) else 0.0, visible=bool(np.isfinite(y)))

    def add_lines(self, plot: Any, element: Any, *, alarms: tuple[float | None, ...]) -> None:
        """HoloViews plot hook: give the figure its SPC and alarm lines, once."""
        fig = plot.state
        if self.figure == fig.id:  # hooks also run on every update
            return
        self.figure = fig.id
        for y in alarms:
            if y is not None:
                fig.add_layout(Span(location=y, dimension="width", **_ALARM_STYLE))
        self.spans = [
            Span(location=0.0, dimension="width", visible=False, **style)
            for style in (_CENTER_STYLE, _LIMIT_STYLE, _LIMIT_STYLE)
        ]
        for span in self.spans:
            fig.add_layout(span)
        self.set_spc(self.spc)


_ALARM_STYLE = {"line_color": "#e5484d", "line_dash": "dotted", "line_width": 1.5}
_CENTER_STYLE = {"line_color": "#343a40", "line_width": 1, "line_alpha": 0.8}
_LIMIT_STYLE = {"line_color": "#f5a524", "line_dash": "dashed", "line_width": 1.5}


def _alarm_view(info: Any) -> tuple[float | None, float | None]:
    """A y range that shows the alarm limits a little inside the frame (the plots'
    soft range: the data may widen it).

    >>> from dashboard.signals import signal_info
    >>> _alarm_view(signal_info("temperature"))
    (1625.0, 2175.0)
    """
    low, high = info.low, info.high
    if low is None or high is None:
        return (low, high)
    margin = 0.05 * (high - low)
    return (low - margin, high + margin)


def last_seconds(data: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """The rows of ``data`` (a ``time`` column, ascending) within ``seconds`` of its
    newest row: the plots' x range then spans the window the card names, however many
    rows the stream buffer keeps (it holds rows, not seconds).

    >>> t = pd.to_datetime([0, 10, 40, 45], unit="s")
    >>> last_seconds(pd.DataFrame({"time": t, "v": [1, 2, 3, 4]}), 30.0)["v"].tolist()
    [3, 4]
    """
    if data.empty:
        return data
    times = data["time"].to_numpy()
    first = np.searchsorted(times, times[-1] - np.timedelta64(int(seconds * 1e9), "ns"))
    return data.iloc[int(first) :]


def _band(data: pd.DataFrame, name: str, window: float) -> hv.Area:
    return hv.Area(last_seconds(data, window), kdims=[_TIME], vdims=[f"{name}_min", f"{name}_max"])


def _mean(data: pd.DataFrame, vdim: hv.Dimension, window: float) -> hv.Curve:
    return hv.Curve(last_seconds(data, window), kdims=[_TIME], vdims=[vdim])


def with_gaps(
    tb: np.ndarray, columns: list[np.ndarray], after: float | None, gap: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Insert a NaN row wherever consecutive bin centres ``tb`` (and the last centre
    sent before, ``after``) lie more than ``gap`` apart, so the plot breaks the line
    there instead of drawing a straight line over time without data.

    >>> tb, (v,) = with_gaps(np.array([5.0, 5.1, 9.0]), [np.array([1.0, 2.0, 3.0])], 4.9, 0.5)
    >>> tb.tolist(), np.isnan(v).tolist()
    ([5.0, 5.1, 7.05, 9.0], [False, False, True, False])
    """
    prev = np.concatenate(([tb[0] if after is None else after], tb[:-1]))
    at = np.flatnonzero(tb - prev > gap)
    if at.size == 0:
        return tb, columns
    breaks = 0.5 * (prev[at] + tb[at])
    return np.insert(tb, at, breaks), [np.insert(c, at, np.nan) for c in columns]


class LiveSignals(MonitorView):
    """Streaming plots of the last ``window_seconds`` of each signal, with SPC limits.

    >>> view = LiveSignals(monitor=None, signals=["temperature"])  # doctest: +SKIP
    >>> view.refresh(monitor.snapshot())  # doctest: +SKIP
    """

    signals = param.List(
        default=[], item_type=str, doc="Signals to plot (empty: the profile's live signals)."
    )

    window_seconds = param.Number(default=30.0, bounds=(2.0, 600.0), doc="Visible time span.")

    bin_seconds = param.Number(
        default=0.1, bounds=(0.001, 10.0), doc="Time bin of the min/max envelope."
    )

    plot_height = param.Integer(
        default=112,
        bounds=(60, 800),
        allow_None=True,
        doc="Height of each plot (px); None: the plots share the height of their card.",
    )

    update_seconds = param.Number(
        default=1.0, bounds=(0.0, 60.0), doc="Minimum time between two plot updates."
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not self.signals:
            self.signals = list(self.profile.live_signals)
        length = int(np.ceil(2 * self.window_seconds / self.bin_seconds)) + 4
        # staggered: the traces take turns instead of all updating in the same tick
        start, step = time.monotonic(), self.update_seconds / max(len(self.signals), 1)
        self._traces = {
            s: _SignalTrace(s, length, due=start + i * step) for i, s in enumerate(self.signals)
        }
        self._latest = html_pane("", css_classes=["amq-live-latest"], sizing_mode="stretch_width")
        self._plots = self._make_plots()
        self._epoch: tuple[Any, Any] | None = None  # (builds, replays) of the data shown

    # -- plots ---------------------------------------------------------------------------
    def _make_plots(self) -> pn.viewable.Viewable:
        height = self.plot_height
        extra = (
            {"fontsize": {"title": "14pt", "labels": "13pt", "ticks": "12pt"}} if self.kiosk else {}
        )
        panels = []
        for i, (name, trace) in enumerate(self._traces.items()):
            info = self.spec_of(name)
            vdim = hv.Dimension(
                name, label=info.label, unit=info.unit or None, soft_range=_alarm_view(info)
            )
            color = self.color(name)

            window = self.window_seconds
            band = hv.DynamicMap(
                functools.partial(_band, name=name, window=window), streams=[trace.buffer]
            )
            mean = hv.DynamicMap(
                functools.partial(_mean, vdim=vdim, window=window), streams=[trace.buffer]
            )
            hook = functools.partial(trace.add_lines, alarms=(info.low, info.high))
            overlay = (band * mean).opts(
                hv.opts.Area(color=color, alpha=0.25, line_alpha=0),
                hv.opts.Curve(color=color, line_width=1.4),
                hv.opts.Overlay(
                    responsive=True,
                    **(
                        {}
                        if height is None
                        else {"height": height + (28 if i == len(self._traces) - 1 else 0)}
                    ),
                    # the unit is on the tile right above: a short plot cuts a long label
                    ylabel=info.short_label,
                    show_grid=True,
                    # few ticks: the plots are short and the time labels must not collide
                    yticks=3,
                    toolbar=None if self.kiosk else "right",
                    default_tools=[] if self.kiosk else ["pan", "wheel_zoom", "reset"],
                    active_tools=[],
                    xaxis="bottom" if i == len(self._traces) - 1 else None,
                    **extra,
                    framewise=True,
                    axiswise=True,
                    shared_axes=True,
                    min_height=60,
                    hooks=[hook, _plain_time_ticks],
                ),
            )
            panels.append(overlay)
        layout = (
            hv.Layout(panels)
            .cols(1)
            .opts(shared_axes=True, merge_tools=True, toolbar=None if self.kiosk else "above")
        )
        return pn.pane.HoloViews(
            layout,
            sizing_mode="stretch_both",
            css_classes=["amq-live-plots"],
            linked_axes=True,
            **({"theme": "dark_minimal"} if self.kiosk else {}),
        )

    # -- data ----------------------------------------------------------------------------
    #: Time without data (s) from which the plots break the line: more than two empty
    #: bins or half a second, whichever is longer.
    gap_seconds = param.Number(default=0.5, bounds=(0.0, None))

    def reset(self) -> None:
        """Forget what the plots show (a new build or a replay began)."""
        for trace in self._traces.values():
            trace.reset()

    def refresh(self, snapshot: MonitorSnapshot) -> None:
        mon = self.monitor
        epoch = (snapshot.builds, snapshot.replays)
        if epoch != self._epoch:
            if self._epoch is not None:
                self.reset()
            self._epoch = epoch
        now = time.monotonic()
        due = [t for t in self._traces.values() if now >= t.due]
        if mon is None or not due:
            return
        spc = mon.chart_states()
        for trace in due:
            # Signals take turns (their first updates are spread over one period), so
            # each refresh redraws a share of the plots: the same rate per plot, with
            # smaller, evenly spread pieces of work for the server and the browser.
            trace.due = max(trace.due + self.update_seconds, now)
            self._pull(trace)
            s = spc.get(trace.name)
            lines = (np.nan, np.nan, np.nan)
            if s is not None and s.center is not None and s.sigma is not None and not s.learning:
                lines = (s.center, s.center - 3 * s.sigma, s.center + 3 * s.sigma)
            if lines != trace.spc and not (np.isnan(lines[0]) and np.isnan(trace.spc[0])):
                trace.set_spc(lines)
        self._latest.object = self._latest_html()

    def _pull(self, trace: _SignalTrace) -> None:
        t_new = self.monitor.signal_newest(trace.name)
        if t_new is None:  # no message carried this signal yet
            return
        width = self.bin_seconds
        if trace.cursor is not None and t_new < trace.cursor - 1.0:
            trace.reset()  # the pipeline replays from the beginning: start over
        if trace.cursor is None:
            trace.cursor = np.floor((t_new - self.window_seconds) / width) * width
        complete_end = np.floor(t_new / width) * width  # the newest bin is still filling
        if complete_end <= trace.cursor:
            return
        span = min(t_new - trace.cursor, self.window_seconds) + width
        window = self.monitor.signal_window(trace.name, span)
        if not len(window):
            return
        t = window.epoch_us / 1e6
        v = window.values
        keep = (t >= trace.cursor) & (t < complete_end)
        tb, lo, hi, mean = minmax_bins(t[keep], v[keep], width)
        trace.cursor = complete_end
        finite = v[np.isfinite(v)]
        if finite.size:
            trace.last_value = float(finite[-1])
        if tb.size == 0:
            return
        gap = max(self.gap_seconds, 2.5 * width)
        tb, (mean, lo, hi) = with_gaps(tb, [mean, lo, hi], trace.last_bin, gap)
        trace.last_bin = float(tb[-1])
        name = trace.name
        trace.buffer.send(
            pd.DataFrame(
                {"time": _to_datetime64(tb), name: mean, f"{name}_min": lo, f"{name}_max": hi}
            )
        )

    def _latest_html(self) -> str:
        cells = []
        for name, trace in self._traces.items():
            info = self.spec_of(name)
            color = self.color(name)
            cells.append(
                f'<div class="amq-latest-cell" style="border-left-color:{color}">'
                f'<span class="amq-latest-label">{esc(info.short_label)}</span>'
                f'<span class="amq-latest-value">{esc(info.fmt(trace.last_value))}'
                f" <small>{esc(info.unit)}</small></span></div>"
            )
        return '<div class="amq-latest">' + "".join(cells) + "</div>"

    def latest_values(self) -> dict[str, float]:
        """The newest value of each plotted signal (NaN before any data)."""
        return {name: trace.last_value for name, trace in self._traces.items()}

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            *([] if self.kiosk else [self._latest]),  # the kiosk has tiles of its own
            self._plots,
            sizing_mode="stretch_both",
            css_classes=["amq-live-signals"],
        )
