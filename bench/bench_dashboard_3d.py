"""Benchmark the 3D view: one update after N changed voxels in a big build, and how fast
a browser without a GPU draws that build.

Run ``python bench/bench_dashboard_3d.py`` (``--quick``: a 200 k-voxel build;
``--no-browser``: server side only). Builds a
solid 1 M-voxel block (100 x 100 x 100 at 0.5 mm) in a :class:`VoxelScene`, serialises it
once through :class:`IncrementalVTK` as a browser would receive it, marks the arrays as
held by the browser (what ``vtk_inplace.js`` reports), then changes 1 k and 10 k voxels
(whole 8 x 8 x 8 bricks on the top face) and measures, per update:

* server time: scene rebuild (numpy) + serialisation of the update (``_update``);
* bytes of data arrays and of scene JSON sent;
* the same update through Panel's stock pane (every array, every time) as the baseline.

Then it serves the same build to headless Chromium (Debian's, software WebGL as on a
kiosk PC without a GPU) and times frames while the camera turns: each frame is a
``render()`` followed by a one-pixel ``readPixels`` (which waits for the drawing). The
baseline, in the same run, is the same build at full detail (no level of detail).

Target (dashboard issue): < 100 ms server side and bytes proportional to what changed
for 10 k changed voxels in a 1 M-voxel build, and a representation the browser draws
smoothly at that size. Timings are printed, never asserted.
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


def new_scene(edge: int, **kw: float) -> VoxelScene:
    """A solid ``edge``³ block of voxels (0.5 mm) with random melt-pool temperatures."""
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (edge + 16,) * 3, clim=(1600.0, 2200.0), **kw)
    ijk = block(edge)
    scene.load(ijk, np.random.default_rng(1).uniform(1700, 2100, len(ijk)))
    return scene


def measure(edge: int, changed_bricks: int, repeat: int) -> dict[str, float]:
    scene = new_scene(edge)
    rng = np.random.default_rng(2)
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
    out = {
        "voxels": scene.voxel_count,
        "faces": scene.face_count,
        "detail": scene.detail,
        "changed": changed_bricks * BRICK**3,
        "live_faces": scene._live_actor.faces,
        "ms": statistics.median(times),
        "bytes": statistics.median(bytes_),
        "scene_bytes": statistics.median(scene_bytes),
        "stock_ms": statistics.median(stock_times),
        "stock_bytes": statistics.median(stock_bytes),
    }
    scene.finalize()
    return out


# Times ``frames`` frames in the page while the camera turns 3 degrees a frame.
FRAMES_JS = """async (frames) => {
  const view = Bokeh.index.query_one((v) => v._vtk_renwin != null)
  const win = view._vtk_renwin.getRenderWindow()
  const canvas = view.el.shadowRoot.querySelector("canvas")
  const gl = canvas.getContext("webgl2") || canvas.getContext("webgl")
  const pixel = new Uint8Array(4)
  const camera = win.getRenderers()[0].getActiveCamera()
  const ms = []
  for (let i = 0; i < frames; i++) {
    camera.azimuth(3)
    const t0 = performance.now()
    win.render()
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel)
    ms.push(performance.now() - t0)
    await new Promise((resolve) => setTimeout(resolve, 0))
  }
  return ms
}"""

DRAWN_JS = """() => {
  const view = Bokeh.index && Bokeh.index.query_one((v) => v._vtk_renwin != null)
  const renderers = view ? view._vtk_renwin.getRenderWindow().getRenderers() : []
  return renderers.length > 0 && renderers[0].getActors().length > 0
}"""


def browser_frames(scene: VoxelScene, frames: int) -> dict[str, float]:
    """Serve ``scene`` in an :class:`IncrementalVTK` pane (900 x 600) and time frames in
    headless Chromium."""
    import panel as pn
    from playwright.sync_api import sync_playwright

    from bench.bench_dashboard_live import CHROMIUM, CHROMIUM_ARGS, free_port

    cam = scene.default_camera()
    if cam is not None:
        scene.apply_camera(cam)
    port = free_port()
    server = pn.serve(
        {"/": lambda: IncrementalVTK(scene.render_window, width=900, height=600)},
        port=port,
        address="127.0.0.1",
        websocket_origin=[f"127.0.0.1:{port}"],
        websocket_max_message_size=1 << 30,
        show=False,
        threaded=True,
    )
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)
            page.wait_for_function(DRAWN_JS, timeout=300_000, polling=200)
            first = time.perf_counter() - t0
            ms = page.evaluate(FRAMES_JS, frames)
            browser.close()
    finally:
        server.stop()
    return {"first_s": first, "frame_ms": statistics.median(ms), "faces": scene.face_count}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 k-voxel build, fewer repeats")
    ap.add_argument("--no-browser", action="store_true", help="server side only")
    args = ap.parse_args()
    edge = 64 if args.quick else 100
    repeat = 3 if args.quick else 5
    rows = [measure(edge, bricks, repeat) for bricks in (2, 20)]  # 1,024 and 10,240 voxels
    first = rows[0]
    print(
        f"3D update, build of {first['voxels']:,} voxels, drawn as {first['faces']:,} exposed "
        f"faces (settled part at {first['detail']}x coarser detail);"
    )
    print(f"median of {repeat} updates of the same bricks (their corners are then held by")
    print("the browser: only values go); server ms = scene rebuild + serialisation;")
    print("stock = Panel's own pn.pane.VTK update of the same scene")
    print(
        f"{'changed':>8} {'live faces':>10} {'server ms':>10} {'array kB':>9} {'B/voxel':>8} "
        f"{'B/face':>7} {'scene kB':>9} {'stock ms':>9} {'stock kB':>9}"
    )
    for r in rows:
        print(
            f"{r['changed']:>8,} {r['live_faces']:>10,} {r['ms']:>10.1f} "
            f"{r['bytes'] / 1024:>9.1f} {r['bytes'] / r['changed']:>8.2f} "
            f"{r['bytes'] / r['live_faces']:>7.2f} {r['scene_bytes'] / 1024:>9.1f} "
            f"{r['stock_ms']:>9.1f} {r['stock_bytes'] / 1024:>9.1f}"
        )
    small, big = rows
    ratio = (big["bytes"] / max(small["bytes"], 1)) / (big["live_faces"] / small["live_faces"])
    print(
        f"10 k changed: {big['ms']:.0f} ms server side "
        f"({'PASS' if big['ms'] < 100 else 'MISS'} < 100 ms); bytes grow x{ratio:.2f} per "
        f"changed face ({'PASS' if 0.5 <= ratio <= 2 else 'MISS'} proportional); "
        f"{big['stock_bytes'] / max(big['bytes'], 1):.0f}x fewer bytes than stock"
    )
    if args.no_browser:
        return 0
    frames = 10 if args.quick else 20
    auto = new_scene(edge)
    lod = browser_frames(auto, frames)
    auto.finalize()
    full = new_scene(edge, face_budget=10**9)
    base = browser_frames(full, frames)
    full.finalize()
    print(
        f"Browser draw (headless Chromium, software WebGL, 900 x 600), build of "
        f"{first['voxels']:,} voxels, median of {frames} frames while turning:"
    )
    print(
        f"  level of detail {first['detail']}: {lod['faces']:,} faces, {lod['frame_ms']:.0f} ms "
        f"a frame ({1e3 / lod['frame_ms']:.1f} fps), first scene shown after "
        f"{lod['first_s']:.1f} s"
    )
    print(
        f"  full detail:      {base['faces']:,} faces, {base['frame_ms']:.0f} ms a frame "
        f"({1e3 / base['frame_ms']:.1f} fps), first scene shown after {base['first_s']:.1f} s"
    )
    print(
        f"  level of detail draws {base['frame_ms'] / lod['frame_ms']:.1f}x faster "
        f"({'PASS' if lod['frame_ms'] <= 100 else 'MISS'} <= 100 ms a frame, 10 fps)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
