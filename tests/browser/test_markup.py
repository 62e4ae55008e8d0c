"""Data never becomes markup: the escaping helper, every view's HTML built from hostile
data in-process (no browser), and the CSV download (formula cells, time zones)."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import panel as pn
import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_view import MonitorSnapshot
from am_qadf.streaming import StreamingConfig
from dashboard.history_view import HistoryView, history_csv, history_filters
from dashboard.machine_dashboard import Dashboard
from dashboard.markup import TEXT_LIMIT, column_titles, esc, whole_number

from .hostile_marks import BUILD, KEY, NOTE

MARKS = (BUILD, KEY, NOTE)


def test_esc_makes_text_of_anything():
    assert esc("<a href=\"x\" onclick='y'>&</a>") == (
        "&lt;a href=&quot;x&quot; onclick=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
    )
    assert (
        esc(None) == ""
        and esc(0) == "0"
        and esc({"k": "<b>"}) == "{&#x27;k&#x27;: &#x27;&lt;b&gt;&#x27;}"
    )
    long = esc("<" * 10_000, limit=TEXT_LIMIT)
    assert long.endswith("…") and long.count("&lt;") == TEXT_LIMIT - 1
    assert column_titles([KEY, "power"]) == {KEY: esc(KEY), "power": "power"}
    assert [whole_number(v) for v in (3, 3.9, [3], "3", None, True, float("inf"))] == [
        3, 3, None, None, None, None, None,
    ]  # fmt: skip


@pytest.fixture
def monitor(tmp_path):
    servers = [f"memory://markup-{uuid.uuid4().hex[:8]}"]
    mon = LiveMonitor(
        MonitorConfig(
            streaming=StreamingConfig.embedded(
                kafka_bootstrap_servers=servers, storage_path=str(tmp_path)
            ),
            simulate=False,
        )
    )
    yield mon
    mon.stop()


def _hostile_docs(n: int = 5) -> list[dict]:
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    return [
        {
            "timestamp": t0 + timedelta(milliseconds=i),
            "build_id": BUILD,
            "layer": 1,
            "x": 10.0,
            "y": 10.0,
            "z": 0.04,
            "temperature": 1900.0,
            "note": NOTE,
            KEY: float(i),
        }
        for i in range(n)
    ]


def _shown_html(dash: Dashboard) -> list[str]:
    """Every HTML the dashboard's panes hold, plus its tables' column titles."""
    roots = [dash.header, dash.health.summary(), *(view.__panel__() for view in dash.views)]
    html = [str(p.object) for root in roots for p in root.select(pn.pane.HTML)]
    for table in (t for root in roots for t in root.select(pn.widgets.Tabulator)):
        html += [str(table.titles.get(c, c)) for c in table.value.columns]
        html += [str(v) for c, f in table.formatters.items() if f for v in table.value.get(c, [])]
    return html


def _assert_no_raw_marks(html: list[str]) -> None:
    for mark in MARKS:
        raw = [h[:120] for h in html if mark in h]
        assert not raw, f"{mark!r} reached the page as markup in: {raw}"


def test_every_view_escapes_hostile_data(monitor):
    """The line's build id, field names and values, alerts naming the build, an error
    text and stored history with markup field names: the HTML of every view holds them
    escaped only."""
    monitor.client.process_stream_batch(_hostile_docs())  # buffers, grid, alerts
    assert monitor.storage.store_batch(_hostile_docs()) == 5
    monitor.alerts.raise_alert(
        "temperature", "threshold_high", 2650.0, severity="critical", message=f"[build {BUILD}]"
    )
    dash = Dashboard(monitor=monitor, policy=AccessPolicy(open_access=True))
    try:
        snap = monitor.monitor_snapshot()
        stats = replace(snap.stats, last_error=f"ValueError: cannot place {BUILD}")
        snap = replace(snap, build_id=BUILD, stats=stats)
        dash._update_header(snap)
        for view in dash.views:
            view.refresh(snap)
        # the History table gets the stored messages' fields as columns
        start, end = datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC)
        df = dash.history.query_now(start, end)
        assert KEY in df.columns
        dash.history._result = ((start, end, {}), df, None)
        dash.history.refresh(snap)
        # the 3D legend of a signal named by a message
        dash.voxels.param.signal.objects = [*dash.voxels.param.signal.objects, KEY]
        dash.voxels._update_legend()
        dash.voxels.signal = KEY
        dash.voxels._update_legend()
        html = _shown_html(dash)
    finally:
        dash.stop()
    text = "\n".join(html)
    assert esc(BUILD) in dash.header.object and esc(KEY) in text and esc(BUILD) in text
    _assert_no_raw_marks(html)


def test_kiosk_tiles_escape_hostile_data(monitor):
    dash = Dashboard(monitor=monitor, kiosk=True, policy=AccessPolicy(open_access=True))
    try:
        dash.kiosk_status.update(
            MonitorSnapshot(state="running", build_id=BUILD, current_layer=[3]), {}
        )
        html = dash.kiosk_status.pane.object
    finally:
        dash.stop()
    assert esc(BUILD) in html and BUILD not in html
    assert (
        'amq-k-layer"><div class="amq-tile-label">Layer</div><div class="amq-tile-value">–' in html
    )


def test_status_line_survives_values_of_the_wrong_type(monitor):
    """A layer that came as a list, a build id of 100 kB: the line shows what it can
    (refreshes of every session used to fail on ``int([3])``)."""
    dash = Dashboard(monitor=monitor, policy=AccessPolicy(open_access=True))
    try:
        snap = replace(
            monitor.monitor_snapshot(),
            current_layer=[3],
            build_id="<" * 100_000,
            newest_timestamp={"__datetime__": "x"},
        )
        dash._update_header(snap)
    finally:
        dash.stop()
    assert 'data-layer=""' in dash.header.object and "Layer <b>–</b>" in dash.header.object
    assert len(dash.header.object) < 4 * TEXT_LIMIT + 2_000


# -- CSV -------------------------------------------------------------------------------


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_neutralises_formula_cells_but_keeps_numbers():
    df = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2026-03-01 08:00:00.5", "2026-03-01 09:00:00.0"]),
            "power": [-3.5, 280.0],
            "layer": [-1, 2],
            "note": ['=HYPERLINK("http://x")', "-2+3"],
            "mixed": ["+1", 7.0],
            "more": ["@SUM(A1)", "\tx"],
            "cr": ["\rx", "plain"],
            "=cmd|' /C calc'!A0": [1.0, 2.0],
        }
    )
    rows = _rows(history_csv(df))
    assert rows[0] == ["timestamp", "power", "layer", "note", "mixed", "more", "cr",
                       "'=cmd|' /C calc'!A0"]  # fmt: skip
    assert rows[1] == ["2026-03-01T08:00:00.500000+00:00", "-3.5", "-1", "'=HYPERLINK(\"http://x\")",
                       "'+1", "'@SUM(A1)", "'\rx", "1.0"]  # fmt: skip
    assert rows[2] == ["2026-03-01T09:00:00.000000+00:00", "280.0", "2", "'-2+3", "7.0", "'\tx",
                       "plain", "2.0"]  # fmt: skip


def test_csv_timestamps_carry_their_offset():
    aware = pd.DataFrame(
        {"timestamp": pd.to_datetime(["2026-03-01T10:00:00+02:00"]).tz_convert("Europe/Berlin")}
    )
    assert _rows(history_csv(aware))[1] == ["2026-03-01T08:00:00.000000+00:00"]
    empty = pd.DataFrame({"timestamp": pd.to_datetime([None, "2026-03-01"])})
    assert _rows(history_csv(empty))[1:] == [[""], ["2026-03-01T00:00:00.000000+00:00"]]


def test_history_download_is_formula_safe_end_to_end(monitor):
    docs = _hostile_docs(2)
    docs[0]["note"] = "=1+1"
    assert monitor.storage.store_batch(docs) == 2
    view = HistoryView(monitor=monitor)
    now = datetime.now(UTC)
    view._frame = view.query_now(now - timedelta(minutes=5), now)
    rows = _rows(view._csv().getvalue())
    header = rows[0]
    assert rows[1][header.index("note")] == "'=1+1"
    stamp = rows[1][header.index("timestamp")]
    assert stamp.endswith("+00:00") and datetime.fromisoformat(stamp).tzinfo is not None
    assert np.isclose(float(rows[1][header.index("temperature")]), 1900.0)


def test_history_filters_refuse_numbers_a_browser_should_not_send(monitor):
    with pytest.raises(ValueError, match="finite"):
        history_filters(signal="temperature", value_range=(float("nan"), None))
    with pytest.raises(ValueError, match="finite"):
        history_filters(layers=(0, float("inf")))
    view = HistoryView(monitor=monitor)
    view.value_min.value = float("inf")
    view.query()
    assert "Query not run" in view.info.object and view._pending is None


def test_page_title_is_text(monitor):
    """The page template puts its title into the header as HTML (no autoescape)."""
    dash = Dashboard(monitor=monitor, title=f"Line {BUILD}", policy=AccessPolicy(open_access=True))
    try:
        shown = dash.template().title
    finally:
        dash.stop()
    assert shown == esc(f"Line {BUILD}")
