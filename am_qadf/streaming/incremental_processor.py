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
from typing import Any

import numpy as np

from am_qadf.voxelization.voxel_grid import VoxelGrid, _check_coordinates, _numeric_array

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

    def add(self, flat: np.ndarray) -> None:
        """Add unique indices ``flat``."""
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
        if not isinstance(voxel_grid, VoxelGrid):
            raise TypeError(
                f"voxel_grid must be a VoxelGrid, got {type(voxel_grid).__name__}; "
                "create one with VoxelGrid(bbox_min, bbox_max, resolution)"
            )
        self.voxel_grid = voxel_grid
        self._lock = threading.RLock()
        self._updated = _VoxelSet(int(np.prod(voxel_grid.dims)))
        self._points = 0
        self._accepted = 0
        self._dropped = 0
        self._values_dropped = 0
        self._batches = 0
        self._busy_s = 0.0
        self._last_batch_s = 0.0
        self._last_batch_points = 0

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
        n = coords.shape[0]
        signals = self._signals(new_data, n)
        if n == 0:
            return self.voxel_grid
        with self._lock:
            result = self.voxel_grid.add_points(coords, signals)
            if result.touched.size:
                self._updated.add(result.touched)
            self._points += n
            self._accepted += result.accepted
            self._dropped += result.dropped
            self._values_dropped += result.values_dropped
            self._batches += 1
            dt = time.perf_counter() - t0
            self._busy_s += dt
            self._last_batch_s = dt
            self._last_batch_points = n
        return self.voxel_grid

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
        with self._lock:
            flat = self._updated.sorted()
        return np.stack(np.unravel_index(flat, self.voxel_grid.dims), axis=1).astype(np.int64)

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
        grid = self.voxel_grid
        bricks = grid.brick_of(self.get_updated_indices())
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

    def get_statistics(self) -> dict[str, Any]:
        """Processing counters and timings.

        Keys: ``total_points_processed`` (all rows received), ``points_accepted``,
        ``points_dropped`` (outside the grid or non-finite coordinates),
        ``values_dropped`` (non-finite signal values), ``batches_processed``,
        ``updated_regions_count`` (unique voxels since the last reset),
        ``last_batch_points``, ``last_batch_ms``, ``average_batch_ms`` and
        ``points_per_second`` (rows / time spent inside :meth:`update_voxel_grid`).

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
