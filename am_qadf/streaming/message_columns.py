"""Turn a batch of message dicts into numpy columns, once per batch.

Every processor works on columns, never on one message at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["column", "to_columns"]


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
    n = len(batch)
    try:
        return np.fromiter((m.get(field, np.nan) for m in batch), dtype=np.float64, count=n)
    except (TypeError, ValueError):
        # Slow path only for a batch that carries None/strings in this field.
        return np.fromiter((_as_float(m.get(field)) for m in batch), dtype=np.float64, count=n)


def to_columns(batch: Sequence[dict[str, Any]], fields: Iterable[str]) -> dict[str, np.ndarray]:
    """Return ``{field: float64 array}`` for each requested field.

    >>> cols = to_columns([{"x": 1.0, "y": 2.0}], ["x", "y"])
    >>> cols["y"].tolist()
    [2.0]
    """
    return {f: column(batch, f) for f in fields}
