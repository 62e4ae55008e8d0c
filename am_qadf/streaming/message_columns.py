"""Turn a batch of message dicts into numpy columns, once per batch.

Every processor works on columns, never on one message at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

__all__ = ["ColumnCache", "column", "to_columns", "field_names", "MAX_COLUMNS"]

#: Distinct field names a batch may have for a column each; a batch with more (odd or
#: hostile input: a column costs 8 bytes per message per name) is handled without.
MAX_COLUMNS = 1024


_NUMBERS = frozenset({float, int})
_INTS = frozenset({int})
_NOT_NUMBERS = frozenset({str, bytes, bool, type(None)})


def _as_float(v: Any) -> float:
    if v is None or isinstance(v, bool | str | bytes):
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float
        return np.nan


def _float_column(values: Sequence[Any], types: set[type]) -> np.ndarray:
    if types == _INTS:  # e.g. layer numbers: through int64, about twice as fast
        try:
            return np.fromiter(values, np.int64, len(values)).astype(np.float64)
        except OverflowError:  # beyond int64: the general path below
            pass
    if types <= _NUMBERS:
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range: NaN there
            pass
    if types <= _NOT_NUMBERS:  # e.g. a text field: no conversion per value
        return np.full(len(values), np.nan)
    # Only numbers count: None, strings and booleans become NaN whatever else is there.
    return np.fromiter(map(_as_float, values), dtype=np.float64, count=len(values))


def _field(batch: Sequence[dict[str, Any]], name: str) -> tuple[np.ndarray, set[type]]:
    """``name`` of every message as float64 (NaN where missing or not a number), and
    the types of the values the messages have."""
    try:  # the field is in every message: no Python call per message
        values = list(map(itemgetter(name), batch))
    except KeyError:
        types = set(map(type, [m[name] for m in batch if name in m]))
        return _float_column([m.get(name, np.nan) for m in batch], types | {float}), types
    types = set(map(type, values))
    return _float_column(values, types), types


def column(batch: Sequence[dict[str, Any]], field: str) -> np.ndarray:
    """Return ``field`` of every message as a float64 array, NaN where missing or not numeric.

    >>> column([{"value": 1}, {"other": 2}, {"value": "x"}], "value")
    array([ 1., nan, nan])
    """
    return _field(batch, field)[0]


def to_columns(batch: Sequence[dict[str, Any]], fields: Iterable[str]) -> dict[str, np.ndarray]:
    """Return ``{field: float64 array}`` for each requested field.

    >>> cols = to_columns([{"x": 1.0, "y": 2.0, "id": "a"}, {"x": 3, "y": None}], ["x", "y", "id"])
    >>> cols["x"].tolist(), cols["y"].tolist(), cols["id"].tolist()
    ([1.0, 3.0], [2.0, nan], [nan, nan])
    """
    return {f: _field(batch, f)[0] for f in fields}


def field_names(batch: Sequence[dict[str, Any]]) -> frozenset[str]:
    """Every field name in the batch.

    >>> sorted(field_names([{"x": 1.0}, {"y": 2.0, "x": 3.0}]))
    ['x', 'y']
    """
    return frozenset(chain.from_iterable(batch))


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
        self._lock = threading.RLock()
        self._key: tuple[int, int, int, int] | None = None
        self._batch: Sequence[Any] | None = None
        self._cols: dict[str, np.ndarray] = {}
        self._clean: Sequence[dict[str, Any]] | None = None
        self._types: dict[str, set[type]] = {}
        self._names: frozenset[str] | None = None
        self._value_types: frozenset[type] | None = None  # as noted by note_value_types

    def _bind(self, batch: Sequence[Any]) -> None:
        n = len(batch)
        key = (id(batch), n, id(batch[0]) if n else 0, id(batch[-1]) if n else 0)
        if key != self._key or self._batch is not batch:
            self._key, self._batch, self._cols, self._clean = key, batch, {}, None
            self._types = {}
            self._names = None
            self._value_types = None

    def field_names(self, batch: Sequence[Any]) -> frozenset[str]:
        """:func:`field_names` of ``batch``, found once per batch."""
        with self._lock:
            self._bind(batch)
            if self._names is None:
                self._names = field_names(self.messages(batch))
            return self._names

    def value_types(self, batch: Sequence[Any]) -> frozenset[type]:
        """The type of every value in ``batch``, found while converting all its fields
        (once per batch): the types as they were then (validation converts timestamp
        strings afterwards).

        >>> sorted(t.__name__ for t in ColumnCache().value_types([{"x": 1.0}, {"id": "a"}]))
        ['float', 'str']
        """
        with self._lock:
            self._bind(batch)
            if self._value_types is not None:
                return self._value_types
            names = self.field_names(batch)
            if len(names) > MAX_COLUMNS:  # no column per name: the types, one pass
                return frozenset(
                    map(type, chain.from_iterable(map(dict.values, self.messages(batch))))
                )
            self._columns(batch, sorted(names))
            return frozenset().union(*self._types.values())

    def note_value_types(self, batch: Sequence[Any], types: Iterable[type]) -> None:
        """Record that the values of ``batch`` are of ``types``, known by whoever built
        it from batches already scanned (a fleet worker joins its machines' validated
        batches), so :meth:`value_types` answers without converting every field again.

        >>> cache, batch = ColumnCache(), [{"x": 1.0}, {"id": "a"}]
        >>> cache.note_value_types(batch, {float, str})
        >>> sorted(t.__name__ for t in cache.value_types(batch))
        ['float', 'str']
        """
        with self._lock:
            self._bind(batch)
            self._value_types = frozenset(types)

    def field_types(
        self, batch: Sequence[Any], fields: Iterable[str]
    ) -> dict[str, frozenset[type]]:
        """The types of the values of each of ``fields`` in ``batch`` (converting the
        fields not converted yet).

        >>> ColumnCache().field_types([{"x": 1.0, "id": "a"}, {"x": None}], ["x"])["x"] == {
        ...     float, type(None)}
        True
        """
        with self._lock:
            fields = list(fields)
            self._columns(batch, fields)
            return {f: frozenset(self._types[f]) for f in fields}

    def assign(
        self,
        batch: Sequence[Any],
        columns: dict[str, np.ndarray],
        *,
        types: dict[str, set[type]] | None = None,
        drop: Iterable[str] = (),
    ) -> None:
        """Record that a step rewrote ``batch`` in place: it now has ``columns`` (with
        the value ``types`` given; others are found when asked) and no longer has the
        fields in ``drop``.

        >>> cache, batch = ColumnCache(), [{"a": 1.0}]
        >>> batch[0]["b"] = batch[0].pop("a") * 2
        >>> cache.assign(batch, {"b": np.array([2.0])}, types={"b": {float}}, drop=["a"])
        >>> sorted(cache.field_names(batch)), cache.columns(batch, ["b"])["b"].tolist()
        (['b'], [2.0])
        """
        with self._lock:
            self._bind(batch)
            self._value_types = None
            names = self._names
            drop = set(drop)
            for f in drop:
                self._cols.pop(f, None)
                self._types.pop(f, None)
            for f, col in columns.items():
                self._cols[f] = col
                self._types.pop(f, None)
            for f, t in (types or {}).items():
                self._types[f] = set(t)
            for f in [f for f in self._cols if f not in self._types]:
                del self._cols[f]  # types unknown: convert again when asked
            if names is not None:
                self._names = (names - drop) | set(columns) | set(types or ())
            else:
                self._names = None

    def columnar(self, batch: Sequence[Any]) -> bool:
        """True when ``batch`` has few enough distinct field names (:data:`MAX_COLUMNS`)
        for a column each.

        >>> ColumnCache().columnar([{f"f{i}": 1.0} for i in range(2000)])
        False
        """
        with self._lock:
            return len(self.field_names(batch)) <= MAX_COLUMNS

    def messages(self, batch: Sequence[Any]) -> Sequence[dict[str, Any]]:
        """The batch with anything that is not a dict replaced by ``{}``."""
        self._bind(batch)
        if self._clean is None:
            ok = all(type(m) is dict for m in batch)
            self._clean = batch if ok else [m if isinstance(m, dict) else {} for m in batch]
        return self._clean

    def columns(self, batch: Sequence[Any], fields: Iterable[str]) -> dict[str, np.ndarray]:
        """``{field: float64 array}`` for ``batch``, converting each field once per batch."""
        with self._lock:
            return self._columns(batch, list(fields))

    def _columns(self, batch: Sequence[Any], fields: list[str]) -> dict[str, np.ndarray]:
        self._bind(batch)
        missing = [f for f in fields if f not in self._cols]
        if missing:
            msgs = self._clean if self._clean is not None else batch
            try:
                found = {f: _field(msgs, f) for f in missing}
            except (AttributeError, TypeError):
                found = {f: _field(self.messages(batch), f) for f in missing}
            for f, (col, types) in found.items():
                self._cols[f], self._types[f] = col, types
        return {f: self._cols[f] for f in fields}
