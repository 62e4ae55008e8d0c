"""Decide whether a decoded message can enter the pipeline, and say why not."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter, contains
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from am_qadf.machine_profile import MachineProfile

from .message_columns import ColumnCache
from .serialization import JSON_SCALARS
from .streaming_config import FIELD_NAME_PATTERN
from .timestamps import to_utc

if TYPE_CHECKING:
    from .streaming_config import StreamingConfig

__all__ = ["MessageValidator", "NUMERIC_FIELDS", "Split"]

log = logging.getLogger(__name__)

#: Fields that must be numbers when present: the simulator's profile's position and
#: signal fields, and ``value`` (a client with another profile uses that profile's).
NUMERIC_FIELDS: tuple[str, ...] = ("value", *MachineProfile.default().numeric_fields)
#: Integers BSON (MongoDB) can store; JSON allows any.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
#: Accepted field names remembered, so a name is matched against the pattern once.
_KNOWN_NAMES = 4096


class Split(NamedTuple):
    """Polled messages split by validation: the valid ones with their decoded values,
    and the invalid ones with why (one reason per message)."""

    good: list[dict[str, Any]]
    values: list[Any]
    bad: list[dict[str, Any]]
    reasons: list[str]


@dataclass
class MessageValidator:
    """Validate decoded message values in place (``timestamp`` becomes an aware datetime).

    ``bounds`` optionally limits coordinates, e.g. ``{"x": (0, 250), "y": (0, 250)}``;
    ``required`` lists fields that must exist. What one message may cost is limited:
    ``max_bytes`` (encoded size), ``max_fields`` (keys, nested ones included),
    ``max_depth`` (nesting), ``max_name_length`` and ``name_pattern`` (every key, nested
    ones included, must match it whole). Numeric fields must be numbers (not strings,
    booleans, lists or objects) and integers anywhere must fit in 64 bits.

    >>> v = MessageValidator(bounds={"x": (0.0, 250.0)})
    >>> v.check({"x": 10.0, "timestamp": "2026-01-01T00:00:00Z"}) is None
    True
    >>> v.check({"x": 900.0})
    'x=900.0 outside [0.0, 250.0]'
    >>> v.check({"x": [9.0]})
    "field 'x' must be a number, got list"
    >>> print(v.check({"temp\\n": 1.0}))
    field name 'temp\\n' has characters outside [A-Za-z_][A-Za-z0-9_\\-]*
    """

    numeric_fields: tuple[str, ...] = NUMERIC_FIELDS
    required: tuple[str, ...] = ()
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_bytes: int = 64 * 1024
    max_depth: int = 8
    #: Convert ``timestamp`` (ISO text, datetime) to an aware UTC datetime. Off when a
    #: machine profile says ``timestamp`` holds epoch numbers (ingestion converts them).
    convert_timestamp: bool = True
    max_fields: int = 256
    max_name_length: int = 64
    name_pattern: str = FIELD_NAME_PATTERN

    def __post_init__(self) -> None:
        self._numeric = frozenset(self.numeric_fields)
        self._name_re = re.compile(self.name_pattern)
        self._names: set[str] = set()

    @classmethod
    def from_config(cls, config: StreamingConfig, **overrides: Any) -> MessageValidator:
        """A validator with the message limits of ``config`` (``overrides`` win).

        >>> from am_qadf.streaming import StreamingConfig
        >>> MessageValidator.from_config(StreamingConfig(max_fields=10)).max_fields
        10
        """
        limits: dict[str, Any] = {
            "max_bytes": config.max_message_bytes,
            "max_depth": config.max_nesting_depth,
            "max_fields": config.max_fields,
            "max_name_length": config.max_field_name_length,
            "name_pattern": config.field_name_pattern,
        }
        return cls(**{**limits, **overrides})

    def name_problem(self, name: Any) -> str | None:
        """Why ``name`` cannot be a field name (None when it can).

        >>> MessageValidator().name_problem("melt_pool_area") is None
        True
        >>> MessageValidator(max_name_length=4).name_problem("power")
        "field name 'power' is longer than 4 characters"
        """
        if name in self._names:
            return None
        if type(name) is not str:
            return f"field name {name!r} is not a string"
        if len(name) > self.max_name_length:
            return f"field name {name[:64]!r} is longer than {self.max_name_length} characters"
        if self._name_re.fullmatch(name) is None:
            return f"field name {name[:64]!r} has characters outside {self.name_pattern}"
        if len(self._names) < _KNOWN_NAMES:
            self._names.add(name)
        return None

    def _nested_problem(self, value: dict[str, Any]) -> str | None:
        """Depth, key count, key names and integer range of nested objects and arrays."""
        count = len(value)
        stack = [(v, 2) for v in value.values() if type(v) is dict or type(v) is list]
        while stack:
            obj, level = stack.pop()
            if level > self.max_depth:
                return f"message nested deeper than {self.max_depth} levels"
            if type(obj) is dict:
                count += len(obj)
                if count > self.max_fields:
                    return f"message has more than {self.max_fields} fields (nested ones included)"
                for k in obj:
                    if problem := self.name_problem(k):
                        return f"nested {problem}"
                items = obj.values()
            else:
                items = obj
            for c in items:
                t = type(c)
                if t is dict or t is list:
                    stack.append((c, level + 1))
                elif t is int and not _INT_MIN <= c <= _INT_MAX:
                    return "nested integer outside the 64-bit range"
        return None

    def check(self, value: Any, size: int = 0) -> str | None:
        """Return None when ``value`` is acceptable, else the reason it is not."""
        if not isinstance(value, dict):
            return f"message value must be a JSON object, got {type(value).__name__}"
        if size > self.max_bytes:
            return f"message of {size} bytes exceeds the limit of {self.max_bytes}"
        if len(value) > self.max_fields:
            return f"message has {len(value)} fields, more than the limit of {self.max_fields}"
        for name in self.required:
            if name not in value:
                return f"missing required field {name!r}"
        if self.convert_timestamp and "timestamp" in value:
            try:
                value["timestamp"] = to_utc(value["timestamp"])
            except (TypeError, ValueError, OverflowError) as exc:
                return f"bad timestamp: {exc}"
        numeric, bounds, known = self._numeric, self.bounds, self._names
        nested = False
        for name, v in value.items():  # one pass over the message
            if name not in known and (problem := self.name_problem(name)):
                return problem
            t = type(v)
            if t is int and not _INT_MIN <= v <= _INT_MAX:
                return f"field {name!r}: integer outside the 64-bit range"
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
                if name in numeric:
                    return f"field {name!r} must be a number, got {t.__name__}"
                nested = True
            elif v is not None and name in numeric:
                if t is bool or not isinstance(v, int | float):
                    return f"field {name!r} must be a number, got {t.__name__}"
                if not math.isfinite(v) or (
                    bounds and (lo_hi := bounds.get(name)) and not lo_hi[0] <= v <= lo_hi[1]
                ):
                    return f"field {name!r}={v} is not finite or outside its bounds"
        return self._nested_problem(value) if nested else None

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
            or not cache.columnar(values)  # thousands of distinct names: no column each
            # nested values (their depth) and values no JSON decoder makes: rare
            or not cache.value_types(values) <= JSON_SCALARS
            or (self.convert_timestamp and not self._convert_stamps(values))
        )
        if one_by_one:
            return list(map(self.check, values, sizes))
        suspect = np.asarray(sizes) > self.max_bytes
        suspect |= np.fromiter(map(len, values), np.int64, n) > self.max_fields
        names = cache.field_names(values)
        if bad_names := {name for name in names if self.name_problem(name)}:
            suspect |= np.fromiter((not bad_names.isdisjoint(v) for v in values), bool, n)
        ints = [f for f, types in cache.field_types(values, names).items() if int in types]
        for name, col in cache.columns(values, ints).items():
            # float rounding and ints beyond float (NaN): check() decides exactly
            if (wide := ~(np.abs(col) < 2.0**63)).any():
                suspect |= wide & np.fromiter(map(contains, values, repeat(name)), bool, n)
        for name in self.required:
            suspect |= ~np.fromiter(map(contains, values, repeat(name)), bool, n)
        fields = sorted(names & self._numeric)
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

    def split(self, msgs: list[dict[str, Any]], columns: ColumnCache | None = None) -> Split:
        """Split polled messages (dicts with ``value`` and ``size``, as
        :meth:`KafkaConsumer.poll` returns them) into the valid ones and the invalid
        ones with their reasons (a decode ``error`` of the message first). The batch is
        checked at once; when all are valid the values list is the one ``columns`` saw,
        so processing finds the columns validation built.

        >>> v = MessageValidator()
        >>> polled = [{"value": {"x": 1.0}, "size": 9}, {"value": {"x": "far"}, "size": 11}]
        >>> s = v.split(polled)
        >>> s.values, s.reasons
        ([{'x': 1.0}], ["field 'x' must be a number, got str"])
        """
        values = [m["value"] for m in msgs]
        sizes = [m.get("size", 0) for m in msgs]
        try:
            checked = self.check_batch(values, sizes, columns=columns)
        except Exception:  # a validator bug must not stop the stream: check one by one
            log.exception("batch validation failed; validating message by message")
            checked = list(map(self.check, values, sizes))
        if not any(checked):  # decode errors fail the check too
            return Split(msgs, values, [], [])
        good, bad, reasons = [], [], []
        for m, reason in zip(msgs, checked, strict=True):
            if reason:
                bad.append(m)
                reasons.append(m.get("error") or reason)
            else:
                good.append(m)
        return Split(good, [m["value"] for m in good], bad, reasons)

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
            try:  # naive (taken as UTC) or another offset
                parsed = [to_utc(t) for t in parsed]
            except ValueError:  # one is out of range in UTC: check() says which
                return False
        for v, t in zip(stamped, parsed, strict=True):
            v["timestamp"] = t
        return True


_TZINFO = attrgetter("tzinfo")
