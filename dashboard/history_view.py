"""History: query stored messages by time range, build, layer and signal value; show
them as a table and a plot, and download them as CSV.

Queries go to :meth:`LiveMonitor.query_history` (MongoDB or the embedded history file);
filters are built from the widgets only (field comparisons, never free text), so an
operator cannot send operators the storage refuses. Column names come from the stored
messages, so the table's titles are escaped (:func:`dashboard.markup.column_titles`),
and the CSV download neutralises cells a spreadsheet would run as formulas
(:func:`history_csv`).

The time range is either relative ("Last hour": measured back from the moment the
query runs, not from when the page was opened) or typed (:func:`parse_time`). A query
returns at most ``limit`` rows; when more match, the *newest* rows of the range are
shown (:func:`fetch_newest`) and a notice says what was left out (:func:`cut_notice`).

>>> history_filters(build_id="sim-7", layers=(2, 4), signal="temperature",
...                 value_range=(1800.0, None))
{'build_id': 'sim-7', 'layer': {'$gte': 2, '$lte': 4}, 'temperature': {'$gte': 1800.0}}
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from am_qadf.live_monitor import KEEP_HOURS_RANGE, check_keep_hours
from am_qadf.machine_view import MonitorSnapshot

from .markup import column_titles, esc
from .view_base import MonitorView, control_row, html_pane

__all__ = [
    "RANGES",
    "HistoryView",
    "cut_notice",
    "fetch_newest",
    "history_csv",
    "history_filters",
    "parse_time",
    "query_window",
    "retention_text",
]

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


#: Time ranges the form offers. A relative one is measured back from the moment the
#: query runs; "Custom" takes the typed From / To times.
RANGES: dict[str, timedelta | None] = {
    "Last minute": timedelta(minutes=1),
    "Last 10 minutes": timedelta(minutes=10),
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Custom": None,
}
CUSTOM = "Custom"

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
_CLOCK_FORMATS = ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M")


def parse_time(text: str, *, name: str, today: date) -> datetime:
    """A time an operator typed, in UTC: ``YYYY-MM-DD HH:MM[:SS[.ffffff]]`` (a ``T``
    instead of the space is fine), or ``HH:MM[:SS]`` for that time on ``today``.
    ``ValueError`` names the field and shows the expected form.

    >>> parse_time("2026-12-05 08:40", name="From", today=date(2026, 1, 1))
    datetime.datetime(2026, 12, 5, 8, 40, tzinfo=datetime.timezone.utc)
    >>> parse_time(" 14:05:30 ", name="To", today=date(2026, 12, 5)).isoformat()
    '2026-12-05T14:05:30+00:00'
    >>> parse_time("5th of May", name="From", today=date(2026, 12, 5))
    Traceback (most recent call last):
    ...
    ValueError: From: '5th of May' is not a time; write it as 2026-12-05 14:30:00 or 14:30 (UTC)
    """
    t = (text or "").strip().replace("T", " ")
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(t, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    for fmt in _CLOCK_FORMATS:
        try:
            clock = datetime.strptime(t, fmt).time()
        except ValueError:
            continue
        return datetime.combine(today, clock, tzinfo=UTC)
    raise ValueError(
        f"{name}: {text!r} is not a time; write it as {today:%Y-%m-%d} 14:30:00 or 14:30 (UTC)"
    )


def query_window(
    choice: str, start_text: str, end_text: str, now: datetime
) -> tuple[datetime, datetime]:
    """The (start, end) in UTC of a query run at ``now``: a relative ``choice`` of
    :data:`RANGES` ends at ``now``; ``"Custom"`` takes the typed times
    (:func:`parse_time`, a time of day on ``now``'s date).

    >>> now = datetime(2026, 12, 5, 8, 40, tzinfo=UTC)
    >>> [t.strftime("%H:%M") for t in query_window("Last hour", "", "", now)]
    ['07:40', '08:40']
    >>> query_window("Custom", "08:30", "08:20", now)
    Traceback (most recent call last):
    ...
    ValueError: the time range ends (08:20:00) before it starts (08:30:00)
    """
    if choice not in RANGES:
        raise ValueError(f"time range must be one of {list(RANGES)}, got {choice!r}")
    span = RANGES[choice]
    if span is not None:
        return now - span, now
    today = now.astimezone(UTC).date()
    start = parse_time(start_text, name="From", today=today)
    end = parse_time(end_text, name="To", today=today)
    if start > end:
        raise ValueError(
            f"the time range ends ({end:%H:%M:%S}) before it starts ({start:%H:%M:%S})"
        )
    return start, end


Fetch = Callable[[datetime, datetime, int], Sequence[dict[str, Any]]]


def _cut_reason(rows: Sequence[Any], cap: int) -> str | None:
    """Why ``rows`` (fetched with a limit of ``cap + 1``) are not all that matched: more
    than ``cap`` came back, or the storage says it cut them (e.g. a time budget).

    >>> _cut_reason([{}] * 3, 2), _cut_reason([{}], 2)
    ('more than 2 rows matched', None)
    """
    if len(rows) > cap:
        return f"more than {cap:,} rows matched"
    reason = getattr(rows, "reason", None)  # a storage that reports its own cut
    return str(reason) if reason else None


def fetch_newest(
    fetch: Fetch, start: datetime, end: datetime, cap: int, tries: int = 6
) -> tuple[list[dict[str, Any]], str | None]:
    """At most ``cap`` rows of ``start``..``end``, oldest first, and why rows were left
    out (None: these are all). ``fetch(start, end, limit)`` returns the oldest ``limit``
    rows of a range; when more than ``cap`` match, the newest rows of the range are
    looked for instead: the span the oldest ``cap`` rows took, measured back from
    ``end``, narrowed or widened (at most ``tries`` more fetches, each of at most
    ``cap + 1`` rows) until ``cap`` or fewer (but at least half as many) rows fall in it.

    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> rows = [{"timestamp": t0 + timedelta(seconds=i)} for i in range(100)]
    >>> def fetch(a, b, n):
    ...     return [r for r in rows if a <= r["timestamp"] <= b][:n]
    >>> got, why = fetch_newest(fetch, t0, t0 + timedelta(seconds=99), 10)
    >>> why, 5 <= len(got) <= 10, got[-1]["timestamp"].second
    ('more than 10 rows matched', True, 39)
    """
    got = fetch(start, end, cap + 1)
    reason, first = _cut_reason(got, cap), list(got)
    if reason is None or len(first) < 2:
        return first[:cap], reason
    best, found = first[:cap], False
    # Tails from `cut` on hold too many rows, from `ok` on few enough; each guess stays
    # between them (else their middle), so the search narrows whatever the data rate.
    cut, ok = start, end
    # the oldest `cap` rows took this long; as many newer ones take about as long
    guess = end - (best[-1]["timestamp"] - best[0]["timestamp"]) * 0.9
    for _ in range(tries):
        lo = guess if cut < guess < ok else cut + (ok - cut) / 2
        got = fetch(lo, end, cap + 1)
        tail = list(got)
        if _cut_reason(got, cap) is None:
            best, found, ok = tail, True, lo
            if len(tail) >= cap // 2:
                break
            # too few: rows are sparser here; look as far back as this density needs
            guess = end - (end - lo) * min(8.0, 0.9 * cap / max(len(tail), 1))
        elif len(tail) > 1:  # still too many: the span these rows took, from the end
            cut = lo
            if not found:
                best = tail[:cap]  # nearer the end than the oldest rows
            guess = end - (tail[: cap + 1][-1]["timestamp"] - lo) * 0.9
        else:
            break
    return best, reason


def cut_notice(
    shown: int, first: datetime | None, last: datetime | None, reason: str | None
) -> str:
    """The notice for a query result (HTML): empty when every matching row is shown,
    else how many rows are shown, which span they cover and why the rest is not.

    >>> t = datetime(2026, 1, 1, 8, 0, 4, 250_000, tzinfo=UTC)
    >>> cut_notice(3, t, t, None)
    ''
    >>> note = cut_notice(20_000, t - timedelta(seconds=4), t, "more than 20,000 rows matched")
    >>> print(note.replace(". ", ".\\n"))  # doctest: +ELLIPSIS
    <span class="amq-history-cut" data-cut="1">Showing 20,000 rows only, 08:00:00.250 – ...
    Narrow the time range or the filters to see the rest.</span>
    """
    if reason is None:
        return ""
    span = (
        f", {first:%H:%M:%S.%f}"[:-3] + f" – {last:%H:%M:%S.%f}"[:-3] + " UTC"
        if first is not None and last is not None
        else ""
    )
    return (
        f'<span class="amq-history-cut" data-cut="1">Showing {shown:,} rows only{span}: '
        f"{esc(reason)}. Narrow the time range or the filters to see the rest.</span>"
    )


def retention_text(disk: dict[str, Any] | None) -> str:
    """What the history keeps, for the History tab (HTML): the time retention and the
    size limit of the embedded history file with its size now, or that MongoDB keeps
    its own policy.

    >>> text = retention_text({"bytes": 300 * 2**20, "max_bytes": 2**30, "retention_s": 86400.0})
    >>> print(text.replace(", ", ",\\n"))
    <span class="amq-history-retention">Kept: the last 24 h,
    at most 1,024 MiB (oldest deleted first) · now 300 MiB</span>
    """
    if not disk:
        return ""
    if disk.get("bytes") is None:
        return (
            '<span class="amq-history-retention">Kept as the MongoDB deployment\'s '
            "retention policy says</span>"
        )
    keep = disk.get("retention_s")
    limit = disk.get("max_bytes")
    parts = [f"the last {keep / 3600:,.4g} h" if keep else "everything"]
    if limit:
        parts.append(f"at most {limit / 2**20:,.0f} MiB (oldest deleted first)")
    return (
        f'<span class="amq-history-retention">Kept: {", ".join(parts)} · '
        f"now {disk['bytes'] / 2**20:,.0f} MiB</span>"
    )


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
        # relative ranges are measured when the query runs; typed times when "Custom"
        self.time_range = pn.widgets.Select(
            name="Time range (UTC)",
            options=list(RANGES),
            value="Last 10 minutes",
            width=150,
            css_classes=["amq-history-range"],
        )
        self.start_text = pn.widgets.TextInput(
            name="From (UTC)",
            placeholder="2026-12-05 08:30 or 08:30",
            width=170,
            visible=False,  # shown for "Custom"
            css_classes=["amq-history-from"],
        )
        self.end_text = pn.widgets.TextInput(
            name="To (UTC)",
            placeholder="2026-12-05 08:40 or 08:40",
            width=170,
            visible=False,
            css_classes=["amq-history-to"],
        )
        self.time_range.param.watch(self._on_range, "value")
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
        disk = self._disk()
        keep_s = disk.get("retention_s") or 24 * 3600.0
        self.keep_hours = pn.widgets.FloatInput(
            name="Keep the last (hours)",
            # what the automatic retention keeps, so the two say the same
            value=float(np.clip(min(keep_s / 3600, 24.0), *KEEP_HOURS_RANGE)),
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
        # a fleet machine's page does not delete the fleet's history
        self.keep_hours.visible = self.delete.visible = "delete_old_data" in self.monitor.actions
        self.info = html_pane(
            "Choose a time range and press <b>Run query</b>.",
            sizing_mode="stretch_width",
            css_classes=["amq-history-info"],
        )
        self.retention = html_pane(
            retention_text(disk), sizing_mode="stretch_width", css_classes=["amq-history-kept"]
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

    def _disk(self) -> dict[str, Any]:
        """What the machine's history keeps (:meth:`MachineSource.history_disk`)."""
        return self.monitor.history_disk()

    def _recent(self) -> None:
        self.time_range.value = "Last minute"
        self.query()

    def _on_range(self, event: param.parameterized.Event) -> None:
        custom = event.new == CUSTOM
        self.start_text.visible = self.end_text.visible = custom
        if custom and not (self.start_text.value or self.end_text.value):
            # start from the relative range chosen before, to the second, to edit
            end = datetime.now(UTC).replace(microsecond=0)
            start = end - (RANGES.get(event.old) or timedelta(minutes=10))
            self.start_text.value = f"{start:%Y-%m-%d %H:%M:%S}"
            self.end_text.value = f"{end:%Y-%m-%d %H:%M:%S}"

    def _spec(self) -> tuple[datetime, datetime, dict[str, Any]]:
        start, end = query_window(
            self.time_range.value,
            self.start_text.value,
            self.end_text.value,
            datetime.now(UTC),  # now, when the query runs
        )
        filters = history_filters(
            build_id=self.build.value.strip() or None,
            layers=(self.layer_from.value, self.layer_to.value),
            signal=self.signal.value,
            value_range=(self.value_min.value, self.value_max.value),
        )
        return start, end, filters

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
        if not self.monitor.has_history:
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
                self._deleted = (hours, self.monitor.delete_history(hours, by=self.user), None)
            except Exception as exc:  # shown on the next tick
                self._deleted = (hours, None, exc)

        threading.Thread(target=work, name="amqadf-history-delete", daemon=True).start()

    def query_now(
        self, start: datetime, end: datetime, filters: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Query the history synchronously and return it as a DataFrame (no UI change):
        at most ``limit`` rows, the newest of the range when more match
        (:func:`fetch_newest`); ``df.attrs["cut"]`` then says why rows were left out."""

        def fetch(a: datetime, b: datetime, n: int) -> list[dict[str, Any]]:
            return self.monitor.query_history(a, b, filters or None, limit=n)

        docs, cut = fetch_newest(fetch, start, end, self.limit)
        df = pd.DataFrame(docs)
        df.attrs["cut"] = cut
        if "_id" in df:
            df = df.drop(columns="_id")
        if "timestamp" in df:
            df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True).dt.tz_localize(None)
        return df

    def refresh(self, snapshot: MonitorSnapshot) -> None:
        # fields the profile does not name are stored too: offer them for plotting
        other = (snapshot.profile or {}).get("unnamed_fields") or []
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
        self.retention.object = retention_text(snapshot.history_disk)
        if self._result is None:
            return
        (start, end, filters), df, error = self._result
        self._result = self._pending = None
        self.run.disabled = False
        if error is None and df is not None:
            try:
                self._show(start, end, filters, df)
                return
            except Exception as exc:  # never leave "Running query…" up
                log.exception("showing the history result failed")
                error = exc
        self.info.object = f'<span class="amq-error">Query failed: {esc(error)}</span>'

    def _show(
        self, start: datetime, end: datetime, filters: dict[str, Any], df: pd.DataFrame
    ) -> None:
        self._frame = df
        self.rows = len(df)
        # A sort the operator chose on a column this result lacks (an empty result has
        # none) would make the table fail (KeyError) when it sorts the new rows.
        sorters = [s for s in self.table.sorters if s.get("field") in df.columns]
        # titles first: the columns are the stored messages' field names
        self.table.param.update(titles=column_titles(df.columns), sorters=sorters, value=df)
        self.download.disabled = df.empty
        self._plot(df)
        stamps = df["timestamp"] if "timestamp" in df and not df.empty else None
        notice = cut_notice(
            len(df),
            None if stamps is None else stamps.iloc[0],
            None if stamps is None else stamps.iloc[-1],
            df.attrs.get("cut"),
        )
        self.info.object = (
            f'<span class="amq-history-rows" data-rows="{len(df)}">{len(df):,} rows</span>'
            f" · {start:%Y-%m-%d %H:%M:%S} – {end:%H:%M:%S} UTC · filters: "
            f"<code>{esc(filters) if filters else 'none'}</code>"
            + (f"<br>{notice}" if notice else "")
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
        form = control_row(
            self.time_range,
            self.start_text,
            self.end_text,
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
            control_row(
                self.run,
                self.download,
                self.info,
                self.keep_hours,
                self.delete,
                sizing_mode="stretch_width",
            ),
            self.retention,
            self.plot,
            self.table,
            sizing_mode="stretch_width",
            css_classes=["amq-history-view"],
        )
