"""The published AM-QADF's public API where the spec is silent (issue #15): each call runs
here as code written for that project expects, implemented on this library's own
structures, and bad arguments get clear errors. Where the spec says otherwise (a
timestamp is required, get_time_window returns three lists, ...) the spec's behaviour is
kept; those cases are checked at the end."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from am_qadf.streaming import (
    BufferManager,
    IncrementalProcessor,
    KafkaConsumer,
    KafkaProducer,
    StreamingClient,
    StreamingConfig,
    StreamProcessor,
    StreamStorage,
)
from am_qadf.streaming.buffer_manager import DataPoint
from am_qadf.streaming.stream_storage import connect_redis
from am_qadf.voxelization.voxel_grid import VoxelGrid
from tests.unit.test_stream_processor import add_ten, double

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ts(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def filled(n: int, buffer_size: int = 10, window_size: int = 3) -> BufferManager:
    buf = BufferManager(window_size=window_size, buffer_size=buffer_size)
    buf.add_batch(np.arange(float(n)), np.arange(float(n)))
    return buf


# -- BufferManager -------------------------------------------------------------------------
def test_get_size_and_is_full_follow_the_ring() -> None:
    buf = BufferManager(window_size=2, buffer_size=3)
    assert (buf.get_size(), buf.is_full()) == (0, False)
    buf.add_data(np.array([1.0]), ts(0))
    buf.add_data(np.array([2.0]), ts(1))
    assert (buf.get_size(), buf.is_full()) == (2, False)
    buf.add_data(np.array([3.0]), ts(2))
    assert (buf.get_size(), buf.is_full()) == (3, True)
    buf.add_data(np.array([4.0]), ts(3))  # evicts the oldest, stays full
    assert (buf.get_size(), buf.is_full()) == (3, True)
    buf.clear()
    assert (buf.get_size(), buf.is_full()) == (0, False)


def test_get_window_is_the_data_of_the_sliding_window() -> None:
    buf = filled(8, buffer_size=5, window_size=3)
    assert buf.get_window().tolist() == [5.0, 6.0, 7.0]  # default window_size
    assert buf.get_window(2).tolist() == [6.0, 7.0]
    assert buf.get_window(50).tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]  # capped at the buffer
    for size in (None, 1, 4):
        assert np.array_equal(buf.get_window(size), buf.get_sliding_window(size)[0])
    assert buf.get_window(window_size=4).tolist() == [4.0, 5.0, 6.0, 7.0]  # published name
    with pytest.raises(TypeError, match="not both"):
        buf.get_window(2, window_size=4)
    with pytest.raises(ValueError, match="size"):
        buf.get_window(window_size=0)


def test_get_window_keeps_point_shape_and_empty_shape() -> None:
    buf = BufferManager(window_size=2, buffer_size=4)
    assert buf.get_window().shape == (0,)
    for i in range(3):
        buf.add_data(np.full((2, 2), float(i)), ts(i))
    window = buf.get_window()
    assert window.shape == (2, 2, 2) and window[:, 0, 0].tolist() == [1.0, 2.0]
    buf.clear()
    assert buf.get_window().shape == (0, 2, 2)


@pytest.mark.parametrize(("size", "exc"), [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_get_window_rejects_bad_sizes(size, exc) -> None:
    with pytest.raises(exc, match="size"):
        filled(3).get_window(size)


def test_data_point_record_and_get_points() -> None:
    point = DataPoint(np.array([1.0]), ts(0))  # the published positional order
    assert point.metadata == {} and point.timestamp == ts(0)
    assert DataPoint(data=np.zeros(2), timestamp=ts(1), metadata={"a": 1}).metadata == {"a": 1}
    buf = BufferManager(window_size=2, buffer_size=4)
    buf.add_data(np.array([1.0]), datetime(2026, 1, 1), {"layer": 1})  # naive: UTC
    buf.add_data(np.array([2.0]), ts(1))
    buf.add_data(np.array([3.0]), ts(2), {"layer": 3})
    points = buf.get_points()
    assert all(isinstance(p, DataPoint) for p in points)
    assert [p.data.tolist() for p in points] == [[2.0], [3.0]]
    assert [p.timestamp for p in points] == [ts(1), ts(2)]
    assert [p.metadata for p in points] == [{}, {"layer": 3}]
    assert buf.get_points(3)[0].timestamp.tzinfo is UTC


def test_clear_old_data_keeps_exactly_the_time_window() -> None:
    buf = BufferManager(window_size=10, buffer_size=6)
    # wrap the ring so the kept points are not at its start
    buf.add_batch(np.arange(9.0), np.arange(9.0) * 10.0)  # times 0..80 s, keeps 30..80
    expected_data, expected_times, _ = buf.get_time_window(25.0)
    assert buf.clear_old_data(25.0) == 3  # 30, 40, 50 are more than 25 s before 80
    data, times, _ = buf.get_sliding_window()
    assert data.tolist() == expected_data.tolist() == [6.0, 7.0, 8.0]
    assert times == expected_times
    assert buf.get_size() == 3 and not buf.is_full()
    assert buf.clear_old_data(25.0) == 0  # nothing older left
    # appending after a compaction continues in order
    buf.add_batch(np.array([9.0, 10.0, 11.0, 12.0]), np.array([90.0, 100.0, 110.0, 120.0]))
    assert buf.get_window(10).tolist() == [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    assert buf.get_time_window(15.0)[0].tolist() == [11.0, 12.0]


def test_clear_old_data_with_out_of_order_points_keeps_metadata() -> None:
    buf = BufferManager(window_size=10, buffer_size=10)
    for i, t in enumerate([50.0, 0.0, 60.0, 5.0, 55.0]):
        buf.add_data(np.array([float(i)]), ts(t), {"i": i})
    assert buf.clear_old_data(10.0) == 2
    data, times, meta = buf.get_sliding_window()
    assert data.ravel().tolist() == [0.0, 2.0, 4.0]  # arrival order kept
    assert times == [ts(50), ts(60), ts(55)]
    assert meta == [{"i": 0}, {"i": 2}, {"i": 4}]
    assert buf.get_time_window(5.0)[0].ravel().tolist() == [2.0, 4.0]


def test_clear_old_data_measures_age_from_the_newest_point_not_the_clock() -> None:
    buf = BufferManager(buffer_size=10)
    old = datetime(2001, 1, 1, tzinfo=UTC)  # a replayed build from long ago
    buf.add_batch(np.arange(3.0), [old, old + timedelta(seconds=1), old + timedelta(seconds=2)])
    assert buf.clear_old_data(1.5) == 1
    assert buf.get_window().tolist() == [1.0, 2.0]
    assert BufferManager().clear_old_data(5.0) == 0  # empty buffer


@pytest.mark.parametrize(
    ("age", "exc"), [(-1.0, ValueError), (float("nan"), ValueError), ("60", TypeError)]
)
def test_clear_old_data_rejects_bad_ages_and_changes_nothing(age, exc) -> None:
    buf = filled(5)
    with pytest.raises(exc, match="duration_seconds"):
        buf.clear_old_data(age)
    assert buf.get_size() == 5 and buf.get_buffer_statistics()["total_removed"] == 0


def test_statistics_total_removed_overflow_count_age_span() -> None:
    buf = BufferManager(window_size=2, buffer_size=4)
    stats = buf.get_buffer_statistics()
    assert (stats["total_removed"], stats["overflow_count"], stats["age_span_seconds"]) == (
        0,
        0,
        0.0,
    )
    buf.add_batch(np.arange(6.0), np.array([0.0, 1.0, 2.0, 3.0, 4.0, 6.5]))  # 2 overflow
    stats = buf.get_buffer_statistics()
    assert stats["overflow_count"] == stats["total_evicted"] == 2
    assert stats["age_span_seconds"] == pytest.approx(4.5)  # 2.0 .. 6.5
    assert buf.clear_old_data(3.0) == 2  # drops 2.0 and 3.0
    assert buf.get_buffer_statistics()["total_removed"] == 2
    buf.flush_buffer()  # 2 more
    buf.add_data(np.float64(9.0), ts(0))
    buf.clear()  # 1 more
    stats = buf.get_buffer_statistics()
    assert stats["total_removed"] == 5 and stats["overflow_count"] == 2
    assert stats["total_added"] == 7 and stats["age_span_seconds"] == 0.0


def test_reset_zeroes_totals_and_allows_a_new_point_shape() -> None:
    buf = BufferManager(window_size=2, buffer_size=2)
    buf.add_batch(np.arange(3.0), np.arange(3.0))
    buf.clear_old_data(0.0)
    buf.reset()
    stats = buf.get_buffer_statistics()
    assert stats["current_size"] == 0
    assert stats["total_added"] == stats["total_evicted"] == stats["total_removed"] == 0
    buf.add_data(np.array([1.0, 2.0]), ts(0))  # the old points were scalars
    assert buf.get_window().tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="shape"):
        buf.add_data(np.array([1.0]), ts(1))  # clear() alone keeps the shape rule


# -- IncrementalProcessor ------------------------------------------------------------------
def grid(res: float = 1.0, hi: float = 10.0) -> VoxelGrid:
    return VoxelGrid((0, 0, 0), (hi, hi, hi), res)


def test_set_voxel_grid_switches_grid_and_starts_regions_afresh() -> None:
    proc = IncrementalProcessor(grid())
    proc.update_voxel_grid([1.0], [[1.5, 1.5, 1.5]])
    new = VoxelGrid((0, 0, 0), (4, 4, 4), 0.5)
    proc.set_voxel_grid(new)
    assert proc.voxel_grid is new
    assert proc.get_updated_regions() == [] and proc.get_combined_updated_region() is None
    assert proc.get_statistics()["total_points_processed"] == 1  # counters kept
    proc.update_voxel_grid([2.0], [[3.9, 3.9, 3.9]])  # index 7 only exists in the new grid
    assert proc.get_updated_regions() == [(7, 7, 7)]
    assert new.get_signal_array("value")[7, 7, 7] == 2.0


@pytest.mark.parametrize("bad", [None, "grid", np.zeros((3, 3, 3))])
def test_set_voxel_grid_refuses_non_grids_and_keeps_the_old(bad) -> None:
    g = grid()
    proc = IncrementalProcessor(g)
    with pytest.raises(TypeError, match="VoxelGrid"):
        proc.set_voxel_grid(bad)
    assert proc.voxel_grid is g


def test_combined_region_covers_every_updated_voxel_in_world_coordinates() -> None:
    proc = IncrementalProcessor(grid(res=0.5))
    assert proc.get_combined_updated_region() is None
    proc.update_voxel_grid([1.0, 2.0], [[2.2, 3.0, 0.1], [2.4, 3.3, 0.2]])
    assert proc.get_combined_updated_region() == ((2.0, 3.0, 0.0), (2.5, 3.5, 0.5))
    proc.update_voxel_grid([3.0, 4.0], [[0.7, 9.9, 4.0], [50.0, 0.0, 0.0]])  # 2nd is dropped
    lo, hi = proc.get_combined_updated_region()
    assert lo == (0.5, 3.0, 0.0) and hi == (2.5, 10.0, 4.5)
    # the same box as the updated voxels' own extent
    ijk = proc.get_updated_indices()
    assert np.allclose(lo, ijk.min(axis=0) * 0.5) and np.allclose(hi, (ijk.max(axis=0) + 1) * 0.5)
    proc.reset_updated_regions()
    assert proc.get_combined_updated_region() is None
    proc.update_voxel_grid([5.0], [[9.0, 9.0, 9.0]])
    assert proc.get_combined_updated_region() == ((9.0, 9.0, 9.0), (9.5, 9.5, 9.5))


def test_combined_region_folds_many_batches_and_survives_reads(monkeypatch) -> None:
    from am_qadf.streaming import incremental_processor

    monkeypatch.setattr(incremental_processor, "_MAX_PENDING_ARRAYS", 2)  # fold often
    proc = IncrementalProcessor(grid())
    points = [[5, 5, 5], [2, 8, 5], [5, 5, 1], [9, 0, 5], [5, 5, 5], [1, 1, 9]]
    for i, p in enumerate(points):
        proc.update_voxel_grid([1.0], [p])
        if i < 3:  # unread batches pile up and are folded in while updating
            continue
        seen = np.array(points[: i + 1], dtype=float)
        assert proc.get_combined_updated_region() == (
            tuple(seen.min(axis=0)),
            tuple(seen.max(axis=0) + 1.0),
        )
    proc.update_voxel_grid([1.0] * 3, [[0, 0, 0], [9.5, 9.5, 9.5], [4, 4, 4]])
    assert proc.get_combined_updated_region() == ((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))


def test_combined_region_is_clipped_to_the_grid_box() -> None:
    proc = IncrementalProcessor(
        VoxelGrid((0, 0, 0), (1.0, 1.0, 1.0), 0.3)
    )  # 4 voxels, last partial
    proc.update_voxel_grid([1.0], [[0.95, 0.95, 0.95]])
    lo, hi = proc.get_combined_updated_region()
    assert lo == pytest.approx((0.9, 0.9, 0.9)) and hi == (1.0, 1.0, 1.0)


def test_process_signal_batch_array_form() -> None:
    proc = IncrementalProcessor(grid())
    out = proc.process_signal_batch(
        np.array([1500.0, 1600.0, 7.0]),
        np.array([[1.0, 1.0, 1.0], [1.5, 1.5, 1.5], [20.0, 0.0, 0.0]]),
        "melt_pool_temperature",
    )
    assert out["processed"] is True and out["voxel_grid_updated"] is True
    assert out["points_processed"] == 3 and out["points_accepted"] == 2
    assert out["signals_processed"] == ["melt_pool_temperature"]
    assert out["timestamp"].tzinfo is UTC
    assert proc.voxel_grid.get_signal_array("melt_pool_temperature")[1, 1, 1] == 1550.0
    stats = proc.get_statistics()
    assert stats["total_points_processed"] == 3 and stats["batches_processed"] == 1
    assert proc.get_updated_regions() == [(1, 1, 1)]


def test_process_signal_batch_dict_forms() -> None:
    proc = IncrementalProcessor(grid())
    out = proc.process_signal_batch(
        {"coordinates": [[1, 2, 3], [4, 5, 6]], "temperature": [100.0, 200.0], "power": [1, 2]}
    )
    assert out["signals_processed"] == ["temperature", "power"]
    assert out["points_processed"] == 2
    out = proc.process_signal_batch({"speed": [900.0]}, [[7, 7, 7]])
    assert out["signals_processed"] == ["speed"]
    assert set(proc.voxel_grid.available_signals) == {"temperature", "power", "speed"}
    # nothing in the grid: processed, but no voxel updated
    out = proc.process_signal_batch([1.0], [[99.0, 0.0, 0.0]], "temperature")
    assert out["voxel_grid_updated"] is False and out["points_accepted"] == 0


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (({"temperature": [1.0]},), ValueError, "coordinates missing"),
        (([1.0],), ValueError, "coordinates missing"),
        (({"coordinates": [[1, 1, 1]]},), ValueError, "no signal"),
        (({"coordinates": [[1, 1, 1]], "t": [1.0]}, [[1, 1, 1]]), ValueError, "twice"),
        (({"t": [1.0]}, [[1, 1, 1]], "t"), ValueError, "signal_name"),
        (([1.0], [[1, 1, 1]], ""), ValueError, "signal_name"),
        (([[1.0, 2.0]], [[1, 1, 1]], "t"), ValueError, "1-D"),
        (([1.0, 2.0], [[1, 1, 1]], "t"), ValueError, "rows"),
        (([1.0], [[1, 1]], "t"), ValueError, r"\(n, 3\)"),
        ((["a"], [[1, 1, 1]], "t"), TypeError, "signal_values"),
        (({"coordinates": [[1, 1, 1]], "t": [1.0, 2.0]},), ValueError, "t"),
    ],
)
def test_process_signal_batch_bad_arguments_change_nothing(args, exc, match) -> None:
    proc = IncrementalProcessor(grid())
    with pytest.raises(exc, match=match):
        proc.process_signal_batch(*args)
    assert proc.get_statistics()["total_points_processed"] == 0
    assert proc.voxel_grid.available_signals == [] and proc.get_updated_regions() == []


def test_reset_zeroes_counters_keeps_grid_data() -> None:
    proc = IncrementalProcessor(grid())
    proc.update_voxel_grid([1.0, 2.0], [[1, 1, 1], [2, 2, 2]])
    proc.reset()
    stats = proc.get_statistics()
    assert stats["total_points_processed"] == 0 and stats["total_updates"] == 0
    assert stats["regions_updated"] == 0 and stats["last_update_time"] is None
    assert proc.get_updated_regions() == [] and proc.get_combined_updated_region() is None
    assert proc.voxel_grid.occupied_count == 2


def test_statistics_carry_the_published_keys() -> None:
    proc = IncrementalProcessor(grid())
    stats = proc.get_statistics()
    assert stats["total_updates"] == 0 and stats["regions_updated"] == 0
    assert stats["has_voxel_grid"] is True and stats["last_update_time"] is None
    before = datetime.now(UTC)
    proc.update_voxel_grid([1.0, 2.0, 3.0], [[1, 1, 1], [1.2, 1.2, 1.2], [3, 3, 3]])
    proc.update_voxel_grid([4.0], [[5, 5, 5]])
    proc.update_voxel_grid([], np.empty((0, 3)))  # empty: not an update
    stats = proc.get_statistics()
    assert stats["total_updates"] == stats["batches_processed"] == 2
    assert stats["regions_updated"] == stats["updated_regions_count"] == 3
    assert before <= stats["last_update_time"] <= datetime.now(UTC)


# -- StreamProcessor -----------------------------------------------------------------------
@pytest.fixture
def sp() -> StreamProcessor:
    return StreamProcessor(StreamingConfig())  # parallel processing is never enabled here


def test_named_stages_in_order_with_positions(sp) -> None:
    sp.add_stage("double", double)
    sp.add_stage("add_ten", add_ten)
    sp.add_stage("negate", lambda d: [-x for x in d], position=0)
    assert list(sp.stages) == ["negate", "double", "add_ten"]
    assert sp.process_with_pipeline([1, 2], sp.get_pipeline()) == [8, 6]
    pipeline = sp.get_pipeline()
    sp.remove_stage("negate")
    assert list(sp.stages) == ["double", "add_ten"]
    assert sp.process_with_pipeline([1], sp.get_pipeline()) == [12]
    assert pipeline([1]) == [8]  # a pipeline made earlier is not changed by later edits
    assert sp.get_statistics()["num_stages"] == 2
    sp.clear_pipeline()
    assert sp.stages == {} and sp.get_statistics()["num_stages"] == 0
    with pytest.raises(ValueError, match="at least one"):
        sp.get_pipeline()


def test_published_stage_forms_by_function_and_position(sp) -> None:
    sp.add_stage(double)
    sp.add_stage(add_ten, 0)
    sp.add_stage(double, position=2)
    assert list(sp.stages) == ["add_ten", "double", "double_2"]
    assert sp.get_pipeline()([1]) == [44]
    sp.remove_stage(0)
    assert list(sp.stages) == ["double", "double_2"]
    sp.remove_stage(1)
    assert list(sp.stages) == ["double"]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (("", double), {}, ValueError, "name"),
        ((None, double), {}, ValueError, "name"),
        (("s", "not callable"), {}, TypeError, "callable"),
        (("s",), {}, TypeError, "callable"),
        (("s", double), {"position": 5}, IndexError, "position"),
        (("s", double), {"position": -1}, IndexError, "position"),
        (("s", double), {"position": "0"}, TypeError, "position"),
        (("s", double), {"position": True}, TypeError, "position"),
        ((double, 0), {"position": 0}, TypeError, "twice"),
        (("first", add_ten), {}, ValueError, "exists"),
    ],
)
def test_add_stage_rejects_bad_arguments(sp, args, kwargs, exc, match) -> None:
    sp.add_stage("first", double)
    with pytest.raises(exc, match=match):
        sp.add_stage(*args, **kwargs)
    assert list(sp.stages) == ["first"]


def test_remove_stage_unknown_name_or_position(sp) -> None:
    sp.add_stage("a", double)
    with pytest.raises(KeyError, match="'b'.*'a'"):
        sp.remove_stage("b")
    with pytest.raises(IndexError, match="position"):
        sp.remove_stage(1)
    with pytest.raises(IndexError, match="position"):
        sp.remove_stage(-1)
    assert list(sp.stages) == ["a"]


def test_validate_and_remove_a_single_checkpoint(sp) -> None:
    sp.add_quality_checkpoint("non_empty", lambda x: len(x) > 0)
    sp.add_quality_checkpoint("explodes", lambda x: 1 / 0)
    assert sp.validate_checkpoint("non_empty", [1]) is True
    assert sp.validate_checkpoint("non_empty", []) is False
    assert sp.validate_checkpoint("explodes", [1]) is False  # raising counts as failed
    counts = sp.get_statistics()["checkpoints"]
    assert counts == {
        "non_empty": {"passed": 1, "failed": 1},
        "explodes": {"passed": 0, "failed": 1},
    }
    # validate_all_checkpoints counts through the same path
    assert sp.validate_all_checkpoints([5]) == {"non_empty": True, "explodes": False}
    assert sp.get_statistics()["checkpoints"]["non_empty"] == {"passed": 2, "failed": 1}
    assert sp.get_statistics()["num_checkpoints"] == 2
    sp.remove_quality_checkpoint("explodes")
    assert sp.validate_all_checkpoints([5]) == {"non_empty": True}
    assert list(sp.get_statistics()["checkpoints"]) == ["non_empty"]
    assert sp.get_statistics()["num_checkpoints"] == 1
    with pytest.raises(KeyError, match="explodes"):
        sp.validate_checkpoint("explodes", [1])
    with pytest.raises(KeyError, match="explodes"):
        sp.remove_quality_checkpoint("explodes")


def test_measure_latency_of_a_call_is_counted(sp) -> None:
    result, ms = sp.measure_latency(sorted, [3, 1, 2])
    assert result == [1, 2, 3] and ms >= 0.0
    result, _ = sp.measure_latency(max, 4, 9)  # several arguments
    assert result == 9
    stats = sp.get_statistics()
    assert stats["batches_processed"] == stats["calls"] == 2
    assert stats["items_processed"] == 3 + 1  # len of the first argument, 1 if unsized
    assert stats["total_processing_time_ms"] == pytest.approx(stats["average_latency_ms"] * 2)

    def boom():
        raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError, match="stage failed"):
        sp.measure_latency(boom)
    assert sp.get_statistics()["errors"] == 1 and sp.get_statistics()["calls"] == 2


def test_measure_latency_between_two_times(sp) -> None:
    start = datetime(2026, 1, 1, 12, 0, 0)  # naive: UTC
    assert sp.measure_latency(start, start + timedelta(milliseconds=250)) == pytest.approx(250.0)
    aware = datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC)
    assert sp.measure_latency(start, aware) == pytest.approx(1000.0)
    assert sp.measure_latency(10.0, 10.5) == pytest.approx(500.0)
    assert sp.get_statistics()["calls"] == 0  # nothing recorded
    with pytest.raises(ValueError, match="before"):
        sp.measure_latency(10.5, 10.0)
    with pytest.raises(TypeError, match="both"):
        sp.measure_latency(start, 10.0)
    with pytest.raises(TypeError, match="measure_latency takes"):
        sp.measure_latency(1.0)
    with pytest.raises(ValueError, match="before"):
        sp.measure_latency(0.0, float("nan"))


def test_statistics_keys_and_reset_statistics(sp) -> None:
    sp.add_stage("d", double)
    sp.add_quality_checkpoint("c", bool)
    for batch in ([1], [2, 3]):
        sp.process_with_pipeline(batch, sp.get_pipeline())
    sp.validate_checkpoint("c", [1])
    with pytest.raises(TypeError):
        sp.process_with_pipeline([None], sp.get_pipeline())
    stats = sp.get_statistics()
    assert stats["batches_processed"] == 2 and stats["errors"] == 1
    assert stats["total_processing_time_ms"] > 0.0
    assert stats["num_stages"] == 1 and stats["num_checkpoints"] == 1
    sp.reset_statistics()
    stats = sp.get_statistics()
    assert stats["batches_processed"] == 0 and stats["total_processing_time_ms"] == 0.0
    assert stats["errors"] == 0 and stats["items_processed"] == 0
    assert stats["checkpoints"] == {"c": {"passed": 0, "failed": 0}}
    assert stats["num_stages"] == 1 and stats["num_checkpoints"] == 1  # kept


# -- StreamStorage -------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_storage_built_from_redis_address(tmp_path) -> None:
    storage = StreamStorage(
        redis_host="127.0.0.1", redis_port=6390, redis_db=3, path=tmp_path / "h.sqlite3"
    )
    kwargs = storage.redis_client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 3)
    partial = StreamStorage(redis_db=2, path=tmp_path / "h2.sqlite3").redis_client
    kwargs = partial.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("localhost", 6379, 2)


def test_storage_embedded_by_default_and_attributes_read_only(tmp_path) -> None:
    storage = StreamStorage(path=tmp_path / "h.sqlite3")
    assert storage.redis_client is None and storage.mongo_client is None
    assert storage.cache_recent_data("k", {"v": 1}) and storage.get_cached_data("k") == {"v": 1}
    with pytest.raises(AttributeError):
        storage.redis_client = object()
    with pytest.raises(AttributeError):
        storage.mongo_client = object()


def test_unreachable_redis_address_degrades_the_cache_only(tmp_path) -> None:
    # (each call to the unreachable server takes seconds of redis-py retries: one is enough)
    storage = StreamStorage(redis_host="127.0.0.1", redis_port=closed_port(), path=":memory:")
    assert storage.store_batch([{"value": 1.0}]) == 1  # history unaffected
    stats = storage.get_statistics()
    assert stats["cache_backend"] == "redis" and stats["cache_ok"] is False
    assert stats["redis_available"] is False and stats["document_count"] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"redis_host": ""}, "redis_host"),
        ({"redis_host": 5}, "redis_host"),
        ({"redis_port": 0}, "redis_port"),
        ({"redis_port": 70000}, "redis_port"),
        ({"redis_port": "6379"}, "redis_port"),
        ({"redis_db": -1}, "redis_db"),
        ({"redis_db": True}, "redis_db"),
        ({"redis_client": object(), "redis_host": "h"}, "not both"),
    ],
)
def test_bad_redis_address_rejected(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        StreamStorage(path=":memory:", **kwargs)


def test_connect_redis_is_lazy_with_timeouts() -> None:
    client = connect_redis("127.0.0.1", closed_port(), 0)  # does not connect yet
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.0 and kwargs["socket_connect_timeout"] == 2.0


def test_get_statistics_embedded(tmp_path) -> None:
    storage = StreamStorage(path=tmp_path / "h.sqlite3", collection_name="runs")
    stats = storage.get_statistics()
    assert stats["collection_name"] == "runs" and stats["document_count"] == 0
    assert stats["redis_available"] is False and stats["mongodb_available"] is False
    assert stats["history_backend"] == "sqlite" and stats["cache_backend"] == "memory"
    storage.store_batch([{"value": float(i), "timestamp": ts(i)} for i in range(3)])
    storage.store_batch([{"_id": "x", "value": 1.0}, {"_id": "x", "value": 1.0}])
    stats = storage.get_statistics()
    assert stats["document_count"] == 4 and stats["documents_inserted"] == 4
    assert stats["duplicates_ignored"] == 1
    storage.delete_old_data(ts(2))
    assert storage.get_statistics()["document_count"] == 2 + 0  # ts(2) and "x" (now) remain


def test_client_config_builds_storage_through_the_same_address_path(tmp_path) -> None:
    cfg = StreamingConfig(
        kafka_bootstrap_servers=["memory://"],
        redis_host="127.0.0.1",
        redis_port=6391,
        redis_db=4,
        storage_path=str(tmp_path),
    )
    kwargs = StreamingClient(cfg).storage.redis_client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6391, 4)
    assert kwargs["socket_timeout"] == 2.0
    embedded = StreamingClient(StreamingConfig.embedded(storage_path=str(tmp_path)))
    assert embedded.storage.redis_client is None


# -- StreamingClient and KafkaConsumer -----------------------------------------------------
@pytest.fixture
def cfg(tmp_path) -> StreamingConfig:
    return StreamingConfig.embedded(
        storage_path=str(tmp_path),
        kafka_bootstrap_servers=[f"memory://compat-{uuid.uuid4().hex}"],
        kafka_topic="monitoring",
    )


def test_client_processor_count_and_total_processing_time(cfg) -> None:
    client = StreamingClient(cfg)
    assert client.process_stream_batch([{"value": 1.0}]).metadata["processor_count"] == 0
    client.register_processor("a", lambda b: {"n": len(b)})
    client.register_processor("b", lambda b: 1 / 0)  # a failing processor still ran
    result = client.process_stream_batch([{"value": 1.0}, {"value": 2.0}])
    assert result.metadata["processor_count"] == 2
    stats = client.get_stream_statistics()
    assert stats["total_processing_time_ms"] == pytest.approx(
        stats["average_latency_ms"] * stats["batches_processed"]
    )
    assert stats["total_processing_time_ms"] > 0.0
    client.reset_statistics()
    assert client.get_stream_statistics()["total_processing_time_ms"] == 0.0


def test_client_kafka_consumer_and_producer_attributes(cfg) -> None:
    client = StreamingClient(cfg)
    assert client.kafka_consumer is None and client.kafka_producer is None
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    producer.produce({"value": 1.0, "timestamp": ts(0)})
    producer.produce_raw(b"not json", None)
    producer.flush()
    got: list[dict] = []
    client.start_consumer([cfg.kafka_topic], got.extend)
    try:
        assert isinstance(client.kafka_consumer, KafkaConsumer)
        assert client.kafka_consumer.topics == [cfg.kafka_topic]
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while client.get_stream_statistics()["dead_lettered"] < 1 and datetime.now(UTC) < deadline:
            client.run_between_batches(lambda: None).result(timeout=20)
        assert isinstance(client.kafka_producer, KafkaProducer)  # the dead-letter producer
    finally:
        client.stop_consumer()
    assert client.kafka_consumer is None and client.kafka_producer is None
    with pytest.raises(AttributeError):
        client.kafka_consumer = None


def test_consumer_consume_and_commit_offset_are_poll_and_commit(cfg) -> None:
    servers, topic = cfg.kafka_bootstrap_servers, cfg.kafka_topic
    producer = KafkaProducer(servers, topic)
    for i in range(5):
        producer.produce({"i": i})
    producer.flush()
    consumer = KafkaConsumer(servers, topic, group_id="g", auto_commit=False)
    got = consumer.consume(1000)
    assert sorted(m["value"]["i"] for m in got) == [0, 1, 2, 3, 4]
    assert set(got[0]) >= {"topic", "partition", "offset", "timestamp", "key", "value"}
    assert consumer.consume(timeout_ms=0) == []
    consumer.commit_offset()
    consumer.close()
    producer.produce({"i": 5})
    producer.flush()
    again = KafkaConsumer(servers, topic, group_id="g", auto_commit=False)
    assert [m["value"]["i"] for m in again.consume(1000)] == [5]  # resumed after commit
    with pytest.raises(ValueError, match="timeout_ms"):
        again.consume(-1)
    again.close()
    with pytest.raises(RuntimeError, match="closed"):
        again.consume(0)
    with pytest.raises(RuntimeError, match="closed"):
        again.commit_offset()


# -- where the spec says otherwise, its behaviour stays ------------------------------------
def test_spec_wins_where_it_differs(tmp_path) -> None:
    buf = BufferManager()
    with pytest.raises(TypeError):
        buf.add_data(np.array([1.0]))  # the spec's timestamp is required
    buf.add_data(np.array([1.0]), ts(0))
    assert len(buf.get_time_window(60.0)) == 3  # (data, timestamps, metadata)
    with pytest.raises(TypeError):
        IncrementalProcessor()  # a grid is required
    proc = IncrementalProcessor(grid())
    proc.update_voxel_grid([1.0], [[1.5, 2.5, 3.5]])
    assert proc.get_updated_regions() == [(1, 2, 3)]  # voxel indices, not boxes
    with pytest.raises(TypeError):
        StreamProcessor(StreamingConfig()).process_with_pipeline([1])  # pipeline required
    assert StreamStorage(path=tmp_path / "h.sqlite3").create_time_series_index() is None
    client = StreamingClient(StreamingConfig.embedded(storage_path=str(tmp_path)))
    with pytest.raises(TypeError, match="dict"):
        client.process_stream_batch([1.0, 2.0])  # message dicts, not bare values
