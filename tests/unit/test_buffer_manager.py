"""BufferManager: ring eviction, batches across the wrap, time windows, timestamps, errors."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from am_qadf.streaming import BufferManager

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ts(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def snapshot(buf: BufferManager):
    data, times, meta = buf.get_sliding_window(buf.buffer_size)
    return data.tolist(), list(times), list(meta), buf.get_buffer_statistics()


# -- construction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"window_size": 0}, ValueError, "window_size"),
        ({"window_size": -3}, ValueError, "window_size"),
        ({"buffer_size": 0}, ValueError, "buffer_size"),
        ({"buffer_size": "10"}, TypeError, "buffer_size"),
        ({"buffer_size": 10.0}, TypeError, "buffer_size"),
        ({"window_size": True}, TypeError, "window_size"),
    ],
)
def test_size_validation(kwargs, exc, name) -> None:
    with pytest.raises(exc, match=name):
        BufferManager(**kwargs)


def test_numpy_int_sizes_accepted_and_defaults() -> None:
    buf = BufferManager(window_size=np.int64(3), buffer_size=np.int32(7))
    assert (buf.window_size, buf.buffer_size) == (3, 7)
    default = BufferManager()
    assert (default.window_size, default.buffer_size) == (100, 1000)


def test_empty_buffer_windows_and_statistics() -> None:
    buf = BufferManager(window_size=3, buffer_size=5)
    for window in (buf.get_sliding_window(), buf.get_time_window(10.0), buf.flush_buffer()):
        data, times, meta = window
        assert data.shape == (0,) and times == [] and meta == []
    stats = buf.get_buffer_statistics()
    assert stats["current_size"] == 0 and stats["max_size"] == 5
    assert stats["utilization_percent"] == 0.0
    assert stats["oldest_timestamp"] is None and stats["newest_timestamp"] is None


# -- ring eviction ----------------------------------------------------------------------
def test_ring_evicts_oldest_and_statistics_follow_contents() -> None:
    buf = BufferManager(window_size=3, buffer_size=5)
    for i in range(12):
        buf.add_data(np.array([float(i)]), ts(i), metadata={"i": i})
    data, times, meta = buf.get_sliding_window(10)
    assert data.ravel().tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert times == [ts(i) for i in range(7, 12)]
    assert meta == [{"i": i} for i in range(7, 12)]
    stats = buf.get_buffer_statistics()
    assert stats["current_size"] == 5 and stats["utilization_percent"] == 100.0
    assert stats["oldest_timestamp"] == ts(7) and stats["newest_timestamp"] == ts(11)
    assert stats["total_added"] == 12 and stats["total_evicted"] == 7
    window, wtimes, _ = buf.get_sliding_window()  # default window_size 3
    assert window.ravel().tolist() == [9.0, 10.0, 11.0] and wtimes == [ts(9), ts(10), ts(11)]


def test_exactly_full_ring_and_partial_utilization() -> None:
    buf = BufferManager(buffer_size=4)
    for i in range(2):
        buf.add_data(float(i), ts(i))
    assert buf.get_buffer_statistics()["utilization_percent"] == 50.0
    for i in range(2, 4):
        buf.add_data(float(i), ts(i))
    data, times, _ = buf.get_sliding_window(4)
    assert data.tolist() == [0.0, 1.0, 2.0, 3.0]  # scalars give a 1-D window
    assert buf.get_buffer_statistics()["total_evicted"] == 0
    buf.add_data(4.0, ts(4))  # head is at slot 0 again
    assert buf.get_sliding_window(4)[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert buf.get_buffer_statistics()["oldest_timestamp"] == ts(1)


def test_add_batch_across_the_wrap_point() -> None:
    buf = BufferManager(buffer_size=5)
    for i in range(3):
        buf.add_data(np.array([float(i), -float(i)]), ts(i), {"src": "single"})
    rows = np.array([[float(i), -float(i)] for i in range(3, 7)])
    buf.add_batch(
        rows, [ts(i) for i in range(3, 7)], [{"src": "batch", "i": i} for i in range(3, 7)]
    )
    data, times, meta = buf.get_sliding_window(5)
    assert data.tolist() == [[float(i), -float(i)] for i in range(2, 7)]
    assert times == [ts(i) for i in range(2, 7)]
    assert meta == [{"src": "single"}] + [{"src": "batch", "i": i} for i in range(3, 7)]
    stats = buf.get_buffer_statistics()
    assert stats["oldest_timestamp"] == ts(2) and stats["newest_timestamp"] == ts(6)
    assert stats["total_added"] == 7 and stats["total_evicted"] == 2
    # keep adding singles after the batch: the head moved correctly
    buf.add_data(np.array([7.0, -7.0]), ts(7))
    assert buf.get_sliding_window(2)[0].tolist() == [[6.0, -6.0], [7.0, -7.0]]


def test_slots_overwritten_after_a_read_show_the_new_times_and_metadata() -> None:
    # datetimes made by a read are kept per slot; writing the slot again must drop them
    buf = BufferManager(buffer_size=3)
    buf.add_batch(np.arange(3.0), [ts(i) for i in range(3)], [{"i": 0}, None, {"i": 2}])
    assert buf.get_sliding_window(3)[1:] == ([ts(0), ts(1), ts(2)], [{"i": 0}, {}, {"i": 2}])
    buf.add_batch(np.arange(3.0, 5.0), [ts(3), ts(4)])
    buf.add_data(np.array(5.0), ts(5), {"i": 5})
    data, times, meta = buf.get_sliding_window(3)
    assert data.tolist() == [3.0, 4.0, 5.0] and times == [ts(3), ts(4), ts(5)]
    assert meta == [{}, {}, {"i": 5}] and meta[0] is not meta[1]


def test_add_batch_larger_than_buffer_keeps_newest_rows() -> None:
    buf = BufferManager(buffer_size=4)
    buf.add_data(100.0, ts(-1), {"old": True})
    buf.add_batch(np.arange(10.0), np.arange(10.0) + T0.timestamp(), [{"i": i} for i in range(10)])
    data, times, meta = buf.get_sliding_window(4)
    assert data.tolist() == [6.0, 7.0, 8.0, 9.0]
    assert times == [ts(i) for i in range(6, 10)]
    assert meta == [{"i": i} for i in range(6, 10)]
    stats = buf.get_buffer_statistics()
    assert stats["total_added"] == 11 and stats["total_evicted"] == 7
    assert stats["oldest_timestamp"] == ts(6)


def test_add_batch_timestamp_formats() -> None:
    buf = BufferManager(buffer_size=10)
    buf.add_batch(
        [1.0, 2.0], np.array(["2026-01-01T00:00:01", "2026-01-01T00:00:02"], dtype="datetime64[us]")
    )
    buf.add_batch([3.0], ["2026-01-01T01:00:03+01:00"])  # ISO string with offset
    buf.add_batch([4.0], [datetime(2026, 1, 1, 0, 0, 4)])  # naive is UTC
    buf.add_batch([5.0], np.array([T0.timestamp() + 5.25]))  # epoch seconds
    data, times, meta = buf.get_sliding_window(10)
    assert data.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert times == [ts(1), ts(2), ts(3), ts(4), ts(5.25)]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert meta == [{}] * 5


def test_empty_batch_is_a_no_op() -> None:
    buf = BufferManager(buffer_size=3)
    buf.add_batch(np.empty((0,)), [])
    assert buf.get_buffer_statistics()["current_size"] == 0
    assert buf.get_buffer_statistics()["total_added"] == 0


# -- time windows ------------------------------------------------------------------------
def test_time_window_ends_at_newest_timestamp_for_replayed_data() -> None:
    buf = BufferManager(buffer_size=100)
    old = datetime(2001, 5, 1, 12, 0, 0, tzinfo=UTC)
    for i in range(10):
        buf.add_data(float(i), old + timedelta(seconds=i))
    data, times, _ = buf.get_time_window(3.0)
    assert data.tolist() == [6.0, 7.0, 8.0, 9.0]  # the 3 s boundary is included
    assert times[0] == old + timedelta(seconds=6) and times[-1] == old + timedelta(seconds=9)
    assert buf.get_time_window(0)[0].tolist() == [9.0]
    assert buf.get_time_window(1e9)[0].tolist() == [float(i) for i in range(10)]
    assert buf.get_time_window(2.5)[0].tolist() == [7.0, 8.0, 9.0]


def test_time_window_with_out_of_order_timestamps() -> None:
    buf = BufferManager(buffer_size=10)
    seconds = [0, 1, 2, 10, 3, 4, 9]
    for i, s in enumerate(seconds):
        buf.add_data(float(i), ts(s))
    data, times, _ = buf.get_time_window(7.0)  # newest is 10 s, so >= 3 s
    assert data.tolist() == [3.0, 4.0, 5.0, 6.0]  # arrival order kept
    assert times == [ts(10), ts(3), ts(4), ts(9)]
    stats = buf.get_buffer_statistics()
    assert stats["newest_timestamp"] == ts(10) and stats["oldest_timestamp"] == ts(0)


def test_out_of_order_after_eviction_of_newest() -> None:
    buf = BufferManager(buffer_size=3)
    for i, s in enumerate([100, 1, 2, 3]):  # the newest (100 s) gets evicted
        buf.add_data(float(i), ts(s))
    assert buf.get_time_window(1.0)[0].tolist() == [2.0, 3.0]
    assert buf.get_buffer_statistics()["newest_timestamp"] == ts(3)


def test_out_of_order_inside_a_batch() -> None:
    buf = BufferManager(buffer_size=10)
    buf.add_batch([0.0, 1.0, 2.0, 3.0], [ts(5), ts(1), ts(6), ts(2)])
    assert buf.get_time_window(1.0)[0].tolist() == [0.0, 2.0]


@pytest.mark.parametrize(
    ("duration", "exc"),
    [
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("5", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_time_window_duration_validation(duration, exc) -> None:
    buf = BufferManager()
    buf.add_data(1.0, ts(0))
    with pytest.raises(exc, match="duration_seconds"):
        buf.get_time_window(duration)


def test_sliding_window_size_validation() -> None:
    buf = BufferManager()
    with pytest.raises(ValueError, match="size"):
        buf.get_sliding_window(0)
    with pytest.raises(TypeError, match="size"):
        buf.get_sliding_window(2.5)


# -- timestamps ---------------------------------------------------------------------------
def test_naive_timestamps_are_utc_and_aware_ones_are_converted() -> None:
    buf = BufferManager(buffer_size=5)
    buf.add_data(1.0, datetime(2026, 3, 1, 12, 0, 0))
    buf.add_data(2.0, datetime(2026, 3, 1, 14, 0, 1, tzinfo=timezone(timedelta(hours=2))))
    buf.add_data(3.0, datetime(2026, 3, 1, 7, 0, 2, tzinfo=timezone(timedelta(hours=-5))))
    _, times, _ = buf.get_sliding_window(5)
    assert times == [
        datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 2, tzinfo=UTC),
    ]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert buf.get_time_window(1.0)[0].tolist() == [2.0, 3.0]
    stats = buf.get_buffer_statistics()
    assert stats["newest_timestamp"] == datetime(2026, 3, 1, 12, 0, 2, tzinfo=UTC)
    assert stats["newest_timestamp"].utcoffset() == timedelta(0)


def test_microseconds_survive() -> None:
    buf = BufferManager(buffer_size=2)
    t = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    buf.add_data(1.0, t)
    assert buf.get_sliding_window(1)[1] == [t]


# -- bad input leaves the buffer unchanged -------------------------------------------------------
def _filled() -> BufferManager:
    buf = BufferManager(buffer_size=4)
    for i in range(3):
        buf.add_data(np.array([float(i), 0.0]), ts(i), {"i": i})
    return buf


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda b: b.add_data(np.array([1.0]), ts(9)), ValueError, "shape"),
        (lambda b: b.add_data(np.array([[1.0, 2.0]]), ts(9)), ValueError, "shape"),
        (lambda b: b.add_data(np.array(["a", "b"]), ts(9)), TypeError, "numeric"),
        (lambda b: b.add_data(np.array([object(), 1], dtype=object), ts(9)), TypeError, "numeric"),
        (lambda b: b.add_data(np.array([1.0, 2.0]), ts(9), metadata=["x"]), TypeError, "metadata"),
        (lambda b: b.add_data(np.array([1.0, 2.0]), "yesterday"), ValueError, "ISO"),
        (lambda b: b.add_data(np.array([1.0, 2.0]), None), TypeError, "timestamp"),
        (lambda b: b.add_batch(np.ones((2, 3)), [ts(8), ts(9)]), ValueError, "shape"),
        (lambda b: b.add_batch(np.ones((2, 2)), [ts(9)]), ValueError, "timestamps"),
        (lambda b: b.add_batch(np.ones((2, 2)), [ts(8), ts(9)], [{}]), ValueError, "metadata"),
        (lambda b: b.add_batch(np.array([["a", "b"]]), [ts(9)]), TypeError, "numeric"),
        (lambda b: b.add_batch(np.float64(1.0), [ts(9)]), ValueError, "scalar"),
        (lambda b: b.add_batch(np.ones((2, 2)), [ts(8), "bad"]), ValueError, "ISO"),
        (lambda b: b.add_batch(np.ones((1, 2)), np.array([np.nan])), ValueError, "NaN"),
    ],
)
def test_bad_input_raises_and_leaves_buffer_unchanged(call, exc, match) -> None:
    buf = _filled()
    before = snapshot(buf)
    with pytest.raises(exc, match=match):
        call(buf)
    assert snapshot(buf) == before
    assert snapshot(buf)[0] == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]


def test_point_shape_is_fixed_by_the_first_point() -> None:
    buf = BufferManager(buffer_size=3)
    buf.add_data(np.ones((2, 3)), ts(0))
    buf.add_batch(np.zeros((2, 2, 3)), [ts(1), ts(2)])
    data, _, _ = buf.get_sliding_window(3)
    assert data.shape == (3, 2, 3)
    assert data[0].tolist() == np.ones((2, 3)).tolist() and data[1:].sum() == 0
    buf.clear()
    assert buf.get_sliding_window(3)[0].shape == (0, 2, 3)


def test_integer_and_bool_data_stored_as_float() -> None:
    buf = BufferManager(buffer_size=3)
    buf.add_data(np.array([1, 2], dtype=np.int16), ts(0))
    buf.add_data(np.array([True, False]), ts(1))
    data = buf.get_sliding_window(2)[0]
    assert data.dtype == np.float64 and data.tolist() == [[1.0, 2.0], [1.0, 0.0]]


# -- flush and clear ------------------------------------------------------------------------
def test_flush_returns_everything_then_empties() -> None:
    buf = BufferManager(window_size=2, buffer_size=4)
    for i in range(6):
        buf.add_data(float(i), ts(i), {"i": i})
    data, times, meta = buf.flush_buffer()
    assert data.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert times == [ts(i) for i in range(2, 6)]
    assert meta == [{"i": i} for i in range(2, 6)]
    stats = buf.get_buffer_statistics()
    assert stats["current_size"] == 0 and stats["oldest_timestamp"] is None
    assert stats["total_added"] == 6  # totals survive a flush
    assert buf.flush_buffer()[0].tolist() == []
    buf.add_data(9.0, ts(0))  # an earlier timestamp after flushing is not "out of order"
    assert buf.get_time_window(0.0)[0].tolist() == [9.0]


def test_returned_arrays_are_copies() -> None:
    buf = BufferManager(buffer_size=3)
    buf.add_data(1.0, ts(0))
    data, _, _ = buf.get_sliding_window(1)
    data[0] = 42.0
    assert buf.get_sliding_window(1)[0].tolist() == [1.0]


# -- threads -------------------------------------------------------------------------------
@pytest.mark.timeout(20)
def test_concurrent_writer_and_reader_see_consistent_windows() -> None:
    buf = BufferManager(window_size=50, buffer_size=64)
    n = 3000
    errors: list[str] = []
    done = threading.Event()

    def writer() -> None:
        i = 0
        while i < n:
            if i % 3 == 0 and i + 5 <= n:
                vals = np.arange(i, i + 5, dtype=np.float64)
                buf.add_batch(np.stack([vals, vals * 2], axis=1), [ts(v) for v in range(i, i + 5)])
                i += 5
            else:
                buf.add_data(np.array([float(i), 2.0 * i]), ts(i))
                i += 1
        done.set()

    def reader() -> None:
        while not errors:
            data, times, _ = buf.get_sliding_window(50)
            if len(data):
                firsts = data[:, 0]
                if not np.array_equal(firsts, np.arange(firsts[0], firsts[0] + len(firsts))):
                    errors.append(f"torn window {firsts[:5]}")
                if not np.array_equal(data[:, 1], 2 * firsts):
                    errors.append("row mixed from two points")
                if times != [ts(v) for v in firsts]:
                    errors.append("timestamps do not match data")
            tw = buf.get_time_window(10.0)[0]
            if len(tw) and (tw[-1, 0] - tw[0, 0] > 10 or len(tw) > 11):
                errors.append(f"time window too wide: {tw[0, 0]}..{tw[-1, 0]}")
            if done.is_set():
                break

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    data = buf.get_sliding_window(64)[0]
    assert data[:, 0].tolist() == [float(v) for v in range(n - 64, n)]
    assert buf.get_buffer_statistics()["total_added"] == n


# -- property test against a list model ---------------------------------------------------------
_op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 40), st.floats(-1e3, 1e3)),
    st.tuples(
        st.just("batch"),
        st.lists(st.tuples(st.integers(0, 40), st.floats(-1e3, 1e3)), min_size=0, max_size=9),
    ),
    st.tuples(st.just("time"), st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0, 20.0, 100.0])),
    st.tuples(st.just("slide"), st.integers(1, 12)),
    st.tuples(st.just("flush")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buffer_size=st.integers(1, 8), ops=st.lists(_op, max_size=30))
def test_windows_match_list_model(buffer_size: int, ops) -> None:
    buf = BufferManager(window_size=3, buffer_size=buffer_size)
    model: list[tuple[int, float]] = []  # (epoch microseconds, value)

    def check(window, expected):
        data, times, meta = window
        assert data.tolist() == [v for _, v in expected]
        assert times == [ts(s / 1e6) for s, _ in expected]
        assert len(meta) == len(expected)

    for op in ops:
        kind = op[0]
        if kind == "add":
            buf.add_data(op[2], ts(op[1]))
            model = (model + [(op[1] * 1_000_000, op[2])])[-buffer_size:]
        elif kind == "batch":
            rows = op[1]
            buf.add_batch(np.array([v for _, v in rows], dtype=float), [ts(s) for s, _ in rows])
            model = (model + [(s * 1_000_000, v) for s, v in rows])[-buffer_size:]
        elif kind == "time":
            expected = []
            if model:
                cutoff = max(t for t, _ in model) - round(op[1] * 1e6)
                expected = [(t, v) for t, v in model if t >= cutoff]
            check(buf.get_time_window(op[1]), expected)
        elif kind == "slide":
            check(buf.get_sliding_window(op[1]), model[-op[1] :])
        else:
            check(buf.flush_buffer(), model)
            model = []
        stats = buf.get_buffer_statistics()
        assert stats["current_size"] == len(model)
        if model:
            assert stats["oldest_timestamp"] == ts(min(t for t, _ in model) / 1e6)
            assert stats["newest_timestamp"] == ts(max(t for t, _ in model) / 1e6)
        else:
            assert stats["oldest_timestamp"] is None
