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
from datetime import UTC, datetime
from typing import Any

import numpy as np

from am_qadf.streaming.message_columns import to_columns

__all__ = ["ArrayBatchView", "BatchView", "ColumnCache", "MessageBatchView", "to_datetime"]

POSITION_FIELDS: tuple[str, ...] = ("x", "y", "z", "layer")


def to_datetime(v: Any) -> datetime | None:
    """Parse a message timestamp: datetime (naive = UTC), ISO string or epoch seconds.

    >>> to_datetime("2024-01-01T00:00:00Z").isoformat()
    '2024-01-01T00:00:00+00:00'
    >>> to_datetime(None) is None
    True
    """
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.strip())
        except ValueError:
            return None
        return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
        f = float(v)
        if math.isfinite(f):
            try:
                return datetime.fromtimestamp(f, tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
    if isinstance(v, np.datetime64) and not np.isnat(v):
        return datetime.fromtimestamp(v.astype("datetime64[us]").astype(np.int64) / 1e6, tz=UTC)
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


class ColumnCache:
    """Columns of the most recent batch, so processors sharing it convert each field once.

    A batch is recognised by identity (same list object, same length, same
    first and last message objects).

    >>> cache = ColumnCache()
    >>> batch = [{"value": 1.0}, {"value": None}]
    >>> cache.columns(batch, ["value"])["value"].tolist()
    [1.0, nan]
    >>> cache.columns(batch, ["value"])["value"] is cache.columns(batch, ["value"])["value"]
    True
    """

    def __init__(self) -> None:
        self._key: tuple[int, int, int, int] | None = None
        self._batch: Sequence[Any] | None = None
        self._cols: dict[str, np.ndarray] = {}
        self._clean: Sequence[dict[str, Any]] | None = None

    def _bind(self, batch: Sequence[Any]) -> None:
        n = len(batch)
        key = (id(batch), n, id(batch[0]) if n else 0, id(batch[-1]) if n else 0)
        if key != self._key or self._batch is not batch:
            self._key, self._batch, self._cols, self._clean = key, batch, {}, None

    def messages(self, batch: Sequence[Any]) -> Sequence[dict[str, Any]]:
        """The batch with anything that is not a dict replaced by ``{}``."""
        self._bind(batch)
        if self._clean is None:
            ok = all(type(m) is dict for m in batch)
            self._clean = batch if ok else [m if isinstance(m, dict) else {} for m in batch]
        return self._clean

    def columns(self, batch: Sequence[Any], fields: Sequence[str]) -> dict[str, np.ndarray]:
        self._bind(batch)
        missing = [f for f in fields if f not in self._cols]
        if missing:
            msgs = self._clean if self._clean is not None else batch
            try:
                self._cols.update(to_columns(msgs, missing))
            except (AttributeError, TypeError):
                self._cols.update(to_columns(self.messages(batch), missing))
        return {f: self._cols[f] for f in fields}


class MessageBatchView(BatchView):
    """View over a list of message dicts (columns via :func:`to_columns`, cached)."""

    def __init__(self, batch: Sequence[Any], cache: ColumnCache | None = None) -> None:
        self.cache = cache if cache is not None else ColumnCache()
        self.batch = batch
        self.n = len(batch)

    def column(self, name: str) -> np.ndarray:
        return self.cache.columns(self.batch, [name])[name]

    def raw(self, pos: int, name: str) -> Any:
        m = self.batch[pos]
        return m.get(name) if isinstance(m, dict) else None

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
