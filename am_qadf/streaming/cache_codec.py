"""Faithful JSON for cached state and stored documents.

Plain JSON loses types; this codec tags numpy arrays, datetimes, non-finite floats and
complex numbers so that dicts, lists, arrays (dtype, shape and every value) and aware
datetimes come back exactly as they went in. A tag is a one-key object such as
``{"__datetime__": "..."}``; data that happens to have that shape (it comes from
outside: message fields are anything) is escaped as ``{"__dict__": {...}}``, so no
content is ever read as a tag.
"""

from __future__ import annotations

import base64
from datetime import datetime
from math import isfinite
from typing import Any

import numpy as np
import orjson

from .serialization import compact
from .timestamps import to_utc

__all__ = ["encode", "decode"]

_ND = "__ndarray__"
_DT = "__datetime__"
_FL = "__float__"
_CX = "__complex__"
_ESC = "__dict__"  # a one-key dict of data whose key is one of these names
_TAGS = frozenset({_ND, _DT, _FL, _CX, _ESC})
#: How every tag object starts in the encoded bytes. Inside JSON strings a quote is
#: escaped, so this sequence only ever opens an object whose first key starts "__".
_TAG_START = b'{"__'
_PLAIN = frozenset({int, str, bool, type(None)})
#: One orjson pass with ``_tag`` as the fallback for datetimes, numpy values, complex
#: numbers and the rest orjson cannot write faithfully by itself.
_FAST = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _keep(v: Any) -> bool:
    t = type(v)
    return t in _PLAIN or (t is float and isfinite(v))


def _tag(obj: Any) -> Any:
    if isinstance(obj, dict):
        plain = _PLAIN
        out = {
            (k if type(k) is str else str(k)): (
                v if (t := type(v)) in plain or (t is float and v - v == 0.0) else _tag(v)
            )  # v - v == 0.0 holds for finite floats only
            for k, v in obj.items()
        }
        if len(out) == 1 and next(iter(out)) in _TAGS:
            return {_ESC: out}  # data shaped like a tag: escaped, never read as one
        return out
    if isinstance(obj, list | tuple):
        return [v if _keep(v) else _tag(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufcU":
            raise TypeError(f"cannot encode numpy arrays of dtype {obj.dtype}")
        # raw bytes keep every value exactly, NaN and inf included
        data = base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode()
        return {_ND: {"dtype": obj.dtype.str, "shape": list(obj.shape), "b64": data}}
    if isinstance(obj, datetime):
        return {_DT: to_utc(obj).isoformat()}
    if isinstance(obj, np.generic):
        return _tag(obj.item())
    if isinstance(obj, float):  # NaN and inf: JSON has no literal for them
        return obj if isfinite(obj) else {_FL: repr(obj)}
    if isinstance(obj, complex):
        return {_CX: [_tag(obj.real), _tag(obj.imag)]}
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _untag(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1:
            if _ESC in obj:
                return {k: _untag(v) for k, v in obj[_ESC].items()}
            if _ND in obj:
                spec = obj[_ND]
                raw = base64.b64decode(spec["b64"])
                arr = np.frombuffer(raw, dtype=np.dtype(spec["dtype"]))
                return arr.reshape(spec["shape"]).copy()
            if _DT in obj:
                return datetime.fromisoformat(obj[_DT])
            if _FL in obj:
                return float(obj[_FL])
            if _CX in obj:
                re, im = (_untag(v) for v in obj[_CX])
                return complex(re, im)
        return {k: _untag(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag(v) for v in obj]
    return obj


def encode(value: Any) -> bytes:
    """Encode dicts/lists/arrays/datetimes to JSON bytes.

    >>> decode(encode({"a": np.arange(3, dtype=np.int16)}))["a"].dtype
    dtype('int16')
    >>> decode(encode({"x": float("nan"), "y": np.array([np.inf])}))["y"].tolist()
    [inf]
    >>> decode(encode({"v": {"__float__": "nan"}}))  # data, not a tag
    {'v': {'__float__': 'nan'}}
    """
    tags = 0

    def tag(obj: Any) -> Any:
        nonlocal tags
        out = _tag(obj)
        tags += _count_tags(out)
        return out

    data = orjson.dumps(value, default=tag, option=_FAST)
    if b"null" in data or data.count(_TAG_START) != tags:
        # orjson writes NaN and inf as null, and writes dicts as they are, including data
        # shaped like a tag: walk the value to tag and escape (rare: None values, the
        # text "null" and keys starting "__" also land here, and come out the same)
        data = orjson.dumps(_tag(value), option=orjson.OPT_NON_STR_KEYS)
    return compact(data)


def _count_tags(obj: Any) -> int:
    """Tag objects in what :func:`_tag` returned for one value (a few at most)."""
    if isinstance(obj, dict):
        own = len(obj) == 1 and next(iter(obj)) in _TAGS
        return own + sum(_count_tags(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_count_tags(v) for v in obj)
    return 0


def decode(data: bytes | str) -> Any:
    """Inverse of :func:`encode`.

    >>> decode(encode([datetime(2026, 1, 1)]))[0].isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    return _untag(orjson.loads(data))
