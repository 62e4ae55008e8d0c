"""Decide whether a decoded message can enter the pipeline, and say why not."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .timestamps import to_utc

__all__ = ["MessageValidator", "NUMERIC_FIELDS"]

#: Fields that must be numbers when present (the simulator's message schema).
NUMERIC_FIELDS = (
    "x",
    "y",
    "z",
    "layer",
    "value",
    "power",
    "scan_speed",
    "temperature",
    "melt_pool_area",
    "intensity",
)


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
        if "timestamp" in value:
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
