"""The 3D voxel scene: the outer faces of the build, split into a "settled" actor for
the finished part and a small "live" actor for the bricks that are changing, so an
update re-sends only the live part.

Panel's synchronized VTK pane re-serialises the whole scene *description* on every
``synchronize()`` (about 1,000 JSON nodes per actor, which Bokeh walks and encodes on
the server: tens of ms per actor under load) and, with
:class:`~dashboard.vtk_pane.IncrementalVTK`, sends a data *array* only when its content
is new to the browser. So the scene keeps the actor count minimal and constant:

* **settled**: the bricks that have been quiet for ``settle_seconds``. Its arrays are
  rebuilt (and sent) only when bricks settle, at most once per ``settle_interval``
  seconds, e.g. when the build moves up a brick row.
* **live**: the voxels of the bricks changed recently (in an L-PBF build, the brick row
  being built), at full detail. Rebuilt on every update.
* the outline of the current layer (a few line segments), the outline of the build
  plate, and a marker at each located alert.

Surfaces are drawn unlit (ambient only): the colour on screen is the colour the
legend gives the value, whatever the face's angle to the light. A lit top face seen
at a slant came out darker than its legend colour (a yellow turned olive).

Voxels are drawn as their **exposed faces** only (a face whose neighbour cell holds no
shown voxel), as one quad mesh per actor with a value per face. A solid 100³ block is
60,000 faces instead of a million cubes. Browsers without a GPU (kiosk PCs, headless
Chromium) draw about 4 µs per face, against about 200 µs per instanced cube, so the
settled part also has a **level of detail**: when its faces exceed ``face_budget`` it
is drawn from cells of 2, 4 or 8 voxels per edge (value = mean of the voxels inside),
which keeps a frame near 100 ms whatever the build's size. The live part is always
drawn at full detail. Values are kept in dense float32 chunks of 8 x 8 x 8 bricks
(64³ voxels, NaN = empty), only for chunks that hold voxels, and coloured through a
colour transfer function of nine nodes (a 256-entry lookup table would add ~24 kB of
JSON per actor to every update).

>>> import numpy as np
>>> scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (100, 100, 40), clim=(0.0, 1.0))
>>> s = scene.load(np.array([[1, 2, 3], [70, 2, 3]]), np.array([0.2, 0.9]))
>>> s.settled_voxels, s.live_voxels, s.faces, s.detail
(2, 0, 12, 1)
>>> s = scene.update_bricks(np.array([[0, 0, 0]]), np.array([[1, 2, 3], [1, 2, 4]]),
...                         np.array([0.3, 0.4]), now=100.0)
>>> s.settled_rebuilt, s.live_voxels, s.faces, scene.voxel_count
(True, 2, 16, 3)
>>> s = scene.update_bricks(np.array([[0, 0, 0]]), np.array([[1, 2, 3], [1, 2, 4], [1, 2, 5]]),
...                         np.array([0.3, 0.4, 0.5]), now=101.0)
>>> s.settled_rebuilt, s.live_voxels, s.faces
(False, 3, 20)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyvista as pv
import vtk

from .theme import SEVERITY_COLORS, VOXEL_PALETTE, hex_to_rgb

__all__ = ["BRICK", "SceneUpdate", "VoxelScene", "exposed_faces", "unlit"]

BRICK = 8  # voxels per brick edge (the VoxelGrid's storage unit)
DETAILS = (1, 2, 4, 8)  # voxels per cell edge of the settled part's levels of detail

Key = tuple[int, int, int]


def _face_corners() -> np.ndarray:
    """Lattice offsets (6, 4, 3) of the four corners of each face of a unit cell, in the
    order -x, +x, -y, +y, -z, +z, going round each face."""
    out = np.zeros((6, 4, 3), dtype=np.int64)
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        for side in (0, 1):
            c = out[2 * axis + side]
            c[:, axis] = side
            c[1, u] = c[2, u] = 1
            c[2, v] = c[3, v] = 1
    return out


_CORNERS = _face_corners()


@dataclass
class SceneUpdate:
    """What one load/update did: for the status line and for measurements."""

    live_voxels: int = 0
    settled_voxels: int = 0
    faces: int = 0  # faces the browser draws after this update (both actors)
    detail: int = 1  # voxels per cell edge of the settled part (1 = full detail)
    settled_rebuilt: bool = False
    bytes_new: int = 0  # bytes of rebuilt VTK arrays (what the browser has not seen yet)
    build_ms: float = 0.0
    full: bool = False


def exposed_faces(cells: np.ndarray, occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces of the ``True`` cells of ``cells`` ((a, b, c) bool) not covered by a
    neighbour: ``occupied`` ((a + 2, b + 2, c + 2) bool) is what covers, padded by one
    cell on every side. Returns (cell index (n, 3), corner lattice points (n, 4, 3)).

    >>> occ = np.pad(np.ones((2, 1, 1), dtype=bool), 1)
    >>> idx, corners = exposed_faces(occ[1:-1, 1:-1, 1:-1], occ)
    >>> len(idx), corners.max(axis=(0, 1)).tolist()
    (10, [2, 1, 1])
    """
    return _faces(_exposed_masks(cells, occupied))


def _exposed_masks(cells: np.ndarray, occupied: np.ndarray) -> list[np.ndarray]:
    """For each face direction (-x, +x, -y, +y, -z, +z), the cells showing that face."""
    out = []
    for face in range(6):
        axis, side = divmod(face, 2)
        near = [slice(1, -1)] * 3
        near[axis] = slice(2, None) if side else slice(0, -2)
        out.append(cells & ~occupied[tuple(near)])
    return out


def _faces(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(cell index, corner lattice points) of the faces in :func:`_exposed_masks`."""
    idx = [np.argwhere(m) for m in masks]
    corners = [i[:, None, :] + _CORNERS[face][None] for face, i in enumerate(idx)]
    return np.concatenate(idx), np.concatenate(corners)


def unlit(prop: vtk.vtkProperty) -> vtk.vtkProperty:
    """Make ``prop`` draw its colour as it is: no lighting, all ambient, no diffuse or
    specular shading (the browser then shows exactly the colour map's colour).

    >>> p = unlit(vtk.vtkProperty())
    >>> p.GetLighting(), p.GetAmbient(), p.GetDiffuse(), p.GetSpecular()
    (False, 1.0, 0.0, 0.0)
    """
    prop.LightingOff()
    prop.SetAmbient(1.0)
    prop.SetDiffuse(0.0)
    prop.SetSpecular(0.0)
    return prop


def _line_actor(color: str, width: float) -> tuple[vtk.vtkActor, vtk.vtkPolyDataMapper]:
    """An unlit actor of one colour for lines or points, and its mapper."""
    mapper = vtk.vtkPolyDataMapper()
    mapper.ScalarVisibilityOff()
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    prop = unlit(actor.GetProperty())
    prop.SetColor(*hex_to_rgb(color))
    prop.SetAmbientColor(*hex_to_rgb(color))
    prop.SetLineWidth(width)
    prop.SetPointSize(width)
    return actor, mapper


class _SurfaceActor:
    """One actor drawing quads, coloured by a value per quad."""

    def __init__(self, renderer: vtk.vtkRenderer, ctf: vtk.vtkObject) -> None:
        self.renderer = renderer
        self.mapper = vtk.vtkPolyDataMapper()
        self.mapper.SetLookupTable(ctf)
        self.mapper.ScalarVisibilityOn()
        self.mapper.SetScalarModeToUseCellData()
        self.actor = vtk.vtkActor()
        self.actor.SetMapper(self.mapper)
        unlit(self.actor.GetProperty())
        self.voxels = 0  # voxels the faces stand for
        self.faces = 0
        self.shown = False

    def set_faces(
        self, corners: np.ndarray, values: np.ndarray, origin: np.ndarray, step: float, voxels: int
    ) -> int:
        """Draw quads with lattice ``corners`` ((n, 4, 3) ints, in units of ``step`` from
        ``origin``) and ``values``; returns the bytes of the new arrays."""
        self.voxels, self.faces = int(voxels), int(corners.shape[0])
        if self.faces == 0:
            if self.shown:
                self.renderer.RemoveActor(self.actor)
                self.shown = False
            return 0
        flat = corners.reshape(-1, 3)
        lo = flat.min(axis=0)
        shape = tuple(flat.max(axis=0) - lo + 1)
        key = np.ravel_multi_index(tuple((flat - lo).T), shape)
        unique, index = np.unique(key, return_inverse=True)  # shared corners, sent once
        lattice = np.stack(np.unravel_index(unique, shape), axis=1)
        points = (origin + (lattice + lo) * step).astype(np.float32)
        quads = np.empty((self.faces, 5), dtype=np.int64)
        quads[:, 0] = 4
        quads[:, 1:] = index.reshape(-1, 4)
        poly = pv.PolyData(points, faces=quads.ravel())
        poly.cell_data.set_array(values.astype(np.float32), "value")
        poly.cell_data.active_scalars_name = "value"
        self.mapper.SetInputData(poly)
        if not self.shown:
            self.renderer.AddActor(self.actor)
            self.shown = True
        # as serialised: float32 points, int32 cells (count + 4 ids), float32 values
        return points.nbytes + self.faces * (5 * 4 + 4)


class VoxelScene:
    """The exposed faces of the voxels, coloured by one signal, split into a settled and
    a live actor.

    Args:
        bbox_min: world position of voxel (0, 0, 0)'s lower corner.
        resolution: voxel edge length.
        dims: grid size in voxels.
        clim: value range of the colour ramp.
        settle_seconds: a brick unchanged this long moves to the settled actor...
        settle_interval: ...at most this often (each settling re-sends the settled actor).
        live_limit: settle at once when the live actor holds more voxels than this.
        face_budget: draw the settled part at the finest level of detail with at most
            this many faces (a browser without a GPU draws ~4 µs per face).
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
        plate_color: str = "#868e96",
        plate: tuple[Sequence[float], Sequence[float]] | None = None,
        settle_seconds: float = 8.0,
        settle_interval: float = 20.0,
        live_limit: int = 60_000,
        face_budget: int = 16_000,
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
        self.face_budget = int(face_budget)
        self._chunks: dict[Key, np.ndarray] = {}
        self._live: dict[int, float] = {}  # flat brick id -> time of its last change
        self._in_settled: set[int] = set()  # bricks drawn by the settled actor
        self._last_settle = -np.inf
        self._threshold: tuple[float, float] | None = None
        self._detail = 1
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
        self.ctf = vtk.vtkColorTransferFunction()
        self._palette = tuple(palette)
        self._settled = _SurfaceActor(self.renderer, self.ctf)
        self._live_actor = _SurfaceActor(self.renderer, self.ctf)
        self.set_clim(clim)

        self._layer_actor, self._layer_mapper = _line_actor(layer_color, 3.0)
        self._plate_actor, plate_mapper = _line_actor(plate_color, 2.0)
        if plate is None:  # the grid's footprint
            plate = (self.bbox_min[:2], self.bbox_min[:2] + self.dims[:2] * self.resolution)
        self.plate = (np.asarray(plate[0], float)[:2], np.asarray(plate[1], float)[:2])
        plate_mapper.SetInputData(_rectangle(*self.plate, float(self.bbox_min[2])))
        self.renderer.AddActor(self._plate_actor)
        # alert markers, one actor per severity (fewer, bigger, on top: critical)
        self._markers = {
            sev: _line_actor(SEVERITY_COLORS[sev], size)
            for sev, size in (("info", 8.0), ("warning", 10.0), ("critical", 14.0))
        }
        self._marker_key: dict[str, bytes] = {}

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

    def set_opacity(self, opacity: float) -> None:
        """Opacity of the surfaces (an actor property: no array is re-sent). Translucent
        surfaces show the far side of the build; the threshold shows what is inside."""
        for a in (self._settled, self._live_actor):
            a.actor.GetProperty().SetOpacity(float(np.clip(opacity, 0.05, 1.0)))

    def set_threshold(self, threshold: tuple[float, float] | None) -> SceneUpdate:
        """Show only voxels with ``lo <= value <= hi`` (None: all); rebuilds both actors."""
        self._threshold = None if threshold is None else (float(threshold[0]), float(threshold[1]))
        return self._rebuild(settle=True, full=True)

    def set_face_budget(self, faces: int) -> SceneUpdate:
        """Draw the settled part at the finest detail with at most ``faces`` faces;
        rebuilds the settled actor."""
        if faces < 1:
            raise ValueError(f"face budget must be at least 1, got {faces}")
        self.face_budget = int(faces)
        return self._rebuild(settle=True, full=True)

    # -- state ------------------------------------------------------------------------------
    @property
    def voxel_count(self) -> int:
        """Voxels shown (after the threshold)."""
        return self._settled.voxels + self._live_actor.voxels

    @property
    def face_count(self) -> int:
        """Faces the browser draws."""
        return self._settled.faces + self._live_actor.faces

    @property
    def detail(self) -> int:
        """Voxels per cell edge the settled part is drawn with (1: full detail)."""
        return self._detail

    @property
    def live_bricks(self) -> int:
        return len(self._live)

    @property
    def actor_count(self) -> int:
        return sum(a.shown for a in (self._settled, self._live_actor))

    def clear(self) -> None:
        """Remove every voxel (e.g. before a replay)."""
        self._chunks.clear()
        self._live.clear()
        self._in_settled.clear()
        self._lo = self._hi = None
        empty = np.empty((0, 4, 3), dtype=np.int64)
        for a in (self._settled, self._live_actor):
            a.set_faces(empty, np.empty(0), self.bbox_min, self.resolution, 0)

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
        for b in bricks:  # forget what these bricks held (stale voxels must not remain)
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
            or self._live_actor.voxels > self.live_limit
        ):
            settle = True
        if settle:
            for f in quiet:
                del self._live[f]
            self._last_settle = now
        return self._rebuild(settle=settle, full=False)

    def _key(self, brick: np.ndarray) -> Key:
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
        for key, s, e in _runs(ck):
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
        live_b = np.stack(np.unravel_index(live, tuple(self.bdims)), axis=1).reshape(-1, 3)
        live_groups = dict(self._group(live_b))
        memo: dict[tuple[Key, int], np.ndarray | None] = {}

        def occupied(key: Key, detail: int) -> np.ndarray | None:
            """Cells holding a shown voxel (settled or live) at ``detail``."""
            if (key, detail) not in memo:
                cache = self._chunks.get(key)
                if cache is None or detail == 1:
                    memo[key, detail] = None if cache is None else self._shown(cache)
                else:  # coarser levels from the full-detail one, computed once
                    memo[key, detail] = _coarse(occupied(key, 1), detail)
            return memo[key, detail]

        if settle:
            upd.bytes_new += self._build_settled(live_groups, occupied)
        upd.bytes_new += self._build_live(live_groups, occupied)
        upd.live_voxels = self._live_actor.voxels
        upd.settled_voxels = self._settled.voxels
        upd.faces = self.face_count
        upd.detail = self._detail
        self._update_layer_outline()
        upd.build_ms = (time.perf_counter() - t0) * 1e3
        return upd

    def _shown(self, cache: np.ndarray) -> np.ndarray:
        shown = np.isfinite(cache)
        if self._threshold is not None:
            with np.errstate(invalid="ignore"):
                shown &= (cache >= self._threshold[0]) & (cache <= self._threshold[1])
        return shown

    def _group(self, bricks: np.ndarray) -> list[tuple[Key, np.ndarray]]:
        """``bricks`` grouped by chunk, as (chunk key, brick coordinates in the chunk)."""
        per = self.edge // BRICK
        keys = bricks // per
        order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
        bricks, keys = bricks[order], keys[order]
        return [(key, bricks[s:e] - keys[s] * per) for key, s, e in _runs(keys)]

    def _brick_mask(self, local_bricks: np.ndarray) -> np.ndarray:
        """Voxel mask of a chunk that is True inside ``local_bricks``."""
        per = self.edge // BRICK
        m = np.zeros((per, per, per), dtype=bool)
        m[tuple(local_bricks.T)] = True
        return m.repeat(BRICK, 0).repeat(BRICK, 1).repeat(BRICK, 2)

    def _build_settled(
        self,
        live_groups: dict[Key, np.ndarray],
        occupied: Callable[[Key, int], np.ndarray | None],
    ) -> int:
        """Faces of every shown voxel outside the live bricks, at the finest level of
        detail that keeps within ``face_budget``."""
        parts: list[tuple[Key, np.ndarray, np.ndarray]] = []  # key, cells, box (lo, hi)
        voxels = 0
        self._in_settled = set()
        settled_cells: dict[Key, np.ndarray] = {}
        memo: dict[tuple[Key, int], np.ndarray | None] = {}

        def hides(key: Key, detail: int) -> np.ndarray | None:
            """Cells that hide a settled face at ``detail``. At full detail every shown
            voxel does; coarser, only settled ones: a coarse cell of a live brick may be
            partly empty, and the live voxels drawn at full detail would leave a hole."""
            if detail == 1 or key not in live_groups:
                return occupied(key, detail)
            if (key, detail) not in memo:
                memo[key, detail] = _coarse(settled_cells[key], detail)
            return memo[key, detail]

        for key in self._chunks:
            cells = occupied(key, 1)
            if key in live_groups:
                cells = cells & ~self._brick_mask(live_groups[key])
            settled_cells[key] = cells
            bricks = np.argwhere(_coarse(cells, BRICK))
            if bricks.size == 0:
                continue
            voxels += int(np.count_nonzero(cells))
            # only the box around the occupied bricks is scanned (a plate fills a few
            # brick layers of its chunks)
            box = np.stack((bricks.min(axis=0), bricks.max(axis=0) + 1)) * BRICK
            parts.append((key, cells, box))
            bricks += np.asarray(key) * (self.edge // BRICK)
            flat = np.ravel_multi_index(tuple(bricks.T), tuple(self.bdims))
            self._in_settled.update(flat.tolist())

        def scan(detail: int, part: tuple[Key, np.ndarray, np.ndarray]) -> list[np.ndarray]:
            key, cells, box = part
            fine, _ = _box(*box)
            _, padded = _box(*(box // detail))
            occ = _padded(key, detail, hides, self.edge // detail)
            return _exposed_masks(_coarse(cells[fine], detail), occ[padded])

        # the finest detail within budget, from face counts (cheap), then its faces
        for detail in DETAILS:
            masks = [scan(detail, part) for part in parts]
            count = sum(np.count_nonzero(m) for part_masks in masks for m in part_masks)
            if count <= self.face_budget:
                break
        self._detail = detail
        corners, values = [], []
        for (key, cells, box), part_masks in zip(parts, masks, strict=True):
            idx, cor = _faces(part_masks)
            cor += box[0] // detail + np.asarray(key) * (self.edge // detail)
            corners.append(cor)
            inner, _ = _box(*box)
            values.append(_cell_means(self._chunks[key][inner], cells[inner], idx, detail))
        return self._settled.set_faces(
            _cat(corners, (0, 4, 3)),
            _cat(values, (0,)),
            self.bbox_min,
            self.resolution * detail,
            voxels,
        )

    def _build_live(
        self,
        live_groups: dict[Key, np.ndarray],
        occupied: Callable[[Key, int], np.ndarray | None],
    ) -> int:
        """Faces of the shown voxels of the live bricks, at full detail."""
        corners, values = [], []
        voxels = 0
        for key, local in live_groups.items():
            shown = occupied(key, 1)
            if shown is None:
                continue
            cells = shown & self._brick_mask(local)
            voxels += int(np.count_nonzero(cells))
            # only the box around the live bricks (in a build: one brick row) is scanned
            lo, hi = local.min(axis=0) * BRICK, (local.max(axis=0) + 1) * BRICK
            box, pad = _box(lo, hi)
            occ = _padded(key, 1, occupied, self.edge)
            idx, cor = exposed_faces(cells[box], occ[pad])
            idx += lo
            cor += lo + np.asarray(key) * self.edge
            corners.append(cor)
            values.append(self._chunks[key][tuple(idx.T)])
        return self._live_actor.set_faces(
            _cat(corners, (0, 4, 3)), _cat(values, (0,)), self.bbox_min, self.resolution, voxels
        )

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

    # -- alert markers ------------------------------------------------------------------------
    def set_alert_markers(self, points: np.ndarray, severities: Sequence[str]) -> bool:
        """Mark alert locations ``points`` ((n, 3) world x, y, z) with a dot in the colour
        of each one's severity (info, warning, critical); True if the markers changed.

        >>> scene = VoxelScene((0.0, 0.0, 0.0), 1.0, (8, 8, 8))
        >>> scene.set_alert_markers(np.array([[1.0, 2.0, 3.0]]), ["critical"])
        True
        >>> scene.marker_count, scene.set_alert_markers(np.array([[1.0, 2.0, 3.0]]), ["critical"])
        ({'info': 0, 'warning': 0, 'critical': 1}, False)
        """
        pts = np.array(points, dtype=np.float32).reshape(-1, 3)
        sev = np.asarray(list(severities), dtype=object)
        if sev.shape[0] != pts.shape[0]:
            raise ValueError(f"{pts.shape[0]} alert points but {sev.shape[0]} severities")
        # drawn half a voxel above the top of the voxel the alert fell in, so the surface
        # of that voxel does not hide it
        k = np.floor((pts[:, 2] - self.bbox_min[2]) / self.resolution)
        pts[:, 2] = self.bbox_min[2] + (k + 1.5) * self.resolution
        changed = False
        for name, (actor, mapper) in self._markers.items():
            mine = pts[sev == name] if pts.shape[0] else pts
            key = mine.tobytes()
            if self._marker_key.get(name, b"-") == key:
                continue
            changed = True
            self._marker_key[name] = key
            if mine.shape[0] == 0:
                self.renderer.RemoveActor(actor)
                continue
            mapper.SetInputData(pv.PolyData(mine))  # one vertex per point
            self.renderer.AddActor(actor)
        return changed

    @property
    def marker_count(self) -> dict[str, int]:
        """Alert markers shown, per severity."""
        return {name: len(self._marker_key.get(name, b"")) // 12 for name in self._markers}

    # -- camera -------------------------------------------------------------------------------
    def default_camera(self, aspect: float = 1.4) -> dict[str, list[float]] | None:
        """An oblique view framing the occupied voxels in a view ``aspect`` times as wide
        as high (None when empty), as the dict the VTK pane's ``camera`` parameter takes.

        >>> scene = VoxelScene((0.0, 0.0, 0.0), 1.0, (16, 16, 16))
        >>> _ = scene.load(np.array([[0, 0, 0], [9, 9, 9]]), np.array([1.0, 2.0]))
        >>> scene.default_camera()["focalPoint"]
        [5.0, 5.0, 5.0]
        """
        bounds = self.occupied_bounds()
        if bounds is None:
            return None
        lo, hi = bounds
        center = (lo + hi) / 2
        back = np.array([0.45, -1.0, 0.62])  # from the build towards the camera
        back /= np.linalg.norm(back)
        up = np.array([0.0, 0.0, 1.0]) - back[2] * back
        up /= np.linalg.norm(up)
        right = np.cross(up, back)
        corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1).T
        rel = corners - center
        # each corner must lie within the half-angle (15 degrees) of the view, seen from
        # its own depth: distance >= its depth + its offset / tan(15 degrees)
        offset = np.maximum(np.abs(rel @ up), np.abs(rel @ right) / aspect)
        tan = np.tan(np.radians(15.0))
        distance = 1.1 * float(np.max(rel @ back + offset / tan))
        position = center + back * max(distance, 10 * self.resolution)
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


def _runs(keys: np.ndarray) -> list[tuple[Key, int, int]]:
    """(key, start, end) of each run of equal rows in sorted ``keys`` ((n, 3) ints)."""
    if keys.shape[0] == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], np.any(keys[1:] != keys[:-1], axis=1))))
    ends = np.append(starts[1:], keys.shape[0])
    return [
        ((int(keys[s, 0]), int(keys[s, 1]), int(keys[s, 2])), s, e)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _coarse(a: np.ndarray, detail: int, op: np.ufunc = np.logical_or) -> np.ndarray:
    """Combine the voxels of each cell of ``detail`` (a power of two) voxels per edge with
    ``op``: by default, whether the cell holds any ``True`` voxel. Halved axis by axis,
    which is much faster than one 6-D reduction.

    >>> m = np.zeros((4, 4, 4), dtype=bool); m[3, 0, 1] = True
    >>> np.argwhere(_coarse(m, 2)).tolist()
    [[1, 0, 0]]
    """
    while detail > 1:
        a = op(a[0::2], a[1::2])
        a = op(a[:, 0::2], a[:, 1::2])
        a = op(a[:, :, 0::2], a[:, :, 1::2])
        detail //= 2
    return a


def _cell_means(values: np.ndarray, mask: np.ndarray, idx: np.ndarray, detail: int) -> np.ndarray:
    """Mean of the ``mask``-ed ``values`` in the cells ``idx`` ((n, 3)) of ``detail``
    voxels per edge.

    >>> v = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> _cell_means(v, v < 3, np.array([[0, 0, 0]]), 2).tolist()
    [1.0]
    """
    at = tuple(idx.T)
    if detail == 1:
        return values[at]
    total = _coarse(np.where(mask, values, 0.0), detail, np.add)[at]
    return total / np.maximum(_coarse(mask.astype(np.int32), detail, np.add)[at], 1)


def _padded(
    key: Key, detail: int, occupied: Callable[[Key, int], np.ndarray | None], size: int
) -> np.ndarray:
    """Occupancy of chunk ``key`` at ``detail`` ((size,) * 3 cells) padded by one cell on
    each side with the touching planes of its six neighbour chunks."""
    out = np.zeros((size + 2,) * 3, dtype=bool)
    own = occupied(key, detail)
    if own is not None:
        out[1:-1, 1:-1, 1:-1] = own
    for axis in range(3):
        for side in (-1, 1):
            near = list(key)
            near[axis] += side
            other = occupied((near[0], near[1], near[2]), detail)
            if other is None:
                continue
            dst, src = [slice(1, -1)] * 3, [slice(None)] * 3
            dst[axis] = 0 if side < 0 else size + 1
            src[axis] = size - 1 if side < 0 else 0
            out[tuple(dst)] = other[tuple(src)]
    return out


def _box(lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the cells [lo, hi) of a block and of the same cells in the block padded
    by one cell (see :func:`_padded`), with their neighbours."""
    inner = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return inner, tuple(slice(s.start, s.stop + 2) for s in inner)


def _cat(parts: list[np.ndarray], empty: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(empty)


def _rectangle(lo: np.ndarray, hi: np.ndarray, z: float) -> pv.PolyData:
    """The four edges of the rectangle ``lo``..``hi`` (x, y) at height ``z``.

    >>> _rectangle(np.zeros(2), np.array([250.0, 250.0]), 0.0).n_lines
    4
    """
    xs, ys = (lo[0], hi[0], hi[0], lo[0]), (lo[1], lo[1], hi[1], hi[1])
    pts = np.array([(x, y, z) for x, y in zip(xs, ys, strict=True)], dtype=np.float32)
    return pv.PolyData(pts, lines=np.array([2, 0, 1, 2, 1, 2, 2, 2, 3, 2, 3, 0]))


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
