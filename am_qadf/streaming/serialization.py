"""JSON encoding of messages (orjson): numpy values and datetimes encode faithfully."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

__all__ = ["JSON_SCALARS", "compact", "dumps", "loads", "to_jsonable"]

#: The types of the values a JSON decoder makes, nested objects and arrays aside.
JSON_SCALARS = frozenset({str, int, float, bool, type(None)})

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"cannot JSON-encode a value of type {type(obj).__name__}")


def dumps(value: Any) -> bytes:
    """Encode ``value`` as JSON bytes; datetimes become ISO 8601 UTC strings.

    >>> dumps({"v": np.float32(1.5), "a": np.arange(2)})
    b'{"v":1.5,"a":[0,1]}'
    """
    return orjson.dumps(value, default=_default, option=_OPTS)


def compact(data: bytes) -> bytes:
    """A copy of ``data`` that owns no more memory than its length.

    orjson (3.13) returns bytes objects that keep a ~4 kB allocation whatever their
    length; anything that holds encoded messages for long (the in-process broker, the
    in-process cache) stores this copy instead, or 300-byte messages cost 4 kB each.

    >>> compact(dumps({"a": 1}))
    b'{"a":1}'
    """
    return memoryview(data).tobytes()


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes or text.

    >>> loads(b'{"a": 1}')
    {'a': 1}
    """
    return orjson.loads(data)


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types (one encode/decode round trip).

    >>> to_jsonable({"x": np.int64(3)})
    {'x': 3}
    """
    return orjson.loads(dumps(value))
