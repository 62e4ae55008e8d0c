"""Timestamp conversion: every timestamp is stored timezone-aware in UTC.

Naive datetimes are taken as UTC; epoch numbers are seconds; strings are ISO 8601.
Internally timestamps travel as int64 microseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import floordiv, sub
from typing import Any

import numpy as np

__all__ = ["to_utc", "to_epoch_us", "epoch_us_array", "from_epoch_us", "now_utc"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)


def now_utc() -> datetime:
    """Return the current time as an aware UTC datetime.

    >>> now_utc().tzinfo is UTC
    True
    """
    return datetime.now(UTC)


def to_utc(value: Any, *, name: str = "timestamp") -> datetime:
    """Convert a datetime, ISO string, epoch seconds or ``np.datetime64`` to aware UTC.

    >>> to_utc("2026-01-02T03:04:05Z").isoformat()
    '2026-01-02T03:04:05+00:00'
    >>> to_utc(datetime(2026, 1, 1)).tzinfo is UTC
    True
    """
    if isinstance(value, datetime):
        tz = value.tzinfo
        if tz is UTC:
            return value
        if tz is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. year 1 at +05:00 is before datetime.min in UTC
            raise ValueError(
                f"{name}: {value.isoformat()} is out of the datetime range in UTC"
            ) from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: {value[:64]!r} is not an ISO 8601 timestamp") from None
        return to_utc(parsed, name=name)
    try:
        if isinstance(value, np.datetime64):
            if np.isnat(value):
                raise ValueError(f"{name}: NaT is not a timestamp")
            return from_epoch_us(int(value.astype("datetime64[us]").astype(np.int64)))
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        ):
            if not np.isfinite(value):
                raise ValueError(f"{name}: {value!r} is not a finite epoch time")
            return _EPOCH + timedelta(seconds=float(value))
    except OverflowError:
        raise ValueError(f"{name}: {value!r} is out of the datetime range") from None
    raise TypeError(
        f"{name}: expected datetime, ISO string, epoch seconds or numpy.datetime64, "
        f"got {type(value).__name__}"
    )


def to_epoch_us(value: Any, *, name: str = "timestamp") -> int:
    """Return microseconds since the epoch (UTC) for one timestamp.

    >>> to_epoch_us(datetime(1970, 1, 1, 0, 0, 1))
    1000000
    """
    if type(value) is datetime:  # fast path for the common case, no allocation of a new tz
        if value.tzinfo is None:
            return (value - _EPOCH_NAIVE) // _ONE_US
        return (value - _EPOCH) // _ONE_US
    return (to_utc(value, name=name) - _EPOCH) // _ONE_US


def epoch_us_array(values: Any, *, name: str = "timestamps") -> np.ndarray:
    """Convert a sequence or array of timestamps to an int64 array of epoch microseconds.

    Accepts ``datetime64`` arrays, float epoch seconds arrays, or a sequence of any
    value :func:`to_utc` takes.

    >>> epoch_us_array(np.array([0.5, 1.0])).tolist()
    [500000, 1000000]
    >>> epoch_us_array([datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), "1970-01-01T00:00:02"]).tolist()
    [1000000, 2000000]
    """
    if isinstance(values, np.ndarray):
        if np.issubdtype(values.dtype, np.datetime64):
            return values.astype("datetime64[us]").astype(np.int64)
        if np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.bool_):
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name}: contains NaN or inf")
            return np.round(values.astype(np.float64) * 1e6).astype(np.int64)
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise TypeError(f"{name}: expected a sequence or array, got {type(values).__name__}")
    n = len(values)
    if n and type(values[0]) is datetime and values[0].tzinfo is not None:
        try:  # all aware datetimes (decoded messages): no Python call per value
            deltas = map(sub, values, repeat(_EPOCH, n))
            return np.fromiter(map(floordiv, deltas, repeat(_ONE_US, n)), np.int64, count=n)
        except TypeError:  # a naive datetime, a string, ...: convert one by one
            pass
    return np.fromiter((to_epoch_us(v, name=name) for v in values), np.int64, count=n)


def from_epoch_us(us: int | np.ndarray) -> Any:
    """Return aware UTC datetime(s) for epoch microseconds (an int or an int64 array -> list).

    >>> from_epoch_us(1_000_000).isoformat()
    '1970-01-01T00:00:01+00:00'
    """
    if isinstance(us, np.ndarray):
        naive = us.astype("datetime64[us]").tolist()
        return [d.replace(tzinfo=UTC) for d in naive]
    return _EPOCH + timedelta(microseconds=int(us))
