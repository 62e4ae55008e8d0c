"""Ingestion by machine profile: a machine's messages onto the pipeline's names.

:class:`ProfileMapper` rewrites each validated batch in place, column by column
(numpy on the batch's cached columns; the messages are touched only by C-level
``map`` calls): the profile's time field becomes ``timestamp`` (an aware UTC
datetime, whatever the ``time_unit``), its position and layer fields become
``x``/``y``/``z``/``layer`` (``z = layer × layer_thickness_mm`` where a message
has no z), its build and layer-count fields ``build_id`` and ``layer_count``, and
each signal's raw field its canonical name with ``value = raw * scale + offset``.
Fields the profile does not name stay as they are (stored, and plottable).

It also keeps the figures that show whether the profile fits the stream: how
often each expected field was missing in the last ``window`` messages, and how
many points fell outside the build plate (counted, never dropped). An identity
profile (the simulator's) maps nothing: only those figures are kept.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import compress, repeat
from operator import countOf, is_not, setitem
from typing import Any

import numpy as np

from am_qadf.machine_profile import CANONICAL_FIELDS, MachineProfile

from .message_columns import ColumnCache
from .timestamps import to_utc

__all__ = ["ProfileMapper"]

_MISSING = object()
_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def _consume(it: Iterable[Any]) -> None:
    deque(it, maxlen=0)


def _iso_or_none(v: Any) -> datetime | None:
    try:
        return to_utc(v)
    except (TypeError, ValueError, OverflowError):
        return None


def _percent(fraction: float) -> str:
    """``fraction`` in per cent, never rounded to 0 or 100 when it is not.

    >>> _percent(1.0), _percent(0.5), _percent(0.0004), _percent(0.99991)
    ('100', '50', '0.04', '99.99')
    """
    p = 100.0 * fraction
    if 1.0 <= p <= 99.0 or p in (0.0, 100.0):
        return f"{p:.0f}"
    return f"{p:.2f}"


#: Unnamed field names a mapper remembers for its statistics.
UNNAMED_KEPT = 256


class ProfileMapper:
    """Map batches onto canonical names per ``profile`` and keep the fit figures.

    >>> from am_qadf.machine_profile import CANONICAL_FIELDS, MachineProfile
    >>> p = MachineProfile.from_dict({
    ...     "machine": {"id": "m1", "plate_mm": [100, 100, 10]},
    ...     "fields": {"time": "ts", "time_unit": "ms", "x": "px", "y": "py",
    ...                "layer": "n", "layer_thickness_mm": 0.05},
    ...     "signals": {"temperature": {"field": "T_C", "offset": 273.15}}})
    >>> batch = [{"ts": 1_700_000_000_000, "px": 1.0, "py": 2.0, "n": 4, "T_C": 1626.85}]
    >>> ProfileMapper(p).map_batch(batch)
    >>> m = batch[0]
    >>> m["timestamp"].isoformat(), m["z"], m["layer"], round(m["temperature"], 2)
    ('2023-11-14T22:13:20+00:00', 0.2, 4, 1900.0)
    >>> sorted(m)
    ['layer', 'temperature', 'timestamp', 'x', 'y', 'z']
    """

    def __init__(self, profile: MachineProfile, *, window: int = 10_000) -> None:
        self.profile = profile
        self.window = int(window)
        self.identity = profile.is_identity
        f = profile.fields
        # (raw field, canonical name) pairs that are a plain rename
        renames = [(f.x, "x"), (f.y, "y"), (f.layer, "layer")]
        if f.z is not None:
            renames.append((f.z, "z"))
        if f.build is not None:
            renames.append((f.build, "build_id"))
        if f.layer_count is not None:
            renames.append((f.layer_count, "layer_count"))
        renames += [(s.field, s.name) for s in profile.signals if s.scale == 1 and not s.offset]
        self._renames = [(a, b) for a, b in renames if a != b]
        self._converted = [s for s in profile.signals if s.scale != 1 or s.offset]
        self._expected = profile.expected_fields
        self._numeric = frozenset(profile.numeric_fields)
        self._known = frozenset(
            [*self._expected, *CANONICAL_FIELDS, *(n for n in (f.build, f.layer_count) if n)]
        )
        self._lock = threading.Lock()
        self._recent: deque[tuple[int, np.ndarray, int]] = deque()
        self._recent_n = 0
        self.messages = 0
        self.outside_plate = 0
        #: Other fields seen, at most UNNAMED_KEPT of them (names come from outside:
        #: a stream of ever new names must not grow this); ``unnamed_more`` counts the
        #: names not kept, per batch they came in.
        self.unnamed: set[str] = set()
        self.unnamed_more = 0
        lo, hi = profile.plate_bounds
        self._lo, self._hi = np.array(lo), np.array(hi)

    # -- mapping --------------------------------------------------------------------------
    def map_batch(self, batch: list[dict[str, Any]], cache: ColumnCache | None = None) -> None:
        """Rewrite ``batch`` (valid message dicts) in place onto canonical names and
        update the fit figures; ``cache`` holds the batch's columns (validation built
        them) and gets the new ones, so processors convert nothing again."""
        if not batch:
            return
        cache = cache if cache is not None else ColumnCache()
        raw_names = cache.field_names(batch)
        missing = self._missing_counts(batch, cache, raw_names)
        if not self.identity:
            self._map(batch, cache, raw_names)
        xyz = cache.columns(batch, ("x", "y", "z"))
        pts = np.column_stack([xyz["x"], xyz["y"], xyz["z"]])
        with np.errstate(invalid="ignore"):
            outside = int(np.count_nonzero(((pts < self._lo) | (pts > self._hi)).any(axis=1)))
        self._record(len(batch), missing, outside, raw_names)

    def _missing_counts(
        self, batch: list[dict[str, Any]], cache: ColumnCache, names: frozenset[str]
    ) -> np.ndarray:
        n = len(batch)
        out = np.zeros(len(self._expected), dtype=np.int64)
        numeric = self._numeric
        for i, f in enumerate(self._expected):
            if f not in names:
                out[i] = n
            elif f in numeric:  # missing, null or not a number: its column is NaN there
                out[i] = np.count_nonzero(np.isnan(cache.columns(batch, [f])[f]))
            else:  # ISO time: only whether it is there
                out[i] = countOf(map(dict.__contains__, batch, repeat(f)), False)
        return out

    def _map(self, batch: list[dict[str, Any]], cache: ColumnCache, names: frozenset[str]) -> None:
        f = self.profile.fields
        n = len(batch)
        new: dict[str, np.ndarray] = {}
        dropped: list[str] = []
        types: dict[str, set[type]] = {}
        # numeric raw columns, taken before any message changes
        conv = [s for s in self._converted if s.field in names]
        wanted = [s.field for s in conv] + [a for a, _ in self._renames if a in names]
        if f.time_unit != "iso":
            wanted.append(f.time)
        if f.z is None or f.z not in names:
            wanted.append(f.layer)
        cols = cache.columns(batch, [w for w in dict.fromkeys(wanted) if w in names])
        old_types = cache.field_types(batch, [a for a, _ in self._renames if a in names])
        # time
        if f.time in names and (f.time != "timestamp" or f.time_unit != "iso"):
            if f.time_unit == "iso":
                raw = list(map(dict.pop, batch, repeat(f.time), repeat(None)))
                stamps: list[Any] = list(map(_iso_or_none, raw))
            else:
                _consume(map(dict.pop, batch, repeat(f.time), repeat(None)))
                secs = cols[f.time] / _PER_SECOND[f.time_unit]
                ok = np.isfinite(secs)
                stamps = [None] * n
                if ok.all():
                    stamps = list(map(datetime.fromtimestamp, secs.tolist(), repeat(UTC)))
                else:
                    idx = np.flatnonzero(ok).tolist()
                    got = map(datetime.fromtimestamp, secs[ok].tolist(), repeat(UTC))
                    _consume(map(setitem, repeat(stamps), idx, got))
            self._put(
                batch, "timestamp", stamps, np.fromiter(map(is_not, stamps, repeat(None)), bool, n)
            )
            dropped.append(f.time)
            new["timestamp"] = np.full(n, np.nan)
            types["timestamp"] = {datetime} | ({type(None)} if None in stamps else set())
        # plain renames: the raw objects move to the canonical key
        for src, dst in self._renames:
            if src not in names:
                continue
            vals = list(map(dict.pop, batch, repeat(src), repeat(_MISSING)))
            self._put(batch, dst, vals, np.fromiter(map(is_not, vals, repeat(_MISSING)), bool, n))
            dropped.append(src)
            if src in cols:
                new[dst] = cols[src]
            if src in old_types:
                types[dst] = old_types[src]
        # converted signals: value = raw * scale + offset (None where the raw was not a number)
        for s in conv:
            raw = list(map(dict.pop, batch, repeat(s.field), repeat(_MISSING)))
            present = np.fromiter(map(is_not, raw, repeat(_MISSING)), bool, n)
            vals = cols[s.field] * s.scale + s.offset
            finite = np.isfinite(vals)
            obj: list[Any] = vals.tolist()
            if not finite.all():
                arr = np.array(obj, dtype=object)
                arr[~finite] = None
                obj = arr.tolist()
            self._put(batch, s.name, obj, present)
            dropped.append(s.field)
            new[s.name] = vals
            types[s.name] = {float} | ({type(None)} if not finite[present].all() else set())
        # z from the layer where a message has none
        if f.layer_thickness_mm is not None and f.layer in cols:
            z = new.get("z")
            derived = cols[f.layer] * f.layer_thickness_mm
            need = np.isfinite(derived) & (~np.isfinite(z) if z is not None else True)
            if need.any():
                z = derived if z is None else np.where(need, derived, z)
                self._put(batch, "z", derived.tolist(), need)
                new["z"] = z
                types["z"] = {float}
        cache.assign(batch, new, types=types, drop=[d for d in dropped if d not in new])

    @staticmethod
    def _put(batch: list[dict[str, Any]], key: str, values: list[Any], where: np.ndarray) -> None:
        if where.all():
            _consume(map(setitem, batch, repeat(key), values))
        elif where.any():
            _consume(map(setitem, compress(batch, where), repeat(key), compress(values, where)))

    # -- figures ----------------------------------------------------------------------------
    def _record(self, n: int, missing: np.ndarray, outside: int, names: frozenset[str]) -> None:
        with self._lock:
            self.messages += n
            self.outside_plate += outside
            if not names <= self._known:
                new = names - self._known - self.unnamed
                room = max(0, UNNAMED_KEPT - len(self.unnamed))
                self.unnamed.update(sorted(new)[:room] if len(new) > room else new)
                self.unnamed_more += max(0, len(new) - room)
            self._recent.append((n, missing, outside))
            self._recent_n += n
            while len(self._recent) > 1 and self._recent_n - self._recent[0][0] >= self.window:
                self._recent_n -= self._recent.popleft()[0]

    def statistics(self) -> dict[str, Any]:
        """Fit of the profile to the stream, over about the last ``window`` messages.

        ``missing``: ``{raw field: fraction of recent messages without it (or with a
        null or non-number)}``; ``problems``: readable lines for every field missing
        somewhere and for points outside the plate; ``outside_plate`` (total) and
        ``outside_plate_recent``; ``unnamed_fields``: other fields seen (still stored;
        the first :data:`UNNAMED_KEPT`), ``unnamed_fields_more``: further ones not kept.
        """
        with self._lock:
            recent = list(self._recent)
            n = self._recent_n
            total, outside_total, unnamed = self.messages, self.outside_plate, sorted(self.unnamed)
            unnamed_more = self.unnamed_more
        p = self.profile
        missing = np.sum([r[1] for r in recent], axis=0) if recent else None
        outside = sum(r[2] for r in recent)
        frac = (
            {f: (float(missing[i]) / n if n else 0.0) for i, f in enumerate(self._expected)}
            if missing is not None
            else {f: 0.0 for f in self._expected}
        )
        problems = [
            f"field {f} missing in {_percent(v)} % of the last {n:,} messages"
            for f, v in frac.items()
            if v > 0
        ]
        if outside:
            px, py, pz = p.machine.plate_mm
            problems.append(
                f"{outside:,} of the last {n:,} points outside the plate "
                f"({px:g} × {py:g} × {pz:g} mm); {outside_total:,} in all"
            )
        return {
            "profile": p.source,
            "machine_id": p.machine.id,
            "machine": p.machine.title,
            "messages": total,
            "recent": n,
            "missing": frac,
            "outside_plate": outside_total,
            "outside_plate_recent": outside,
            "unnamed_fields": unnamed,
            "unnamed_fields_more": unnamed_more,
            "problems": problems,
        }
