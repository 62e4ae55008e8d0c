"""Sparse voxel grid with exact, incremental aggregation of process signals.

The grid covers ``dims = ceil((bbox_max - bbox_min) / resolution)`` voxels per axis, but
storage is only allocated for the 8 x 8 x 8 *bricks* that have received a point, so a
250 x 250 x 300 mm build plate at 0.5 mm (150 M voxels) costs memory in proportion to
what was actually scanned.

Storage layout
--------------
* ``_table``: dense int32 array, one entry per brick, holding the brick's *slot* or -1.
* Pools: 1-D arrays of ``capacity * 512`` entries; voxel ``(i, j, k)`` of the brick in
  slot ``s`` lives at pool index ``s * 512 + (i % 8) * 64 + (j % 8) * 8 + k % 8``.
  ``_hits`` counts accepted points per voxel; each signal has a value pool (running sum,
  min, max or last value, depending on ``aggregation``) and a count pool.
* A signal's count pool is shared with ``_hits`` (``count is None``) for as long as every
  accepted point carried a finite value for that signal, which is the common case; it is
  materialised the first time they diverge. This halves memory for clean data.

Rules (the contract other modules and tests rely on)
----------------------------------------------------
* Voxel index of a point: ``floor((p - bbox_min) / resolution)``.
* A point is accepted when ``bbox_min <= p < bbox_max`` on every axis (the half-open box)
  and its index lies in ``[0, dims)``. Anything else, including NaN/inf coordinates, is
  dropped and counted, never clamped. When the extent is not a whole number of voxels,
  the last voxel reaches past ``bbox_max``; points in that padding are outside the box
  and are dropped too.
* A NaN/inf *signal value* does not drop the point: the point still occupies its voxel
  and its other signals count, only that one value is skipped (counted in
  ``values_dropped``).
* Aggregation is exact across batches: ``mean`` is (sum of every finite value) / (their
  count), ``min``/``max``/``sum`` likewise, ``last`` is the latest finite value in arrival
  order (within a batch, the later row wins).
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AGGREGATIONS", "AddResult", "VoxelGrid"]

AGGREGATIONS: tuple[str, ...] = ("mean", "max", "min", "sum", "last")

_BITS = 3  # log2 of the brick edge
_EDGE = 1 << _BITS  # 8 voxels per brick edge
_BRICK_VOXELS = _EDGE**3  # 512
_LOCAL_MASK = _BRICK_VOXELS - 1
_MAX_BRICKS = 1 << 30  # 4 GiB of brick table; beyond that the box/resolution is a mistake
_LOCAL_WEIGHTS = np.array([_EDGE * _EDGE, _EDGE, 1], dtype=np.int64)
_LOCAL_IJK = np.stack(np.unravel_index(np.arange(_BRICK_VOXELS), (_EDGE,) * 3), axis=1)
_FILL = {"mean": 0.0, "sum": 0.0, "last": 0.0, "min": np.inf, "max": -np.inf}


class AddResult:
    """Outcome of one :meth:`VoxelGrid.add_points` call.

    Attributes:
        accepted: points that landed in the grid.
        dropped: points outside the box or with non-finite coordinates.
        values_dropped: non-finite signal values skipped (their points still count).
        touched: unique C-order flat indices (into ``dims``) of the voxels that accepted
            at least one point, in no particular order; computed on first access.

    >>> g = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
    >>> r = g.add_points([[1, 2, 3], [1.5, 2.5, 3.5], [np.inf, 0, 0]], {"t": [1.0, np.nan, 2.0]})
    >>> r
    AddResult(accepted=2, dropped=1, values_dropped=1)
    >>> r.touched.tolist()
    [123]
    """

    __slots__ = ("accepted", "dropped", "values_dropped", "_pool", "_base", "_local", "_flat")

    def __init__(
        self,
        accepted: int,
        dropped: int,
        values_dropped: int,
        pool: np.ndarray | None = None,
        slot_base: np.ndarray | None = None,
        local_off: np.ndarray | None = None,
    ) -> None:
        self.accepted = accepted
        self.dropped = dropped
        self.values_dropped = values_dropped
        # The touched set is only worked out if someone asks. The grid never rewrites an
        # existing slot_base entry (growth reallocates), so holding the reference is safe.
        self._pool = pool  # pool position of every accepted point
        self._base = slot_base
        self._local = local_off
        self._flat: np.ndarray | None = None

    @property
    def touched(self) -> np.ndarray:
        if self._flat is None:
            if self._pool is None or self._base is None or self._local is None:
                self._flat = np.empty(0, dtype=np.int64)
            else:
                p = _unique_ints(self._pool, self._base.size * _BRICK_VOXELS)
                self._flat = self._base[p >> (3 * _BITS)] + self._local[p & _LOCAL_MASK]
                self._pool = None
        return self._flat

    def __repr__(self) -> str:
        return (
            f"AddResult(accepted={self.accepted}, dropped={self.dropped}, "
            f"values_dropped={self.values_dropped})"
        )


class _Signal:
    """Pools of one signal: aggregated values and (optionally) its own value count."""

    __slots__ = ("values", "count", "values_added", "values_dropped")

    def __init__(self, values: np.ndarray, count: np.ndarray | None) -> None:
        self.values = values
        self.count = count  # None: identical to the grid's hit counts
        self.values_added = 0
        self.values_dropped = 0


def _real_scalar(x: Any, name: str) -> float:
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    return float(x)


def _numeric_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float64 array; TypeError/ValueError naming ``name``."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if a.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold int or float numbers, got dtype {a.dtype}; "
            "convert it with np.asarray(..., dtype=float) first"
        )
    return np.asarray(a, dtype=np.float64, order="C")  # keeps 0-d (ascontiguousarray does not)


def _check_coordinates(coordinates: Any, name: str = "coordinates") -> np.ndarray:
    c = _numeric_array(coordinates, name)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(
            f"{name} must have shape (n, 3), got {c.shape}; "
            "pass one (x, y, z) row per point, e.g. coordinates.reshape(-1, 3)"
        )
    return c


class VoxelGrid:
    """Sparse 3D grid aggregating named signals per voxel, exactly and incrementally.

    Args:
        bbox_min: (x, y, z) of the grid's lower corner.
        bbox_max: (x, y, z) of the upper corner; must exceed ``bbox_min`` on every axis.
        resolution: voxel edge length (same unit as the coordinates), > 0.
        aggregation: how values landing in one voxel combine: ``"mean"``, ``"max"``,
            ``"min"``, ``"sum"`` or ``"last"``.

    All methods are thread-safe (one re-entrant lock guards every read and write).

    Example:
        >>> import numpy as np
        >>> grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
        >>> grid.dims
        (10, 10, 10)
        >>> r = grid.add_points(np.array([[0.5, 0.5, 0.5], [0.7, 0.2, 0.9], [10.0, 1, 1]]),
        ...                     {"temp": np.array([1000.0, 1100.0, 5.0])})
        >>> r.accepted, r.dropped
        (2, 1)
        >>> float(grid.get_signal_array("temp")[0, 0, 0])
        1050.0
    """

    brick_shape: tuple[int, int, int] = (_EDGE, _EDGE, _EDGE)

    def __init__(
        self,
        bbox_min: Sequence[float] | np.ndarray,
        bbox_max: Sequence[float] | np.ndarray,
        resolution: float,
        aggregation: str = "mean",
    ) -> None:
        lo = _numeric_array(bbox_min, "bbox_min")
        hi = _numeric_array(bbox_max, "bbox_max")
        for name, a in (("bbox_min", lo), ("bbox_max", hi)):
            if a.shape != (3,):
                raise ValueError(f"{name} must be 3 numbers (x, y, z), got shape {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{name} must be finite, got {a.tolist()}")
        if not (hi > lo).all():
            axes = [ax for ax, ok in zip("xyz", hi > lo, strict=True) if not ok]
            raise ValueError(
                f"bbox_max must be greater than bbox_min on every axis; not on {axes} "
                f"(bbox_min={lo.tolist()}, bbox_max={hi.tolist()})"
            )
        res = _real_scalar(resolution, "resolution")
        if not (math.isfinite(res) and res > 0):
            raise ValueError(f"resolution must be a finite number > 0, got {resolution!r}")
        if not isinstance(aggregation, str) or aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(map(repr, AGGREGATIONS))}; "
                f"got {aggregation!r}"
            )
        with np.errstate(over="ignore"):
            extent = np.ceil((hi - lo) / res)
        # compare in Python ints: a silly resolution would overflow int64 products
        n_bricks = (
            math.prod(math.ceil(e / _EDGE) for e in extent.tolist())
            if np.isfinite(extent).all()
            else math.inf
        )
        if n_bricks > _MAX_BRICKS:
            raise ValueError(
                f"a grid of {extent.tolist()} voxels is too large to index; "
                "use a coarser resolution or a smaller box"
            )
        dims = extent.astype(np.int64)
        bdims = (dims + _EDGE - 1) >> _BITS

        self._lock = threading.RLock()
        self._lo = lo
        self._hi = hi
        self._res = res
        self._agg = aggregation
        self._dims = dims
        self._dims_f = dims.astype(np.float64)
        self._dims_t: tuple[int, int, int] = tuple(int(d) for d in dims)  # type: ignore[assignment]
        self._bdims = bdims
        # strides of C-order flat voxel indices and of brick indices
        self._vstride = np.array([dims[1] * dims[2], dims[2], 1], dtype=np.int64)
        self._bstride = np.array([bdims[1] * bdims[2], bdims[2], 1], dtype=np.int64)
        li, lj, lk = np.unravel_index(np.arange(_BRICK_VOXELS), self.brick_shape)
        # flat voxel offset of each in-brick position relative to the brick's first voxel
        self._local_off = (li * self._vstride[0] + lj * self._vstride[1] + lk).astype(np.int64)
        self._table = np.full(n_bricks, -1, dtype=np.int32)
        self._reset_pools()

    # ------------------------------------------------------------------ properties
    @property
    def bbox_min(self) -> np.ndarray:
        """Lower corner (copy), float64 array of 3."""
        return self._lo.copy()

    @property
    def bbox_max(self) -> np.ndarray:
        """Upper corner (copy), float64 array of 3."""
        return self._hi.copy()

    @property
    def resolution(self) -> float:
        """Voxel edge length."""
        return self._res

    @property
    def aggregation(self) -> str:
        """Aggregation rule: one of :data:`AGGREGATIONS`."""
        return self._agg

    @property
    def dims(self) -> tuple[int, int, int]:
        """Number of voxels per axis: ``ceil((bbox_max - bbox_min) / resolution)``."""
        return self._dims_t

    @property
    def brick_dims(self) -> tuple[int, int, int]:
        """Number of 8x8x8 bricks per axis (the last brick may be partial)."""
        return tuple(int(b) for b in self._bdims)  # type: ignore[return-value]

    @property
    def available_signals(self) -> list[str]:
        """Names of the signals seen so far, in order of first appearance.

        >>> g = VoxelGrid((0, 0, 0), (1, 1, 1), 0.5)
        >>> g.add_point(0.1, 0.1, 0.1, {"power": 200.0, "speed": 900.0})
        True
        >>> g.available_signals
        ['power', 'speed']
        """
        with self._lock:
            return list(self._signals)

    # ------------------------------------------------------------------ writing
    def add_point(
        self, x: float, y: float, z: float, signals: Mapping[str, float] | None = None
    ) -> bool:
        """Add one point; return True if it fell inside the grid.

        Convenient but slow (a full batch call per point); stream with :meth:`add_points`.

        >>> g = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0, aggregation="max")
        >>> g.add_point(1.5, 2.5, 3.5, {"temp": 1500.0})
        True
        >>> g.add_point(1.5, 2.5, 30.0, {"temp": 1500.0})
        False
        """
        xyz = [_real_scalar(v, n) for v, n in ((x, "x"), (y, "y"), (z, "z"))]
        if signals is None:
            signals = {}
        if not isinstance(signals, Mapping):
            raise TypeError(f"signals must be a dict of name -> number, got {type(signals)}")
        vals = {k: np.array([_real_scalar(v, f"signals[{k!r}]")]) for k, v in signals.items()}
        return self.add_points(np.array([xyz]), vals).accepted == 1

    def add_points(
        self,
        coordinates: np.ndarray | Sequence[Sequence[float]],
        signals: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    ) -> AddResult:
        """Add ``n`` points with their signal values, vectorised.

        Args:
            coordinates: (n, 3) array of x, y, z.
            signals: ``{name: (n,) array}``; may be empty (points then only mark voxels
                as occupied).

        Returns:
            :class:`AddResult` with the accepted/dropped point counts, the number of
            non-finite signal values skipped and the unique flat indices touched.

        Raises:
            ValueError / TypeError naming the bad argument, before anything changes.

        >>> import numpy as np
        >>> g = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0, aggregation="sum")
        >>> r = g.add_points([[0, 0, 0], [0.5, 0.5, 0.5], [np.nan, 0, 0]],
        ...                  {"e": [1.0, 2.0, 3.0]})
        >>> (r.accepted, r.dropped, r.touched.tolist())
        (2, 1, [0])
        >>> g.get_values("e", [[0, 0, 0]]).tolist()
        [3.0]
        """
        coords = _check_coordinates(coordinates)
        n = coords.shape[0]
        sigs = self._check_signals(signals, n)
        with self._lock:
            return self._add(coords, sigs)

    def clear(self) -> None:
        """Forget every point and signal (the geometry stays)."""
        with self._lock:
            self._table.fill(-1)
            self._reset_pools()

    # ------------------------------------------------------------------ reading
    def get_signal_array(self, name: str, default: float = 0.0) -> np.ndarray:
        """Dense float64 array of shape ``dims`` with ``name``'s aggregated values.

        Voxels without a finite value of ``name`` hold ``default``. This allocates the
        whole box (1.2 GB for 150 M voxels); prefer :meth:`get_occupied` for sparse use.

        >>> g = VoxelGrid((0, 0, 0), (2, 2, 2), 1.0)
        >>> _ = g.add_points([[1.2, 0.1, 0.3]], {"t": [7.0]})
        >>> g.get_signal_array("t", default=-1.0)[1, 0, 0], g.get_signal_array("t").sum()
        (np.float64(7.0), np.float64(7.0))
        """
        with self._lock:
            sig = self._signal(name)
            out = np.full(int(np.prod(self._dims)), float(default), dtype=np.float64)
            n_used = self._n_slots * _BRICK_VOXELS
            if n_used:
                values, occ = self._voxel_values(sig, slice(0, n_used))
                if occ.all():  # then no allocated brick pokes past dims either
                    out[self._pool_to_flat_all()] = values
                else:
                    out[self._pool_to_flat_all()[occ]] = values[occ]
            return out.reshape(self._dims_t)

    def get_count_array(self) -> np.ndarray:
        """Dense int64 array of shape ``dims``: accepted points per voxel.

        >>> g = VoxelGrid((0, 0, 0), (2, 2, 2), 1.0)
        >>> _ = g.add_points([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2]])
        >>> int(g.get_count_array()[0, 0, 0])
        2
        """
        with self._lock:
            out = np.zeros(int(np.prod(self._dims)), dtype=np.int64)
            n_used = self._n_slots * _BRICK_VOXELS
            if n_used:
                hits = self._hits[:n_used]
                occ = hits > 0
                out[self._pool_to_flat_all()[occ]] = hits[occ]
            return out.reshape(self._dims_t)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the grid's arrays (cheap: no per-voxel work). Grows with the
        bricks the build touches, in steps (the pools grow by half when full).

        >>> g = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
        >>> before = g.memory_bytes
        >>> _ = g.add_points([[0.5, 0.5, 0.5]], {"t": [1.0]})
        >>> g.memory_bytes > before
        True
        """
        with self._lock:
            return self._memory_bytes()

    @property
    def occupied_count(self) -> int:
        """Number of voxels holding at least one point (cheap: no per-signal work).

        >>> g = VoxelGrid((0, 0, 0), (4, 4, 4), 1.0)
        >>> _ = g.add_points([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6]], {"t": [1.0, 2.0]})
        >>> g.occupied_count
        1
        """
        with self._lock:
            return int(np.count_nonzero(self._hits[: self._n_slots * _BRICK_VOXELS]))

    def occupied_indices(self, bricks: np.ndarray | None = None) -> np.ndarray:
        """(n, 3) int64 ``(i, j, k)`` of every voxel that accepted a point.

        Ordered brick by brick (bricks in C order, voxels in C order inside a brick), so
        the same data gives the same order whatever the arrival order.

        Args:
            bricks: optional (m, 3) brick coordinates (see :meth:`brick_of`); only voxels
                inside these bricks are returned, at a cost proportional to ``m``, which
                suits redrawing just the bricks that changed.

        >>> g = VoxelGrid((0, 0, 0), (20, 20, 20), 1.0)
        >>> _ = g.add_points([[9.5, 0.5, 3.5], [1, 1, 1]])
        >>> g.occupied_indices().tolist()
        [[1, 1, 1], [9, 0, 3]]
        >>> g.occupied_indices(bricks=[[1, 0, 0]]).tolist()
        [[9, 0, 3]]
        """
        with self._lock:
            p = self._pool_positions(bricks)
            return self._pool_to_ijk(p[self._hits[p] > 0])

    def get_occupied(
        self, name: str, bricks: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ijk, values)`` of the voxels holding a value of ``name`` (sparse read).

        Same order and ``bricks`` filter as :meth:`occupied_indices`.

        >>> g = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0, aggregation="min")
        >>> _ = g.add_points([[1, 2, 3], [1.5, 2.5, 3.5]], {"t": [5.0, 4.0]})
        >>> ijk, v = g.get_occupied("t")
        >>> ijk.tolist(), v.tolist()
        ([[1, 2, 3]], [4.0])
        """
        with self._lock:
            sig = self._signal(name)
            p = self._pool_positions(bricks)
            values, occ = self._voxel_values(sig, p)
            return self._pool_to_ijk(p[occ]), values[occ]

    def get_values(
        self, name: str, ijk: np.ndarray | Sequence[Sequence[int]], default: float = 0.0
    ) -> np.ndarray:
        """Aggregated values of ``name`` at voxels ``ijk`` ((n, 3) ints), vectorised.

        Voxels without a value of ``name`` give ``default``.

        >>> g = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
        >>> _ = g.add_points([[1.5, 2.5, 3.5]], {"t": [9.0]})
        >>> g.get_values("t", [[1, 2, 3], [0, 0, 0]]).tolist()
        [9.0, 0.0]
        """
        idx = np.asarray(ijk)
        if idx.dtype.kind not in "iu" or idx.ndim != 2 or idx.shape[1] != 3:
            raise ValueError(f"ijk must be an (n, 3) integer array, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if ((idx < 0) | (idx >= self._dims)).any():
            raise ValueError(f"ijk has indices outside [0, dims) with dims={self._dims_t}")
        with self._lock:
            sig = self._signal(name)
            out = np.full(idx.shape[0], float(default), dtype=np.float64)
            slots = self._table[(idx >> _BITS) @ self._bstride]
            have = slots >= 0
            p = (slots[have].astype(np.int64) << (3 * _BITS)) | self._local_index(idx[have])
            values, occ = self._voxel_values(sig, p)
            dst = np.flatnonzero(have)[occ]
            out[dst] = values[occ]
            return out

    def brick_of(self, ijk: np.ndarray | Sequence[int]) -> np.ndarray:
        """Brick coordinates (``ijk // 8``) of voxel indices; shape follows ``ijk``.

        >>> VoxelGrid((0, 0, 0), (100, 100, 100), 1.0).brick_of([17, 8, 7]).tolist()
        [2, 1, 0]
        """
        return np.asarray(ijk, dtype=np.int64) >> _BITS

    def voxel_centers(self, ijk: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """World coordinates of the centres of voxels ``ijk`` ((n, 3) float64).

        >>> VoxelGrid((0, 0, 0), (10, 10, 10), 0.5).voxel_centers([[0, 1, 2]]).tolist()
        [[0.25, 0.75, 1.25]]
        """
        return self._lo + (np.asarray(ijk, dtype=np.float64) + 0.5) * self._res

    def get_statistics(self) -> dict[str, Any]:
        """Counters, occupancy, memory and per-signal value ranges.

        Keys: ``points_received``, ``points_added``, ``points_dropped`` (with
        ``points_dropped_out_of_bounds`` / ``points_dropped_nonfinite``),
        ``values_dropped_nonfinite``, ``occupied_voxels``, ``total_voxels``,
        ``fill_ratio``, ``allocated_bricks``, ``brick_capacity``, ``memory_bytes``,
        ``dense_equivalent_bytes`` (one float64 array of ``dims``), ``dims``,
        ``resolution``, ``aggregation``, ``bbox_min``, ``bbox_max``, ``signals`` and
        ``signal_stats`` (``{name: {min, max, mean, occupied_voxels, values_added,
        values_dropped}}``, min/max/mean over occupied voxels, None if empty).

        >>> g = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
        >>> _ = g.add_points([[1, 1, 1], [2, 2, 2], [-1, 0, 0]], {"t": [1.0, 3.0, 0.0]})
        >>> s = g.get_statistics()
        >>> s["points_added"], s["points_dropped"], s["occupied_voxels"]
        (2, 1, 2)
        >>> s["signal_stats"]["t"]["mean"]
        2.0
        """
        with self._lock:
            if self._stats_cache is not None and self._stats_cache[0] == self._version:
                return _copy_stats(self._stats_cache[1])
            n_used = self._n_slots * _BRICK_VOXELS
            occupied = int(np.count_nonzero(self._hits[:n_used]))
            per_signal: dict[str, dict[str, Any]] = {}
            for name, sig in self._signals.items():
                values, occ = self._voxel_values(sig, slice(0, n_used))
                v = values[occ]
                per_signal[name] = {
                    "min": float(v.min()) if v.size else None,
                    "max": float(v.max()) if v.size else None,
                    "mean": float(v.mean()) if v.size else None,
                    "occupied_voxels": int(v.size),
                    "values_added": sig.values_added,
                    "values_dropped": sig.values_dropped,
                }
            total = int(np.prod(self._dims))
            stats = {
                "points_received": self._points_added + self._dropped_oob + self._dropped_nan,
                "points_added": self._points_added,
                "points_dropped": self._dropped_oob + self._dropped_nan,
                "points_dropped_out_of_bounds": self._dropped_oob,
                "points_dropped_nonfinite": self._dropped_nan,
                "values_dropped_nonfinite": self._values_dropped,
                "occupied_voxels": occupied,
                "total_voxels": total,
                "fill_ratio": occupied / total,
                "allocated_bricks": self._n_slots,
                "brick_capacity": self._capacity,
                "memory_bytes": self._memory_bytes(),
                "dense_equivalent_bytes": total * 8,
                "dims": self._dims_t,
                "resolution": self._res,
                "aggregation": self._agg,
                "bbox_min": self._lo.tolist(),
                "bbox_max": self._hi.tolist(),
                "signals": list(self._signals),
                "signal_stats": per_signal,
            }
            self._stats_cache = (self._version, stats)
            return _copy_stats(stats)

    def __repr__(self) -> str:
        return (
            f"VoxelGrid(bbox_min={self._lo.tolist()}, bbox_max={self._hi.tolist()}, "
            f"resolution={self._res}, aggregation={self._agg!r}, dims={self._dims_t}, "
            f"signals={list(self._signals)}, bricks={self._n_slots})"
        )

    # ------------------------------------------------------------------ internals
    def _reset_pools(self) -> None:
        self._n_slots = 0
        self._capacity = 0
        self._slot_brick = np.empty(0, dtype=np.int64)  # brick flat index of each slot
        self._slot_base = np.empty(0, dtype=np.int64)  # flat voxel index of its first voxel
        self._hits = np.empty(0, dtype=np.int64)
        self._signals: dict[str, _Signal] = {}
        self._points_added = 0
        self._dropped_oob = 0
        self._dropped_nan = 0
        self._values_dropped = 0
        self._version = 0
        self._stats_cache: tuple[int, dict[str, Any]] | None = None

    def _check_signals(self, signals: Any, n: int) -> dict[str, np.ndarray]:
        if signals is None:
            return {}
        if not isinstance(signals, Mapping):
            raise TypeError(
                f"signals must be a dict of name -> (n,) array, got {type(signals).__name__}"
            )
        out: dict[str, np.ndarray] = {}
        for key, arr in signals.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"signal names must be non-empty strings, got {key!r}")
            a = _numeric_array(arr, f"signals[{key!r}]")
            if a.shape != (n,):
                raise ValueError(
                    f"signals[{key!r}] must have shape ({n},) to match coordinates, got {a.shape}"
                )
            out[key] = a
        return out

    def _add(self, coords: np.ndarray, sigs: dict[str, np.ndarray]) -> AddResult:
        n = coords.shape[0]
        if n == 0:
            return AddResult(0, 0, 0)
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN rows are dropped below
            q = coords - self._lo
            q /= self._res
        ok = coords >= self._lo
        ok &= coords < self._hi
        ok &= q < self._dims_f  # guards rounding of points just below bbox_max
        if ok.all():
            ijk = q.astype(np.int64)
            n_ok = n
        else:
            valid = ok[:, 0] & ok[:, 1] & ok[:, 2]
            n_ok = int(np.count_nonzero(valid))
            n_nan = int(np.count_nonzero(~np.isfinite(coords).all(axis=1)))
            self._dropped_nan += n_nan
            self._dropped_oob += n - n_ok - n_nan
            ijk = q[valid].astype(np.int64)
            sigs = {k: v[valid] for k, v in sigs.items()}
        self._version += 1
        if n_ok == 0:
            for name in sigs:
                self._ensure_signal(name, True)
            return AddResult(0, n, 0)

        slots = self._slots_for((ijk >> _BITS) @ self._bstride)
        pidx = slots.astype(np.int64)
        pidx <<= 3 * _BITS
        ijk &= _EDGE - 1
        pidx |= ijk @ _LOCAL_WEIGHTS
        values_dropped = self._accumulate(pidx, sigs)
        self._points_added += n_ok
        return AddResult(n_ok, n - n_ok, values_dropped, pidx, self._slot_base, self._local_off)

    def _local_index(self, ijk: np.ndarray) -> np.ndarray:
        return (ijk & (_EDGE - 1)) @ _LOCAL_WEIGHTS

    def _slots_for(self, bricks: np.ndarray) -> np.ndarray:
        """Slot of each brick, allocating slots for bricks not seen before."""
        slots = self._table[bricks]
        missing = slots < 0
        if missing.any():
            need = bricks[missing]
            if need.size * 32 > self._table.size:
                mark = np.zeros(self._table.size, dtype=bool)
                mark[need] = True
                new = np.flatnonzero(mark)
            else:
                new = np.sort(need)
                new = new[np.concatenate(([True], new[1:] != new[:-1]))]
            first = self._n_slots
            self._reserve(first + new.size)
            self._table[new] = np.arange(first, first + new.size, dtype=np.int32)
            self._slot_brick[first : first + new.size] = new
            b = np.stack(np.unravel_index(new, self.brick_dims), axis=1) << _BITS
            self._slot_base[first : first + new.size] = b @ self._vstride
            self._n_slots = first + new.size
            slots = self._table[bricks]
        return slots

    def _reserve(self, n_slots: int) -> None:
        if n_slots <= self._capacity:
            return
        cap = max(n_slots, self._capacity + self._capacity // 2, 16)
        self._slot_brick = _grown(self._slot_brick, cap, 0)
        self._slot_base = _grown(self._slot_base, cap, 0)
        size = cap * _BRICK_VOXELS
        self._hits = _grown(self._hits, size, 0)
        fill = _FILL[self._agg]
        for sig in self._signals.values():
            sig.values = _grown(sig.values, size, fill)
            if sig.count is not None:
                sig.count = _grown(sig.count, size, 0)
        self._capacity = cap

    def _ensure_signal(self, name: str, all_finite: bool) -> _Signal:
        sig = self._signals.get(name)
        if sig is None:
            size = self._capacity * _BRICK_VOXELS
            values = np.full(size, _FILL[self._agg], dtype=np.float64)
            shared = all_finite and self._points_added == 0
            sig = _Signal(values, None if shared else np.zeros(size, dtype=np.int64))
            self._signals[name] = sig
        return sig

    def _accumulate(self, pidx: np.ndarray, sigs: dict[str, np.ndarray]) -> int:
        """Fold a batch into the pools; return the number of non-finite values skipped."""
        n = pidx.size
        finite = {}
        for name, v in sigs.items():
            fin = np.isfinite(v)
            finite[name] = None if fin.all() else fin
        # A signal's count stops mirroring the hit counts once a point lacks its value.
        for name, sig in self._signals.items():
            if sig.count is None and (name not in sigs or finite[name] is not None):
                sig.count = self._hits.copy()
        for name in sigs:
            self._ensure_signal(name, finite[name] is None)

        np.add.at(self._hits, pidx, 1)

        dropped = 0
        agg = self._agg
        for name, v in sigs.items():
            sig = self._signals[name]
            fin = finite[name]
            p, vv = (pidx, v) if fin is None else (pidx[fin], v[fin])
            dropped += n - p.size
            sig.values_added += p.size
            sig.values_dropped += n - p.size
            if p.size == 0:
                continue
            if agg in ("mean", "sum"):
                np.add.at(sig.values, p, vv)
            elif agg == "min":
                np.minimum.at(sig.values, p, vv)
            elif agg == "max":
                np.maximum.at(sig.values, p, vv)
            else:  # last: stable sort keeps arrival order inside each voxel's run
                order = np.argsort(p, kind="stable")
                ps = p[order]
                last = np.concatenate((ps[1:] != ps[:-1], [True]))
                sig.values[ps[last]] = vv[order[last]]
            if sig.count is not None:
                np.add.at(sig.count, p, 1)
        self._values_dropped += dropped
        return dropped

    def _signal(self, name: str) -> _Signal:
        try:
            return self._signals[name]
        except (KeyError, TypeError):
            raise KeyError(
                f"unknown signal {name!r}; available signals: {list(self._signals)}"
            ) from None

    def _voxel_values(self, sig: _Signal, p: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aggregated values at pool positions ``p`` and the mask of those holding one."""
        count = (self._hits if sig.count is None else sig.count)[p]
        occ = count > 0
        raw = sig.values[p]
        if self._agg == "mean":
            # unoccupied entries give 0/0 = NaN; every caller masks them out with ``occ``
            with np.errstate(invalid="ignore", divide="ignore"):
                return raw / count, occ
        return raw, occ

    def _pool_positions(self, bricks: np.ndarray | None) -> np.ndarray:
        """Pool positions of all (or of the given) allocated bricks, in brick-index order."""
        if bricks is None:
            slots = np.argsort(self._slot_brick[: self._n_slots]).astype(np.int64)
        else:
            b = np.asarray(bricks)
            if b.dtype.kind not in "iu" or b.ndim != 2 or b.shape[1] != 3:
                raise ValueError(
                    f"bricks must be an (m, 3) integer array of brick coordinates, "
                    f"got {b.dtype} {b.shape}"
                )
            b = b.astype(np.int64, copy=False)
            if ((b < 0) | (b >= self._bdims)).any():
                raise ValueError(f"bricks has coordinates outside [0, {self.brick_dims})")
            flat = _unique_ints(b @ self._bstride, self._table.size)  # repeats would repeat voxels
            slots = self._table[np.sort(flat)].astype(np.int64)
            slots = slots[slots >= 0]
        local = np.arange(_BRICK_VOXELS, dtype=np.int64)
        return ((slots[:, None] << (3 * _BITS)) | local[None, :]).ravel()

    def _pool_to_flat(self, p: np.ndarray) -> np.ndarray:
        return self._slot_base[p >> (3 * _BITS)] + self._local_off[p & _LOCAL_MASK]

    def _pool_to_flat_all(self) -> np.ndarray:
        base = self._slot_base[: self._n_slots]
        return (base[:, None] + self._local_off[None, :]).ravel()

    def _pool_to_ijk(self, p: np.ndarray) -> np.ndarray:
        # corner voxel of each slot's brick + position inside the brick: no divisions
        bricks = self._slot_brick[: self._n_slots]
        corner = np.stack(np.unravel_index(bricks, self.brick_dims), axis=1) << _BITS
        ijk = corner[p >> (3 * _BITS)]
        ijk += _LOCAL_IJK[p & _LOCAL_MASK]
        return ijk

    def _memory_bytes(self) -> int:
        total = self._table.nbytes + self._slot_brick.nbytes + self._slot_base.nbytes
        total += self._hits.nbytes + self._local_off.nbytes
        for sig in self._signals.values():
            total += sig.values.nbytes + (0 if sig.count is None else sig.count.nbytes)
        return int(total)


def _unique_ints(a: np.ndarray, bound: int) -> np.ndarray:
    """Unique values of non-negative ints ``a`` (all < ``bound``), in no particular order."""
    if a.size == 0:
        return a
    if a.size * 8 >= bound:  # big batch: marking beats sorting
        mark = np.zeros(bound, dtype=bool)
        mark[a] = True
        return np.flatnonzero(mark)
    # np.unique hashes large int arrays in numpy >= 2.3, slower than sorting them
    s = np.sort(a)
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def _grown(a: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.empty(size, dtype=a.dtype)
    out[: a.size] = a
    out[a.size :] = fill
    return out


def _copy_stats(stats: dict[str, Any]) -> dict[str, Any]:
    out = dict(stats)
    out["signal_stats"] = {k: dict(v) for k, v in stats["signal_stats"].items()}
    out["signals"] = list(stats["signals"])
    return out
