"""Decide whether a decoded message can enter the pipeline, and say why not."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter, contains
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile

from .message_columns import ColumnCache
from .serialization import JSON_SCALARS
from .timestamps import to_utc

__all__ = ["MessageValidator", "NUMERIC_FIELDS"]

#: Fields that must be numbers when present: the simulator's profile's position and
#: signal fields, and ``value`` (a client with another profile uses that profile's).
NUMERIC_FIELDS: tuple[str, ...] = ("value", *MachineProfile.default().numeric_fields)


@dataclass
class MessageValidator:
    """Validate decoded message values in place (``timestamp`` becomes an aware datetime).

    ``bounds`` optionally limits coordinates, e.g. ``{"x": (0, 250), "y": (0, 250)}``;
    ``max_bytes`` limits the encoded size; ``required`` lists fields that must exist.

    >>> v = MessageValidator(bounds={"x": (0.0, 250.0)})
    >>> v.check({"x": 10.0, "timestamp": "2026-01-01T00:00:00Z"}) is None
    True
    >>> v.check({"x": 900.0})
    'x=900.0 outside [0.0, 250.0]'
    """

    numeric_fields: tuple[str, ...] = NUMERIC_FIELDS
    required: tuple[str, ...] = ()
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_bytes: int = 64 * 1024
    max_depth: int = 8
    #: Convert ``timestamp`` (ISO text, datetime) to an aware UTC datetime. Off when a
    #: machine profile says ``timestamp`` holds epoch numbers (ingestion converts them).
    convert_timestamp: bool = True

    def __post_init__(self) -> None:
        self._numeric = frozenset(self.numeric_fields)

    def check(self, value: Any, size: int = 0) -> str | None:
        """Return None when ``value`` is acceptable, else the reason it is not."""
        if not isinstance(value, dict):
            return f"message value must be a JSON object, got {type(value).__name__}"
        if size > self.max_bytes:
            return f"message of {size} bytes exceeds the limit of {self.max_bytes}"
        for name in self.required:
            if name not in value:
                return f"missing required field {name!r}"
        if self.convert_timestamp and "timestamp" in value:
            try:
                value["timestamp"] = to_utc(value["timestamp"])
            except (TypeError, ValueError, OverflowError) as exc:
                return f"bad timestamp: {exc}"
        numeric, bounds = self._numeric, self.bounds
        nested = False
        for name, v in value.items():  # one pass over the message
            t = type(v)
            if t is float or t is int:
                # v - v is 0.0 for finite numbers only (cheaper than a call per field)
                if v - v != 0.0 and name in numeric:
                    return f"field {name!r} is not finite"
                if (
                    bounds
                    and name in numeric
                    and (lo_hi := bounds.get(name))
                    and not lo_hi[0] <= v <= lo_hi[1]
                ):
                    return f"{name}={v} outside [{lo_hi[0]}, {lo_hi[1]}]"
            elif t is dict or t is list:
                nested = True
            elif v is not None and name in numeric:
                if t is bool or not isinstance(v, int | float):
                    return f"field {name!r} must be a number, got {t.__name__}"
                if not math.isfinite(v) or (
                    bounds and (lo_hi := bounds.get(name)) and not lo_hi[0] <= v <= lo_hi[1]
                ):
                    return f"field {name!r}={v} is not finite or outside its bounds"
        if nested and _depth(value, self.max_depth) > self.max_depth:
            return f"message nested deeper than {self.max_depth} levels"
        return None

    def check_batch(
        self,
        values: Sequence[Any],
        sizes: Sequence[int] | None = None,
        *,
        columns: ColumnCache | None = None,
    ) -> list[str | None]:
        """:meth:`check` for many values: the same reasons (None where acceptable), one
        per value, and timestamps converted in place the same way.

        The batch is checked column by column; only values that look wrong there are
        checked one by one, for the reason. ``columns`` keeps the numeric columns it
        builds, for processing of the same batch (list) afterwards.

        >>> v = MessageValidator(bounds={"x": (0.0, 250.0)})
        >>> v.check_batch([{"x": 1.0}, {"x": 900.0}, {"x": "a"}, {"y": None}])
        [None, 'x=900.0 outside [0.0, 250.0]', "field 'x' must be a number, got str", None]
        """
        n = len(values)
        sizes = [0] * n if sizes is None else sizes
        if len(sizes) != n:
            raise ValueError(f"sizes has {len(sizes)} entries for {n} values")
        cache = columns if columns is not None else ColumnCache()
        one_by_one = (
            type(self).check is not MessageValidator.check  # a subclass decides
            or not set(map(type, values)) <= {dict}
            # nested values (their depth) and values no JSON decoder makes: rare
            or not cache.value_types(values) <= JSON_SCALARS
            or (self.convert_timestamp and not self._convert_stamps(values))
        )
        if one_by_one:
            return list(map(self.check, values, sizes))
        suspect = np.asarray(sizes) > self.max_bytes
        for name in self.required:
            suspect |= ~np.fromiter(map(contains, values, repeat(name)), bool, n)
        fields = sorted(cache.field_names(values) & self._numeric)
        for name, col in cache.columns(values, fields).items():
            finite = np.isfinite(col)
            if not finite.all():  # NaN also where missing or None, which are fine
                given = np.fromiter((v.get(name) is not None for v in values), bool, n)
                suspect |= given & ~finite
            if lo_hi := self.bounds.get(name):
                suspect |= (col < lo_hi[0]) | (col > lo_hi[1])
        reasons: list[str | None] = [None] * n
        for i in np.flatnonzero(suspect).tolist():
            reasons[i] = self.check(values[i], sizes[i])
        return reasons

    @staticmethod
    def _convert_stamps(values: Sequence[dict[str, Any]]) -> bool:
        """Make every ISO-string ``timestamp`` of ``values`` an aware UTC datetime at
        once; False (nothing changed) when any is not one, for :meth:`check` to convert
        and explain one by one."""
        stamped = [v for v in values if "timestamp" in v]
        stamps = [v["timestamp"] for v in stamped]
        if not set(map(type, stamps)) <= {str}:
            return False
        try:
            parsed = list(map(datetime.fromisoformat, stamps))
        except ValueError:
            return False
        if not set(map(_TZINFO, parsed)) <= {UTC}:
            parsed = [to_utc(t) for t in parsed]  # naive (taken as UTC) or another offset
        for v, t in zip(stamped, parsed, strict=True):
            v["timestamp"] = t
        return True


_TZINFO = attrgetter("tzinfo")


def _depth(obj: Any, limit: int, level: int = 1) -> int:
    if level > limit:
        return level
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    deepest = level
    for c in children:
        if isinstance(c, dict | list):
            deepest = max(deepest, _depth(c, limit, level + 1))
            if deepest > limit:
                break
    return deepest
