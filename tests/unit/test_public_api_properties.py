"""Property-based tests over the public API: random shapes, dtypes, lengths and
timestamps (naive, aware, out of order) give correct results or a clear
ValueError/TypeError, and a refused call changes nothing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from am_qadf.streaming import IncrementalProcessor, StreamingClient, StreamingConfig, StreamStorage
from am_qadf.streaming.history_filters import matches, validate_filters
from am_qadf.voxelization.voxel_grid import VoxelGrid

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

dtypes = st.sampled_from(
    [np.float64, np.float32, np.int32, np.int64, np.uint8, np.bool_, np.complex64, object, "U3"]
)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


def _snapshot(proc: IncrementalProcessor) -> tuple:
    g = proc.voxel_grid
    arrays = tuple((n, g.get_signal_array(n).tobytes()) for n in g.available_signals)
    return (
        arrays,
        proc.get_statistics()["total_points_processed"],
        tuple(map(tuple, proc.get_updated_indices())),
    )


@SETTINGS
@given(
    data_shape=shapes,
    coord_shape=shapes,
    data_dtype=dtypes,
    coord_dtype=dtypes,
    seed=st.integers(0, 9),
)
def test_update_voxel_grid_is_all_or_nothing(
    data_shape, coord_shape, data_dtype, coord_dtype, seed
):
    proc = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
    proc.update_voxel_grid(np.array([5.0]), np.array([[1.0, 1.0, 1.0]]))
    before = _snapshot(proc)
    rng = np.random.default_rng(seed)
    try:
        data = rng.uniform(0, 12, data_shape).astype(data_dtype)
        coords = rng.uniform(-1, 12, coord_shape).astype(coord_dtype)
    except (TypeError, ValueError):
        return
    try:
        proc.update_voxel_grid(data, coords)
    except (ValueError, TypeError) as exc:
        assert str(exc), "errors must say what was wrong"
        assert _snapshot(proc) == before, "a refused update must change nothing"
        return
    if coords.size == 0 and data.size == 0:
        assert _snapshot(proc) == before, "an empty batch is a no-op"
        return
    # accepted: the input had a valid form
    assert coords.ndim == 2 and coords.shape[1] == 3 and data.shape[0] == coords.shape[0]
    inside = np.all((coords >= 0) & (coords < 10), axis=1)
    assert proc.get_statistics()["total_points_processed"] == 1 + coords.shape[0]
    assert proc.get_statistics()["points_accepted"] == 1 + int(inside.sum())


stamp = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]
        ),
    ),
)


@SETTINGS
@given(stamps=st.lists(stamp, min_size=0, max_size=20))
def test_history_is_sorted_and_complete_for_any_timestamps(tmp_path_factory, stamps):
    storage = StreamStorage(path=tmp_path_factory.mktemp("h") / "h.sqlite3")
    docs = [{"i": i, "timestamp": t} for i, t in enumerate(stamps)]
    assert storage.store_batch(docs) == len(docs)
    got = storage.query_stream_history(datetime(1999, 1, 1), datetime(2101, 1, 1))
    assert sorted(d["i"] for d in got) == list(range(len(stamps)))
    times = [d["timestamp"] for d in got]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    expected = {i: (t.replace(tzinfo=UTC) if t.tzinfo is None else t) for i, t in enumerate(stamps)}
    assert all(d["timestamp"] == expected[d["i"]] for d in got), (
        "naive is UTC, aware keeps its instant"
    )


junk = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@SETTINGS
@given(
    batch=st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from(["value", "x", "timestamp", "layer"]), junk), junk
        ),
        max_size=15,
    )
)
def test_store_batch_refuses_bad_items_whole(tmp_path_factory, batch):
    storage = StreamStorage(path=tmp_path_factory.mktemp("s") / "s.sqlite3")
    try:
        inserted = storage.store_batch(batch)
    except (TypeError, ValueError) as exc:
        assert str(exc)
        assert storage.history.count() == 0, "nothing is stored from a refused batch"
        return
    assert inserted == len(batch) == storage.history.count()


@SETTINGS
@given(
    batch=st.lists(
        st.dictionaries(st.sampled_from(["value", "x", "y", "temperature", "layer"]), junk),
        max_size=20,
    )
)
def test_process_stream_batch_never_fails_on_dicts(batch):
    client = StreamingClient(StreamingConfig.embedded())
    result = client.process_stream_batch(batch)
    assert result.processed_count == len(batch)
    for m, v in zip(batch, result.data_batch, strict=True):
        raw = m.get("value")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            assert v == pytest.approx(float(raw), nan_ok=True)
        else:
            assert math.isnan(v)


@SETTINGS
@given(
    filters=st.recursive(
        st.dictionaries(
            st.sampled_from(["layer", "x", "$gt", "$in", "$where", "$or", "bad field"]),
            junk,
            max_size=3,
        ),
        lambda inner: st.dictionaries(
            st.sampled_from(["layer", "$and", "$or", "$gte", "$function"]),
            st.one_of(inner, st.lists(inner, max_size=2)),
            max_size=2,
        ),
        max_leaves=6,
    )
)
def test_filters_are_validated_or_refused_clearly(filters):
    try:
        checked = validate_filters(filters)
    except (ValueError, TypeError) as exc:
        assert str(exc).startswith("filters")
        return
    assert not any(k in str(checked) for k in ("$where", "$function"))
    matches({"layer": 3, "x": 1.0}, checked)  # evaluating a valid filter never raises
