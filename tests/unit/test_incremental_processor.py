"""Unit tests for IncrementalProcessor: data forms, validation, updated regions, stats."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from am_qadf.streaming.incremental_processor import IncrementalProcessor
from am_qadf.voxelization.voxel_grid import VoxelGrid


def make(res: float = 1.0, side: float = 100.0, **kw) -> IncrementalProcessor:
    return IncrementalProcessor(VoxelGrid((0, 0, 0), (side, side, side), res, **kw))


def test_spec_example_runs_verbatim():
    voxel_grid = VoxelGrid((0, 0, 0), (100, 100, 100), 1.0)
    processor = IncrementalProcessor(voxel_grid)

    coordinates = np.array(
        [
            [10.0, 20.0, 30.0],
            [11.0, 21.0, 31.0],
        ]
    )
    new_data = np.array([1000.0, 1050.0])

    updated_grid = processor.update_voxel_grid(new_data, coordinates)
    regions = processor.get_updated_regions()
    stats = processor.get_statistics()

    assert updated_grid is voxel_grid
    assert regions == [(10, 20, 30), (11, 21, 31)]
    assert all(type(c) is int for r in regions for c in r)
    assert stats["total_points_processed"] == 2
    assert stats["updated_regions_count"] == 2
    assert updated_grid.get_signal_array("value")[11, 21, 31] == 1050.0
    processor.reset_updated_regions()
    assert processor.get_updated_regions() == []


def test_package_exports_the_processor():
    streaming = pytest.importorskip("am_qadf.streaming")
    assert streaming.IncrementalProcessor is IncrementalProcessor


def test_constructor_rejects_non_grid():
    with pytest.raises(TypeError, match="voxel_grid"):
        IncrementalProcessor(np.zeros((3, 3, 3)))  # type: ignore[arg-type]


# ---------------------------------------------------------------- data forms


def test_data_forms_name_the_signals():
    p = make()
    coords = np.array([[1.5, 1.5, 1.5], [2.5, 2.5, 2.5]])
    p.update_voxel_grid(np.array([1.0, 2.0]), coords)
    p.update_voxel_grid(np.array([[10.0, 20.0, 30.0], [11.0, 21.0, 31.0]]), coords)
    p.update_voxel_grid({"power": [200.0, 210.0], "speed": np.array([900, 950])}, coords)
    grid = p.voxel_grid
    assert grid.available_signals == ["value", "signal_0", "signal_1", "signal_2", "power", "speed"]
    assert grid.get_values("signal_2", [[2, 2, 2]]).tolist() == [31.0]
    assert grid.get_values("speed", [[1, 1, 1]]).tolist() == [900.0]
    assert grid.get_count_array()[1, 1, 1] == 3


def test_lists_are_accepted():
    p = make()
    p.update_voxel_grid([5.0], [[1, 2, 3]])
    assert p.get_updated_regions() == [(1, 2, 3)]


@pytest.mark.parametrize(
    ("data", "coords"),
    [
        (np.empty(0), np.empty((0, 3))),
        (np.array([]), np.array([])),
        ({"a": np.empty(0)}, np.empty((0, 3))),
        (np.empty((0, 2)), np.empty((0, 3))),
    ],
)
def test_empty_input_is_a_no_op(data, coords):
    p = make()
    assert p.update_voxel_grid(data, coords) is p.voxel_grid
    s = p.get_statistics()
    assert s["batches_processed"] == 0 and s["total_points_processed"] == 0
    assert p.get_updated_regions() == [] and p.voxel_grid.available_signals == []


BAD = [
    (np.array([1.0, 2.0, 3.0]), np.ones((2, 3)), ValueError, "new_data"),
    (np.ones((3, 2)), np.ones((2, 3)), ValueError, "new_data"),
    ({"a": [1.0, 2.0], "b": [1.0]}, np.ones((2, 3)), ValueError, "new_data['b']"),
    (np.ones((2, 2, 2)), np.ones((2, 3)), ValueError, "new_data"),
    (np.float64(1.0), np.ones((1, 3)), ValueError, "new_data"),
    (np.array(["a", "b"]), np.ones((2, 3)), TypeError, "new_data"),
    ({"a": ["x", "y"]}, np.ones((2, 3)), TypeError, "new_data['a']"),
    ({1: [1.0, 2.0]}, np.ones((2, 3)), TypeError, "new_data"),
    (np.ones(2), np.ones((2, 2)), ValueError, "coordinates"),
    (np.ones(2), np.ones((2, 3, 1)), ValueError, "coordinates"),
    (np.ones(3), np.ones(3), ValueError, "coordinates"),
    (np.ones(2), np.array([["a", "b", "c"]] * 2), TypeError, "coordinates"),
    (np.ones(1), [[1, 2, 3], [1, 2]], ValueError, "coordinates"),
]


@pytest.mark.parametrize(("data", "coords", "exc", "word"), BAD)
def test_bad_inputs_raise_before_anything_changes(data, coords, exc, word):
    p = make()
    p.update_voxel_grid(np.array([1.0]), np.array([[5.0, 5.0, 5.0]]))
    grid_before = p.voxel_grid.get_statistics()
    before = p.get_statistics()
    regions = p.get_updated_regions()
    with pytest.raises(exc) as info:
        p.update_voxel_grid(data, coords)
    assert word in str(info.value)
    assert p.voxel_grid.get_statistics() == grid_before
    after = p.get_statistics()
    for key in ("total_points_processed", "batches_processed", "updated_regions_count"):
        assert after[key] == before[key]
    assert p.get_updated_regions() == regions


# ---------------------------------------------------------------- updated regions


def test_updated_regions_are_unique_and_only_accepted_voxels():
    p = make(side=10)
    coords = [[1.1, 1.1, 1.1], [1.9, 1.2, 1.5], [3, 3, 3], [10, 0, 0], [np.nan, 1, 1]]
    p.update_voxel_grid([1.0, 2.0, 3.0, 4.0, 5.0], coords)
    p.update_voxel_grid([6.0], [[3.5, 3.5, 3.5]])
    assert p.get_updated_regions() == [(1, 1, 1), (3, 3, 3)]
    idx = p.get_updated_indices()
    assert idx.dtype == np.int64 and idx.shape == (2, 3)
    s = p.get_statistics()
    assert s["updated_regions_count"] == 2
    assert s["total_points_processed"] == 6
    assert s["points_accepted"] == 4 and s["points_dropped"] == 2
    assert s["batches_processed"] == 2


def test_values_dropped_are_counted_but_the_point_is_kept():
    p = make(side=10)
    p.update_voxel_grid([np.nan, 1.0], [[1, 1, 1], [2, 2, 2]])
    s = p.get_statistics()
    assert s["values_dropped"] == 1 and s["points_dropped"] == 0
    assert p.get_updated_regions() == [(1, 1, 1), (2, 2, 2)]


def test_reset_then_track_again():
    p = make(side=10)
    p.update_voxel_grid([1.0, 2.0], [[1, 1, 1], [2, 2, 2]])
    p.reset_updated_regions()
    assert p.get_updated_regions() == [] and p.get_statistics()["updated_regions_count"] == 0
    assert p.get_updated_indices().shape == (0, 3)
    p.update_voxel_grid([3.0, 4.0], [[2, 2, 2], [4, 4, 4]])
    assert p.get_updated_regions() == [(2, 2, 2), (4, 4, 4)]
    # resets do not touch the grid: the mean still includes the first value
    assert p.voxel_grid.get_values("value", [[2, 2, 2]]).tolist() == [2.5]
    assert p.get_statistics()["total_points_processed"] == 4


def test_updated_regions_match_occupied_voxels_over_many_batches():
    rng = np.random.default_rng(4)
    grid = VoxelGrid((0, 0, 0), (250, 250, 300), 0.5)  # 150 M voxels, sparse
    p = IncrementalProcessor(grid)
    seen: set[tuple[int, int, int]] = set()
    for i in range(200):
        centre = rng.uniform(0, 250, 3)
        pts = centre + rng.normal(0, 3, size=(300, 3))
        if i == 150:
            seen = set()
            p.reset_updated_regions()
        p.update_voxel_grid(rng.normal(size=300), pts)
        if i in (120, 170):
            p.get_updated_regions()  # a read in the middle merges sorted + pending
        inside = ((pts >= 0) & (pts < [250, 250, 300])).all(axis=1)
        seen |= {tuple(r) for r in np.floor(pts[inside] / 0.5).astype(int).tolist()}
    regions = p.get_updated_regions()
    assert regions == sorted(seen)
    assert p.get_statistics()["updated_regions_count"] == len(seen)
    assert len(set(regions)) == len(regions)


def test_updated_bricks():
    p = make()
    p.update_voxel_grid([1.0, 2.0, 3.0], [[1, 1, 1], [7, 7, 7], [17, 9, 3]])
    bricks = p.get_updated_bricks()
    assert bricks.dtype == np.int64 and bricks.tolist() == [[0, 0, 0], [2, 1, 0]]
    p.reset_updated_regions()
    assert p.get_updated_bricks().shape == (0, 3)


# ---------------------------------------------------------------- statistics


def test_statistics_keys_and_timings():
    p = make()
    s = p.get_statistics()
    assert s["points_per_second"] == 0.0 and s["average_batch_ms"] == 0.0
    for _ in range(3):
        p.update_voxel_grid(np.ones(10), np.full((10, 3), 5.0))
    s = p.get_statistics()
    for key in (
        "total_points_processed",
        "updated_regions_count",
        "batches_processed",
        "points_dropped",
        "last_batch_ms",
        "average_batch_ms",
        "points_per_second",
    ):
        assert key in s
    assert s["total_points_processed"] == 30 and s["batches_processed"] == 3
    assert s["last_batch_points"] == 10
    assert s["last_batch_ms"] >= 0 and s["average_batch_ms"] >= 0
    assert s["points_per_second"] > 0
    assert "IncrementalProcessor(" in repr(p)


def test_grid_mean_is_exact_through_the_processor():
    p = make(side=10)
    for v in [1.0, 2.0, 6.0]:
        p.update_voxel_grid([v], [[1.5, 1.5, 1.5]])
    p.update_voxel_grid([3.0, 8.0], [[1.2, 1.2, 1.2], [1.3, 1.3, 1.3]])
    assert p.voxel_grid.get_signal_array("value")[1, 1, 1] == pytest.approx(4.0)


# ---------------------------------------------------------------- threads


def test_consumer_and_ui_threads():
    p = make(res=0.5, side=64)
    rng = np.random.default_rng(9)
    batches = [rng.uniform(0, 64, size=(400, 3)) for _ in range(80)]
    errors: list[BaseException] = []
    done = threading.Event()

    def consumer() -> None:
        try:
            for b in batches:
                p.update_voxel_grid(b[:, 2], b)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def ui() -> None:
        try:
            while not done.is_set():
                s = p.get_statistics()
                assert s["total_points_processed"] == 400 * s["batches_processed"]
                idx = p.get_updated_indices()
                assert idx.shape[0] >= 0
                p.get_updated_bricks()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=consumer), threading.Thread(target=ui)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    occupied = p.voxel_grid.occupied_indices()
    regions = p.get_updated_indices()
    assert regions.shape == occupied.shape
    assert {tuple(r) for r in regions.tolist()} == {tuple(r) for r in occupied.tolist()}


def test_many_tiny_batches_between_reads():
    p = make(side=40)
    rng = np.random.default_rng(12)
    pts = rng.integers(0, 40, size=(1500, 3)).astype(float) + 0.5
    for row in pts:  # > 1024 pending arrays before the first read
        p.update_voxel_grid([1.0], row[None, :])
    want = sorted({tuple(r) for r in np.floor(pts).astype(int).tolist()})
    assert p.get_statistics()["updated_regions_count"] == len(want)
    assert p.get_updated_regions() == want


def test_reset_after_every_batch_reports_each_batch_alone():
    p = make(res=0.5, side=64)
    rng = np.random.default_rng(13)
    for i in range(300):
        n = 2_000 if i % 50 == 0 else 20  # some resets clear many bits, most clear few
        pts = rng.uniform(0, 64, size=(n, 3))
        p.update_voxel_grid(np.ones(n), pts)
        want = sorted({tuple(r) for r in np.floor(pts / 0.5).astype(int).tolist()})
        assert p.get_statistics()["updated_regions_count"] == len(want)
        assert p.get_updated_regions() == want
        p.reset_updated_regions()
    assert p.get_updated_regions() == []
