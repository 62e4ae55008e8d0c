"""Benchmark the 3D view's server side: one update after N changed voxels in a big build.

Run ``python bench/bench_dashboard_3d.py`` (``--quick``: a 200 k-voxel build). Builds a
solid 1 M-voxel block (100 x 100 x 100 at 0.5 mm) in a :class:`VoxelScene`, serialises it
once through :class:`IncrementalVTK` as a browser would receive it, marks the arrays as
held by the browser (what ``vtk_inplace.js`` reports), then changes 1 k and 10 k voxels
(whole 8 x 8 x 8 bricks on the top face) and measures, per update:

* server time: scene rebuild (numpy) + serialisation of the update (``_update``);
* bytes of data arrays and of scene JSON sent;
* the same update through Panel's stock pane (every array, every time) as the baseline.

Target (dashboard issue): < 100 ms server side and bytes proportional to the changed
voxels for 10 k changed voxels in a 1 M-voxel build. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bokeh.document import Document  # noqa: E402
from panel.pane.vtk.vtk import VTKRenderWindowSynchronized  # noqa: E402

from dashboard.voxel_scene import BRICK, VoxelScene  # noqa: E402
from dashboard.vtk_pane import IncrementalVTK, scene_arrays  # noqa: E402


def block(n: int) -> np.ndarray:
    g = np.arange(n)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)


def top_bricks(n: int, count: int) -> np.ndarray:
    """``count`` bricks from the top brick row of an ``n``-voxel block."""
    per = n // BRICK
    top = per - 1
    bi, bj = np.divmod(np.arange(count), per)
    return np.column_stack((bi, bj, np.full(count, top)))


def brick_ijk(bricks: np.ndarray) -> np.ndarray:
    g = np.arange(BRICK)
    off = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return (bricks[:, None, :] * BRICK + off[None]).reshape(-1, 3)


def measure(edge: int, changed_bricks: int, repeat: int) -> dict[str, float]:
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (edge + 16,) * 3, clim=(1600.0, 2200.0))
    ijk = block(edge)
    rng = np.random.default_rng(1)
    scene.load(ijk, rng.uniform(1700, 2100, len(ijk)))
    pane = IncrementalVTK(scene.render_window)
    model = pane.get_root(Document())
    stock = VTKRenderWindowSynchronized(scene.render_window)
    stock_model = stock.get_root(Document())
    times, bytes_, scene_bytes, stock_times, stock_bytes = [], [], [], [], []
    now = 1000.0
    for r in range(repeat):
        model.arrays_processed = sorted(scene_arrays(model.scene))  # the browser's report
        bricks = top_bricks(edge, changed_bricks)
        vox = brick_ijk(bricks)
        t0 = time.perf_counter()
        scene.update_bricks(bricks, vox, rng.uniform(1700, 2100, len(vox)), now=now + r)
        pane._update(None, model)
        times.append((time.perf_counter() - t0) * 1e3)
        bytes_.append(pane.last_array_bytes)
        scene_bytes.append(len(json.dumps(model.scene)))
        t0 = time.perf_counter()
        stock._update(None, stock_model)
        stock_times.append((time.perf_counter() - t0) * 1e3)
        stock_bytes.append(sum(len(v) for v in stock_model.arrays.values()))
    drawn = scene.drawn_count
    scene.finalize()
    return {
        "voxels": len(ijk),
        "drawn": drawn,
        "changed": changed_bricks * BRICK**3,
        "ms": statistics.median(times),
        "bytes": statistics.median(bytes_),
        "scene_bytes": statistics.median(scene_bytes),
        "stock_ms": statistics.median(stock_times),
        "stock_bytes": statistics.median(stock_bytes),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 k-voxel build, fewer repeats")
    args = ap.parse_args()
    edge = 64 if args.quick else 100
    repeat = 3 if args.quick else 5
    rows = []
    for bricks in (2, 20):  # 1,024 and 10,240 changed voxels
        rows.append(measure(edge, bricks, repeat))
    print(f"3D update, build of {rows[0]['voxels']:,} voxels ({rows[0]['drawn']:,} drawn, the rest")
    print(f"enclosed); median of {repeat} updates of the same bricks (their points are then")
    print("held by the browser: only values go); server ms = scene rebuild + serialisation;")
    print("stock = Panel's own pn.pane.VTK update of the same scene")
    print(
        f"{'changed':>8} {'server ms':>10} {'array kB':>9} {'B/changed':>10} "
        f"{'scene kB':>9} {'stock ms':>9} {'stock kB':>9}"
    )
    for r in rows:
        print(
            f"{r['changed']:>8,} {r['ms']:>10.1f} {r['bytes'] / 1024:>9.1f} "
            f"{r['bytes'] / r['changed']:>10.1f} {r['scene_bytes'] / 1024:>9.1f} "
            f"{r['stock_ms']:>9.1f} {r['stock_bytes'] / 1024:>9.1f}"
        )
    big, small = rows[1], rows[0]
    ratio = big["bytes"] / max(small["bytes"], 1)
    print(
        f"10 k changed: {big['ms']:.0f} ms server side "
        f"({'PASS' if big['ms'] < 100 else 'MISS'} < 100 ms); bytes x{ratio:.1f} for x10 voxels "
        f"({'PASS' if 5 <= ratio <= 15 else 'MISS'} proportional); "
        f"{big['stock_bytes'] / max(big['bytes'], 1):.0f}x fewer bytes than stock"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
