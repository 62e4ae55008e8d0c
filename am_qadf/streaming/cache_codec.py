"""Faithful JSON for cached state and stored documents.

Plain JSON loses types; this codec tags numpy arrays and datetimes so that dicts,
lists, arrays (dtype and shape) and aware datetimes come back exactly as they went in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import orjson

from .timestamps import to_utc

__all__ = ["encode", "decode"]

_ND = "__ndarray__"
_DT = "__datetime__"


_SCALARS = frozenset({float, int, str, bool, type(None)})


def _tag(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            (k if type(k) is str else str(k)): (v if type(v) in _SCALARS else _tag(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [v if type(v) in _SCALARS else _tag(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc" and obj.dtype.kind != "U":
            raise TypeError(f"cannot cache numpy arrays of dtype {obj.dtype}")
        return {
            _ND: {"dtype": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
        }
    if isinstance(obj, datetime):
        return {_DT: to_utc(obj).isoformat()}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _untag(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1:
            if _ND in obj:
                spec = obj[_ND]
                return np.array(spec["data"], dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])
            if _DT in obj:
                return datetime.fromisoformat(obj[_DT])
        return {k: _untag(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag(v) for v in obj]
    return obj


def encode(value: Any) -> bytes:
    """Encode dicts/lists/arrays/datetimes to JSON bytes.

    >>> decode(encode({"a": np.arange(3, dtype=np.int16)}))["a"].dtype
    dtype('int16')
    """
    return orjson.dumps(_tag(value), option=orjson.OPT_NON_STR_KEYS)


def decode(data: bytes | str) -> Any:
    """Inverse of :func:`encode`.

    >>> decode(encode([datetime(2026, 1, 1)]))[0].isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    return _untag(orjson.loads(data))
