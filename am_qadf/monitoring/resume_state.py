"""Running state of the monitoring objects as JSON-ready data, to continue elsewhere.

A fleet worker that takes a machine over continues its charts, rules and alert
episodes from the state the last owner published, instead of learning them again
from the messages it re-reads. Each stateful monitoring class offers
``export_state()`` and ``import_state(state)``; most get them from
:class:`Resumable` (every instance attribute but the caches it names), and
:func:`encode` / :func:`decode` turn the values into what ``orjson`` writes
without loss: non-finite floats, tuples, sets, datetimes and numpy arrays (their
raw bytes) are tagged, so a float comes back bit for bit.

State read back is checked before anything is applied: an unknown or missing
attribute, or a value of another kind than the attribute holds, is a
``ValueError`` naming it, and the object is left as it was.

>>> import orjson
>>> class Level(Resumable):
...     def __init__(self): self.z, self.tail, self.seen = float("nan"), np.zeros(2), 0
>>> a = Level(); a.z, a.tail, a.seen = 0.1 + 0.2, np.array([1.5, -2.0]), 7
>>> b = Level(); b.import_state(orjson.loads(orjson.dumps(a.export_state())))
>>> b.z == a.z, b.tail.tolist(), b.seen
(True, [1.5, -2.0], 7)
>>> b.import_state({"z": 1.0})
Traceback (most recent call last):
...
ValueError: Level state: missing ['seen', 'tail']
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

__all__ = ["Resumable", "decode", "encode"]

#: dtypes an array in a state may have (what the monitoring objects keep).
_DTYPES = frozenset(np.dtype(t).str for t in ("<f8", "<f4", "<i8", "<i4", "|b1"))
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _finite_float(v: Any) -> bool:
    return type(v) is float and v - v == 0.0


def encode(value: Any) -> Any:
    """``value`` as plain JSON data (see the module); ``TypeError`` for a value of a
    kind a state cannot hold.

    >>> encode({"z": float("inf"), "k": (1, 2)})
    {'z': {'~f': 'inf'}, 'k': {'~t': [1, 2]}}
    """
    if value is None or isinstance(value, bool | str | int) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else {"~f": repr(f)}
    if isinstance(value, np.generic):
        return encode(value.item())
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        if a.dtype.str not in _DTYPES:
            raise TypeError(f"an array of {a.dtype} cannot be kept in a state")
        return {"~a": a.dtype.str, "s": list(a.shape), "b": base64.b64encode(a.data).decode()}
    if isinstance(value, list):
        if all(map(_finite_float, value)):  # the usual list: numbers as they are
            return list(value)
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"~t": [encode(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {"~s": [encode(v) for v in sorted(value)]}
    if isinstance(value, datetime):
        return {"~d": value.isoformat()}
    if isinstance(value, dict):
        if not all(isinstance(k, str) and not k.startswith("~") for k in value):
            raise TypeError("a dict in a state needs str keys not starting with '~'")
        return {k: encode(v) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__} cannot be kept in a state")


def decode(data: Any) -> Any:
    """The value :func:`encode` gave ``data`` for; ``ValueError`` when it is not such data.

    >>> decode({"~t": [1, {"~f": "nan"}]})
    (1, nan)
    """
    if data is None or isinstance(data, bool | str | int | float):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise ValueError(f"not state data: a {type(data).__name__}")
    tags = [k for k in data if k.startswith("~")]
    if not tags:
        return {k: decode(v) for k, v in data.items()}
    tag = tags[0]
    try:
        if tag == "~f" and len(data) == 1:
            return _FLOATS[data[tag]]
        if tag == "~t" and len(data) == 1:
            return tuple(decode(v) for v in data[tag])
        if tag == "~s" and len(data) == 1:
            return set(decode(v) for v in data[tag])
        if tag == "~d" and len(data) == 1:
            return datetime.fromisoformat(data[tag])
        if tag == "~a" and set(data) == {"~a", "s", "b"} and data["~a"] in _DTYPES:
            raw = base64.b64decode(data["b"], validate=True)
            return np.frombuffer(raw, np.dtype(data["~a"])).reshape(data["s"]).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad {tag} entry in a state: {exc}") from None
    raise ValueError(f"bad {tag} entry in a state: {sorted(data)}")


def _kind(v: Any) -> str:
    """What sort of value ``v`` is, for the check that a state fits an attribute."""
    if isinstance(v, bool | np.bool_):
        return "bool"
    if isinstance(v, int | np.integer):
        return "int"
    if isinstance(v, float | np.floating):
        return "float"
    if isinstance(v, Resumable):
        return "state"
    return type(v).__name__


class Resumable:
    """Mixin: :meth:`export_state` / :meth:`import_state` over the instance's
    attributes, but those in ``STATE_SKIP`` (caches, per-call results, collaborators
    set up by the constructor). An attribute holding a :class:`Resumable` is kept as
    that object's own state."""

    STATE_SKIP: ClassVar[frozenset[str]] = frozenset()

    def _state_names(self) -> list[str]:
        return [k for k in vars(self) if k not in self.STATE_SKIP]

    def export_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as JSON-ready data."""
        out = {}
        for k in self._state_names():
            v = getattr(self, k)
            try:
                out[k] = v.export_state() if isinstance(v, Resumable) else encode(v)
            except TypeError as exc:
                raise TypeError(f"{type(self).__name__}.{k}: {exc}") from None
        return out

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`export_state` of an object made alike);
        ``ValueError`` naming what does not fit, with nothing changed."""
        name = type(self).__name__
        if not isinstance(state, Mapping):
            raise ValueError(f"{name} state must be a mapping, got {type(state).__name__}")
        names = self._state_names()
        missing = sorted(set(names) - set(state))
        unknown = sorted(set(state) - set(names))
        if missing or unknown:
            what = [f"missing {missing}"] * bool(missing) + [f"unknown {unknown}"] * bool(unknown)
            raise ValueError(f"{name} state: {', '.join(what)}")
        new = {}
        for k in names:
            cur = getattr(self, k)
            try:
                if isinstance(cur, Resumable):
                    v = copy.copy(cur)  # filled and checked apart: nothing half-applied
                    v.import_state(state[k])
                else:
                    v = decode(state[k])
            except ValueError as exc:
                raise ValueError(f"{name}.{k}: {exc}") from None
            if cur is not None and v is not None and _kind(cur) != _kind(v):
                raise ValueError(f"{name}.{k}: expected a {_kind(cur)}, got a {_kind(v)}")
            new[k] = v
        for k, v in new.items():
            setattr(self, k, v)
