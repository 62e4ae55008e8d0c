"""Validation and in-process evaluation of MongoDB-style history filters.

Only field comparisons are allowed. Operators that run code on the server
(``$where``, ``$function``, ``$accumulator``) and anything unknown are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .timestamps import to_utc

__all__ = ["validate_filters", "matches", "FORBIDDEN_OPERATORS"]

FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
_COMPARISON = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"})
_LOGICAL = frozenset({"$and", "$or", "$nor"})
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def validate_filters(
    filters: dict[str, Any] | None, allowed_fields: Iterable[str] | None = None
) -> dict[str, Any]:
    """Check ``filters`` and return a copy; raise ``ValueError`` naming what is wrong.

    ``allowed_fields`` (e.g. from the dashboard) limits which fields may be compared.

    >>> validate_filters({"layer": {"$gte": 3}})
    {'layer': {'$gte': 3}}
    >>> validate_filters({"$where": "sleep(1000)"})
    Traceback (most recent call last):
    ...
    ValueError: filters: operator '$where' is not allowed (server-side code)
    """
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise TypeError(f"filters must be a dict, got {type(filters).__name__}")
    allowed = set(allowed_fields) if allowed_fields is not None else None
    _check(filters, allowed, "filters")
    return dict(filters)


def _check(node: Any, allowed: set[str] | None, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            if key in FORBIDDEN_OPERATORS:
                raise ValueError(f"{where}: operator {key!r} is not allowed (server-side code)")
            if key.startswith("$"):
                if key in _LOGICAL:
                    if not isinstance(value, list) or not value:
                        raise ValueError(f"{where}: {key} needs a non-empty list of filters")
                    for i, sub in enumerate(value):
                        if not isinstance(sub, dict):
                            raise ValueError(f"{where}.{key}[{i}]: must be a dict")
                        _check(sub, allowed, f"{where}.{key}[{i}]")
                elif key not in _COMPARISON:
                    raise ValueError(f"{where}: operator {key!r} is not supported")
                elif key in ("$in", "$nin") and not isinstance(value, list):
                    raise ValueError(f"{where}: {key} needs a list")
                else:
                    _check_value(value, where)
                continue
            if not _FIELD.match(key):
                raise ValueError(f"{where}: {key!r} is not a valid field name")
            if allowed is not None and key not in allowed:
                raise ValueError(
                    f"{where}: field {key!r} is not queryable; use one of {sorted(allowed)}"
                )
            if isinstance(value, dict):
                if not value or not all(isinstance(k, str) and k.startswith("$") for k in value):
                    raise ValueError(f"{where}.{key}: give a value or a dict of operators")
                _check(value, allowed, f"{where}.{key}")
            else:
                _check_value(value, f"{where}.{key}")


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, dict):
        raise ValueError(f"{where}: nested documents are not supported as values")
    if isinstance(value, list):
        for v in value:
            _check_value(v, where)


def _get(doc: dict[str, Any], path: str) -> tuple[bool, Any]:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _norm(v: Any) -> Any:
    return to_utc(v) if isinstance(v, datetime) else v


def _compare(op: str, have: bool, value: Any, arg: Any) -> bool:
    value, arg = _norm(value), _norm(arg) if not isinstance(arg, list) else [_norm(a) for a in arg]
    if op == "$exists":
        return have == bool(arg)
    if op == "$eq":
        return have and value == arg
    if op == "$ne":
        return not have or value != arg
    if op == "$in":
        return have and value in arg
    if op == "$nin":
        return not have or value not in arg
    if not have or value is None:
        return False
    try:
        if op == "$gt":
            return value > arg
        if op == "$gte":
            return value >= arg
        if op == "$lt":
            return value < arg
        return value <= arg  # $lte
    except TypeError:
        return False


def matches(doc: dict[str, Any], filters: dict[str, Any]) -> bool:
    """True when ``doc`` satisfies validated ``filters`` (MongoDB semantics for the
    supported subset).

    >>> matches({"layer": 4}, {"layer": {"$gte": 3, "$lt": 5}})
    True
    """
    for key, cond in filters.items():
        if key == "$and":
            if not all(matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, f) for f in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, f) for f in cond):
                return False
        else:
            have, value = _get(doc, key)
            if isinstance(cond, dict):
                if not all(_compare(op, have, value, arg) for op, arg in cond.items()):
                    return False
            elif not _compare("$eq", have, value, cond):
                return False
    return True
