"""Which voxel bricks changed since a given viewer last looked.

Each brick carries the number of the last batch that touched it. A viewer keeps a
cursor (the batch number it last saw) and asks for the bricks newer than it, so any
number of viewers can follow one grid without per-viewer queues.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["BrickChangeLog"]


class BrickChangeLog:
    """Per-brick change numbers plus a per-viewer cursor.

    A ``reset()`` (e.g. a replay from the start) starts a new generation: every
    viewer then gets ``full=True`` once and should redraw from scratch.

    >>> log = BrickChangeLog((4, 4, 4))
    >>> log.mark(np.array([[1, 2, 3]]))
    >>> bricks, full = log.take("viewer-1"); bricks.tolist(), full
    ([[1, 2, 3]], True)
    >>> log.take("viewer-1")[0].tolist()
    []
    """

    def __init__(self, brick_dims: tuple[int, int, int]) -> None:
        self.brick_dims = tuple(int(d) for d in brick_dims)
        self._version = np.zeros(int(np.prod(self.brick_dims)), dtype=np.int64)
        self._counter = 0
        self._generation = 0
        self._cursors: dict[str, tuple[int, int]] = {}  # viewer -> (generation, counter)
        self._lock = threading.Lock()

    def mark(self, bricks: np.ndarray) -> None:
        """Record that ``bricks`` ((n, 3) brick coordinates) changed now."""
        if bricks.size == 0:
            return
        flat = np.ravel_multi_index(tuple(np.asarray(bricks, dtype=np.int64).T), self.brick_dims)
        with self._lock:
            self._counter += 1
            self._version[flat] = self._counter

    def take(self, viewer: str) -> tuple[np.ndarray, bool]:
        """Bricks changed since ``viewer``'s last call, and whether to redraw everything
        (first call, or the log was reset since)."""
        with self._lock:
            gen, seen = self._cursors.get(viewer, (-1, 0))
            full = gen != self._generation
            if full:
                seen = 0
            flat = np.flatnonzero(self._version > seen)
            self._cursors[viewer] = (self._generation, self._counter)
        return np.stack(np.unravel_index(flat, self.brick_dims), axis=1).astype(np.int64), full

    def forget(self, viewer: str) -> None:
        """Drop a viewer's cursor (its session ended)."""
        with self._lock:
            self._cursors.pop(viewer, None)

    def reset(self) -> None:
        """Clear every change and start a new generation."""
        with self._lock:
            self._version[:] = 0
            self._counter = 0
            self._generation += 1
