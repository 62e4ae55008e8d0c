"""Feed streamed points into a :class:`VoxelGrid` and track which voxels changed.

Updated voxels are tracked in a sparse bitset (one bit per voxel, allocated in chunks of
512 consecutive flat indices as they are first touched), so each batch costs a few numpy
calls on its own touched voxels, the count is always known, and only never-seen voxels
are appended to the list that :meth:`IncrementalProcessor.get_updated_indices` sorts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from am_qadf.voxelization.voxel_grid import (
    AddResult,
    VoxelGrid,
    _check_coordinates,
    _numeric_array,
)

from .timestamps import now_utc

__all__ = ["IncrementalProcessor"]

_CHUNK_BITS = 9  # 512 voxels (64 bytes of bits) per bitset chunk
_MAX_PENDING_ARRAYS = 1024  # concatenate the per-batch arrays beyond this many


class _VoxelSet:
    """Set of flat voxel indices in ``[0, size)``: sparse bitset + list of members."""

    def __init__(self, size: int) -> None:
        self._table = np.full((size >> _CHUNK_BITS) + 1, -1, dtype=np.int32)
        self._bits = np.zeros(0, dtype=np.uint8)
        self._n_chunks = 0
        self._sorted = np.empty(0, dtype=np.int64)  # members, sorted
        self._pending: list[np.ndarray] = []  # newer members, unsorted, disjoint
        self.count = 0

    def add(self, flat: np.ndarray) -> np.ndarray:
        """Add unique indices ``flat``; return those that were not members yet."""
        chunk = flat >> _CHUNK_BITS
        slots = self._table[chunk]
        missing = slots < 0
        if missing.any():
            new = _sorted_unique(chunk[missing])
            first = self._n_chunks
            have = self._bits.size // 64
            if first + new.size > have:
                cap = max(first + new.size, have + have // 2, 64)
                bits = np.zeros(cap * 64, dtype=np.uint8)
                bits[: self._bits.size] = self._bits
                self._bits = bits
            self._table[new] = np.arange(first, first + new.size, dtype=np.int32)
            self._n_chunks = first + new.size
            slots = self._table[chunk]
        byte = self._byte_of(flat, slots)
        mask = np.left_shift(1, flat & 7).astype(np.uint8)
        fresh = (self._bits[byte] & mask) == 0
        if not fresh.all():
            flat, byte, mask = flat[fresh], byte[fresh], mask[fresh]
        if flat.size:
            # distinct voxels may share a byte, so OR them in unbuffered
            np.bitwise_or.at(self._bits, byte, mask)
            self._pending.append(flat)
            self.count += flat.size
            if len(self._pending) > _MAX_PENDING_ARRAYS:
                self._pending = [np.concatenate(self._pending)]
        return flat

    @staticmethod
    def _byte_of(flat: np.ndarray, slots: np.ndarray) -> np.ndarray:
        offset = flat & ((1 << _CHUNK_BITS) - 1)
        return (slots.astype(np.int64) << (_CHUNK_BITS - 3)) | (offset >> 3)

    def sorted(self) -> np.ndarray:
        """All members, ascending."""
        if self._pending:
            new = np.sort(np.concatenate(self._pending))
            self._pending = []
            # two sorted runs: the stable sort (timsort) merges them in linear time
            both = np.concatenate((self._sorted, new))
            self._sorted = np.sort(both, kind="stable") if self._sorted.size else new
        return self._sorted

    def clear(self) -> None:
        # Keep the chunk slots (the same regions are usually hit again). Callers that reset
        # after every batch have few members: zero just their bytes, not the whole bitset.
        if self.count * 8 < self._bits.size:
            for members in (self._sorted, *self._pending):
                if members.size:
                    self._bits[self._byte_of(members, self._table[members >> _CHUNK_BITS])] = 0
        else:
            self._bits.fill(0)
        self._sorted = np.empty(0, dtype=np.int64)
        self._pending = []
        self.count = 0


class IncrementalProcessor:
    """Update a voxel grid batch by batch and remember the voxels each update touched.

    Args:
        voxel_grid: the grid to update in place.

    Thread-safe: a consumer thread may call :meth:`update_voxel_grid` while a UI thread
    reads the updated regions or statistics.

    Example:
        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> processor = IncrementalProcessor(VoxelGrid((0, 0, 0), (100, 100, 100), 1.0))
        >>> coordinates = np.array([[10.0, 20.0, 30.0], [11.0, 21.0, 31.0]])
        >>> new_data = np.array([1000.0, 1050.0])
        >>> updated_grid = processor.update_voxel_grid(new_data, coordinates)
        >>> processor.get_updated_regions()
        [(10, 20, 30), (11, 21, 31)]
        >>> processor.get_statistics()["total_points_processed"]
        2
    """

    def __init__(self, voxel_grid: VoxelGrid) -> None:
        self._lock = threading.RLock()
        self._zero_counters()
        self.set_voxel_grid(voxel_grid)

    def _zero_counters(self) -> None:
        self._points = 0
        self._accepted = 0
        self._dropped = 0
        self._values_dropped = 0
        self._batches = 0
        self._busy_s = 0.0
        self._last_batch_s = 0.0
        self._last_batch_points = 0
        self._last_update: datetime | None = None

    def set_voxel_grid(self, voxel_grid: VoxelGrid) -> None:
        """Update ``voxel_grid`` from now on (e.g. a new build's grid).

        The updated regions start empty, since they index the old grid; the counters
        are kept (:meth:`reset` zeroes them).

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> _ = p.update_voxel_grid([1.0], [[1, 1, 1]])
        >>> p.set_voxel_grid(VoxelGrid((0, 0, 0), (4, 4, 4), 0.5))
        >>> p.voxel_grid.dims, p.get_updated_regions()
        ((8, 8, 8), [])
        """
        if not isinstance(voxel_grid, VoxelGrid):
            raise TypeError(
                f"voxel_grid must be a VoxelGrid, got {type(voxel_grid).__name__}; "
                "create one with VoxelGrid(bbox_min, bbox_max, resolution)"
            )
        with self._lock:
            self.voxel_grid = voxel_grid
            self._updated = _VoxelSet(int(np.prod(voxel_grid.dims)))
            self._box: np.ndarray | None = None  # (2, 3) lowest and highest updated ijk
            self._box_pending: list[np.ndarray] = []  # new voxels not yet in _box

    def _fold_box(self) -> None:
        # In bulk, on demand: per batch, unravelling a few hundred indices cost ~10% of
        # the update's time.
        flat = np.concatenate(self._box_pending)
        self._box_pending = []
        ijk = np.stack(np.unravel_index(flat, self.voxel_grid.dims))
        box = np.stack((ijk.min(axis=1), ijk.max(axis=1)))
        if self._box is not None:
            box[0] = np.minimum(box[0], self._box[0])
            box[1] = np.maximum(box[1], self._box[1])
        self._box = box

    def update_voxel_grid(
        self, new_data: np.ndarray | Mapping[str, np.ndarray], coordinates: np.ndarray
    ) -> VoxelGrid:
        """Add a batch of points to the grid and return the (same, updated) grid.

        Args:
            new_data: signal values: a 1-D ``(n,)`` array becomes the signal ``"value"``,
                a 2-D ``(n, m)`` array the signals ``signal_0 .. signal_{m-1}``, and a dict
                of ``(n,)`` arrays keeps its names.
            coordinates: ``(n, 3)`` x, y, z of each point.

        Raises:
            ValueError / TypeError naming the bad argument (shape, length mismatch,
            non-numeric dtype), before the grid changes. Empty input is a no-op.

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> g = p.update_voxel_grid(np.array([[1.0, 2.0]]), np.array([[1.5, 1.5, 1.5]]))
        >>> g.available_signals
        ['signal_0', 'signal_1']
        """
        t0 = time.perf_counter()
        coords = self._coordinates(coordinates)
        signals = self._signals(new_data, coords.shape[0])
        self._add(coords, signals, t0)
        return self.voxel_grid

    def _add(
        self, coords: np.ndarray, signals: dict[str, np.ndarray], t0: float
    ) -> AddResult | None:
        """Add checked points to the grid and count them (None when there are none)."""
        n = coords.shape[0]
        if n == 0:
            return None
        with self._lock:
            grid = self.voxel_grid
            result = grid.add_points(coords, signals)
            if result.touched.size:
                fresh = self._updated.add(result.touched)
                if fresh.size:  # voxels seen before are inside the box already
                    self._box_pending.append(fresh)
                    if len(self._box_pending) > _MAX_PENDING_ARRAYS:
                        self._fold_box()
            self._points += n
            self._accepted += result.accepted
            self._dropped += result.dropped
            self._values_dropped += result.values_dropped
            self._batches += 1
            dt = time.perf_counter() - t0
            self._busy_s += dt
            self._last_batch_s = dt
            self._last_batch_points = n
            self._last_update = now_utc()
        return result

    def process_signal_batch(
        self,
        signal_values: np.ndarray | Mapping[str, Any],
        coordinates: np.ndarray | None = None,
        signal_name: str = "value",
    ) -> dict[str, Any]:
        """Add one batch of a named signal and report what it did.

        Either ``signal_values`` is ``(n,)`` values of ``signal_name`` at the ``(n, 3)``
        ``coordinates``, or it is a dict of ``(n,)`` arrays by signal name, with the
        coordinates under its ``"coordinates"`` key (the published AM-QADF's form) or
        passed as ``coordinates``. Checks as :meth:`update_voxel_grid` does, and raises
        before the grid changes.

        Returns ``processed`` (True), ``points_processed``, ``points_accepted``,
        ``signals_processed`` (names), ``voxel_grid_updated`` (a point landed in the
        grid) and ``timestamp`` (UTC).

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> r = p.process_signal_batch([1500.0, 99.0], [[1, 1, 1], [50, 0, 0]], "temp")
        >>> r["signals_processed"], r["points_processed"], r["points_accepted"]
        (['temp'], 2, 1)
        >>> r = p.process_signal_batch({"coordinates": [[2, 2, 2]], "power": [200.0]})
        >>> p.voxel_grid.available_signals
        ['temp', 'power']
        """
        t0 = time.perf_counter()
        if isinstance(signal_values, Mapping):
            if signal_name != "value":
                raise ValueError(
                    "signal_name is for an array of one signal; a dict names its signals"
                )
            signal_values = dict(signal_values)
            if "coordinates" in signal_values:
                if coordinates is not None:
                    raise ValueError(
                        "coordinates given twice: as an argument and under "
                        "signal_values['coordinates']"
                    )
                coordinates = signal_values.pop("coordinates")
            if not signal_values:
                raise ValueError("signal_values holds no signal: add at least one named array")
        else:
            if not isinstance(signal_name, str) or not signal_name:
                raise ValueError(f"signal_name must be a non-empty string, got {signal_name!r}")
            values = _numeric_array(signal_values, "signal_values")
            if values.ndim != 1:
                raise ValueError(
                    f"signal_values must be 1-D (n,) values of {signal_name!r}, got shape "
                    f"{values.shape}; pass a dict of arrays for several signals"
                )
            signal_values = {signal_name: values}
        if coordinates is None:
            raise ValueError(
                "coordinates missing: pass them as coordinates or under "
                "signal_values['coordinates']"
            )
        coords = self._coordinates(coordinates)
        signals = self._signals(signal_values, coords.shape[0])
        result = self._add(coords, signals, t0)
        accepted = result.accepted if result is not None else 0
        return {
            "processed": True,
            "points_processed": coords.shape[0],
            "points_accepted": accepted,
            "signals_processed": list(signals),
            "voxel_grid_updated": accepted > 0,
            "timestamp": now_utc(),
        }

    def get_updated_regions(self) -> list[tuple[int, int, int]]:
        """Unique ``(i, j, k)`` voxel indices updated since the last reset, sorted.

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> _ = p.update_voxel_grid([1.0, 2.0, 3.0], [[1, 1, 1], [1.5, 1.5, 1.5], [99, 0, 0]])
        >>> p.get_updated_regions()
        [(1, 1, 1)]
        """
        return [tuple(row) for row in self.get_updated_indices().tolist()]

    def get_updated_indices(self) -> np.ndarray:
        """Updated voxels since the last reset as an ``(n, 3)`` int64 array, C-order sorted.

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> _ = p.update_voxel_grid([5.0], [[2.5, 3.5, 4.5]])
        >>> p.get_updated_indices().tolist()
        [[2, 3, 4]]
        """
        with self._lock:  # the set and its grid's dims together (set_voxel_grid swaps both)
            flat, dims = self._updated.sorted(), self.voxel_grid.dims
        return np.stack(np.unravel_index(flat, dims), axis=1).astype(np.int64)

    def get_updated_bricks(self) -> np.ndarray:
        """Unique 8x8x8 brick coordinates ``(n, 3)`` holding an updated voxel, sorted.

        Lets a 3D view re-render only the bricks that changed.

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (100, 100, 100), 1.0))
        >>> _ = p.update_voxel_grid([1.0, 2.0], [[1, 1, 1], [17, 9, 3]])
        >>> p.get_updated_bricks().tolist()
        [[0, 0, 0], [2, 1, 0]]
        """
        with self._lock:  # indices of this grid, not of one set_voxel_grid put after it
            grid, ijk = self.voxel_grid, self.get_updated_indices()
        bricks = grid.brick_of(ijk)
        bdims = grid.brick_dims
        flat = _sorted_unique(np.ravel_multi_index(tuple(bricks.T), bdims))
        return np.stack(np.unravel_index(flat, bdims), axis=1).astype(np.int64)

    def reset_updated_regions(self) -> None:
        """Forget the updated voxels (the grid keeps its data).

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> _ = p.update_voxel_grid([5.0], [[2.5, 3.5, 4.5]])
        >>> p.reset_updated_regions()
        >>> p.get_updated_regions()
        []
        """
        with self._lock:
            self._updated.clear()
            self._box = None
            self._box_pending = []

    def get_combined_updated_region(
        self,
    ) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        """One box ``(min_xyz, max_xyz)`` in world coordinates around every voxel updated
        since the last reset (whole voxels, within the grid's box), or None.

        Costs only the voxels updated since the last call, so a 3D view can ask after
        every batch and re-render just this box.

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 0.5))
        >>> _ = p.update_voxel_grid([1.0, 2.0], [[1.2, 2.0, 0.1], [3.9, 0.6, 0.2]])
        >>> p.get_combined_updated_region()
        ((1.0, 0.5, 0.0), (4.0, 2.5, 0.5))
        """
        with self._lock:
            if self._box_pending:
                self._fold_box()
            box, grid = self._box, self.voxel_grid
        if box is None:
            return None
        lo = grid.bbox_min + box[0] * grid.resolution
        hi = np.minimum(grid.bbox_min + (box[1] + 1) * grid.resolution, grid.bbox_max)
        return tuple(lo.tolist()), tuple(hi.tolist())  # type: ignore[return-value]

    def reset(self) -> None:
        """Forget the updated regions and zero every counter; the grid keeps its data.

        >>> import numpy as np
        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> _ = p.update_voxel_grid([5.0], [[2.5, 3.5, 4.5]])
        >>> p.reset()
        >>> p.get_statistics()["total_points_processed"], p.voxel_grid.occupied_count
        (0, 1)
        """
        with self._lock:
            self.reset_updated_regions()
            self._zero_counters()

    def get_statistics(self) -> dict[str, Any]:
        """Processing counters and timings.

        Keys: ``total_points_processed`` (all rows received), ``points_accepted``,
        ``points_dropped`` (outside the grid or non-finite coordinates),
        ``values_dropped`` (non-finite signal values), ``batches_processed``,
        ``updated_regions_count`` (unique voxels since the last reset),
        ``last_batch_points``, ``last_batch_ms``, ``average_batch_ms``,
        ``points_per_second`` (rows / time spent inside :meth:`update_voxel_grid`) and
        ``last_update_time`` (UTC datetime of the last batch, or None). The published
        AM-QADF's names are there too: ``total_updates`` (= ``batches_processed``),
        ``regions_updated`` (= ``updated_regions_count``) and ``has_voxel_grid``.

        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> p = IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0))
        >>> _ = p.update_voxel_grid([1.0, 2.0], [[1, 1, 1], [1, 1, 1]])
        >>> s = p.get_statistics()
        >>> s["total_points_processed"], s["updated_regions_count"], s["batches_processed"]
        (2, 1, 1)
        """
        with self._lock:
            return {
                "total_points_processed": self._points,
                "points_accepted": self._accepted,
                "points_dropped": self._dropped,
                "values_dropped": self._values_dropped,
                "batches_processed": self._batches,
                "updated_regions_count": self._updated.count,
                "last_batch_points": self._last_batch_points,
                "last_batch_ms": self._last_batch_s * 1e3,
                "average_batch_ms": (self._busy_s / self._batches * 1e3) if self._batches else 0.0,
                "points_per_second": (self._points / self._busy_s) if self._busy_s > 0 else 0.0,
                "last_update_time": self._last_update,
                "total_updates": self._batches,
                "regions_updated": self._updated.count,
                "has_voxel_grid": self.voxel_grid is not None,
            }

    def __repr__(self) -> str:
        return f"IncrementalProcessor(batches={self._batches}, points={self._points})"

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _coordinates(coordinates: Any) -> np.ndarray:
        c = _numeric_array(coordinates, "coordinates")
        if c.shape == (0,):  # np.array([]) is accepted as "no points"
            return np.empty((0, 3), dtype=np.float64)
        return _check_coordinates(c)

    @staticmethod
    def _signals(new_data: Any, n: int) -> dict[str, np.ndarray]:
        if isinstance(new_data, Mapping):
            out: dict[str, np.ndarray] = {}
            for key, arr in new_data.items():
                if not isinstance(key, str) or not key:
                    raise TypeError(f"new_data keys must be non-empty strings, got {key!r}")
                a = _numeric_array(arr, f"new_data[{key!r}]")
                if a.shape != (n,):
                    raise ValueError(
                        f"new_data[{key!r}] has shape {a.shape} but coordinates has {n} rows; "
                        "each signal needs one value per point"
                    )
                out[key] = a
            return out
        a = _numeric_array(new_data, "new_data")
        if a.ndim not in (1, 2):
            raise ValueError(
                f"new_data must be 1-D (n,), 2-D (n, m) or a dict of (n,) arrays, "
                f"got shape {a.shape}"
            )
        if a.shape[0] != n:
            raise ValueError(
                f"new_data has {a.shape[0]} rows but coordinates has {n}; "
                "pass one value (row) per point"
            )
        if a.ndim == 1:
            return {"value": a}
        cols = np.ascontiguousarray(a.T)
        return {f"signal_{i}": cols[i] for i in range(cols.shape[0])}


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    # np.unique hashes large int arrays in numpy >= 2.3, which is several times slower
    # than sorting them.
    s = np.sort(a)
    if s.size < 2:
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]
