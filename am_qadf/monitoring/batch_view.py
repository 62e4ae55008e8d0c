"""One batch seen as columns, with lazy per-point look-ups.

Processors read signal columns for every point but need the time and the
position only where something happened, so :class:`MessageBatchView`
converts a signal to a float array once per batch (shared between processors
through :class:`ColumnCache`) and reads ``timestamp``/``x``/``y``/``z``/
``layer`` from the message dicts only on demand. :class:`ArrayBatchView` is
the same interface over ready-made numpy columns (the simulator's fast path).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from am_qadf.streaming.message_columns import ColumnCache
from am_qadf.streaming.timestamps import to_utc

__all__ = ["ArrayBatchView", "BatchView", "ColumnCache", "MessageBatchView", "to_datetime"]

POSITION_FIELDS: tuple[str, ...] = ("x", "y", "z", "layer")
_NOTHING: dict[str, Any] = {}


def to_datetime(v: Any) -> datetime | None:
    """Parse a message timestamp (see :func:`am_qadf.streaming.timestamps.to_utc`), or
    None when it is missing or not a timestamp.

    >>> to_datetime("2024-01-01T00:00:00Z").isoformat()
    '2024-01-01T00:00:00+00:00'
    >>> to_datetime(None) is None
    True
    """
    try:
        return to_utc(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        return None


def _epoch(v: Any) -> float:
    t = to_datetime(v)
    return t.timestamp() if t is not None else math.nan


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool | str | bytes):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class BatchView:
    """Interface shared by the message and array views."""

    n: int

    def column(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def time_at(self, pos: int) -> datetime | None:
        raise NotImplementedError

    def epoch_at(self, pos: int) -> float:
        t = self.time_at(pos)
        return t.timestamp() if t is not None else math.nan

    def epochs(self) -> np.ndarray:
        """Every point's time as float epoch seconds (NaN where unknown)."""
        raise NotImplementedError

    def raw(self, pos: int, name: str) -> Any:
        raise NotImplementedError

    def point_info(self, pos: int) -> dict[str, Any]:
        """Time and position of one point: ``time, x, y, z, layer, build_id`` (None if unknown)."""
        x, y, z, layer = (_num(self.raw(pos, f)) for f in POSITION_FIELDS)
        b = self.raw(pos, "build_id")
        return {
            "time": self.time_at(pos),
            "x": x,
            "y": y,
            "z": z,
            "layer": int(layer) if layer is not None else None,
            "build_id": b if isinstance(b, str) else None,
        }


class MessageBatchView(BatchView):
    """View over a list of message dicts (columns via :func:`to_columns`, cached)."""

    def __init__(self, batch: Sequence[Any], cache: ColumnCache | None = None) -> None:
        self.cache = cache if cache is not None else ColumnCache()
        self.batch = batch
        self.n = len(batch)
        self._cols: dict[str, np.ndarray] = {}  # asked before through this view

    def column(self, name: str) -> np.ndarray:
        col = self._cols.get(name)
        if col is None:
            col = self._cols[name] = self.cache.columns(self.batch, [name])[name]
        return col

    def raw(self, pos: int, name: str) -> Any:
        m = self.batch[pos]
        return m.get(name) if isinstance(m, dict) else None

    def point_info(self, pos: int) -> dict[str, Any]:
        # the same as BatchView.point_info, reading the message once
        m = self.batch[pos]
        get = m.get if isinstance(m, dict) else _NOTHING.get
        layer = _num(get("layer"))
        b = get("build_id")
        return {
            "time": to_datetime(get("timestamp")),
            "x": _num(get("x")),
            "y": _num(get("y")),
            "z": _num(get("z")),
            "layer": int(layer) if layer is not None else None,
            "build_id": b if isinstance(b, str) else None,
        }

    def time_at(self, pos: int) -> datetime | None:
        return to_datetime(self.raw(pos, "timestamp"))

    def epochs(self) -> np.ndarray:
        return np.fromiter(
            (_epoch(self.raw(i, "timestamp")) for i in range(self.n)), np.float64, self.n
        )


class ArrayBatchView(BatchView):
    """View over a dict of equal-length numpy columns; ``timestamp`` as float epoch seconds
    or ``datetime64``.

    >>> v = ArrayBatchView({"temperature": np.array([1900.0, 1910.0]),
    ...                     "timestamp": np.array([0.0, 1.0])})
    >>> v.n, v.time_at(1).isoformat()
    (2, '1970-01-01T00:00:01+00:00')
    """

    def __init__(self, columns: Mapping[str, Any]) -> None:
        self.cols: dict[str, np.ndarray] = {}
        n: int | None = None
        for k, v in columns.items():
            a = np.asarray(v)
            if a.ndim != 1:
                raise ValueError(f"column {k!r} must be 1-D, got shape {a.shape}")
            if n is not None and a.shape[0] != n:
                raise ValueError(
                    f"column {k!r} has {a.shape[0]} rows, expected {n} like the others"
                )
            n = a.shape[0]
            self.cols[k] = a
        self.n = n or 0
        ts = self.cols.get("timestamp")
        if ts is not None and np.issubdtype(ts.dtype, np.datetime64):
            self.cols["timestamp"] = ts.astype("datetime64[us]").astype(np.int64) / 1e6
        self._float: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        out = self._float.get(name)
        if out is None:
            a = self.cols.get(name)
            if a is None:
                out = np.full(self.n, np.nan)
            elif a.dtype.kind in "fiub":
                out = a.astype(np.float64, copy=False)
            else:
                out = np.array(
                    [_num(v) if _num(v) is not None else np.nan for v in a], dtype=np.float64
                )
            self._float[name] = out
        return out

    def raw(self, pos: int, name: str) -> Any:
        a = self.cols.get(name)
        if a is None:
            return None
        v = a[pos]
        return v.item() if isinstance(v, np.generic) else v

    def time_at(self, pos: int) -> datetime | None:
        return to_datetime(self.raw(pos, "timestamp"))

    def epochs(self) -> np.ndarray:
        return self.column("timestamp")
