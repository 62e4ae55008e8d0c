"""History filters run in the database: the same filters on the embedded SQLite history
give what MongoDB semantics say (the reference: :func:`matches` over every document),
with the row limit and time budget reported. ``DOCS``, ``FILTERS`` and
:func:`check_backend` are shared with tests/integration/test_storage_backends.py, which
runs them against the MongoDB-wire server too."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from am_qadf.streaming import StreamStorage
from am_qadf.streaming.history_filters import matches, validate_filters

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _doc(i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "seq": i,
        "timestamp": T0 + timedelta(seconds=i),
        "build_id": f"b{i % 3}",
        "layer": i // 4,
        "temperature": 1500.0 + 25 * i,
    }
    # the odd ones: flags as booleans and as ints, arrays, nulls, missing fields,
    # strings where numbers usually are, nested documents, tag-shaped data
    extras = [
        {"flag": True},
        {"flag": 1},
        {"flag": False, "tags": ["a", "b"]},
        {"flag": 0, "tags": [1, 5]},
        {"note": None},
        {"temperature": "hot"},
        {"meta": {"zone": 2, "machine": "m1"}},
        {"meta": {"__datetime__": "x"}},
        {"layer": [1, 9], "build_id": ["b1", "b9"]},
        {"build_id": "[b1]"},
        {"layer": 2.0},
        {"meta": [{"zone": 2}, {"zone": 5, "machine": "m2"}]},
        {"meta": [{"zone": 7}, 3]},
        {},
    ]
    doc.update(extras[i % len(extras)])
    return doc


DOCS = [_doc(i) for i in range(48)]

FILTERS: list[dict[str, Any]] = [
    {"build_id": "b1"},
    {"build_id": {"$in": ["b0", "b2"]}},
    {"build_id": "[b1]"},
    {"layer": 2},
    {"layer": {"$gte": 3, "$lte": 6}},
    {"layer": {"$lt": 2}},
    {"layer": {"$gt": 8}},
    {"temperature": {"$gte": 1900.0}},
    {"temperature": {"$lt": 1600}},
    {"temperature": {"$gt": "a"}},
    {"flag": 1},
    {"flag": True},
    {"flag": {"$in": [0, False]}},
    {"flag": {"$ne": 1}},
    {"flag": {"$exists": False}},
    {"note": None},
    {"note": {"$exists": True}},
    {"tags": "a"},
    {"tags": {"$gte": 3}},
    {"tags": ["a", "b"]},
    {"meta.zone": 2},
    {"meta.zone": {"$gt": 4}},
    {"meta.machine": {"$exists": True}},
    {"meta.zone": {"$in": [5, 7]}},
    {"meta.__datetime__": "x"},
    {"seq": {"$nin": [1, 2, 3]}},
    {"$or": [{"layer": 0}, {"build_id": "b2", "flag": True}]},
    {"$and": [{"layer": {"$gte": 1}}, {"$nor": [{"build_id": "b0"}]}]},
    {"$or": [{"temperature": {"$gt": 2500}}, {"note": {"$exists": True}}]},
    {"seq": {"$in": list(range(0, 5000, 7))}},
    {"timestamp": {"$gte": T0 + timedelta(seconds=40)}},
]


# Left out: null and $ne through arrays of documents ({"meta.machine": None},
# {"meta.zone": {"$ne": 2}}), where FerretDB 1.24 answers otherwise than MongoDB's
# documented semantics, which matches() follows.


def reference(docs: list[dict[str, Any]], filters: dict[str, Any]) -> list[int]:
    """Sequence numbers of ``docs`` matching ``filters`` by MongoDB semantics, oldest first."""
    checked = validate_filters(filters)
    return [d["seq"] for d in sorted(docs, key=lambda d: d["timestamp"]) if matches(d, checked)]


def check_backend(storage: StreamStorage) -> dict[str, list[int]]:
    """Store DOCS in ``storage``, run every filter and return ``{filter: seqs}``."""
    storage.store_batch([dict(d) for d in DOCS])
    return {repr(f): [d["seq"] for d in storage.query_stream_history(*WIDE, f)] for f in FILTERS}


@pytest.fixture
def storage(tmp_path) -> StreamStorage:
    return StreamStorage(path=tmp_path / "h.sqlite3")


def test_sqlite_gives_what_mongodb_semantics_say(storage) -> None:
    got = check_backend(storage)
    for f in FILTERS:
        assert got[repr(f)] == reference(DOCS, f), f


@pytest.mark.parametrize(
    ("filters", "expected"),
    [({"flag": 1}, [1, 15, 29, 43]), ({"flag": True}, [0, 14, 28, 42])],
)
def test_numbers_and_booleans_never_match_each_other(storage, filters, expected) -> None:
    storage.store_batch([dict(d) for d in DOCS])
    assert [d["seq"] for d in storage.query_stream_history(*WIDE, filters)] == expected


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({"build_id": re.compile("b.*")}, "values must be strings, numbers"),
        ({"build_id": MappingProxyType({"$ne": 1})}, "values must be strings, numbers"),
        ({"layer": {"$in": [MappingProxyType({"$gt": 1})]}}, "values must be strings"),
        ({"layer": {"$in": [[1, 2]]}}, "lists inside lists"),
        ({"layer": {"$gt": None}}, r"\$gt needs a number, string or datetime"),
        ({"layer": {"$exists": "yes"}}, r"\$exists needs true or false"),
        ({"layer": 2**64}, "integer outside the 64-bit range"),
        ({"layer": float("nan")}, "NaN matches nothing"),
        ({"build_id\n": 1}, "not a valid field name"),
        ({"meta..zone": 1}, "not a valid field name"),
        ({"tags.0": 1}, "not a valid field name"),
        ({"layer": {"$in": list(range(30_000))}}, "filter too large"),
    ],
)
def test_values_that_are_not_plain_data_are_refused(storage, filters, match) -> None:
    with pytest.raises(ValueError, match=match):
        storage.query_stream_history(*WIDE, filters)


def test_deep_nesting_is_a_value_error_not_a_recursion_error(storage) -> None:
    deep: dict[str, Any] = {"layer": 1}
    for _ in range(5000):
        deep = {"$and": [deep]}
    with pytest.raises(ValueError, match="nested deeper than 16"):
        storage.query_stream_history(*WIDE, deep)
    ok: dict[str, Any] = {"layer": 1}
    for _ in range(15):
        ok = {"$or": [ok]}
    assert [d["layer"] for d in storage.query_stream_history(*WIDE, ok)] == []


def test_row_limit_cuts_and_says_so(tmp_path) -> None:
    storage = StreamStorage(path=tmp_path / "h.sqlite3", max_rows=10)
    storage.store_batch([dict(d) for d in DOCS])
    docs = storage.query_stream_history(*WIDE)
    assert isinstance(docs, list) and len(docs) == 10 and docs.truncated
    assert docs.reason == "row limit of 10 reached"
    assert [d["seq"] for d in docs] == list(range(10))  # oldest first
    exact = storage.query_stream_history(*WIDE, {"seq": {"$lt": 10}})
    assert len(exact) == 10 and not exact.truncated and exact.reason is None
    few = storage.query_stream_history(*WIDE, limit=3)
    assert len(few) == 3 and few.truncated


def test_time_budget_cuts_and_says_so(tmp_path) -> None:
    storage = StreamStorage(path=tmp_path / "h.sqlite3", query_timeout_s=1e-9)
    storage.store_batch([dict(d) for d in DOCS])
    docs = storage.query_stream_history(*WIDE, {"temperature": {"$gte": 0}})
    assert docs.truncated and "time budget" in docs.reason
    assert len(docs) < len(DOCS)


def test_indexed_fields_are_found_through_their_index(storage) -> None:
    storage.store_batch([{"build_id": f"b{i % 50}", "layer": i, "v": 1.0} for i in range(500)])
    db = storage.history._db
    statements: list[str] = []
    db.set_trace_callback(statements.append)  # the SQL as run, parameters inlined
    try:
        now = datetime.now(UTC)
        got = storage.query_stream_history(now - timedelta(hours=1), now, {"build_id": "b7"})
    finally:
        db.set_trace_callback(None)
    plans = [
        db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        for sql in statements
        if sql.startswith("SELECT id, doc")
    ]
    assert len(got) == 10
    assert any("USING INDEX stream_data_build_id" in str(p) for p in plans), plans


def test_filtering_runs_in_sql_not_in_python(tmp_path) -> None:
    """Over 20,000 rows a selective filter decodes only the matching rows: counted by
    how many documents the codec decodes, never by wall time."""
    from am_qadf.streaming import cache_codec

    storage = StreamStorage(path=tmp_path / "h.sqlite3")
    storage.store_batch(
        [{"build_id": f"b{i % 100}", "temperature": float(i), "seq": i} for i in range(20_000)]
    )
    decoded = 0
    real = cache_codec.decode

    def counting(data):
        nonlocal decoded
        decoded += 1
        return real(data)

    cache_codec.decode = counting
    try:
        now = datetime.now(UTC)
        start = now - timedelta(hours=1)
        by_build = storage.query_stream_history(start, now, {"build_id": "b42"})
        by_value = storage.query_stream_history(start, now, {"temperature": {"$gte": 19_900}})
    finally:
        cache_codec.decode = real
    assert len(by_build) == 200 and len(by_value) == 100
    assert decoded == 300


def test_id_filters_match_on_sqlite_as_on_mongodb(storage) -> None:
    storage.store_batch([{"topic": "t", "partition": 0, "offset": i, "v": i} for i in range(5)])
    now = datetime.now(UTC)
    got = storage.query_stream_history(now - timedelta(hours=1), now, {"_id": {"$in": ["t:0:3"]}})
    assert [d["v"] for d in got] == [3]
