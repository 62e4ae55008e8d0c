"""History: query stored messages by time range, build, layer and signal value; show
them as a table and a plot, and download them as CSV.

Queries go to :meth:`LiveMonitor.query_history` (MongoDB or the embedded history file);
filters are built from the widgets only (field comparisons, never free text), so an
operator cannot send operators the storage refuses. Column names come from the stored
messages, so the table's titles are escaped (:func:`dashboard.markup.column_titles`),
and the CSV download neutralises cells a spreadsheet would run as formulas
(:func:`history_csv`).

>>> history_filters(build_id="sim-7", layers=(2, 4), signal="temperature",
...                 value_range=(1800.0, None))
{'build_id': 'sim-7', 'layer': {'$gte': 2, '$lte': 4}, 'temperature': {'$gte': 1800.0}}
"""

from __future__ import annotations

import io
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from am_qadf.live_monitor import KEEP_HOURS_RANGE, check_keep_hours

from .markup import column_titles, esc
from .view_base import MonitorView, html_pane

__all__ = ["HistoryView", "history_csv", "history_filters"]

log = logging.getLogger(__name__)

_PLOT_POINTS = 5000


def history_filters(
    *,
    build_id: str | None = None,
    layers: tuple[int | None, int | None] | None = None,
    signal: str | None = None,
    value_range: tuple[float | None, float | None] | None = None,
) -> dict[str, Any]:
    """MongoDB-style filters for :meth:`LiveMonitor.query_history` from widget values.

    A bound that is not a finite number (NaN or infinity sent by a browser) raises
    ``ValueError`` naming it.
    """
    out: dict[str, Any] = {}
    if build_id:
        out["build_id"] = build_id
    for field, rng in (("layer", layers), (signal, value_range)):
        if not field or rng is None:
            continue
        for bound in rng:
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"the {field} range must be finite numbers, got {bound!r}")
        cond = {}
        if rng[0] is not None:
            cond["$gte"] = rng[0]
        if rng[1] is not None:
            cond["$lte"] = rng[1]
        if cond:
            out[field] = cond
    return out


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


#: First characters that make a spreadsheet read a cell as a formula (or, for tab and
#: carriage return, move it into one).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert_text(values: pd.Series) -> pd.Series:
    """Text cells that start like a formula, with a leading apostrophe (what spreadsheets
    take as "this is text"); numbers and other cells as they are."""
    text = values.map(type).eq(str)
    if not text.any():
        return values
    risky = text & values.where(text, "").str.startswith(_FORMULA_START)
    return values.where(~risky, "'" + values.where(risky, "").astype(str))


def _iso_utc(values: pd.Series) -> pd.Series:
    """Datetimes as ISO 8601 text with their UTC offset (naive ones are UTC)."""
    t = pd.to_datetime(values, utc=True)
    return (t.dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00").where(t.notna(), "")


def history_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV for spreadsheets: timestamps in ISO 8601 with their UTC offset,
    and text cells (and column names: they come from messages) that start with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return prefixed with an apostrophe, so a
    spreadsheet shows them instead of running them. Numbers, negative ones included,
    are written as they are.

    >>> df = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01 12:00:00"]),
    ...                    "note": ["=HYPERLINK(1)"], "power": [-3.5]})
    >>> print(history_csv(df).replace("\\r", "").strip())
    timestamp,note,power
    2026-01-01T12:00:00.000000+00:00,'=HYPERLINK(1),-3.5
    """
    out = pd.DataFrame(index=frame.index)
    for i in range(frame.shape[1]):
        col = frame.iloc[:, i]
        if pd.api.types.is_datetime64_any_dtype(col):
            col = _iso_utc(col)
        elif not pd.api.types.is_numeric_dtype(col):  # text, or mixed values
            col = _inert_text(col)
        out[i] = col
    out.columns = _inert_text(pd.Series(list(frame.columns), dtype=object)).tolist()
    # CRLF rows (RFC 4180): a field holding either line break is then quoted
    return out.to_csv(index=False, lineterminator="\r\n")


class HistoryView(MonitorView):
    """Time-range / build / layer / signal query with table, plot and CSV download."""

    limit = param.Integer(default=20_000, bounds=(1, 1_000_000), doc="Most rows one query returns.")

    rows = param.Integer(default=0, doc="Rows returned by the latest query.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        now = _naive_utc(datetime.now(UTC))
        self.time_range = pn.widgets.DatetimeRangePicker(
            name="Time range (UTC)",
            value=(now - timedelta(minutes=2), now + timedelta(minutes=1)),
            width=330,
            css_classes=["amq-history-range"],
        )
        self.build = pn.widgets.TextInput(
            name="Build id", placeholder="any build", width=140, css_classes=["amq-history-build"]
        )
        self.layer_from = pn.widgets.IntInput(name="Layer from", value=None, width=95, start=0)
        self.layer_to = pn.widgets.IntInput(name="Layer to", value=None, width=95, start=0)
        self.signal = pn.widgets.Select(
            name="Signal",
            options={s.label: s.name for s in self.profile.signals},
            value=self.profile.signal_names[0] if self.profile.signals else None,
            width=190,
            css_classes=["amq-history-signal"],
        )
        self.value_min = pn.widgets.FloatInput(name="Value ≥", value=None, width=100)
        self.value_max = pn.widgets.FloatInput(name="Value ≤", value=None, width=100)
        self.run = pn.widgets.Button(
            name="Run query", button_type="primary", css_classes=["amq-history-run"], width=120
        )
        self.last_minutes = pn.widgets.Button(
            name="Last minute", button_type="light", css_classes=["amq-history-recent"], width=110
        )
        self.run.on_click(lambda _: self.query())
        self.last_minutes.on_click(lambda _: self._recent())
        self.download = pn.widgets.FileDownload(
            callback=self._csv,
            filename="amqadf_history.csv",
            label="Download CSV",
            button_type="success",
            disabled=True,
            embed=False,
            css_classes=["amq-history-csv"],
            width=150,
        )
        self.keep_hours = pn.widgets.FloatInput(
            name="Keep the last (hours)",
            value=24.0,
            start=KEEP_HOURS_RANGE[0],
            end=KEEP_HOURS_RANGE[1],
            step=1.0,
            width=150,
            css_classes=["amq-history-keep"],
        )
        self.delete = pn.widgets.Button(
            name="Delete older data",
            button_type="danger",
            button_style="outline",
            css_classes=["amq-history-delete"],
            width=150,
            margin=(24, 10, 5, 10),
            disabled=not self.permitted("delete_old_data"),  # viewers see it greyed out
        )
        self.delete.on_click(lambda _: self.delete_old_data())
        self.info = html_pane(
            "Choose a time range and press <b>Run query</b>.",
            sizing_mode="stretch_width",
            css_classes=["amq-history-info"],
        )
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(),
            pagination="remote",
            page_size=15,
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            height=470,
            css_classes=["amq-history-table"],
        )
        self.plot = pn.pane.HoloViews(
            None, sizing_mode="stretch_width", height=300, css_classes=["amq-history-plot"]
        )
        self._frame = pd.DataFrame()
        self._pending: tuple | None = None
        self._result: tuple | None = None
        self._deleted: tuple | None = None

    def _recent(self) -> None:
        now = _naive_utc(datetime.now(UTC))
        self.time_range.value = (now - timedelta(minutes=1), now + timedelta(seconds=5))
        self.query()

    def _spec(self) -> tuple[datetime, datetime, dict[str, Any]]:
        start, end = self.time_range.value
        if start > end:
            raise ValueError("the time range ends before it starts")
        filters = history_filters(
            build_id=self.build.value.strip() or None,
            layers=(self.layer_from.value, self.layer_to.value),
            signal=self.signal.value,
            value_range=(self.value_min.value, self.value_max.value),
        )
        return start.replace(tzinfo=UTC), end.replace(tzinfo=UTC), filters

    def query(self) -> None:
        """Run the query described by the widgets in the background (a long time range
        must not freeze the page); the next tick shows the result."""
        if self._pending is not None:
            return
        try:
            spec = self._spec()
        except (TypeError, ValueError) as exc:  # a browser sent what the form cannot hold
            self.info.object = f'<span class="amq-error">Query not run: {esc(exc)}</span>'
            return
        self._pending = spec
        self.run.disabled = True
        self.info.object = '<span class="amq-history-busy">Running query…</span>'

        def work() -> None:
            try:
                self._result = (spec, self.query_now(*spec), None)
            except Exception as exc:  # shown on the next tick
                self._result = (spec, None, exc)

        threading.Thread(target=work, name="amqadf-history", daemon=True).start()

    def delete_old_data(self) -> None:
        """Delete stored history older than ``keep_hours`` (operators only), in the
        background. Role and hours are checked here, on the server, whatever the browser
        sent: hours outside :data:`~am_qadf.live_monitor.KEEP_HOURS_RANGE`, infinite or
        NaN are refused with the reason, never taken as "delete everything"."""
        reason = self.refuse("delete_old_data")
        if reason is not None:
            self.info.object = f'<span class="amq-error">{esc(reason)}</span>'
            return
        if self.monitor.storage is None:
            self.info.object = '<span class="amq-error">History storage is disabled.</span>'
            return
        try:
            hours = check_keep_hours(self.keep_hours.value)
        except ValueError as exc:
            self.info.object = f'<span class="amq-error">Nothing deleted: {esc(exc)}</span>'
            return
        self.delete.disabled = True
        self.info.object = '<span class="amq-history-busy">Deleting…</span>'

        def work() -> None:
            try:
                self._deleted = (hours, self.monitor.delete_history(hours), None)
            except Exception as exc:  # shown on the next tick
                self._deleted = (hours, None, exc)

        threading.Thread(target=work, name="amqadf-history-delete", daemon=True).start()

    def query_now(
        self, start: datetime, end: datetime, filters: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Query the history synchronously and return it as a DataFrame (no UI change)."""
        docs = self.monitor.query_history(start, end, filters or None, limit=self.limit)
        df = pd.DataFrame(docs)
        if "_id" in df:
            df = df.drop(columns="_id")
        if "timestamp" in df:
            df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True).dt.tz_localize(None)
        return df

    def refresh(self, snapshot: dict[str, Any]) -> None:
        # fields the profile does not name are stored too: offer them for plotting
        other = (snapshot.get("profile") or {}).get("unnamed_fields") or []
        options = dict(self.signal.options)
        new = {n: n for n in other if n not in options.values()}
        if new:
            self.signal.options = {**options, **new}
        if self._deleted is not None:
            hours, n, error = self._deleted
            self._deleted = None
            self.delete.disabled = not self.permitted("delete_old_data")
            self.info.object = (
                f'<span class="amq-error">Delete failed: {esc(error)}</span>'
                if error is not None
                else f'<span class="amq-history-deleted" data-deleted="{n}">Deleted {n:,} '
                f"records older than the last {hours:,g} hours</span>"
            )
        if self._result is None:
            return
        (start, end, filters), df, error = self._result
        self._result = self._pending = None
        self.run.disabled = False
        if error is not None or df is None:
            self.info.object = f'<span class="amq-error">Query failed: {esc(error)}</span>'
            return
        self._frame = df
        self.rows = len(df)
        # titles first: the columns are the stored messages' field names
        self.table.param.update(titles=column_titles(df.columns), value=df)
        self.download.disabled = df.empty
        self._plot(df)
        more = " (limit reached)" if len(df) >= self.limit else ""
        self.info.object = (
            f'<span class="amq-history-rows" data-rows="{len(df)}">{len(df):,} rows{more}</span>'
            f" · {start:%Y-%m-%d %H:%M:%S} – {end:%H:%M:%S} UTC · filters: "
            f"<code>{esc(filters) if filters else 'none'}</code>"
        )

    def _plot(self, df: pd.DataFrame) -> None:
        sig = self.signal.value
        if df.empty or sig not in df or "timestamp" not in df:
            self.plot.object = None
            return
        step = max(1, int(np.ceil(len(df) / _PLOT_POINTS)))
        d = df.iloc[::step][["timestamp", sig]]
        info = self.spec_of(sig)
        self.plot.object = hv.Scatter(
            d,
            kdims=[hv.Dimension("timestamp", label="time (UTC)")],
            vdims=[hv.Dimension(sig, label=info.label, unit=info.unit or None)],
        ).opts(
            responsive=True,
            height=300,
            size=3,
            alpha=0.6,
            color=self.color(sig),
            title=f"{info.title}: {len(df):,} rows"
            + (f" (every {step}th shown)" if step > 1 else ""),
            show_grid=True,
            tools=["hover"],
        )

    def _csv(self) -> io.StringIO:
        return io.StringIO(history_csv(self._frame))

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Row(
            self.time_range,
            self.last_minutes,
            self.build,
            self.layer_from,
            self.layer_to,
            self.signal,
            self.value_min,
            self.value_max,
            sizing_mode="stretch_width",
            css_classes=["amq-history-form"],
        )
        return pn.Column(
            form,
            pn.Row(
                self.run,
                self.download,
                self.info,
                self.keep_hours,
                self.delete,
                sizing_mode="stretch_width",
            ),
            self.plot,
            self.table,
            sizing_mode="stretch_width",
            css_classes=["amq-history-view"],
        )
