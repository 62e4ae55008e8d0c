"""Ring buffer of timestamped data points for sliding and time windows."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .timestamps import epoch_us_array, from_epoch_us, to_epoch_us

__all__ = ["BufferManager", "DataPoint"]

Window = tuple[np.ndarray, list[datetime], list[dict[str, Any]]]


def _ring(size: int) -> np.ndarray:
    # Object arrays, not lists: the garbage collector does not walk numpy arrays, and
    # lists of buffer_size slots made every full collection walk millions of them.
    return np.full(size, None, dtype=object)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(eq=False)
class DataPoint:
    """One buffered point as a record: data, timestamp (UTC from a buffer), metadata.

    The field order is the published AM-QADF's, so ``DataPoint(data, timestamp)``
    written for it works here. :meth:`BufferManager.get_points` returns these; the
    windows return the same points as columns, which is what plots and statistics want.

    >>> from datetime import UTC, datetime
    >>> point = DataPoint(np.array([1.5]), datetime(2026, 1, 1, tzinfo=UTC))
    >>> point.data.tolist(), point.timestamp.year, point.metadata
    ([1.5], 2026, {})
    """

    data: np.ndarray
    timestamp: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


class BufferManager:
    """Keep the newest ``buffer_size`` data points with their UTC timestamps and metadata.

    Storage is a preallocated numpy ring, so adding costs O(1) per point and a window
    costs O(window). Data points keep their shape: scalars give 1-D windows, arrays of
    shape ``s`` give windows of shape ``(n, *s)``. Naive timestamps are taken as UTC.

    >>> from datetime import UTC, datetime
    >>> buffer = BufferManager(window_size=2, buffer_size=3)
    >>> for i in range(4):
    ...     buffer.add_data(np.array([float(i)]), datetime(2026, 1, 1, 0, 0, i))
    >>> window, times, meta = buffer.get_sliding_window()
    >>> window.ravel().tolist(), times[-1].isoformat()
    ([2.0, 3.0], '2026-01-01T00:00:03+00:00')
    """

    def __init__(self, window_size: int = 100, buffer_size: int = 1000) -> None:
        self.window_size = _positive_int(window_size, "window_size")
        self.buffer_size = _positive_int(buffer_size, "buffer_size")
        self._lock = threading.RLock()
        self._point_shape: tuple[int, ...] | None = None
        self._data: np.ndarray | None = None
        self._times = np.zeros(self.buffer_size, dtype=np.int64)
        self._meta = _ring(self.buffer_size)  # dict or None per slot
        # Aware datetimes per slot, made once (at add or at first read) so windows are cheap.
        self._dts = _ring(self.buffer_size)  # datetime or None per slot
        self._head = 0  # next slot to write
        self._size = 0
        self._in_order = True  # timestamps never decreased: windows can bisect
        self.total_added = 0
        self.total_evicted = 0  # pushed out by newer points when the buffer was full
        self.total_removed = 0  # taken out by clear, flush_buffer or clear_old_data

    # -- adding -------------------------------------------------------------------------
    def _ensure_storage(self, point_shape: tuple[int, ...]) -> None:
        if self._data is None:
            self._point_shape = point_shape
            self._data = np.zeros((self.buffer_size, *point_shape), dtype=np.float64)
        elif point_shape != self._point_shape:
            raise ValueError(
                f"data: every point must have shape {self._point_shape}, got {point_shape}"
            )

    def add_data(
        self, data: np.ndarray, timestamp: datetime, metadata: dict[str, Any] | None = None
    ) -> None:
        """Append one data point (a number or array) with its timestamp and metadata."""
        arr = data if type(data) is np.ndarray else np.asarray(data)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"data must be numeric, got dtype {arr.dtype}")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
        t = to_epoch_us(timestamp)
        dt = timestamp if type(timestamp) is datetime and timestamp.tzinfo is UTC else None
        with self._lock:
            self._ensure_storage(arr.shape)
            h = self._head
            if self._size and t < self._times[h - 1]:
                self._in_order = False
            self._data[h] = arr
            self._times[h] = t
            self._meta[h] = metadata
            self._dts[h] = dt
            self._head = (h + 1) % self.buffer_size
            if self._size < self.buffer_size:
                self._size += 1
            else:
                self.total_evicted += 1
            self.total_added += 1

    def add_batch(
        self,
        data: np.ndarray,
        timestamps: Any,
        metadata: list[dict[str, Any] | None] | None = None,
    ) -> None:
        """Append many points at once: ``data`` has one row per point.

        ``timestamps`` may be a ``datetime64`` array, float epoch seconds, or a sequence
        of datetimes/ISO strings, one per row.

        >>> b = BufferManager(buffer_size=10)
        >>> b.add_batch(np.arange(3.0), np.array([1.0, 2.0, 3.0]))
        >>> b.get_buffer_statistics()["current_size"]
        3
        """
        arr = np.asarray(data)
        if arr.ndim == 0:
            raise ValueError("data: add_batch needs one row per point, got a scalar")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"data must be numeric, got dtype {arr.dtype}")
        n = arr.shape[0]
        times = epoch_us_array(timestamps)
        if times.shape != (n,):
            raise ValueError(f"timestamps: expected {n} timestamps, got shape {times.shape}")
        if metadata is not None and len(metadata) != n:
            raise ValueError(f"metadata: expected {n} entries, got {len(metadata)}")
        if n == 0:
            return
        with self._lock:
            self._ensure_storage(arr.shape[1:])
            if n > self.buffer_size:  # only the newest rows can survive
                skipped = n - self.buffer_size
                arr, times = arr[skipped:], times[skipped:]
                metadata = metadata[skipped:] if metadata is not None else None
                self.total_added += skipped
                self.total_evicted += skipped
                n = self.buffer_size
            if (self._size and times[0] < self._times[self._head - 1]) or np.any(
                times[1:] < times[:-1]
            ):
                self._in_order = False
            meta = None if metadata is None else np.fromiter(metadata, object, n)
            first = self._head
            k = min(n, self.buffer_size - first)  # rows before the ring wraps
            for ring_part, part in (
                (slice(first, first + k), slice(0, k)),
                (slice(0, n - k), slice(k, n)),
            ):
                self._data[ring_part] = arr[part]
                self._times[ring_part] = times[part]
                self._meta[ring_part] = None if meta is None else meta[part]
                self._dts[ring_part] = None
            evicted = max(0, self._size + n - self.buffer_size)
            self.total_evicted += evicted
            self._size = min(self.buffer_size, self._size + n)
            self._head = (self._head + n) % self.buffer_size
            self.total_added += n

    def _timestamps(self, slots: np.ndarray) -> list[datetime]:
        out = self._dts[slots].tolist()
        missing = [j for j, d in enumerate(out) if d is None]
        if missing:
            made = from_epoch_us(self._times[slots[missing]])
            for j, d in zip(missing, made, strict=True):
                out[j] = d
            self._dts[slots[missing]] = np.fromiter(made, object, len(made))
        return out

    # -- reading ------------------------------------------------------------------------
    def _last(self, count: int) -> np.ndarray:
        """Ring slots of the newest ``count`` points, oldest first."""
        return (self._head - count + np.arange(count)) % self.buffer_size

    def _window(self, slots: np.ndarray) -> Window:
        if self._data is None or slots.size == 0:
            shape = (0, *(self._point_shape or ()))
            return np.empty(shape, dtype=np.float64), [], []
        return (
            self._data[slots],
            self._timestamps(slots),
            [m if m is not None else {} for m in self._meta[slots].tolist()],
        )

    def _newest(self, size: int | None) -> np.ndarray:
        """Ring slots of the newest ``size`` points (default ``window_size``), oldest
        first; call with the lock held."""
        size = self.window_size if size is None else _positive_int(size, "size")
        return self._last(min(size, self._size))

    def get_sliding_window(self, size: int | None = None) -> Window:
        """Return the newest ``size`` points (default ``window_size``) as
        ``(data_array, timestamps, metadata_list)``, oldest first."""
        with self._lock:
            return self._window(self._newest(size))

    def get_window(self, size: int | None = None, *, window_size: int | None = None) -> np.ndarray:
        """The data of the newest ``size`` points (default ``window_size``), oldest first:
        the ``data_array`` of :meth:`get_sliding_window` alone, as the published
        AM-QADF's ``get_window`` returns it (the keyword ``window_size=`` is that
        project's name for ``size``). Shape ``(n, *point_shape)``; no timestamp or
        metadata object is made, so it suits a plot refreshed many times a second.

        >>> b = BufferManager(window_size=2, buffer_size=5)
        >>> b.add_batch(np.arange(4.0), np.array([1.0, 2.0, 3.0, 4.0]))
        >>> b.get_window().tolist(), b.get_window(3).tolist()
        ([2.0, 3.0], [1.0, 2.0, 3.0])
        """
        if window_size is not None:
            if size is not None:
                raise TypeError("get_window: give size or window_size, not both")
            size = window_size
        with self._lock:
            slots = self._newest(size)
            if self._data is None:
                return np.empty((0, *(self._point_shape or ())), dtype=np.float64)
            return self._data[slots]

    def get_points(self, size: int | None = None) -> list[DataPoint]:
        """The newest ``size`` points (default ``window_size``) as :class:`DataPoint`
        records, oldest first: :meth:`get_sliding_window` row by row.

        >>> from datetime import UTC, datetime
        >>> b = BufferManager()
        >>> b.add_data(np.array([7.0]), datetime(2026, 1, 1, tzinfo=UTC), {"layer": 3})
        >>> [(p.data.tolist(), p.metadata) for p in b.get_points()]
        [([7.0], {'layer': 3})]
        """
        data, times, meta = self.get_sliding_window(size)
        return list(map(DataPoint, data, times, meta))

    def get_time_window(self, duration_seconds: float) -> Window:
        """Return the points no older than ``duration_seconds`` before the newest timestamp
        in the buffer (so replayed data works like live data)."""
        with self._lock:
            return self._window(self._time_slots(duration_seconds))

    def get_time_window_arrays(self, duration_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`get_time_window`, as arrays only: ``(data, epoch_us)`` where
        ``epoch_us`` is int64 microseconds since the epoch (UTC). No Python object is
        made per point, so live views can read large windows many times a second.

        >>> b = BufferManager(buffer_size=10)
        >>> b.add_batch(np.arange(4.0), np.array([1.0, 2.0, 3.0, 4.0]))
        >>> data, us = b.get_time_window_arrays(1.5)
        >>> data.tolist(), us.tolist()
        ([2.0, 3.0], [3000000, 4000000])
        """
        with self._lock:
            slots = self._time_slots(duration_seconds)
            if self._data is None or slots.size == 0:
                return np.empty((0, *(self._point_shape or ()))), np.empty(0, dtype=np.int64)
            return self._data[slots], self._times[slots]

    def _time_slots(self, duration_seconds: float) -> np.ndarray:
        if not isinstance(duration_seconds, int | float | np.number) or isinstance(
            duration_seconds, bool
        ):
            raise TypeError(
                f"duration_seconds must be a number, got {type(duration_seconds).__name__}"
            )
        if not np.isfinite(duration_seconds) or duration_seconds < 0:
            raise ValueError(f"duration_seconds must be finite and >= 0, got {duration_seconds}")
        if self._size == 0:
            return np.empty(0, dtype=np.int64)
        slots = self._last(self._size)
        times = self._times[slots]
        if self._in_order:
            cutoff = times[-1] - int(round(duration_seconds * 1e6))
            return slots[np.searchsorted(times, cutoff, side="left") :]
        cutoff = times.max() - int(round(duration_seconds * 1e6))
        return slots[times >= cutoff]

    def flush_buffer(self) -> Window:
        """Return every buffered point (oldest first) and empty the buffer."""
        with self._lock:
            window = self._window(self._last(self._size))
            self.clear()
            return window

    def clear(self) -> None:
        """Drop every buffered point (counted in ``total_removed``; the totals are kept,
        :meth:`reset` zeroes them too)."""
        with self._lock:
            self.total_removed += self._size
            self._meta = _ring(self.buffer_size)
            self._dts = _ring(self.buffer_size)
            self._head = 0
            self._size = 0
            self._in_order = True

    def reset(self) -> None:
        """Drop every buffered point and zero the totals, as a new buffer of the same
        sizes (the point shape may change after it).

        >>> b = BufferManager(buffer_size=2)
        >>> b.add_batch(np.arange(3.0), np.array([1.0, 2.0, 3.0]))
        >>> b.reset()
        >>> s = b.get_buffer_statistics()
        >>> s["current_size"], s["total_added"], s["overflow_count"], s["total_removed"]
        (0, 0, 0, 0)
        """
        with self._lock:
            self.clear()
            self._data = None
            self._point_shape = None
            self.total_added = self.total_evicted = self.total_removed = 0

    def clear_old_data(self, max_age_seconds: float) -> int:
        """Drop the points older than ``max_age_seconds`` before the newest timestamp in
        the buffer and return how many were dropped.

        What stays is exactly :meth:`get_time_window` of the same duration: ages are
        measured from the newest point, not from the wall clock, so a replayed build is
        trimmed as a live one is (for live data the two agree).

        >>> b = BufferManager(buffer_size=10)
        >>> b.add_batch(np.arange(5.0), np.array([0.0, 10.0, 20.0, 30.0, 40.0]))
        >>> b.clear_old_data(15.0), b.get_window().tolist()
        (3, [3.0, 4.0])
        """
        with self._lock:
            keep = self._time_slots(max_age_seconds)
            removed = self._size - keep.size
            if removed:
                self._compact(keep)
                self.total_removed += removed
            return removed

    def _compact(self, keep: np.ndarray) -> None:
        """Keep only ring slots ``keep`` (oldest first), moved to the ring's start."""
        n = keep.size
        if self._data is not None:
            self._data[:n] = self._data[keep]  # fancy indexing copies before writing
        self._times[:n] = self._times[keep]
        meta, dts = self._meta[keep], self._dts[keep]
        self._meta, self._dts = _ring(self.buffer_size), _ring(self.buffer_size)
        self._meta[:n], self._dts[:n] = meta, dts
        self._size, self._head = n, n % self.buffer_size
        self._in_order = bool(np.all(self._times[1:n] >= self._times[: n - 1]))

    def get_size(self) -> int:
        """Number of points in the buffer now.

        >>> b = BufferManager(buffer_size=2)
        >>> b.add_batch(np.arange(3.0), np.array([1.0, 2.0, 3.0]))
        >>> b.get_size()
        2
        """
        return self._size

    def is_full(self) -> bool:
        """True when the buffer holds ``buffer_size`` points (the next one evicts the oldest).

        >>> b = BufferManager(buffer_size=2)
        >>> b.add_batch(np.arange(1.0), np.array([1.0]))
        >>> b.is_full()
        False
        """
        return self._size >= self.buffer_size

    def get_buffer_statistics(self) -> dict[str, Any]:
        """Return ``current_size, max_size, utilization_percent, oldest_timestamp,
        newest_timestamp`` (timestamps of what is in the buffer now, or None), and
        ``window_size``, ``total_added``, ``total_evicted`` (pushed out by newer points;
        also under the published AM-QADF's name ``overflow_count``), ``total_removed``
        (taken out by :meth:`clear`, :meth:`flush_buffer` or :meth:`clear_old_data`) and
        ``age_span_seconds`` (newest minus oldest timestamp, 0.0 when empty).

        >>> b = BufferManager(buffer_size=2)
        >>> b.add_batch(np.arange(3.0), np.array([1.0, 2.0, 4.5]))
        >>> s = b.get_buffer_statistics()
        >>> s["overflow_count"], s["age_span_seconds"], s["utilization_percent"]
        (1, 2.5, 100.0)
        """
        with self._lock:
            oldest = newest = None
            span_us = 0
            if self._size:
                times = self._times[self._last(self._size)]
                lo, hi = int(times.min()), int(times.max())
                oldest, newest, span_us = from_epoch_us(lo), from_epoch_us(hi), hi - lo
            return {
                "current_size": self._size,
                "max_size": self.buffer_size,
                "utilization_percent": 100.0 * self._size / self.buffer_size,
                "oldest_timestamp": oldest,
                "newest_timestamp": newest,
                "window_size": self.window_size,
                "total_added": self.total_added,
                "total_evicted": self.total_evicted,
                "overflow_count": self.total_evicted,
                "total_removed": self.total_removed,
                "age_span_seconds": span_us / 1e6,
            }
