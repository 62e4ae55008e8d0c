"""Benchmark VoxelGrid / IncrementalProcessor against the three performance targets.

Run ``python bench/bench_voxel.py`` (``--quick`` for a smaller, faster run). Prints a table
of figures and PASS/MISS per target. Exit code is 0 unless the grid's numbers disagree
with a plain numpy reference (a correctness failure gives 1); timings never fail the run.

Targets:
  1. batch   1 M random points into a 200^3 grid + dense read-back within 6x of a bare
             ``np.bincount`` sum + count + divide over precomputed flat indices.
  2. stream  100 k points in batches of 1,000 through IncrementalProcessor at >= 1 M pts/s.
  3. memory  250 x 250 x 300 mm plate at 0.5 mm (150 M voxels), ~3 % touched, far below
             the 1.2 GB of one dense float64 array.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.streaming.incremental_processor import IncrementalProcessor  # noqa: E402
from am_qadf.voxelization.voxel_grid import VoxelGrid  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []
FAILURES: list[str] = []


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def row(name: str, figure: str, target: str, ok: bool) -> None:
    ROWS.append((name, figure, target, "PASS" if ok else "MISS"))


def check(name: str, ok: bool, detail: str) -> None:
    print(f"  check {name}: {'ok' if ok else 'MISMATCH'} ({detail})")
    if not ok:
        FAILURES.append(name)


def bench_batch(n: int, side: int, repeat: int) -> None:
    print(f"[1] one batch of {n:,} random points into {side}^3, res 1.0")
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, side, size=(n, 3))
    values = rng.normal(1500.0, 50.0, size=n)
    ijk = np.floor(coords).astype(np.int64)
    flat = (ijk[:, 0] * side + ijk[:, 1]) * side + ijk[:, 2]
    size = side**3

    def baseline() -> np.ndarray:
        s = np.bincount(flat, weights=values, minlength=size)
        c = np.bincount(flat, minlength=size)
        return np.divide(s, c, out=np.zeros(size), where=c > 0)

    def ours() -> np.ndarray:
        grid = VoxelGrid((0, 0, 0), (side, side, side), 1.0)
        grid.add_points(coords, {"value": values})
        return grid.get_signal_array("value")

    t_base, ref = best_of(baseline, repeat)
    t_ours, arr = best_of(ours, repeat)
    diff = float(np.max(np.abs(arr.ravel() - ref)))
    check("batch mean vs bincount", bool(np.allclose(arr.ravel(), ref)), f"max |diff| {diff:.3g}")
    ratio = t_ours / t_base
    print(f"  bincount baseline {t_base * 1e3:.1f} ms, VoxelGrid {t_ours * 1e3:.1f} ms")
    row(
        f"1 batch {n / 1e6:g}M -> dense",
        f"{t_ours * 1e3:.0f} ms = {ratio:.2f}x bincount",
        "<= 6x",
        ratio <= 6,
    )

    for agg in ("min", "max", "sum", "last"):
        t0 = time.perf_counter()
        grid = VoxelGrid((0, 0, 0), (side, side, side), 1.0, aggregation=agg)
        grid.add_points(coords, {"value": values})
        got = grid.get_signal_array("value", default=np.nan).ravel()
        dt = time.perf_counter() - t0
        want = _reference(agg, flat, values, size)
        same = np.array_equal(np.isnan(got), np.isnan(want)) and np.allclose(
            got[~np.isnan(got)], want[~np.isnan(want)]
        )
        check(f"batch {agg}", bool(same), f"{dt * 1e3:.0f} ms")


def _reference(agg: str, flat: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.nan)
    order = np.argsort(flat, kind="stable")
    f, v = flat[order], values[order]
    starts = np.flatnonzero(np.concatenate(([True], f[1:] != f[:-1])))
    if agg == "min":
        out[f[starts]] = np.minimum.reduceat(v, starts)
    elif agg == "max":
        out[f[starts]] = np.maximum.reduceat(v, starts)
    elif agg == "sum":
        out[f[starts]] = np.add.reduceat(v, starts)
    else:
        ends = np.concatenate((starts[1:], [f.size])) - 1
        out[f[ends]] = v[ends]
    return out


def scan_path(n: int, rng: np.random.Generator) -> np.ndarray:
    """Laser-like hatch lines over a few parts, layer by layer (0.5 mm voxels)."""
    parts = np.array([[30.0, 30.0], [140.0, 30.0], [30.0, 140.0], [140.0, 140.0]])
    per_line = 200
    lines = n // per_line
    layer = np.arange(lines) // 200
    part = (np.arange(lines) // 50) % 4
    y = parts[part, 1] + (np.arange(lines) % 50) * 1.6
    t = np.linspace(0.0, 80.0, per_line)
    xs = parts[part, 0][:, None] + t[None, :]
    ys = np.broadcast_to(y[:, None], xs.shape)
    zs = np.broadcast_to((0.05 + 0.03 * layer)[:, None], xs.shape)
    pts = np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)
    return pts + rng.normal(0.0, 0.02, size=pts.shape)


def bench_stream(n: int, batch: int, loop_n: int) -> None:
    print(f"[2] streaming {n:,} points in batches of {batch:,} through IncrementalProcessor")
    rng = np.random.default_rng(2)
    coords = scan_path(n, rng)
    values = rng.normal(1500.0, 50.0, size=coords.shape[0])
    plate = ((0, 0, 0), (250, 250, 300), 0.5)

    grid = VoxelGrid(*plate)
    proc = IncrementalProcessor(grid)
    t0 = time.perf_counter()
    for s in range(0, coords.shape[0], batch):
        proc.update_voxel_grid(values[s : s + batch], coords[s : s + batch])
    dt = time.perf_counter() - t0
    pps = coords.shape[0] / dt
    stats = proc.get_statistics()

    # the pattern of the built-in voxel_processor: report and reset after every batch
    grid2 = VoxelGrid(*plate)
    proc2 = IncrementalProcessor(grid2)
    t0 = time.perf_counter()
    n_bricks = 0
    for s in range(0, coords.shape[0], batch):
        proc2.update_voxel_grid(values[s : s + batch], coords[s : s + batch])
        proc2.get_statistics()
        n_bricks += proc2.get_updated_bricks().shape[0]
        proc2.reset_updated_regions()
    pps_report = coords.shape[0] / (time.perf_counter() - t0)

    loop_grid = VoxelGrid(*plate)
    t0 = time.perf_counter()
    for (x, y, z), v in zip(coords[:loop_n].tolist(), values[:loop_n].tolist(), strict=True):
        loop_grid.add_point(x, y, z, {"value": v})
    loop_pps = loop_n / (time.perf_counter() - t0)

    one = VoxelGrid(*plate)
    one.add_points(coords, {"value": values})
    ijk_a, va = grid.get_occupied("value")
    ijk_b, vb = one.get_occupied("value")
    same = np.array_equal(ijk_a, ijk_b) and np.allclose(va, vb)
    check("stream == one batch", bool(same), f"{ijk_a.shape[0]:,} voxels")
    regions = proc.get_updated_indices()
    check(
        "updated regions == occupied",
        bool(np.array_equal(np.sort(_flat(regions, grid.dims)), np.sort(_flat(ijk_b, grid.dims)))),
        f"{regions.shape[0]:,} regions",
    )
    print(
        f"  {pps:,.0f} pts/s streamed ({stats['average_batch_ms'] * 1e3:.0f} us/batch avg), "
        f"per-point add_point loop {loop_pps:,.0f} pts/s"
    )
    print(
        f"  with stats + get_updated_bricks + reset after every batch: {pps_report:,.0f} pts/s "
        f"({n_bricks:,} brick reports)"
    )
    row(
        f"2 stream {batch}/batch",
        f"{pps / 1e6:.2f} M pts/s = {pps / loop_pps:.0f}x add_point loop",
        ">= 1 M pts/s",
        pps >= 1e6,
    )


def _flat(ijk: np.ndarray, dims: tuple[int, int, int]) -> np.ndarray:
    return np.ravel_multi_index(tuple(ijk.T), dims)


def bench_memory(layers: int) -> None:
    print(f"[3] 250 x 250 x 300 mm plate at 0.5 mm, 4 parts x {layers} layers")
    rng = np.random.default_rng(3)
    tracemalloc.start()
    grid = VoxelGrid((0, 0, 0), (250, 250, 300), 0.5)
    proc = IncrementalProcessor(grid)
    # four 50 x 50 mm parts: 100 x 100 voxels each per layer, one point per voxel per layer
    g = (np.arange(100) + 0.5) * 0.5
    gx, gy = np.meshgrid(g, g, indexing="ij")
    footprint = np.concatenate(
        [np.stack([gx.ravel() + ox, gy.ravel() + oy], axis=1) for ox, oy in _PARTS]
    )
    t0 = time.perf_counter()
    for layer in range(layers):
        z = np.full((footprint.shape[0], 1), 0.25 + 0.5 * layer)
        pts = np.hstack([footprint, z])
        proc.update_voxel_grid(rng.normal(1500.0, 50.0, pts.shape[0]), pts)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s = grid.get_statistics()
    dense = s["dense_equivalent_bytes"]
    used = s["memory_bytes"]
    print(
        f"  {s['points_added']:,} points in {dt:.2f} s; occupied {s['occupied_voxels']:,} of "
        f"{s['total_voxels']:,} voxels ({s['fill_ratio'] * 100:.2f} %), "
        f"{s['allocated_bricks']:,} bricks"
    )
    print(
        f"  memory_bytes {used / 2**20:.1f} MiB, tracemalloc peak {peak / 2**20:.1f} MiB, "
        f"dense float64 {dense / 2**20:.0f} MiB"
    )
    check(
        "plate occupancy",
        s["occupied_voxels"] == 4 * 100 * 100 * layers,
        f"{s['occupied_voxels']:,} voxels",
    )
    row(
        "3 plate memory",
        f"{used / 2**20:.0f} MiB (peak {peak / 2**20:.0f}) = {dense / used:.1f}x < dense",
        "<< 1.2 GB",
        used * 4 <= dense and peak * 2 <= dense,
    )


_PARTS = [(20.0, 20.0), (120.0, 25.0), (30.0, 150.0), (160.0, 170.0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = ap.parse_args()
    if args.quick:
        bench_batch(200_000, 100, 2)
        bench_stream(20_000, 1_000, 2_000)
        bench_memory(20)
    else:
        bench_batch(1_000_000, 200, 3)
        bench_stream(100_000, 1_000, 5_000)
        bench_memory(112)
    print()
    widths = [max(len(r[i]) for r in [*ROWS, ("target", "figure", "goal", "ok")]) for i in range(4)]
    for r in [("target", "figure", "goal", "ok"), *ROWS]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    if FAILURES:
        print(f"\nCORRECTNESS FAILURES: {FAILURES}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
