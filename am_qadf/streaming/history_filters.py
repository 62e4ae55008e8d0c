"""Validation, in-process evaluation and SQL translation of MongoDB-style history
filters.

Only field comparisons are allowed. Operators that run code on the server
(``$where``, ``$function``, ``$accumulator``) and anything unknown are refused, and so
is any value that is not a plain JSON scalar, datetime or list of those (a compiled
regex or a mapping would reach MongoDB as something else). Values compare as MongoDB
compares them: numbers with numbers, strings with strings, booleans with booleans,
datetimes with datetimes (``{"flag": 1}`` does not match ``true``), a missing field
equals null, and an array field matches when the array or one of its elements does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from .timestamps import to_utc

__all__ = [
    "validate_filters",
    "matches",
    "compile_filters",
    "to_sql",
    "FORBIDDEN_OPERATORS",
    "MAX_FILTER_DEPTH",
]

FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
_COMPARISON = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"})
_RANGE = frozenset({"$gt", "$gte", "$lt", "$lte"})
_LOGICAL = frozenset({"$and", "$or", "$nor"})
#: A field, or a dotted path into nested documents (no array positions such as ``a.0``).
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
#: How deep ``$and``/``$or``/``$nor`` may nest, and how many conditions and list
#: values one filter may hold in all.
MAX_FILTER_DEPTH = 16
_MAX_TERMS = 20_000
_SCALARS = (str, int, float, bool, type(None), datetime)
_INT64 = (-(2**63), 2**63 - 1)
#: Fields kept in their own columns, not in the JSON document.
_COLUMNS = frozenset({"timestamp", "_id"})


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
    budget = [_MAX_TERMS]
    return _check(filters, allowed, "filters", 1, budget)


def _spend(budget: list[int], n: int, where: str) -> None:
    budget[0] -= n
    if budget[0] < 0:
        raise ValueError(f"{where}: filter too large (more than {_MAX_TERMS} terms and values)")


def _check(
    node: dict[str, Any], allowed: set[str] | None, where: str, depth: int, budget: list[int]
) -> dict[str, Any]:
    """Check a document-level filter (field names and logical operators only) and
    return it as a plain dict."""
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"{where}: logical operators nested deeper than {MAX_FILTER_DEPTH}")
    _spend(budget, len(node), where)
    out: dict[str, Any] = {}
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
            subs = []
            for i, sub in enumerate(value):
                if not isinstance(sub, dict):
                    raise ValueError(f"{where}.{key}[{i}]: must be a dict")
                subs.append(_check(sub, allowed, f"{where}.{key}[{i}]", depth + 1, budget))
            out[key] = subs
            continue
        if not _FIELD.fullmatch(key):
            raise ValueError(f"{where}: {key!r} is not a valid field name")
        if allowed is not None and key not in allowed:
            raise ValueError(
                f"{where}: field {key!r} is not queryable; use one of {sorted(allowed)}"
            )
        if isinstance(value, dict):
            out[key] = _check_operators(value, f"{where}.{key}", budget)
        else:
            out[key] = _check_value(value, f"{where}.{key}", budget)
    return out


def _check_operators(ops: dict[str, Any], where: str, budget: list[int]) -> dict[str, Any]:
    """Check a field-level filter (comparison operators only); return it plain."""
    if not ops:
        raise ValueError(f"{where}: give a value or a dict of operators")
    out: dict[str, Any] = {}
    for op, arg in ops.items():
        if op in FORBIDDEN_OPERATORS:
            raise ValueError(f"{where}: operator {op!r} is not allowed (server-side code)")
        if not isinstance(op, str) or not op.startswith("$"):
            raise ValueError(f"{where}: give a value or a dict of operators, got key {op!r}")
        if op not in _COMPARISON:
            raise ValueError(f"{where}: operator {op!r} is not supported")
        if op in ("$in", "$nin") and not isinstance(arg, list):
            raise ValueError(f"{where}: {op} needs a list")
        if op == "$exists" and not isinstance(arg, bool):
            raise ValueError(f"{where}: $exists needs true or false, got {arg!r}")
        if op in _RANGE and (
            isinstance(arg, bool) or not isinstance(arg, str | int | float | datetime)
        ):
            raise ValueError(f"{where}: {op} needs a number, string or datetime, got {arg!r}")
        out[op] = _check_value(arg, where, budget)
    return out


def _check_value(value: Any, where: str, budget: list[int], inner: bool = False) -> Any:
    """A filter value as a plain value: a JSON scalar, a datetime, or a list
    of those; anything else (documents, mappings, compiled patterns) is refused."""
    if isinstance(value, dict):
        raise ValueError(f"{where}: nested documents are not supported as values")
    if type(value) is list:
        if inner:
            raise ValueError(f"{where}: lists inside lists are not supported as values")
        _spend(budget, len(value), where)
        return [_check_value(v, where, budget, inner=True) for v in value]
    if isinstance(value, datetime):  # naive ones are UTC, here and in pymongo
        return value
    if not isinstance(value, _SCALARS):
        raise ValueError(
            f"{where}: values must be strings, numbers, booleans, null, datetimes or lists "
            f"of them, got {type(value).__name__}"
        )
    if type(value) not in _SCALARS:  # a subclass (e.g. an IntEnum): its plain value
        value = next(c for c in _SCALARS if isinstance(value, c))(value)
    if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
        raise ValueError(f"{where}: integer outside the 64-bit range")
    if type(value) is float and math.isnan(value):
        raise ValueError(f"{where}: NaN matches nothing; give a number")
    return value


class _Many(list):
    """The values a dotted path reached through arrays of documents (each is compared,
    as MongoDB does); ``partial`` when some element lacked the field (null matches)."""

    partial = False


def _get(doc: dict[str, Any], path: str) -> tuple[bool, Any]:
    cur: Any = doc
    parts = path.split(".")
    for k, part in enumerate(parts):
        if isinstance(cur, list):  # into an array of documents: every element's field
            found = _Many()
            for e in cur:
                have, v = _get(e, ".".join(parts[k:])) if isinstance(e, dict) else (False, None)
                if have:
                    found.extend(v) if type(v) is _Many else found.append(v)
                found.partial |= not have or (type(v) is _Many and v.partial)
            return bool(found), found
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _norm(v: Any) -> Any:
    return to_utc(v) if isinstance(v, datetime) else v


def _bracket(v: Any) -> int:
    """MongoDB's comparison class: values of different classes never compare equal,
    less or greater."""
    t = type(v)
    if t is bool:
        return 1
    if t is int or t is float:
        return 2
    if t is str:
        return 3
    if isinstance(v, datetime):
        return 4
    if v is None:
        return 0
    return 5 + (t is list)  # arrays, documents


class _InSet:
    """The values of an ``$in``/``$nin`` list, found by hash (a 5,000-value list costs
    one lookup per document, not 5,000 comparisons)."""

    __slots__ = ("has_none", "_keys")

    def __init__(self, values: list[Any]) -> None:
        values = [_norm(a) for a in values]
        self.has_none = any(a is None for a in values)
        self._keys = {(_bracket(a), a) for a in values}  # validated: hashable scalars

    def __contains__(self, value: Any) -> bool:
        try:
            return (_bracket(value), value) in self._keys
        except TypeError:  # a list or document never equals a scalar
            return False


def _prepared(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with every ``$in``/``$nin`` list made an :class:`_InSet` once."""
    out: dict[str, Any] = {}
    for key, cond in node.items():
        if key in _LOGICAL:
            out[key] = [_prepared(f) for f in cond]
        elif isinstance(cond, dict):
            out[key] = {
                op: _InSet(a) if op in ("$in", "$nin") and type(a) is list else a
                for op, a in cond.items()
            }
        else:
            out[key] = cond
    return out


def _scalar(op: str, value: Any, arg: Any) -> bool:
    if op == "$eq":
        return _bracket(value) == _bracket(arg) and value == arg
    if op == "$in":
        return value in arg
    if value is None or arg is None or _bracket(value) != _bracket(arg):
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
    arg = _InSet(arg) if op in ("$in", "$nin") and type(arg) is list else _norm(arg)
    if op == "$exists":
        return have == bool(arg)
    if op in ("$ne", "$nin"):
        return not _compare("$eq" if op == "$ne" else "$in", have, value, arg)
    if not have:
        value = None
    if op in ("$eq", "$in") and (value is None or type(value) is _Many):
        wants_null = (arg is None) if op == "$eq" else arg.has_none
        if value is None or (wants_null and value.partial):
            return wants_null
    if type(value) is _Many:  # each value reached, as if each were the field
        return any(_compare(op, True, v, arg) for v in value)
    candidates = [value, *value] if isinstance(value, list) else [value]
    return any(_scalar(op, v, arg) for v in candidates)


def matches(doc: dict[str, Any], filters: dict[str, Any]) -> bool:
    """True when ``doc`` satisfies validated ``filters`` (MongoDB semantics for the
    supported subset).

    >>> matches({"layer": 4}, {"layer": {"$gte": 3, "$lt": 5}})
    True
    """
    return _matches(doc, _prepared(filters))


def compile_filters(filters: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """:func:`matches` for validated ``filters`` as a function of the document,
    prepared once for many documents.

    >>> [compile_filters({"layer": {"$in": [1, 2]}})(d) for d in ({"layer": 2}, {"layer": True})]
    [True, False]
    """
    prepared = _prepared(filters)
    return lambda doc: _matches(doc, prepared)


def _matches(doc: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key, cond in filters.items():
        if key == "$and":
            if not all(_matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(_matches(doc, f) for f in cond):
                return False
        elif key == "$nor":
            if any(_matches(doc, f) for f in cond):
                return False
        else:
            have, value = _get(doc, key)
            if isinstance(cond, dict):
                if not all(_compare(op, have, value, arg) for op, arg in cond.items()):
                    return False
            elif not _compare("$eq", have, value, cond):
                return False
    return True


# -- SQL ---------------------------------------------------------------------------------
def to_sql(
    filters: dict[str, Any], column: str = "doc", scalar_fields: Iterable[str] = ()
) -> tuple[str, list[Any]]:
    """A SQLite condition over JSON documents in ``column`` that every document matching
    validated ``filters`` satisfies, and its parameters.

    It narrows a query in the database (using expression indexes on
    ``json_extract(doc, '$.field')``); :func:`matches` then decides exactly, so both
    backends give the same answer. Parts SQL cannot decide alike (``$ne``, ``$nin``,
    ``$nor``, datetimes, null) narrow nothing. ``scalar_fields`` names fields known to
    hold no array or object in any stored document: their conditions are then a plain
    comparison an index on the field answers.

    >>> where, params = to_sql({"build_id": "b1", "layer": {"$exists": True}})
    >>> print(where.replace(" OR ", "\\nOR ").replace(") AND ", ")\\nAND "))
    (json_extract(doc, '$.build_id') = ?
    OR (json_extract(doc, '$.build_id') >= '[' AND json_extract(doc, '$.build_id') < '\\'))
    AND json_type(doc, '$.layer') IS NOT NULL
    >>> params
    ['b1']
    >>> to_sql({"build_id": "b1"}, scalar_fields=["build_id"])
    ("(json_extract(doc, '$.build_id') = ?)", ['b1'])
    """
    params: list[Any] = []
    return _sql_node(filters, (column, frozenset(scalar_fields)), params) or "1", params


_Where = tuple[str, frozenset[str]]  # the JSON column, and the fields with scalars only


def _sql_node(node: dict[str, Any], where: _Where, params: list[Any]) -> str | None:
    """AND of the node's conditions (None: no narrowing)."""
    parts = []
    for key, cond in node.items():
        if key == "$and":
            sub = [_sql_node(f, where, params) for f in cond]
            parts.extend(p for p in sub if p)
        elif key == "$or":
            mark = len(params)
            sub = [_sql_node(f, where, params) for f in cond]
            if all(sub):
                parts.append("(" + " OR ".join(f"({p})" for p in sub) + ")")
            else:
                del params[mark:]  # one branch narrows nothing: neither does the $or
        elif key == "$nor":
            continue
        elif isinstance(cond, dict):
            parts.extend(
                p for op, arg in cond.items() if (p := _sql_op(key, op, arg, where, params))
            )
        elif p := _sql_op(key, "$eq", cond, where, params):
            parts.append(p)
    return " AND ".join(parts) or None


def _sql_op(field: str, op: str, arg: Any, where: _Where, params: list[Any]) -> str | None:
    column, scalar_fields = where
    parts = field.split(".")
    if parts[0] in _COLUMNS or len(parts) > 1 or parts[0].startswith("__"):
        return None  # a column; a path that may cross arrays or escaped data (cache_codec)
    path = f"'$.{field}'"  # field names are [A-Za-z_][A-Za-z0-9_.]*: nothing to quote
    value = f"json_extract({column}, {path})"
    if op == "$exists":
        return f"json_type({column}, {path}) IS {'NOT ' if arg else ''}NULL"
    # json_extract gives an array or object as its JSON text: these ranges find them
    # through the same expression index (a text that merely starts so is let through
    # too, and matches() decides)
    arrays = f" OR ({value} >= '[' AND {value} < '\\')"
    objects = f" OR ({value} >= '{{' AND {value} < '|')"  # tagged NaN/inf
    if field in scalar_fields:
        arrays = objects = ""
    if op == "$eq" and _plain_scalar(arg):
        params.append(arg)
        return f"({value} = ?{arrays})"
    if op == "$in" and arg and all(map(_plain_scalar, arg)):
        params.append(_json_list(arg))
        return f"({value} IN (SELECT value FROM json_each(?)){arrays})"
    if op in _RANGE and _plain_scalar(arg):
        params.append(arg)
        sign = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
        return f"({value} {sign} ?{arrays}{objects})"
    return None


def _plain_scalar(v: Any) -> bool:
    # json_extract gives strings as TEXT, numbers as numbers and booleans as 1/0: SQL
    # equality is then a superset of the match (1 = true), never a subset
    return type(v) in (str, int, float, bool)


def _json_list(values: list[Any]) -> str:
    import orjson

    return orjson.dumps(values).decode()
