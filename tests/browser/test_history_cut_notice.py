"""The History view says when the library cut a query's result (row limit or time
budget), not only when the widget's own limit was reached. Needs no browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from am_qadf.streaming.history_store import HistoryResult
from dashboard.history_view import HistoryView


def _view(result: HistoryResult) -> HistoryView:
    monitor = SimpleNamespace(query_history=lambda *a, **k: result, storage=None)
    return HistoryView(monitor=monitor)


def _run(view: HistoryView) -> str:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spec = (start, start + timedelta(minutes=1), {})
    view._result = (spec, view.query_now(*spec[:2]), None)
    view.refresh({})
    return view.info.object


def test_cut_result_shows_a_notice_with_the_reason():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    docs = HistoryResult({"timestamp": t, "temperature": 1.0, "_id": str(i)} for i in range(3))
    docs.cut("time budget of 30.0 s spent")
    text = _run(_view(docs))
    assert 'class="amq-history-cut' in text and "time budget of 30.0 s spent" in text


def test_complete_result_shows_no_notice():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    docs = HistoryResult({"timestamp": t, "temperature": 1.0, "_id": str(i)} for i in range(3))
    text = _run(_view(docs))
    assert "amq-history-cut" not in text and 'data-rows="3"' in text
