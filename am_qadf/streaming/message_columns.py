"""Turn a batch of message dicts into numpy columns, once per batch.

Every processor works on columns, never on one message at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["column", "to_columns"]


_NUMBERS = frozenset({float, int})


def _as_float(v: Any) -> float:
    if v is None or isinstance(v, bool | str | bytes):
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def column(batch: Sequence[dict[str, Any]], field: str) -> np.ndarray:
    """Return ``field`` of every message as a float64 array, NaN where missing or not numeric.

    >>> column([{"value": 1}, {"other": 2}, {"value": "x"}], "value")
    array([ 1., nan, nan])
    """
    values = [m.get(field, np.nan) for m in batch]
    if set(map(type, values)) <= _NUMBERS:
        return np.array(values, dtype=np.float64)
    # Only numbers count: None, strings and booleans become NaN whatever else is there.
    return np.fromiter(map(_as_float, values), dtype=np.float64, count=len(values))


def to_columns(batch: Sequence[dict[str, Any]], fields: Iterable[str]) -> dict[str, np.ndarray]:
    """Return ``{field: float64 array}`` for each requested field.

    >>> cols = to_columns([{"x": 1.0, "y": 2.0}], ["x", "y"])
    >>> cols["y"].tolist()
    [2.0]
    """
    return {f: column(batch, f) for f in fields}
