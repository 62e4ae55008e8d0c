"""History traps (#13 item 7), in-process: relative ranges measured when the query
runs, the newest rows and a notice when a result is cut, typed times, a sort on a
column the new result lacks, the retention stated on the tab."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from am_qadf.machine_view import MonitorSnapshot
from dashboard import history_view
from dashboard.history_view import HistoryView


@pytest.fixture
def view(tmp_path):
    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig

    servers = [f"memory://hist-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    return HistoryView(monitor=LiveMonitor(MonitorConfig(streaming=cfg, simulate=False)))


def _finish(view: HistoryView) -> str:
    for _ in range(2000):  # the query runs in a thread; bounded wait on its result
        if view._result is not None:
            break
        time.sleep(0.01)
    view.refresh(MonitorSnapshot())
    return view.info.object


def test_relative_range_is_measured_when_the_query_runs(view, monkeypatch):
    later = datetime.now(UTC) + timedelta(hours=3)  # the page has been open for 3 h

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return later

    monkeypatch.setattr(history_view, "datetime", Clock)
    view.time_range.value = "Last hour"
    start, end, _ = view._spec()
    assert (start, end) == (later - timedelta(hours=1), later)


def test_cut_result_shows_the_newest_rows_and_says_so(view):
    now = datetime.now(UTC)
    docs = [
        {"timestamp": now - timedelta(milliseconds=3000 - i), "layer": i, "temperature": 1900.0}
        for i in range(3000)
    ]
    view.monitor.storage.store_batch(docs)
    view.limit = 500
    view.time_range.value = "Last minute"
    view.query()
    info = _finish(view)
    assert 250 <= view.rows <= 500
    assert view._frame["layer"].iloc[-1] == 2999  # the newest row is in
    assert 'data-cut="1"' in info and "more than 500 rows matched" in info
    view.limit = 5000  # everything fits: no notice
    view.query()
    assert 'data-cut="1"' not in _finish(view) and view.rows == 3000


def test_custom_range_takes_typed_times_with_a_clear_error(view):
    view.time_range.value = "Custom"
    assert view.start_text.visible and view.start_text.value  # prefilled to the second
    datetime.strptime(view.start_text.value, "%Y-%m-%d %H:%M:%S")
    view.start_text.value = "yesterday noon"
    view.query()
    assert (
        "Query not run" in view.info.object
        and "From: &#x27;yesterday noon&#x27;" in (view.info.object)
        and view._pending is None
    )
    view.start_text.value, view.end_text.value = "2026-12-05 08:30:15", "2026-12-05T08:45"
    start, end, _ = view._spec()
    assert start == datetime(2026, 12, 5, 8, 30, 15, tzinfo=UTC)
    assert end == datetime(2026, 12, 5, 8, 45, tzinfo=UTC)


def test_sorted_column_then_empty_result_shows_the_result(view):
    view.table.value = pd.DataFrame({"timestamp": [pd.Timestamp("2026-01-01")], "power": [1.0]})
    view.table.sorters = [{"field": "power", "dir": "desc"}]
    view.query()  # nothing stored: an empty result, without the sorted column
    info = _finish(view)
    assert 'data-rows="0"' in info and "Running query" not in info
    assert view.table.sorters == [] and not view.run.disabled


def test_tab_states_the_retention_the_library_applies(view):
    disk = view.monitor.history_disk()
    assert view.keep_hours.value == disk["retention_s"] / 3600 == 24.0
    view.refresh(view.monitor.monitor_snapshot())
    text = view.retention.object
    assert "the last 24 h" in text and "at most 1,024 MiB (oldest deleted first)" in text


def test_health_shows_the_history_file_against_its_limit(view):
    from dashboard.health_view import HealthView

    health = HealthView(monitor=view.monitor)
    health.refresh(MonitorSnapshot(history_disk={"bytes": 300 * 2**20, "max_bytes": 2**30}))
    assert "history file" in health.compact.object
    assert "300 MiB of 1,024 MiB" in health.compact.object
    assert "limit 1,024 MiB, oldest messages deleted first" in health.detail.object
    health.refresh(MonitorSnapshot(history_disk={"bytes": None, "max_bytes": 2**30}))  # MongoDB
    assert "history file" not in health.compact.object


def test_a_cut_the_storage_reports_is_shown_too():
    from dashboard.history_view import cut_notice, fetch_newest

    class Cut(list):
        reason = "time budget of 30 s spent"

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = Cut([{"timestamp": t0}, {"timestamp": t0 + timedelta(seconds=1)}])
    got, why = fetch_newest(lambda a, b, n: rows, t0, t0 + timedelta(hours=1), 10)
    assert why == "time budget of 30 s spent" and len(got) == 2
    assert "time budget of 30 s spent" in cut_notice(len(got), t0, t0, why)


def test_newest_rows_are_found_when_the_range_ends_sparse():
    from dashboard.history_view import fetch_newest

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # 100 rows a second for 10 s, then one row a second for 50 s
    stamps = [t0 + timedelta(milliseconds=10 * i) for i in range(1000)]
    stamps += [t0 + timedelta(seconds=10 + i) for i in range(1, 51)]
    rows = [{"timestamp": t, "i": i} for i, t in enumerate(stamps)]
    calls = []

    def fetch(a, b, n):
        calls.append((a, b))
        return [r for r in rows if a <= r["timestamp"] <= b][:n]

    got, why = fetch_newest(fetch, t0, stamps[-1], 200)
    assert why == "more than 200 rows matched" and len(calls) <= 7
    assert 100 <= len(got) <= 200 and got[-1]["i"] == 1049  # up to the newest row
    assert [r["i"] for r in got] == list(range(1050 - len(got), 1050))  # contiguous
