"""timestamps.py conversions and history_filters.py validation and matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from am_qadf.streaming.history_filters import FORBIDDEN_OPERATORS, matches, validate_filters
from am_qadf.streaming.timestamps import (
    epoch_us_array,
    from_epoch_us,
    now_utc,
    to_epoch_us,
    to_utc,
)

PLUS2 = timezone(timedelta(hours=2))
T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T_US = 1_767_323_045_678_901


def is_utc(d: datetime) -> bool:
    return d.tzinfo is not None and d.utcoffset() == timedelta(0)


# -- to_utc -------------------------------------------------------------------------------
def test_now_utc_is_aware() -> None:
    before = datetime.now(UTC)
    now = now_utc()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678901), T),
        (T, T),
        (datetime(2026, 1, 2, 5, 4, 5, 678901, tzinfo=PLUS2), T),
        ("2026-01-02T03:04:05.678901Z", T),
        ("2026-01-02T03:04:05.678901", T),
        ("2026-01-02T04:04:05.678901+01:00", T),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
        (np.datetime64("2026-01-02T03:04:05.678901234", "ns"), T),
        (np.datetime64("2026-01-02", "D"), datetime(2026, 1, 2, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1.5, datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)),
        (-1, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (np.int64(86400), datetime(1970, 1, 2, tzinfo=UTC)),
        (np.float32(0.5), datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_to_utc_conversions(value, expected) -> None:
    out = to_utc(value)
    assert out == expected
    assert is_utc(out)


def test_to_utc_keeps_the_instant_and_wall_time_of_naive() -> None:
    aware = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-7)))
    assert to_utc(aware).hour == 19
    assert to_utc(datetime(2026, 6, 1, 12, 0)).hour == 12


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        ("yesterday", ValueError, "when: 'yesterday' is not an ISO 8601 timestamp"),
        ("x" * 200, ValueError, "when: 'x{64}' is not"),
        (float("nan"), ValueError, "when: nan is not a finite epoch time"),
        (float("inf"), ValueError, "when: inf is not a finite"),
        (np.float64("-inf"), ValueError, "finite"),
        (True, TypeError, "when: expected datetime"),
        (None, TypeError, "got NoneType"),
        ([2026, 1, 1], TypeError, "got list"),
        (b"2026-01-01", TypeError, "got bytes"),
    ],
)
def test_to_utc_errors_name_the_field(value, exc, match) -> None:
    with pytest.raises(exc, match=match):
        to_utc(value, name="when")


@pytest.mark.parametrize("value", [1e20, -1e15, np.datetime64("NaT")], ids=["huge", "neg", "nat"])
def test_to_utc_out_of_range_is_a_value_error(value) -> None:
    with pytest.raises(ValueError, match="when"):
        to_utc(value, name="when")


# -- epoch microseconds ----------------------------------------------------------------------
def test_to_epoch_us() -> None:
    assert to_epoch_us(T) == T_US
    assert to_epoch_us(T.replace(tzinfo=None)) == T_US  # naive is UTC
    assert to_epoch_us(T.astimezone(PLUS2)) == T_US
    assert to_epoch_us("2026-01-02T03:04:05.678901Z") == T_US
    assert to_epoch_us(datetime(1969, 12, 31, 23, 59, 59, 999999)) == -1
    assert to_epoch_us(0.000001) == 1
    with pytest.raises(ValueError, match="stamp"):
        to_epoch_us("nope", name="stamp")


def test_from_epoch_us() -> None:
    assert from_epoch_us(T_US) == T and is_utc(from_epoch_us(T_US))
    assert from_epoch_us(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    out = from_epoch_us(np.array([0, T_US], dtype=np.int64))
    assert out == [datetime(1970, 1, 1, tzinfo=UTC), T]
    assert all(is_utc(d) for d in out)
    assert from_epoch_us(np.array([], dtype=np.int64)) == []


def test_epoch_us_array_inputs() -> None:
    dt64 = np.array(["2026-01-02T03:04:05.678901234", "1970-01-01"], dtype="datetime64[ns]")
    assert epoch_us_array(dt64).tolist() == [T_US, 0]
    floats = np.array([0.5, 1.0000014, -2.0])
    assert epoch_us_array(floats).tolist() == [500000, 1000001, -2000000]
    assert epoch_us_array(np.array([1, 2], dtype=np.int32)).tolist() == [1_000_000, 2_000_000]
    mixed = [T, "2026-01-02T03:04:05.678901Z", 0, datetime(2026, 1, 2, 3, 4, 5, 678901)]
    out = epoch_us_array(mixed)
    assert out.dtype == np.int64 and out.tolist() == [T_US, T_US, 0, T_US]
    assert epoch_us_array(np.array([T, T], dtype=object)).tolist() == [T_US, T_US]
    assert epoch_us_array((T,)).tolist() == [T_US]
    empty = epoch_us_array([])
    assert empty.dtype == np.int64 and empty.shape == (0,)


def test_epoch_us_array_of_aware_datetimes() -> None:
    # aware datetimes (any zone) take the path without a Python call per value; a naive
    # datetime, string or datetime64 after an aware first value still converts
    before_epoch = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert epoch_us_array([T, T.astimezone(PLUS2), before_epoch]).tolist() == [T_US, T_US, -1]
    later = [T.replace(tzinfo=None), "1970-01-01T00:00:01Z", np.datetime64(0, "us")]
    assert epoch_us_array([T, *later]).tolist() == [T_US, T_US, 1_000_000, 0]


@pytest.mark.parametrize(
    ("values", "exc", "match"),
    [
        (np.array([1.0, np.nan]), ValueError, "stamps: contains NaN or inf"),
        (np.array([np.inf]), ValueError, "NaN or inf"),
        ("2026-01-01", TypeError, "stamps: expected a sequence"),
        (5, TypeError, "expected a sequence"),
        (np.array([True, False]), TypeError, "stamps"),
        ([T, "garbage"], ValueError, "stamps: 'garbage'"),
        ([T, None], TypeError, "stamps"),
    ],
)
def test_epoch_us_array_errors(values, exc, match) -> None:
    with pytest.raises(exc, match=match):
        epoch_us_array(values, name="stamps")


@settings(max_examples=50, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_epoch_round_trip(d: datetime) -> None:
    us = to_epoch_us(d)
    assert from_epoch_us(us) == d
    assert from_epoch_us(np.array([us]))[0] == d
    assert epoch_us_array([d]).tolist() == [us]
    assert to_epoch_us(d.replace(tzinfo=None)) == us
    assert to_epoch_us(d.isoformat()) == us


# -- validate_filters -----------------------------------------------------------------------
def test_validate_none_and_copy() -> None:
    assert validate_filters(None) == {}
    f = {"layer": {"$gte": 3}, "$or": [{"a": 1}, {"b": {"$in": [1, 2]}}]}
    out = validate_filters(f)
    assert out == f and out is not f


@pytest.mark.parametrize(
    "filters",
    [
        {"layer": 3},
        {"layer": {"$gte": 3, "$lt": 5}},
        {"meta.machine": "m1"},
        {"_private": None},
        {"$and": [{"a": 1}, {"$or": [{"b": 2}, {"c": {"$exists": False}}]}]},
        {"$nor": [{"a": {"$nin": [1, 2]}}]},
        {"t": {"$gt": datetime(2026, 1, 1)}},
        {"tags": [1, 2]},
    ],
)
def test_valid_filters_pass(filters) -> None:
    assert validate_filters(filters) == filters


@pytest.mark.parametrize("op", sorted(FORBIDDEN_OPERATORS))
@pytest.mark.parametrize(
    "shape",
    [
        lambda op: {op: "code"},
        lambda op: {"layer": {op: "code"}},
        lambda op: {"$and": [{"a": 1}, {op: "code"}]},
        lambda op: {"$or": [{"$nor": [{op: "code"}]}]},
    ],
    ids=["top", "field", "and", "deep"],
)
def test_server_side_code_operators_refused_anywhere(op, shape) -> None:
    with pytest.raises(ValueError, match=rf"operator '\{op}' is not allowed"):
        validate_filters(shape(op))


@pytest.mark.parametrize(
    ("filters", "exc", "match"),
    [
        ("layer = 3", TypeError, "filters must be a dict"),
        ({1: 2}, ValueError, "keys must be strings"),
        ({"layer": {"$regex": "a"}}, ValueError, r"'\$regex' is not supported"),
        ({"$text": {"$search": "x"}}, ValueError, "not supported"),
        ({"layer": {"$in": 3}}, ValueError, r"\$in needs a list"),
        ({"layer": {"$nin": "ab"}}, ValueError, r"\$nin needs a list"),
        ({"$or": {"a": 1}}, ValueError, r"\$or needs a non-empty list"),
        ({"$and": []}, ValueError, r"\$and needs a non-empty list"),
        ({"$or": [{"a": 1}, 5]}, ValueError, r"filters\.\$or\[1\]: must be a dict"),
        ({"layer": {}}, ValueError, "give a value or a dict of operators"),
        ({"layer": {"nested": 1}}, ValueError, "give a value or a dict of operators"),
        ({"layer": {"$eq": {"a": 1}}}, ValueError, "nested documents"),
        ({"layer": [{"a": 1}]}, ValueError, "nested documents"),
        ({"1layer": 1}, ValueError, "not a valid field name"),
        ({"a b": 1}, ValueError, "not a valid field name"),
        ({"": 1}, ValueError, "not a valid field name"),
    ],
)
def test_malformed_filters_refused(filters, exc, match) -> None:
    with pytest.raises(exc, match=match):
        validate_filters(filters)


def test_allowed_fields_limit_queries() -> None:
    allowed = ["layer", "build_id"]
    assert validate_filters({"layer": 1, "$or": [{"build_id": "b"}]}, allowed) == {
        "layer": 1,
        "$or": [{"build_id": "b"}],
    }
    with pytest.raises(
        ValueError, match=r"field 'power' is not queryable; use one of \['build_id', 'layer'\]"
    ):
        validate_filters({"power": 1}, allowed)
    with pytest.raises(ValueError, match="'secret' is not queryable"):
        validate_filters({"$and": [{"layer": 1}, {"secret": 1}]}, allowed)


@pytest.mark.parametrize(
    "filters",
    [{"$eq": 3}, {"layer": {"$or": [{"layer": 1}]}}],
    ids=["top_level_comparison", "logical_inside_field"],
)
def test_misplaced_operators_refused(filters) -> None:
    with pytest.raises(ValueError):
        validate_filters(filters)


# -- matches -------------------------------------------------------------------------------
DOC = {
    "layer": 4,
    "power": 250.5,
    "name": "part-a",
    "none": None,
    "meta": {"machine": "m1", "zone": {"id": 3}},
    "timestamp": datetime(2026, 1, 1, 12, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, True),
        ({"layer": 4}, True),
        ({"layer": 5}, False),
        ({"layer": 4.0}, True),
        ({"none": None}, True),
        ({"layer": {"$eq": 4}}, True),
        ({"layer": {"$ne": 4}}, False),
        ({"missing": {"$ne": 1}}, True),
        ({"layer": {"$gt": 3, "$lt": 5}}, True),
        ({"layer": {"$gt": 3, "$lt": 4}}, False),
        ({"layer": {"$gte": 4, "$lte": 4}}, True),
        ({"power": {"$lt": 250.5}}, False),
        ({"missing": {"$gt": 0}}, False),
        ({"none": {"$gt": 0}}, False),
        ({"name": {"$gt": 3}}, False),  # incomparable types never match
        ({"name": {"$gte": "part"}}, True),
        ({"layer": {"$in": [1, 4]}}, True),
        ({"layer": {"$in": []}}, False),
        ({"layer": {"$nin": [1, 4]}}, False),
        ({"missing": {"$nin": [1]}}, True),
        ({"missing": {"$exists": False}}, True),
        ({"none": {"$exists": True}}, True),
        ({"layer": {"$exists": False}}, False),
        ({"meta.machine": "m1"}, True),
        ({"meta.zone.id": {"$gte": 3}}, True),
        ({"meta.zone.id.deeper": {"$exists": True}}, False),
        ({"name.sub": {"$exists": True}}, False),
        ({"$and": [{"layer": 4}, {"name": "part-a"}]}, True),
        ({"$and": [{"layer": 4}, {"name": "part-b"}]}, False),
        ({"$or": [{"layer": 1}, {"name": "part-a"}]}, True),
        ({"$or": [{"layer": 1}, {"name": "x"}]}, False),
        ({"$nor": [{"layer": 1}, {"name": "x"}]}, True),
        ({"$nor": [{"layer": 4}]}, False),
        ({"layer": 4, "name": "x"}, False),
        ({"timestamp": datetime(2026, 1, 1, 12)}, True),  # naive filter value is UTC
        ({"timestamp": {"$gt": datetime(2026, 1, 1, 13, tzinfo=PLUS2)}}, True),
        ({"timestamp": {"$gt": datetime(2026, 1, 1, 14, tzinfo=PLUS2)}}, False),
        ({"timestamp": {"$in": [datetime(2026, 1, 1, 12)]}}, True),
        ({"timestamp": {"$lt": "2027"}}, False),  # string vs datetime: no match
    ],
)
def test_matches(filters, expected) -> None:
    validate_filters(filters)
    assert matches(DOC, filters) is expected


def test_matches_naive_document_datetime_against_aware_filter() -> None:
    doc = {"t": datetime(2026, 1, 1, 12)}
    assert matches(doc, {"t": {"$gte": datetime(2026, 1, 1, 12, tzinfo=UTC)}}) is True
    assert matches(doc, {"t": {"$gt": datetime(2026, 1, 1, 12, tzinfo=UTC)}}) is False


@pytest.mark.parametrize(
    ("doc", "filters", "expected"),
    [
        ({"a": 1}, {"missing": None}, True),
        ({"a": 1}, {"missing": {"$in": [None]}}, True),
        ({"a": 1}, {"missing": {"$ne": None}}, False),
        ({"tags": [1, 2]}, {"tags": 2}, True),
        ({"tags": [1, 2]}, {"tags": {"$in": [2, 5]}}, True),
    ],
    ids=["eq_null_missing", "in_null_missing", "ne_null_missing", "array_eq", "array_in"],
)
def test_matches_follows_mongodb_for_null_and_arrays(doc, filters, expected) -> None:
    assert matches(doc, validate_filters(filters)) is expected
