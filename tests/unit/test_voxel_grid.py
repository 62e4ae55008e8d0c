"""Unit tests for the sparse VoxelGrid: geometry, exact aggregation, validation, memory."""

from __future__ import annotations

import threading
import warnings
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from am_qadf.voxelization.voxel_grid import AGGREGATIONS, VoxelGrid

PLATE = ((0.0, 0.0, 0.0), (250.0, 250.0, 300.0), 0.5)


def snapshot(grid: VoxelGrid) -> dict:
    """Everything observable about a grid, for before/after comparisons."""
    stats = grid.get_statistics()
    arrays = {name: grid.get_signal_array(name, default=np.nan) for name in grid.available_signals}
    return {"stats": stats, "arrays": arrays, "occupied": grid.occupied_indices()}


def assert_same(a: dict, b: dict) -> None:
    assert a["stats"] == b["stats"]
    assert a["arrays"].keys() == b["arrays"].keys()
    for k in a["arrays"]:
        np.testing.assert_array_equal(a["arrays"][k], b["arrays"][k])
    np.testing.assert_array_equal(a["occupied"], b["occupied"])


def reference(agg: str, ijk: np.ndarray, values: np.ndarray) -> dict[tuple, float]:
    """Brute-force per-voxel aggregation in arrival order, skipping non-finite values."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for key, v in zip(map(tuple, ijk.tolist()), values.tolist(), strict=True):
        if np.isfinite(v):
            groups[key].append(v)
    fn = {
        "mean": lambda xs: sum(xs) / len(xs),
        "sum": sum,
        "min": min,
        "max": max,
        "last": lambda xs: xs[-1],
    }[agg]
    return {k: fn(xs) for k, xs in groups.items()}


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("lo", "hi", "res", "dims"),
    [
        ((0, 0, 0), (10, 10, 10), 1.0, (10, 10, 10)),
        ((0, 0, 0), (10, 10, 10), 3.0, (4, 4, 4)),
        ((-5, 0, 2), (5, 1, 2.5), 0.25, (40, 4, 2)),
        ((0, 0, 0), (0.3, 0.3, 0.3), 0.1, (3, 3, 3)),
        (*PLATE[:2], 0.5, (500, 500, 600)),
    ],
)
def test_dims_is_ceil_of_extent_over_resolution(lo, hi, res, dims):
    grid = VoxelGrid(lo, hi, res)
    expected = tuple(int(d) for d in np.ceil((np.array(hi, float) - lo) / res))
    assert grid.dims == dims == expected
    assert all(type(d) is int for d in grid.dims)
    np.testing.assert_array_equal(grid.bbox_min, np.asarray(lo, float))
    np.testing.assert_array_equal(grid.bbox_max, np.asarray(hi, float))
    assert isinstance(grid.bbox_min, np.ndarray) and grid.resolution == res
    assert grid.aggregation == "mean"
    assert grid.brick_shape == (8, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"aggregation": "median"}, ValueError, ["aggregation", "mean", "last"]),
        ({"aggregation": None}, ValueError, ["aggregation"]),
        ({"resolution": 0.0}, ValueError, ["resolution"]),
        ({"resolution": -1.0}, ValueError, ["resolution"]),
        ({"resolution": float("nan")}, ValueError, ["resolution"]),
        ({"resolution": float("inf")}, ValueError, ["resolution"]),
        ({"resolution": "1"}, TypeError, ["resolution"]),
        ({"resolution": True}, TypeError, ["resolution"]),
        ({"bbox_max": (10, 0, 10)}, ValueError, ["bbox_max", "y"]),
        ({"bbox_max": (10, 10, -1)}, ValueError, ["bbox_max", "z"]),
        ({"bbox_min": (0, 0)}, ValueError, ["bbox_min"]),
        ({"bbox_min": (0, 0, np.nan)}, ValueError, ["bbox_min"]),
        ({"bbox_min": ("a", 0, 0)}, TypeError, ["bbox_min"]),
    ],
)
def test_invalid_construction(kwargs, exc, words):
    args = {"bbox_min": (0, 0, 0), "bbox_max": (10, 10, 10), "resolution": 1.0}
    args.update(kwargs)
    with pytest.raises(exc) as info:
        VoxelGrid(**args)
    for w in words:
        assert w in str(info.value)


def test_absurdly_fine_grid_is_refused():
    with pytest.raises(ValueError, match="coarser resolution"):
        VoxelGrid((0, 0, 0), (1000, 1000, 1000), 1e-3)


# ---------------------------------------------------------------- indexing


def test_point_on_bbox_min_is_kept_and_on_bbox_max_is_dropped():
    grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
    r = grid.add_points(
        [[0, 0, 0], [10, 5, 5], [5, 10, 5], [5, 5, 10], [np.nextafter(10, 0), 9.5, 9.99]],
        {"v": [1.0, 2.0, 3.0, 4.0, 5.0]},
    )
    assert (r.accepted, r.dropped) == (2, 3)
    assert grid.occupied_indices().tolist() == [[0, 0, 0], [9, 9, 9]]
    stats = grid.get_statistics()
    assert stats["points_dropped_out_of_bounds"] == 3
    assert stats["points_dropped"] == 3 and stats["points_added"] == 2


def test_point_on_bbox_max_is_dropped_despite_rounding():
    # (0.3 - 0) / 0.1 == 2.9999999999999996, so the index formula alone would keep it
    grid = VoxelGrid((0, 0, 0), (0.3, 0.3, 0.3), 0.1)
    assert grid.add_points([[0.3, 0.1, 0.1]]).accepted == 0
    assert grid.add_points([[np.nextafter(0.3, 0), 0.1, 0.1]]).accepted == 1
    assert grid.occupied_indices()[0, 0] == 2


def test_padding_beyond_bbox_max_is_outside_the_box():
    grid = VoxelGrid((0, 0, 0), (10, 10, 10), 3.0)  # last voxel spans 9..12
    r = grid.add_points([[9.5, 9.5, 9.5], [10.5, 1, 1]])
    assert (r.accepted, r.dropped) == (1, 1)
    assert grid.occupied_indices().tolist() == [[3, 3, 3]]


def test_below_bbox_min_is_dropped_not_clamped():
    grid = VoxelGrid((1, 1, 1), (5, 5, 5), 1.0)
    r = grid.add_points([[0.999, 2, 2], [2, 2, -100], [1, 1, 1]], {"v": [1.0, 1.0, 3.0]})
    assert (r.accepted, r.dropped) == (1, 2)
    assert grid.get_signal_array("v")[0, 0, 0] == 3.0
    assert grid.get_statistics()["occupied_voxels"] == 1


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    res=st.sampled_from([0.1, 0.25, 0.3, 0.5, 1.0, 1.7]),
    lo=st.tuples(*[st.floats(-50, 50, allow_nan=False)] * 3),
)
def test_index_formula_matches_floor(seed, res, lo):
    rng = np.random.default_rng(seed)
    lo_a = np.array(lo)
    hi = lo_a + rng.uniform(0.5, 20.0, 3)
    grid = VoxelGrid(lo_a, hi, res)
    pts = rng.uniform(lo_a - 2, hi + 2, size=(300, 3))
    grid.add_points(pts, {"v": np.ones(300)})
    idx = np.floor((pts - lo_a) / res).astype(np.int64)
    inside = ((pts >= lo_a) & (pts < hi) & (idx < grid.dims)).all(axis=1)
    expected = {tuple(r) for r in idx[inside].tolist()}
    got = {tuple(r) for r in grid.occupied_indices().tolist()}
    assert got == expected
    s = grid.get_statistics()
    assert s["points_added"] == inside.sum() and s["points_dropped"] == (~inside).sum()


def test_nonfinite_coordinates_are_dropped_and_counted_without_warnings():
    grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = grid.add_points(
            [[np.nan, 1, 1], [1, np.inf, 1], [1, 1, -np.inf], [1e308, 1, 1], [1, 1, 1]],
            {"v": [1.0, 2.0, 3.0, 4.0, 5.0]},
        )
    assert (r.accepted, r.dropped) == (1, 4)
    s = grid.get_statistics()
    assert s["points_dropped_nonfinite"] == 3
    assert s["points_dropped_out_of_bounds"] == 1
    assert s["points_received"] == 5


# ---------------------------------------------------------------- aggregation


def test_mean_is_exact_across_batches_not_mean_of_means():
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
    grid.add_points([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2]], {"t": [1.0, 2.0]})
    grid.add_points([[0.3, 0.3, 0.3]], {"t": [6.0]})
    grid.add_point(0.9, 0.9, 0.9, {"t": 11.0})
    assert grid.get_signal_array("t")[0, 0, 0] == pytest.approx((1 + 2 + 6 + 11) / 4)
    assert grid.get_count_array()[0, 0, 0] == 4


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_each_aggregation_matches_brute_force_over_random_batches(agg):
    rng = np.random.default_rng(7)
    grid = VoxelGrid((0, 0, 0), (12, 9, 20), 1.0, aggregation=agg)
    all_pts, all_vals = [], []
    for n in [1, 17, 300, 0, 5, 2000, 40]:  # mixes small (sorted) and big (marked) batches
        pts = rng.uniform(-1, 21, size=(n, 3))
        vals = rng.normal(size=n)
        vals[rng.random(n) < 0.05] = np.nan
        grid.add_points(pts, {"s": vals})
        all_pts.append(pts)
        all_vals.append(vals)
    pts, vals = np.concatenate(all_pts), np.concatenate(all_vals)
    inside = ((pts >= 0) & (pts < [12, 9, 20])).all(axis=1)
    want = reference(agg, np.floor(pts[inside]).astype(int), vals[inside])
    arr = grid.get_signal_array("s", default=np.nan)
    got = {tuple(ijk): arr[tuple(ijk)] for ijk in np.argwhere(~np.isnan(arr)).tolist()}
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    agg=st.sampled_from(AGGREGATIONS),
    batches=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 3),
                st.integers(0, 2),
                st.integers(0, 9),
                st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))),
            ),
            max_size=30,
        ),
        max_size=6,
    ),
)
def test_aggregation_property(agg, batches):
    grid = VoxelGrid((0, 0, 0), (4, 3, 10), 1.0, aggregation=agg)
    rows = [r for b in batches for r in b]
    for b in batches:
        a = np.array(b, dtype=float).reshape(-1, 4)
        grid.add_points(a[:, :3] + 0.5, {"v": a[:, 3]})
    if not rows:
        assert grid.available_signals == []
        return
    a = np.array(rows, dtype=float)
    want = reference(agg, a[:, :3].astype(int), a[:, 3])
    ijk, values = grid.get_occupied("v")
    got = dict(zip(map(tuple, ijk.tolist()), values.tolist(), strict=True))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-6)


def test_last_takes_the_later_row_within_and_across_batches():
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0, aggregation="last")
    grid.add_points([[1, 1, 1], [1.5, 1.5, 1.5], [2, 2, 2]], {"v": [1.0, 2.0, 9.0]})
    assert grid.get_values("v", [[1, 1, 1], [2, 2, 2]]).tolist() == [2.0, 9.0]
    grid.add_points([[1.2, 1.2, 1.2], [1.3, 1.3, 1.3]], {"v": [3.0, np.nan]})
    assert grid.get_values("v", [[1, 1, 1]]).tolist() == [3.0]  # NaN is skipped


def test_sum_min_max_values():
    pts = [[0, 0, 0], [0.5, 0.5, 0.5], [3, 3, 3]]
    vals = {"v": [-2.0, 5.0, 7.0]}
    expect = {"sum": [3.0, 7.0], "min": [-2.0, 7.0], "max": [5.0, 7.0]}
    for agg, want in expect.items():
        g = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0, aggregation=agg)
        g.add_points(pts, vals)
        assert g.get_values("v", [[0, 0, 0], [3, 3, 3]]).tolist() == want


def test_big_and_small_batch_paths_agree():
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 16, size=(20_000, 3))
    vals = rng.normal(size=20_000)
    one = VoxelGrid((0, 0, 0), (16, 16, 16), 0.5)
    one.add_points(pts, {"v": vals})
    many = VoxelGrid((0, 0, 0), (16, 16, 16), 0.5)
    for s in range(0, 20_000, 97):
        many.add_points(pts[s : s + 97], {"v": vals[s : s + 97]})
    np.testing.assert_allclose(many.get_signal_array("v"), one.get_signal_array("v"))
    np.testing.assert_array_equal(many.occupied_indices(), one.occupied_indices())
    assert many.get_statistics()["occupied_voxels"] == one.get_statistics()["occupied_voxels"]


# ---------------------------------------------------------------- signal values


def test_nonfinite_value_drops_only_that_value():
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
    r = grid.add_points(
        [[0, 0, 0], [0, 0, 0], [2, 2, 2]],
        {"a": [1.0, np.nan, np.inf], "b": [10.0, 20.0, 30.0]},
    )
    assert (r.accepted, r.dropped, r.values_dropped) == (3, 0, 2)
    a = grid.get_signal_array("a", default=-1.0)
    assert a[0, 0, 0] == 1.0 and a[2, 2, 2] == -1.0  # voxel 2,2,2 has no finite a
    assert grid.get_signal_array("b")[0, 0, 0] == 15.0
    assert grid.occupied_indices().tolist() == [[0, 0, 0], [2, 2, 2]]
    s = grid.get_statistics()
    assert s["values_dropped_nonfinite"] == 2
    assert s["signal_stats"]["a"]["values_dropped"] == 2
    assert s["signal_stats"]["a"]["occupied_voxels"] == 1
    assert s["signal_stats"]["b"]["occupied_voxels"] == 2


def test_signals_with_different_histories_keep_their_own_counts():
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
    p = [[1, 1, 1]]
    grid.add_points(p, {"a": [1.0]})
    grid.add_points(p, {"a": [3.0], "b": [10.0]})  # b appears after points exist
    grid.add_points(p, {"b": [20.0]})  # a absent from this batch
    grid.add_points(p)  # no signals at all: only occupancy
    grid.add_points(p, {"a": [np.nan], "b": [30.0]})
    assert grid.get_values("a", p).tolist() == [2.0]
    assert grid.get_values("b", p).tolist() == [20.0]
    assert grid.get_count_array()[1, 1, 1] == 5


def test_signal_arrays_default_and_unknown_name():
    grid = VoxelGrid((0, 0, 0), (3, 3, 3), 1.0)
    grid.add_point(1.5, 1.5, 1.5, {"temp": 5.0})
    arr = grid.get_signal_array("temp", default=np.nan)
    assert arr.shape == grid.dims and arr.dtype == np.float64
    assert np.isnan(arr).sum() == 26 and arr[1, 1, 1] == 5.0
    assert grid.get_signal_array("temp").sum() == 5.0
    with pytest.raises(KeyError) as info:
        grid.get_signal_array("pressure")
    assert "pressure" in str(info.value) and "temp" in str(info.value)
    assert grid.available_signals == ["temp"]


# ---------------------------------------------------------------- input forms & validation


def test_input_forms():
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0, aggregation="sum")
    assert grid.add_point(1, 1, 1, {"v": 1}) is True
    assert grid.add_point(1, 1, 1) is True
    assert grid.add_point(9, 1, 1, {"v": 1.0}) is False
    r = grid.add_points([[1, 1, 1]], {"v": [2]})  # lists and ints
    assert r.accepted == 1 and r.touched.tolist() == [1 * 16 + 1 * 4 + 1]
    r = grid.add_points(np.empty((0, 3)), {"v": np.empty(0)})
    assert (r.accepted, r.dropped, r.touched.size) == (0, 0, 0)
    r = grid.add_points(np.ones((2, 3), dtype=np.float32), {"v": np.array([1, 1], np.int16)})
    assert r.accepted == 2
    assert grid.get_values("v", [[1, 1, 1]]).tolist() == [5.0]
    assert grid.get_statistics()["points_added"] == 5


def test_touched_is_unique_flat_indices():
    grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
    r = grid.add_points([[1, 2, 3], [1.5, 2.5, 3.5], [9, 9, 9], [20, 0, 0]])
    assert sorted(r.touched.tolist()) == [123, 999]


BAD_CALLS = [
    (lambda: ([[1, 1]], {"v": [1.0]}), ValueError, "coordinates"),
    (lambda: ([1, 1, 1], {"v": [1.0]}), ValueError, "coordinates"),
    (lambda: (np.ones((1, 1, 3)), None), ValueError, "coordinates"),
    (lambda: ([["a", "b", "c"]], None), TypeError, "coordinates"),
    (lambda: ([[1, 1, 1], [2, 2]], None), ValueError, "coordinates"),
    (lambda: (np.array([[None, 1, 1]]), None), TypeError, "coordinates"),
    (lambda: (np.ones((2, 3)), {"v": [1.0]}), ValueError, "signals['v']"),
    (lambda: (np.ones((2, 3)), {"v": [1.0, 2.0], "w": [1.0]}), ValueError, "signals['w']"),
    (lambda: (np.ones((2, 3)), {"v": ["a", "b"]}), TypeError, "signals['v']"),
    (lambda: (np.ones((2, 3)), {"v": [True, False]}), TypeError, "signals['v']"),
    (lambda: (np.ones((2, 3)), {"v": np.ones((2, 1))}), ValueError, "signals['v']"),
    (lambda: (np.ones((2, 3)), {3: [1.0, 2.0]}), TypeError, "signal names"),
    (lambda: (np.ones((2, 3)), [1.0, 2.0]), TypeError, "signals"),
]


@pytest.mark.parametrize(("make", "exc", "word"), BAD_CALLS)
def test_bad_inputs_raise_and_change_nothing(make, exc, word):
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
    grid.add_points([[1, 1, 1], [2, 2, 2]], {"v": [1.0, 2.0]})
    before = snapshot(grid)
    coords, signals = make()
    with pytest.raises(exc) as info:
        grid.add_points(coords, signals)
    assert word in str(info.value)
    assert_same(before, snapshot(grid))


def test_add_point_validation():
    grid = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
    before = snapshot(grid)
    with pytest.raises(TypeError, match="x"):
        grid.add_point("1", 1, 1)
    with pytest.raises(TypeError, match="z"):
        grid.add_point(1, 1, True)
    with pytest.raises(TypeError, match="signals"):
        grid.add_point(1, 1, 1, {"v": "hot"})
    with pytest.raises(TypeError, match="signals"):
        grid.add_point(1, 1, 1, [1.0])
    assert_same(before, snapshot(grid))


# ---------------------------------------------------------------- sparse reads


def test_sparse_reads_and_helpers():
    grid = VoxelGrid((0, 0, 0), (20, 20, 20), 1.0, aggregation="max")
    pts = np.array([[17.5, 3.5, 8.5], [0.5, 0.5, 0.5], [0.7, 0.2, 0.1]])
    grid.add_points(pts, {"t": [3.0, 1.0, 2.0]})
    ijk = grid.occupied_indices()
    assert ijk.dtype == np.int64 and ijk.tolist() == [[0, 0, 0], [17, 3, 8]]  # brick order
    occ_ijk, occ_v = grid.get_occupied("t")
    assert occ_ijk.tolist() == ijk.tolist() and occ_v.tolist() == [2.0, 3.0]
    got = grid.get_values("t", np.array([[17, 3, 8], [5, 5, 5], [0, 0, 0]]), default=-1)
    assert got.tolist() == [3.0, -1.0, 2.0]
    assert grid.brick_of(ijk).tolist() == [[0, 0, 0], [2, 0, 1]]
    assert grid.brick_dims == (3, 3, 3)
    np.testing.assert_allclose(grid.voxel_centers(ijk), [[0.5, 0.5, 0.5], [17.5, 3.5, 8.5]])
    with pytest.raises(ValueError, match="ijk"):
        grid.get_values("t", [[20, 0, 0]])
    with pytest.raises(ValueError, match="ijk"):
        grid.get_values("t", [[0.5, 0, 0]])
    with pytest.raises(KeyError, match="nope"):
        grid.get_occupied("nope")


def test_occupied_order_does_not_depend_on_arrival_order():
    rng = np.random.default_rng(11)
    pts = rng.uniform(0, 40, size=(3000, 3))
    a = VoxelGrid((0, 0, 0), (40, 40, 40), 1.0)
    b = VoxelGrid((0, 0, 0), (40, 40, 40), 1.0)
    a.add_points(pts, {"v": pts[:, 0]})
    for s in range(0, 3000, 7):
        b.add_points(pts[::-1][s : s + 7], {"v": pts[::-1][s : s + 7, 0]})
    np.testing.assert_array_equal(a.occupied_indices(), b.occupied_indices())
    np.testing.assert_allclose(a.get_occupied("v")[1], b.get_occupied("v")[1])


def test_statistics_content():
    grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
    s = grid.get_statistics()
    assert s["points_added"] == 0 and s["occupied_voxels"] == 0 and s["signal_stats"] == {}
    grid.add_points([[1, 1, 1], [1, 1, 1], [5, 5, 5], [50, 5, 5]], {"t": [1.0, 3.0, 8.0, 0.0]})
    s = grid.get_statistics()
    assert s["points_received"] == 4 and s["points_added"] == 3 and s["points_dropped"] == 1
    assert s["occupied_voxels"] == 2 and s["total_voxels"] == 1000
    assert s["fill_ratio"] == pytest.approx(0.002)
    assert s["dims"] == (10, 10, 10) and s["resolution"] == 1.0 and s["aggregation"] == "mean"
    assert s["allocated_bricks"] == 1 and s["brick_capacity"] >= 1
    assert s["memory_bytes"] > 0 and s["dense_equivalent_bytes"] == 8000
    assert s["signal_stats"]["t"] == {
        "min": 2.0,
        "max": 8.0,
        "mean": 5.0,
        "occupied_voxels": 2,
        "values_added": 3,
        "values_dropped": 0,
    }
    s["signal_stats"]["t"]["min"] = -1  # a copy: must not leak into the cache
    assert grid.get_statistics()["signal_stats"]["t"]["min"] == 2.0
    grid.add_point(5, 5, 5, {"t": 0.0})
    assert grid.get_statistics()["signal_stats"]["t"]["min"] == 2.0  # (8 + 0) / 2 = 4
    assert grid.get_statistics()["signal_stats"]["t"]["max"] == 4.0


def test_clear_forgets_everything():
    grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
    grid.add_points([[1, 1, 1]], {"t": [1.0]})
    grid.clear()
    s = grid.get_statistics()
    assert s["points_added"] == 0 and s["occupied_voxels"] == 0 and grid.available_signals == []
    grid.add_points([[1, 1, 1]], {"t": [4.0]})
    assert grid.get_signal_array("t")[1, 1, 1] == 4.0
    assert "VoxelGrid(" in repr(grid)


# ---------------------------------------------------------------- sparse memory


def test_plate_memory_grows_with_touched_voxels_not_the_box():
    grid = VoxelGrid(*PLATE)
    assert grid.dims == (500, 500, 600)
    dense = grid.get_statistics()["dense_equivalent_bytes"]
    assert dense == 150_000_000 * 8
    empty = grid.get_statistics()["memory_bytes"]
    assert empty < 2_000_000  # the brick table only
    # one 50 x 50 mm part, 10 layers: 100 x 100 x 10 voxels
    g = (np.arange(100) + 0.5) * 0.5 + 40.0
    gx, gy = np.meshgrid(g, g, indexing="ij")
    for layer in range(10):
        z = np.full(gx.size, 0.25 + 0.5 * layer)
        pts = np.stack([gx.ravel(), gy.ravel(), z], axis=1)
        grid.add_points(pts, {"t": np.full(gx.size, 1500.0)})
    s = grid.get_statistics()
    assert s["occupied_voxels"] == 100_000
    assert s["memory_bytes"] < dense / 100
    assert s["memory_bytes"] < 100_000 * 64  # a small multiple of the touched voxels
    ijk, v = grid.get_occupied("t")
    assert ijk.shape == (100_000, 3) and np.all(v == 1500.0)


# ---------------------------------------------------------------- threads


def test_writer_and_reader_threads():
    grid = VoxelGrid((0, 0, 0), (32, 32, 32), 0.5)
    rng = np.random.default_rng(5)
    batches = [rng.uniform(0, 32, size=(500, 3)) for _ in range(60)]
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for b in batches:
                grid.add_points(b, {"v": b[:, 0], "w": b[:, 1]})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                s = grid.get_statistics()
                assert s["points_added"] % 500 == 0
                if "v" in grid.available_signals:
                    ijk, v = grid.get_occupied("v")
                    assert ijk.shape[0] == v.shape[0]
                    grid.get_signal_array("v")
                grid.occupied_indices()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    all_pts = np.concatenate(batches)
    ref = VoxelGrid((0, 0, 0), (32, 32, 32), 0.5)
    ref.add_points(all_pts, {"v": all_pts[:, 0], "w": all_pts[:, 1]})
    np.testing.assert_allclose(grid.get_signal_array("w"), ref.get_signal_array("w"))
    assert grid.get_statistics()["points_added"] == 30_000


def test_reads_restricted_to_bricks():
    grid = VoxelGrid((0, 0, 0), (40, 40, 40), 1.0)
    pts = np.array([[1, 1, 1], [9, 2, 3], [10, 3, 4], [33, 33, 33]]) + 0.5
    grid.add_points(pts, {"v": [1.0, 2.0, 3.0, 4.0]})
    bricks = np.array([[1, 0, 0], [3, 3, 3], [1, 0, 0], [2, 2, 2]])  # repeat + unallocated
    assert grid.occupied_indices(bricks=bricks).tolist() == [[9, 2, 3], [10, 3, 4]]
    ijk, v = grid.get_occupied("v", bricks=[[4, 4, 4]])
    assert ijk.tolist() == [[33, 33, 33]] and v.tolist() == [4.0]
    assert grid.occupied_indices(bricks=np.empty((0, 3), dtype=int)).shape == (0, 3)
    with pytest.raises(ValueError, match="bricks"):
        grid.occupied_indices(bricks=[[5, 0, 0]])
    with pytest.raises(ValueError, match="bricks"):
        grid.occupied_indices(bricks=[[0.0, 0.0, 0.0]])
