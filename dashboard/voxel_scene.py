"""The 3D voxel scene: a "settled" actor for the finished part of the build and a small
"live" actor for the bricks that are changing, so an update re-sends only live voxels.

Panel's synchronized VTK pane re-serialises the whole scene *description* on every
``synchronize()`` (about 1,000 JSON nodes per actor, which Bokeh walks and encodes on
the server: tens of ms per actor under load) and, with
:class:`~dashboard.vtk_pane.IncrementalVTK`, sends a data *array* only when its content
is new to the browser. So the scene keeps the actor count minimal and constant:

* **settled**: every voxel of the bricks that have been quiet for ``settle_seconds``.
  Its arrays are rebuilt (and sent) only when bricks settle, at most once per
  ``settle_interval`` seconds, e.g. when the build moves up a brick row.
* **live**: the voxels of the bricks changed recently (in an L-PBF build, the brick row
  being built). Rebuilt on every update; it costs 16 bytes per voxel (float32 centre +
  float32 value).
* the outline of the current layer (a few line segments).

Voxels are drawn by ``vtkGlyph3DMapper`` instancing one shared cube, so no triangles
are made on the server, and coloured through a colour transfer function of nine nodes
(a 256-entry lookup table would add ~24 kB of JSON per actor to every update). Values
are kept in dense float32 chunks of 8 x 8 x 8 bricks (64³ voxels, NaN = empty), only for
chunks that hold voxels.

>>> import numpy as np
>>> scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (100, 100, 40), clim=(0.0, 1.0))
>>> s = scene.load(np.array([[1, 2, 3], [70, 2, 3]]), np.array([0.2, 0.9]))
>>> s.settled_voxels, s.live_voxels, s.bytes_new
(2, 0, 32)
>>> s = scene.update_bricks(np.array([[0, 0, 0]]), np.array([[1, 2, 3], [1, 2, 4]]),
...                         np.array([0.3, 0.4]), now=100.0)
>>> s.settled_rebuilt, s.live_voxels, scene.voxel_count
(True, 2, 3)
>>> s = scene.update_bricks(np.array([[0, 0, 0]]), np.array([[1, 2, 3], [1, 2, 4], [1, 2, 5]]),
...                         np.array([0.3, 0.4, 0.5]), now=101.0)
>>> s.settled_rebuilt, s.live_voxels, s.bytes_new
(False, 3, 48)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyvista as pv
import vtk

from .theme import VOXEL_PALETTE, hex_to_rgb

__all__ = ["BRICK", "SceneUpdate", "VoxelScene"]

BRICK = 8  # voxels per brick edge (the VoxelGrid's storage unit)
_OFFSETS = np.stack(
    np.meshgrid(np.arange(BRICK), np.arange(BRICK), np.arange(BRICK), indexing="ij"), axis=-1
).reshape(-1, 3)


@dataclass
class SceneUpdate:
    """What one load/update did: for the status line and for measurements."""

    live_voxels: int = 0
    settled_voxels: int = 0
    settled_rebuilt: bool = False
    bytes_new: int = 0  # bytes of rebuilt VTK arrays (what the browser has not seen yet)
    build_ms: float = 0.0
    full: bool = False


class _GlyphActor:
    """One actor drawing a cube at each point, coloured by the point's value."""

    def __init__(self, renderer: vtk.vtkRenderer, cube: pv.PolyData, ctf: vtk.vtkObject) -> None:
        self.renderer = renderer
        self.mapper = vtk.vtkGlyph3DMapper()  # instanced cubes (PyVista has no wrapper)
        self.mapper.SetSourceData(cube)
        self.mapper.ScalingOff()
        self.mapper.OrientOff()
        self.mapper.SetLookupTable(ctf)
        self.mapper.ScalarVisibilityOn()
        self.mapper.SetScalarModeToUsePointData()
        self.actor = vtk.vtkActor()
        self.actor.SetMapper(self.mapper)
        prop = self.actor.GetProperty()
        prop.SetAmbient(0.35)
        prop.SetDiffuse(0.75)
        prop.SetSpecular(0.1)
        self.count = 0
        self.shown = False

    def set_points(self, centers: np.ndarray, values: np.ndarray) -> int:
        """Replace the drawn cubes; returns the bytes of the new arrays."""
        self.count = int(centers.shape[0])
        if self.count == 0:
            if self.shown:
                self.renderer.RemoveActor(self.actor)
                self.shown = False
            return 0
        poly = pv.PolyData()  # points only: the glyph mapper needs no vertex cells
        poly.points = centers
        poly.point_data.set_array(values, "value")
        poly.point_data.active_scalars_name = "value"
        self.mapper.SetInputData(poly)
        if not self.shown:
            self.renderer.AddActor(self.actor)
            self.shown = True
        return centers.nbytes + values.nbytes


class VoxelScene:
    """Voxel cubes coloured by one signal, split into a settled and a live actor.

    Args:
        bbox_min: world position of voxel (0, 0, 0)'s lower corner.
        resolution: voxel edge length.
        dims: grid size in voxels.
        clim: value range of the colour ramp.
        settle_seconds: a brick unchanged this long moves to the settled actor...
        settle_interval: ...at most this often (each settling re-sends the settled actor).
        live_limit: settle at once when the live actor holds more voxels than this.
    """

    def __init__(
        self,
        bbox_min: Sequence[float],
        resolution: float,
        dims: Sequence[int],
        *,
        clim: tuple[float, float] = (0.0, 1.0),
        palette: Sequence[str] = VOXEL_PALETTE,
        background: str = "#f4f6f8",
        layer_color: str = "#00a3bf",
        settle_seconds: float = 8.0,
        settle_interval: float = 20.0,
        live_limit: int = 60_000,
        chunk_bricks: int = 8,
    ) -> None:
        self.bbox_min = np.asarray(bbox_min, dtype=np.float64)
        self.resolution = float(resolution)
        self.dims = np.asarray(dims, dtype=np.int64)
        self.bdims = (self.dims + BRICK - 1) // BRICK
        self.edge = int(chunk_bricks) * BRICK
        self.settle_seconds = float(settle_seconds)
        self.settle_interval = float(settle_interval)
        self.live_limit = int(live_limit)
        self._chunks: dict[tuple[int, int, int], np.ndarray] = {}
        self._live: dict[int, float] = {}  # flat brick id -> time of its last change
        self._in_settled: set[int] = set()  # bricks drawn by the settled actor
        self._last_settle = -np.inf
        self._threshold: tuple[float, float] | None = None
        self._opacity = 1.0
        self._hidden = 0  # settled voxels enclosed by others, not drawn
        self._layer_k: int | None = None
        self._layer_key: np.ndarray | None = None
        self._lo: np.ndarray | None = None  # occupied voxel bounds [lo, hi)
        self._hi: np.ndarray | None = None

        # Server-side renders only feed the serialiser: a tiny window whose renderer
        # draws nothing (the pane calls Render() before every serialisation).
        self.plotter = pv.Plotter(off_screen=True, window_size=(64, 64))
        self.plotter.set_background(background)
        self.renderer = self.plotter.renderer
        self.renderer.SetDraw(False)
        self.render_window = self.plotter.ren_win
        r = self.resolution
        cube = pv.Cube(x_length=r, y_length=r, z_length=r)
        cube.clear_data()  # no normals/texture coordinates: vtk.js shades flat cubes
        self.ctf = vtk.vtkColorTransferFunction()
        self._palette = tuple(palette)
        self._settled = _GlyphActor(self.renderer, cube, self.ctf)
        self._live_actor = _GlyphActor(self.renderer, cube, self.ctf)
        self.set_clim(clim)

        self._layer_mapper = vtk.vtkPolyDataMapper()
        self._layer_mapper.ScalarVisibilityOff()
        self._layer_actor = vtk.vtkActor()
        self._layer_actor.SetMapper(self._layer_mapper)
        prop = self._layer_actor.GetProperty()
        prop.SetColor(*hex_to_rgb(layer_color))
        prop.SetLineWidth(3.0)
        prop.LightingOff()

    # -- colour, threshold, opacity ---------------------------------------------------------
    @property
    def clim(self) -> tuple[float, float]:
        return self._clim

    def set_clim(self, clim: tuple[float, float]) -> None:
        """Spread the palette over ``clim`` (no array is re-sent, only nine nodes)."""
        lo, hi = float(clim[0]), float(clim[1])
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            lo, hi = (lo, lo + 1.0) if np.isfinite(lo) else (0.0, 1.0)
        self._clim = (lo, hi)
        self.ctf.RemoveAllPoints()
        n = len(self._palette)
        for i, color in enumerate(self._palette):
            self.ctf.AddRGBPoint(lo + (hi - lo) * i / (n - 1), *hex_to_rgb(color))
        for a in (self._settled, self._live_actor):
            a.mapper.SetScalarRange(lo, hi)

    def set_opacity(self, opacity: float) -> SceneUpdate | None:
        """Opacity of the voxels (an actor property). Opaque voxels hide those enclosed
        by others, which are then not drawn; crossing between opaque and translucent
        rebuilds the actors (returned), otherwise no array is re-sent (None)."""
        was_opaque = self._opacity >= 1.0
        self._opacity = float(np.clip(opacity, 0.05, 1.0))
        for a in (self._settled, self._live_actor):
            a.actor.GetProperty().SetOpacity(self._opacity)
        if (self._opacity >= 1.0) != was_opaque:
            return self._rebuild(settle=True, full=True)
        return None

    def set_threshold(self, threshold: tuple[float, float] | None) -> SceneUpdate:
        """Draw only voxels with ``lo <= value <= hi`` (None: all); rebuilds both actors."""
        self._threshold = None if threshold is None else (float(threshold[0]), float(threshold[1]))
        return self._rebuild(settle=True, full=True)

    # -- state ------------------------------------------------------------------------------
    @property
    def voxel_count(self) -> int:
        """Voxels shown (after the threshold), drawn or hidden inside the build."""
        return self._settled.count + self._live_actor.count + self._hidden

    @property
    def drawn_count(self) -> int:
        """Voxel cubes the browser draws (the enclosed ones are left out)."""
        return self._settled.count + self._live_actor.count

    @property
    def live_bricks(self) -> int:
        return len(self._live)

    @property
    def actor_count(self) -> int:
        return sum(a.shown for a in (self._settled, self._live_actor))

    def clear(self) -> None:
        """Remove every voxel (e.g. before a replay)."""
        self._chunks.clear()
        self._hidden = 0
        self._live.clear()
        self._in_settled.clear()
        self._lo = self._hi = None
        empty = np.empty((0, 3), dtype=np.float32)
        for a in (self._settled, self._live_actor):
            a.set_points(empty, np.empty(0, dtype=np.float32))

    # -- loading and updating ---------------------------------------------------------------
    def load(self, ijk: np.ndarray, values: np.ndarray) -> SceneUpdate:
        """Replace the whole scene by voxels ``ijk`` ((n, 3) ints) with ``values``; all of
        them go to the settled actor."""
        self.clear()
        self._write(np.asarray(ijk, dtype=np.int64).reshape(-1, 3), values)
        return self._rebuild(settle=True, full=True)

    def update_bricks(
        self,
        bricks: np.ndarray,
        ijk: np.ndarray,
        values: np.ndarray,
        *,
        now: float | None = None,
    ) -> SceneUpdate:
        """``bricks`` ((n, 3) brick coordinates) changed and ``ijk``/``values`` are their
        voxels now: those bricks go live; quiet live bricks settle when it is time."""
        now = time.monotonic() if now is None else float(now)
        bricks = np.asarray(bricks, dtype=np.int64).reshape(-1, 3)
        flat = np.ravel_multi_index(tuple(bricks.T), tuple(self.bdims)).tolist()
        for b in bricks:  # forget what these bricks held (stale cubes must not remain)
            cache = self._chunks.get(self._key(b))
            if cache is not None:
                o = b * BRICK % self.edge
                cache[o[0] : o[0] + BRICK, o[1] : o[1] + BRICK, o[2] : o[2] + BRICK] = np.nan
        self._write(np.asarray(ijk, dtype=np.int64).reshape(-1, 3), values)
        leaving = self._in_settled.intersection(flat)
        for f in flat:
            self._live[f] = now
        settle = bool(leaving)  # a settled brick changed: the settled actor must drop it
        quiet = [f for f, t in self._live.items() if now - t >= self.settle_seconds]
        if quiet and (
            now - self._last_settle >= self.settle_interval
            or self._live_actor.count > self.live_limit
        ):
            settle = True
        if settle:
            for f in quiet:
                del self._live[f]
            self._last_settle = now
        return self._rebuild(settle=settle, full=False)

    def _key(self, brick: np.ndarray) -> tuple[int, int, int]:
        c = brick * BRICK // self.edge
        return (int(c[0]), int(c[1]), int(c[2]))

    def _write(self, ijk: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float32).ravel()
        if ijk.shape[0] == 0:
            return
        lo, hi = ijk.min(axis=0), ijk.max(axis=0) + 1
        self._lo = lo if self._lo is None else np.minimum(self._lo, lo)
        self._hi = hi if self._hi is None else np.maximum(self._hi, hi)
        ck = ijk // self.edge
        local = ijk - ck * self.edge
        order = np.lexsort((ck[:, 2], ck[:, 1], ck[:, 0]))
        ck, local, values = ck[order], local[order], values[order]
        starts = np.flatnonzero(np.concatenate(([True], np.any(ck[1:] != ck[:-1], axis=1))))
        ends = np.append(starts[1:], ck.shape[0])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            key = (int(ck[s, 0]), int(ck[s, 1]), int(ck[s, 2]))
            cache = self._chunks.get(key)
            if cache is None:
                cache = self._chunks[key] = np.full((self.edge,) * 3, np.nan, dtype=np.float32)
            part = local[s:e]
            cache[part[:, 0], part[:, 1], part[:, 2]] = values[s:e]

    # -- building the actors ----------------------------------------------------------------
    def _rebuild(self, *, settle: bool, full: bool) -> SceneUpdate:
        t0 = time.perf_counter()
        upd = SceneUpdate(full=full, settled_rebuilt=settle)
        live = np.array(sorted(self._live), dtype=np.int64)
        live_b = (
            np.stack(np.unravel_index(live, tuple(self.bdims)), axis=1)
            if live.size
            else np.empty((0, 3), dtype=np.int64)
        )
        if settle:
            ijk, vals = self._gather_settled(live_b)
            upd.bytes_new += self._settled.set_points(*self._world(ijk, vals))
            self._in_settled = (
                set(
                    np.unique(
                        np.ravel_multi_index(tuple((ijk // BRICK).T), tuple(self.bdims))
                    ).tolist()
                )
                if ijk.size
                else set()
            )
        ijk, vals = self._gather_bricks(live_b)
        upd.bytes_new += self._live_actor.set_points(*self._world(ijk, vals))
        upd.live_voxels = self._live_actor.count
        upd.settled_voxels = self._settled.count
        self._update_layer_outline()
        upd.build_ms = (time.perf_counter() - t0) * 1e3
        return upd

    def _world(self, ijk: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._threshold is not None:
            lo, hi = self._threshold
            keep = (vals >= lo) & (vals <= hi)
            ijk, vals = ijk[keep], vals[keep]
        centers = (self.bbox_min + (ijk + 0.5) * self.resolution).astype(np.float32)
        return centers, vals.astype(np.float32)

    def _gather_bricks(self, bricks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finite voxels (global ijk, values) of ``bricks``."""
        out_ijk, out_v = [], []
        if bricks.shape[0]:
            keys = bricks * BRICK // self.edge
            order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
            bricks, keys = bricks[order], keys[order]
            starts = np.flatnonzero(np.concatenate(([True], np.any(keys[1:] != keys[:-1], axis=1))))
            ends = np.append(starts[1:], keys.shape[0])
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                cache = self._chunks.get((int(keys[s, 0]), int(keys[s, 1]), int(keys[s, 2])))
                if cache is None:
                    continue
                ijk = (bricks[s:e, None, :] * BRICK + _OFFSETS[None]).reshape(-1, 3)
                local = ijk - keys[s] * self.edge
                v = cache[local[:, 0], local[:, 1], local[:, 2]]
                ok = np.isfinite(v)
                out_ijk.append(ijk[ok])
                out_v.append(v[ok])
        return _concat(out_ijk, out_v)

    def _gather_settled(self, live_bricks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finite voxels of every chunk, except those in ``live_bricks`` and, while the
        voxels are opaque, those hidden inside the build (all six neighbours drawn)."""
        out_ijk, out_v = [], []
        self._hidden = 0
        for key, cache in self._chunks.items():
            base = np.asarray(key, dtype=np.int64) * self.edge
            drawn = np.isfinite(cache)
            if self._threshold is not None:
                with np.errstate(invalid="ignore"):
                    drawn &= (cache >= self._threshold[0]) & (cache <= self._threshold[1])
            mask = drawn.copy()
            for b in live_bricks:
                o = b * BRICK - base
                if np.all((o >= 0) & (o < self.edge)):
                    mask[o[0] : o[0] + BRICK, o[1] : o[1] + BRICK, o[2] : o[2] + BRICK] = False
            if self._opacity >= 1.0:
                hidden = mask & _enclosed(drawn)
                self._hidden += int(np.count_nonzero(hidden))
                mask &= ~hidden
            flat = np.flatnonzero(mask)
            if flat.size:
                out_ijk.append(np.stack(np.unravel_index(flat, mask.shape), axis=1) + base)
                out_v.append(cache.ravel()[flat])
        return _concat(out_ijk, out_v)

    # -- current layer ------------------------------------------------------------------------
    def set_current_layer(self, k: int | None) -> bool:
        """Outline voxel layer ``k`` (the one being built); True if the outline changed."""
        self._layer_k = None if k is None else int(k)
        return self._update_layer_outline()

    def occupied_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """World (min, max) corners of the occupied voxels, or None when empty."""
        if self._lo is None or self._hi is None:
            return None
        return (
            self.bbox_min + self._lo * self.resolution,
            self.bbox_min + self._hi * self.resolution,
        )

    def layer_mask(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Occupancy of voxel layer ``k`` as (origin ij, 2-D bool mask), or None if empty."""
        parts = []
        for key, cache in self._chunks.items():
            kz = k - key[2] * self.edge
            if not 0 <= kz < self.edge:
                continue
            m = np.isfinite(cache[:, :, kz])
            if m.any():
                parts.append((np.asarray(key[:2]) * self.edge, m))
        if not parts:
            return None
        origin = np.min([p[0] for p in parts], axis=0)
        size = np.max([p[0] for p in parts], axis=0) + self.edge - origin
        mask = np.zeros(tuple(size), dtype=bool)
        for o, m in parts:
            d = o - origin
            mask[d[0] : d[0] + self.edge, d[1] : d[1] + self.edge] |= m
        return origin, mask

    def _update_layer_outline(self) -> bool:
        found = None if self._layer_k is None else self.layer_mask(self._layer_k)
        if found is None:
            changed = self._layer_key is not None
            if changed:
                self.renderer.RemoveActor(self._layer_actor)
            self._layer_key = None
            return changed
        origin, mask = found
        key = np.concatenate((origin, mask.shape, [self._layer_k], np.packbits(mask)))
        if self._layer_key is not None and np.array_equal(self._layer_key, key):
            return False
        self._layer_key = key
        z = float(self.bbox_min[2] + (self._layer_k + 1) * self.resolution)
        self._layer_mapper.SetInputData(_outline(mask, origin, self.bbox_min, self.resolution, z))
        self.renderer.AddActor(self._layer_actor)
        return True

    # -- camera -------------------------------------------------------------------------------
    def default_camera(self) -> dict[str, list[float]] | None:
        """An oblique view framing the occupied voxels (None when empty), as the dict the
        VTK pane's ``camera`` parameter takes."""
        bounds = self.occupied_bounds()
        if bounds is None:
            return None
        lo, hi = bounds
        center = (lo + hi) / 2
        size = float(np.max(hi - lo))
        direction = np.array([0.45, -1.0, 0.62])
        direction /= np.linalg.norm(direction)
        position = center + direction * max(size, 10 * self.resolution) * 1.9
        return {
            "position": [round(float(v), 4) for v in position],
            "focalPoint": [round(float(v), 4) for v in center],
            "viewUp": [0.0, 0.0, 1.0],
            "viewAngle": 30.0,
        }

    def apply_camera(self, cam: dict[str, list[float]]) -> None:
        """Set the server-side camera (what the next serialisation sends)."""
        c = self.renderer.GetActiveCamera()
        c.SetPosition(*cam["position"])
        c.SetFocalPoint(*cam["focalPoint"])
        c.SetViewUp(*cam["viewUp"])
        c.SetViewAngle(cam.get("viewAngle", 30.0))
        self.renderer.ResetCameraClippingRange()

    def finalize(self) -> None:
        """Release the offscreen render window (the session ended)."""
        self.clear()
        self.plotter.close()


def _enclosed(occupied: np.ndarray) -> np.ndarray:
    """Cells of a 3-D bool array whose six neighbours are all ``True`` (cells on the
    array's faces count as exposed: their outer neighbours are unknown here).

    >>> m = np.ones((3, 3, 3), dtype=bool)
    >>> int(_enclosed(m).sum()), bool(_enclosed(m)[1, 1, 1])
    (1, True)
    """
    out = np.zeros_like(occupied)
    c = occupied[1:-1, 1:-1, 1:-1]
    out[1:-1, 1:-1, 1:-1] = (
        c
        & occupied[:-2, 1:-1, 1:-1]
        & occupied[2:, 1:-1, 1:-1]
        & occupied[1:-1, :-2, 1:-1]
        & occupied[1:-1, 2:, 1:-1]
        & occupied[1:-1, 1:-1, :-2]
        & occupied[1:-1, 1:-1, 2:]
    )
    return out


def _concat(ijk: list[np.ndarray], v: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not ijk:
        return np.empty((0, 3), dtype=np.int64), np.empty(0, dtype=np.float32)
    return np.concatenate(ijk), np.concatenate(v)


def _outline(
    mask: np.ndarray, origin: np.ndarray, bbox_min: np.ndarray, resolution: float, z: float
) -> pv.PolyData:
    """Line segments along the boundary of the ``True`` cells of a 2-D voxel mask.

    >>> m = np.zeros((3, 3), dtype=bool); m[1, 1] = True
    >>> _outline(m, np.array([0, 0]), np.zeros(3), 1.0, 0.0).n_lines
    4
    """
    p = np.pad(mask, 1)
    vi, vj = np.nonzero(p[1:, 1:-1] != p[:-1, 1:-1])  # edges at x = i, from y = j to j + 1
    hi, hj = np.nonzero(p[1:-1, 1:] != p[1:-1, :-1])  # edges at y = j, from x = i to i + 1
    a = np.concatenate((np.stack((vi, vj), 1), np.stack((hi, hj), 1)))
    b = np.concatenate((np.stack((vi, vj + 1), 1), np.stack((hi + 1, hj), 1)))
    n = a.shape[0]
    ends = np.empty((2 * n, 3), dtype=np.float32)
    ends[0::2, :2] = bbox_min[:2] + (a + origin) * resolution
    ends[1::2, :2] = bbox_min[:2] + (b + origin) * resolution
    ends[:, 2] = z
    cells = np.column_stack((np.full(n, 2), np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2)))
    return pv.PolyData(ends, lines=cells.ravel())
