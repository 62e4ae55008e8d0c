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


def _check(node: dict[str, Any], allowed: set[str] | None, where: str) -> None:
    """Check a document-level filter: field names and logical operators only."""
    for key, value in node.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: keys must be strings, got {key!r}")
        if key in FORBIDDEN_OPERATORS:
            raise ValueError(f"{where}: operator {key!r} is not allowed (server-side code)")
        if key.startswith("$"):
            if key not in _LOGICAL:
                raise ValueError(f"{where}: operator {key!r} is not supported at document level")
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}: {key} needs a non-empty list of filters")
            for i, sub in enumerate(value):
                if not isinstance(sub, dict):
                    raise ValueError(f"{where}.{key}[{i}]: must be a dict")
                _check(sub, allowed, f"{where}.{key}[{i}]")
            continue
        if not _FIELD.match(key):
            raise ValueError(f"{where}: {key!r} is not a valid field name")
        if allowed is not None and key not in allowed:
            raise ValueError(
                f"{where}: field {key!r} is not queryable; use one of {sorted(allowed)}"
            )
        if isinstance(value, dict):
            _check_operators(value, f"{where}.{key}")
        else:
            _check_value(value, f"{where}.{key}")


def _check_operators(ops: dict[str, Any], where: str) -> None:
    """Check a field-level filter: comparison operators only."""
    if not ops:
        raise ValueError(f"{where}: give a value or a dict of operators")
    for op, arg in ops.items():
        if op in FORBIDDEN_OPERATORS:
            raise ValueError(f"{where}: operator {op!r} is not allowed (server-side code)")
        if not isinstance(op, str) or not op.startswith("$"):
            raise ValueError(f"{where}: give a value or a dict of operators, got key {op!r}")
        if op not in _COMPARISON:
            raise ValueError(f"{where}: operator {op!r} is not supported")
        if op in ("$in", "$nin") and not isinstance(arg, list):
            raise ValueError(f"{where}: {op} needs a list")
        _check_value(arg, where)


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


def _scalar(op: str, value: Any, arg: Any) -> bool:
    if op == "$eq":
        return value == arg
    if op == "$in":
        return any(value == a for a in arg)
    if value is None or arg is None:
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


def _compare(op: str, have: bool, value: Any, arg: Any) -> bool:
    """MongoDB semantics: a missing field equals null; an array field matches when
    any element (or the array itself) does; $ne/$nin are the negations."""
    value = _norm(value)
    arg = [_norm(a) for a in arg] if isinstance(arg, list) and op in ("$in", "$nin") else _norm(arg)
    if op == "$exists":
        return have == bool(arg)
    if op in ("$ne", "$nin"):
        return not _compare("$eq" if op == "$ne" else "$in", have, value, arg)
    if not have:
        value = None
    if op in ("$eq", "$in") and value is None:
        return (arg is None) if op == "$eq" else any(a is None for a in arg)
    candidates = [value, *value] if isinstance(value, list) else [value]
    return any(_scalar(op, v, arg) for v in candidates)


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
