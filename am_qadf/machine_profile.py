"""Machine profiles: how one machine's messages map onto the pipeline.

A profile is a TOML file (read with the standard library's :mod:`tomllib`) with
three parts: ``[machine]`` (id, name, material, plate and voxel size),
``[fields]`` (where time, position, layer and build are found) and one
``[signals.NAME]`` table per process signal (raw field, label, unit,
``value = raw * scale + offset``, alarm limits, SPC chart). It is the one
source of truth for signals, units, labels, limits and SPC choices: streaming,
monitoring and the dashboard all read it. This module imports nothing else
from the library, so every layer can import it.

The simulator's profile is built in (:meth:`MachineProfile.default`); another
one is chosen with ``AMQADF_PROFILE=path/to/profile.toml``
(:meth:`MachineProfile.from_env`) or passed as an object.

>>> p = MachineProfile.default()
>>> p.signal_names[:2], p.signal("temperature").unit, p.is_identity
(('temperature', 'melt_pool_area'), 'K', True)
>>> try:
...     MachineProfile.from_dict({"machine": {"id": "m1"}, "fields": {"time_unit": "h"}})
... except ProfileError as e:
...     print(e.key, "|", e.reason)
fields.time_unit | must be one of iso, s, ms, us, ns; got 'h'
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CANONICAL_FIELDS",
    "SPC_KINDS",
    "TIME_UNITS",
    "FieldMap",
    "MachineInfo",
    "MachineProfile",
    "ProfileError",
    "SignalSpec",
]

#: Units of ``fields.time_unit``: ISO-8601 text or epoch seconds/ms/µs/ns.
TIME_UNITS: tuple[str, ...] = ("iso", "s", "ms", "us", "ns")
#: Chart kinds of ``signals.NAME.spc`` (``none``: thresholds only).
SPC_KINDS: tuple[str, ...] = ("ewma", "imr", "xbar_r", "xbar_s", "cusum", "none")
#: Message keys the pipeline uses after ingestion, besides the signal names.
CANONICAL_FIELDS: tuple[str, ...] = (
    "timestamp",
    "x",
    "y",
    "z",
    "layer",
    "build_id",
    "layer_count",
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_ENV = "AMQADF_PROFILE"


class ProfileError(ValueError):
    """A profile that cannot be used: ``source`` (file), ``key`` (dotted) and ``reason``.

    >>> str(ProfileError("m.toml", "machine.voxel_mm", "must be > 0, got -1"))
    'm.toml: machine.voxel_mm: must be > 0, got -1'
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


@dataclass(frozen=True)
class MachineInfo:
    """``[machine]``: identity, recipe and geometry of one machine."""

    id: str
    name: str = ""
    material: str = ""
    sample_rate_hz: float | None = None
    plate_mm: tuple[float, float, float] = (250.0, 250.0, 300.0)
    voxel_mm: float = 0.5

    @property
    def title(self) -> str:
        """Name shown on screens (the id when there is no name)."""
        return self.name or self.id


@dataclass(frozen=True)
class FieldMap:
    """``[fields]``: the machine's names for time, position, layer and build, and
    (optional) ``layer_count``: the field carrying the build's layer count, which a
    machine's job file knows (screens then show "layer N of M" and progress).

    >>> FieldMap(layer_count="job_layers").layer_count
    'job_layers'
    """

    time: str = "timestamp"
    time_unit: str = "iso"
    x: str = "x"
    y: str = "y"
    z: str | None = "z"
    layer: str = "layer"
    layer_thickness_mm: float | None = None
    build: str | None = None
    layer_count: str | None = None


@dataclass(frozen=True)
class SignalSpec:
    """``[signals.NAME]``: one process signal, under its canonical ``name``.

    ``value = raw * scale + offset`` where ``raw`` is the message's ``field``.
    ``low``/``high`` are alarm limits, ``max_change`` a rate-of-change limit
    between consecutive points, ``range`` the physically plausible range (data
    quality). ``spc`` is the chart kind and ``spc_options`` its options.
    ``digits`` is the display precision (negative: significant digits).

    >>> s = SignalSpec("temperature", "mp_temp_C", "Melt-pool temperature", "K", offset=273.15)
    >>> s.title, s.fmt(1900.04), s.is_identity
    ('Melt-pool temperature (K)', '1,900.0', False)
    """

    name: str
    field: str
    label: str
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    low: float | None = None
    high: float | None = None
    max_change: float | None = None
    range: tuple[float, float] | None = None
    spc: str = "none"
    spc_options: tuple[tuple[str, Any], ...] = ()
    digits: int = 1
    short: str = ""
    color: str | None = None
    live: bool = True

    @property
    def options(self) -> dict[str, Any]:
        """``spc_options`` as keyword arguments for the chart."""
        return dict(self.spc_options)

    @property
    def short_label(self) -> str:
        """Compact label for axes and tiles (the label when none is given)."""
        return self.short or self.label

    @property
    def title(self) -> str:
        """Label with unit, e.g. ``"Melt-pool temperature (K)"``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def is_identity(self) -> bool:
        """Whether ingestion leaves this signal as it is (same name, no conversion)."""
        return self.field == self.name and self.scale == 1.0 and self.offset == 0.0

    def fmt(self, value: float | None) -> str:
        """``value`` with this signal's precision ("–" for None/NaN)."""
        if value is None or value != value:
            return "–"
        if self.digits < 0:
            return f"{value:.{-self.digits}g}"
        return f"{value:,.{self.digits}f}"

    @classmethod
    def unnamed(cls, name: str) -> SignalSpec:
        """A numeric field the profile does not name: readable label, no limits, no SPC.

        >>> SignalSpec.unnamed("chamber_o2_ppm").label
        'Chamber o2 ppm'
        """
        return cls(name, name, name.replace("_", " ").capitalize(), digits=-4)


@dataclass(frozen=True)
class MachineProfile:
    """A whole profile: :class:`MachineInfo`, :class:`FieldMap` and the signals.

    ``source`` says where it came from (a path, ``<built-in simulator>`` or ``<dict>``).
    """

    machine: MachineInfo
    fields: FieldMap
    signals: tuple[SignalSpec, ...]
    source: str = "<dict>"
    _by_name: dict[str, SignalSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # each instance its own index (dataclasses.replace makes a new one)
        object.__setattr__(self, "_by_name", {s.name: s for s in self.signals})

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MachineProfile:
        """Read and validate the TOML file at ``path`` (errors name file, key and reason)."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ProfileError(str(p), "", f"cannot read the profile: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ProfileError(str(p), "", "not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(str(p), "", f"not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(p))

    @classmethod
    def from_toml(cls, text: str, source: str = "<toml>") -> MachineProfile:
        """Parse a profile from TOML text.

        >>> text = '[machine]\\nid = "m1"\\n[signals.t]\\nfield = "T"'
        >>> MachineProfile.from_toml(text).signal_names
        ('t',)
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(source, "", f"not valid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> MachineProfile:
        """Validate a parsed profile (the TOML's tables as dicts).

        >>> p = MachineProfile.from_dict({
        ...     "machine": {"id": "m290-2", "plate_mm": [250, 250, 300]},
        ...     "fields": {"time": "ts", "time_unit": "ms", "x": "pos_x", "y": "pos_y",
        ...                "layer": "layer_no", "layer_thickness_mm": 0.04},
        ...     "signals": {"temperature": {"field": "mp_temp_C", "unit": "K",
        ...                                 "offset": 273.15, "spc": "ewma"}}})
        >>> p.fields.z is None, p.spc_signals, p.is_identity
        (True, ('temperature',), False)
        """
        return _Parser(source).profile(data)

    @staticmethod
    @lru_cache(maxsize=1)
    def default() -> MachineProfile:
        """The simulator's profile (built in; also ``assets/profiles/simulator.toml``)."""
        text = resources.files("am_qadf").joinpath("profiles/simulator.toml").read_text("utf-8")
        return MachineProfile.from_toml(text, source="<built-in simulator>")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MachineProfile:
        """The profile named by ``AMQADF_PROFILE`` (a TOML path), else :meth:`default`.

        >>> MachineProfile.from_env({}).machine.id
        'sim-1'
        """
        env = os.environ if env is None else env
        path = env.get(_ENV, "").strip()
        return cls.load(path) if path else cls.default()

    @classmethod
    def resolve(cls, profile: MachineProfile | str | os.PathLike[str] | None) -> MachineProfile:
        """A profile object, a TOML path, or None (:meth:`from_env`).

        >>> MachineProfile.resolve(None) is MachineProfile.resolve(MachineProfile.default())
        True
        """
        if profile is None:
            return cls.from_env()
        if isinstance(profile, MachineProfile):
            return profile
        if isinstance(profile, str | os.PathLike):
            return cls.load(profile)
        raise TypeError(
            f"profile must be a MachineProfile, a path or None, got {type(profile).__name__}"
        )

    # -- reading ------------------------------------------------------------------------
    @property
    def signal_names(self) -> tuple[str, ...]:
        """Canonical names of the signals, in the profile's order."""
        return tuple(s.name for s in self.signals)

    @property
    def spc_signals(self) -> tuple[str, ...]:
        """Signals with a control chart (``spc`` other than ``none``)."""
        return tuple(s.name for s in self.signals if s.spc != "none")

    @property
    def live_signals(self) -> tuple[str, ...]:
        """Signals plotted on the live view (``live = true``, the default)."""
        return tuple(s.name for s in self.signals if s.live)

    def signal(self, name: str) -> SignalSpec:
        """The signal called ``name`` (KeyError naming the profile's signals)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"signal {name!r} is not in profile {self.source}; it has {list(self._by_name)}"
            ) from None

    def info(self, name: str) -> SignalSpec:
        """Like :meth:`signal`, but a field the profile does not name gets
        :meth:`SignalSpec.unnamed` (it is still stored and can be plotted)."""
        spec = self._by_name.get(name)
        return spec if spec is not None else SignalSpec.unnamed(name)

    def limits(self) -> dict[str, dict[str, float]]:
        """``{signal: {"low", "high", "max_change"}}`` with the limits the profile gives.

        >>> MachineProfile.default().limits()["power"]
        {'low': 150.0, 'high': 320.0}
        """
        out: dict[str, dict[str, float]] = {}
        for s in self.signals:
            d = {k: v for k in ("low", "high", "max_change") if (v := getattr(s, k)) is not None}
            if d:
                out[s.name] = d
        return out

    def ranges(self) -> dict[str, tuple[float, float]]:
        """``{signal: (lo, hi)}`` plausible ranges, for the out-of-range rate."""
        return {s.name: s.range for s in self.signals if s.range is not None}

    def spc_charts(self) -> dict[str, dict[str, Any]]:
        """``{signal: {"chart": kind, **options}}`` for every charted signal."""
        return {s.name: {"chart": s.spc, **s.options} for s in self.signals if s.spc != "none"}

    @property
    def plate_bounds(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """``(min, max)`` corners of the build volume in mm (origin at 0)."""
        return (0.0, 0.0, 0.0), self.machine.plate_mm

    @property
    def is_identity(self) -> bool:
        """Whether the messages already use the canonical names and units, so ingestion
        has nothing to map (the simulator's case)."""
        f = self.fields
        return (
            (f.time, f.time_unit, f.x, f.y, f.z, f.layer)
            == ("timestamp", "iso", "x", "y", "z", "layer")
            and f.build in (None, "build_id")
            and f.layer_count in (None, "layer_count")
            and all(s.is_identity for s in self.signals)
        )

    def to_raw(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """One canonical message in this machine's own shape (the inverse of ingestion),
        for tools that publish as the machine would (test defects, demos). ``timestamp``
        must be an aware datetime; fields the profile does not name are kept.

        >>> from datetime import UTC, datetime
        >>> p = MachineProfile.from_dict({"machine": {"id": "m"},
        ...     "fields": {"time": "ts", "time_unit": "ms", "x": "px", "z": "pz"},
        ...     "signals": {"temperature": {"field": "T_C", "offset": 273.15}}})
        >>> p.to_raw({"timestamp": datetime(2024, 1, 1, tzinfo=UTC), "x": 1.0,
        ...           "temperature": 1900.0, "o2": 5})
        {'ts': 1704067200000, 'px': 1.0, 'T_C': 1626.85, 'o2': 5}
        """
        f = self.fields
        names = {
            "x": f.x,
            "y": f.y,
            "z": f.z,
            "layer": f.layer,
            "build_id": f.build,
            "layer_count": f.layer_count,
        }
        out: dict[str, Any] = {}
        for key, v in message.items():
            spec = self._by_name.get(key)
            if key == "timestamp":
                if f.time_unit == "iso":
                    out[f.time] = v.isoformat() if hasattr(v, "isoformat") else v
                else:
                    per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
                    us = round(v.timestamp() * 1e6)
                    out[f.time] = (
                        us * per_s[f.time_unit] // 1_000_000 if f.time_unit != "s" else us / 1e6
                    )
            elif spec is not None:
                out[spec.field] = None if v is None else round((v - spec.offset) / spec.scale, 12)
            elif key in names:
                if names[key] is not None:
                    out[names[key]] = v
            else:
                out[key] = v
        return out

    @property
    def numeric_fields(self) -> tuple[str, ...]:
        """Raw message fields that must be numbers when present (for validation)."""
        f = self.fields
        out = [f.x, f.y, *([f.z] if f.z else []), f.layer, *(s.field for s in self.signals)]
        if f.layer_count:
            out.append(f.layer_count)
        if f.time_unit != "iso":
            out.append(f.time)
        return tuple(dict.fromkeys(out))

    @property
    def expected_fields(self) -> tuple[str, ...]:
        """Raw fields every message should carry: time, position, layer and signals."""
        f = self.fields
        return tuple(
            dict.fromkeys(
                [
                    f.time,
                    f.x,
                    f.y,
                    *([f.z] if f.z else []),
                    f.layer,
                    *(s.field for s in self.signals),
                ]
            )
        )


# -- validation ---------------------------------------------------------------------------
_MACHINE_KEYS = {"id", "name", "material", "sample_rate_hz", "plate_mm", "voxel_mm"}
_FIELD_KEYS = {
    "time",
    "time_unit",
    "x",
    "y",
    "z",
    "layer",
    "layer_thickness_mm",
    "build",
    "layer_count",
}
_SIGNAL_KEYS = {
    "field",
    "label",
    "short",
    "unit",
    "scale",
    "offset",
    "low",
    "high",
    "max_change",
    "range",
    "spc",
    "spc_options",
    "digits",
    "color",
    "live",
}
_TOP_KEYS = {"machine", "fields", "signals"}


def _tname(v: Any) -> str:
    return {
        str: "text",
        bool: "true/false",
        int: "integer",
        float: "number",
        list: "array",
        dict: "table",
    }.get(type(v), type(v).__name__)


class _Parser:
    """Checks one profile; every error names the source, the dotted key and the reason."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> ProfileError:
        return ProfileError(self.source, key, reason)

    def table(self, data: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(key, f"must be a table, got {_tname(data)}")
        unknown = sorted(set(data) - allowed)
        if unknown:
            where = f"{key}." if key else ""
            raise self.fail(
                f"{where}{unknown[0]}",
                f"unknown key; allowed here: {', '.join(sorted(allowed))}",
            )
        return dict(data)

    def text(self, d: Mapping[str, Any], key: str, path: str, default: Any = ...) -> Any:
        if key not in d:
            if default is ...:
                raise self.fail(f"{path}.{key}", "is required")
            return default
        v = d[key]
        if not isinstance(v, str):
            raise self.fail(f"{path}.{key}", f"must be text, got {_tname(v)} {v!r}")
        return v

    def name(self, d: Mapping[str, Any], key: str, path: str, default: Any = ...) -> Any:
        v = self.text(d, key, path, default)
        if isinstance(v, str) and not v.strip():
            raise self.fail(f"{path}.{key}", "must not be empty")
        return v

    def number(
        self, d: Mapping[str, Any], key: str, path: str, default: Any = None, *, positive=False
    ) -> Any:
        if key not in d:
            return default
        return self.num(d[key], f"{path}.{key}", positive=positive)

    def num(self, v: Any, key: str, *, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(key, f"must be a number, got {_tname(v)} {v!r}")
        if not math.isfinite(v):
            raise self.fail(key, f"must be finite, got {v!r}")
        if positive and v <= 0:
            raise self.fail(key, f"must be > 0, got {v!r}")
        return float(v)

    def profile(self, data: Mapping[str, Any]) -> MachineProfile:
        top = self.table(data, "", _TOP_KEYS)
        if "machine" not in top:
            raise self.fail("machine", "is required (a [machine] table with at least id)")
        machine = self.machine(top["machine"])
        fields = self.fields(top.get("fields", {}))
        raw_signals = top.get("signals", {})
        if not isinstance(raw_signals, Mapping):
            raise self.fail("signals", f"must be a table, got {_tname(raw_signals)}")
        signals = tuple(self.signal(n, d) for n, d in raw_signals.items())
        self.check_unique(fields, signals)
        return MachineProfile(machine, fields, signals, source=self.source)

    def machine(self, data: Any) -> MachineInfo:
        d = self.table(data, "machine", _MACHINE_KEYS)
        plate = d.get("plate_mm", MachineInfo.plate_mm)
        if not isinstance(plate, list | tuple) or len(plate) != 3:
            raise self.fail("machine.plate_mm", f"must be [x, y, z] in mm, got {plate!r}")
        plate_t = tuple(
            self.num(v, f"machine.plate_mm[{i}]", positive=True) for i, v in enumerate(plate)
        )
        return MachineInfo(
            id=self.name(d, "id", "machine"),
            name=self.text(d, "name", "machine", ""),
            material=self.text(d, "material", "machine", ""),
            sample_rate_hz=self.number(d, "sample_rate_hz", "machine", positive=True),
            plate_mm=plate_t,  # type: ignore[arg-type]
            voxel_mm=self.number(d, "voxel_mm", "machine", 0.5, positive=True),
        )

    def fields(self, data: Any) -> FieldMap:
        d = self.table(data, "fields", _FIELD_KEYS)
        unit = self.text(d, "time_unit", "fields", "iso")
        if unit not in TIME_UNITS:
            raise self.fail(
                "fields.time_unit", f"must be one of {', '.join(TIME_UNITS)}; got {unit!r}"
            )
        thickness = self.number(d, "layer_thickness_mm", "fields", positive=True)
        z = self.name(d, "z", "fields", "z" if "layer_thickness_mm" not in d else None)
        fm = FieldMap(
            time=self.name(d, "time", "fields", "timestamp"),
            time_unit=unit,
            x=self.name(d, "x", "fields", "x"),
            y=self.name(d, "y", "fields", "y"),
            z=z,
            layer=self.name(d, "layer", "fields", "layer"),
            layer_thickness_mm=thickness,
            build=self.name(d, "build", "fields", None),
            layer_count=self.name(d, "layer_count", "fields", None),
        )
        return fm

    def signal(self, name: Any, data: Any) -> SignalSpec:
        path = f"signals.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail(path, "a signal name must be letters, digits and _ (not first)")
        if name in CANONICAL_FIELDS:
            raise self.fail(path, f"{name!r} is reserved for position/time; choose another name")
        d = self.table(data, path, _SIGNAL_KEYS)
        low = self.number(d, "low", path)
        high = self.number(d, "high", path)
        if low is not None and high is not None and low >= high:
            raise self.fail(f"{path}.low", f"low ({low}) must be below high ({high})")
        rng = d.get("range")
        if rng is not None:
            if not isinstance(rng, list) or len(rng) != 2:
                raise self.fail(f"{path}.range", f"must be [lo, hi], got {rng!r}")
            rng = (self.num(rng[0], f"{path}.range[0]"), self.num(rng[1], f"{path}.range[1]"))
            if rng[0] >= rng[1]:
                raise self.fail(f"{path}.range", f"lo ({rng[0]}) must be below hi ({rng[1]})")
        scale = self.number(d, "scale", path, 1.0)
        if scale == 0.0:
            raise self.fail(f"{path}.scale", "must not be 0 (every value would be the offset)")
        spc = self.text(d, "spc", path, "none")
        if spc not in SPC_KINDS:
            raise self.fail(f"{path}.spc", f"must be one of {', '.join(SPC_KINDS)}; got {spc!r}")
        opts = d.get("spc_options", {})
        if not isinstance(opts, Mapping):
            raise self.fail(f"{path}.spc_options", f"must be a table, got {_tname(opts)}")
        for k, v in opts.items():
            ok = isinstance(v, bool | int | float | str) or (
                isinstance(v, list) and all(isinstance(i, int) for i in v)
            )
            if not ok:
                raise self.fail(
                    f"{path}.spc_options.{k}",
                    f"must be a number, text or list of integers, got {_tname(v)}",
                )
        if opts and spc == "none":
            raise self.fail(
                f"{path}.spc_options", 'given, but spc = "none" (no chart to apply them to)'
            )
        digits = d.get("digits", 1)
        if isinstance(digits, bool) or not isinstance(digits, int) or not -12 <= digits <= 12:
            raise self.fail(f"{path}.digits", f"must be an integer in -12..12, got {digits!r}")
        color = self.text(d, "color", path, None)
        if color is not None and not _COLOR.match(color):
            raise self.fail(f"{path}.color", f"must be #rrggbb, got {color!r}")
        live = d.get("live", True)
        if not isinstance(live, bool):
            raise self.fail(f"{path}.live", f"must be true or false, got {live!r}")
        return SignalSpec(
            name=name,
            field=self.name(d, "field", path, name),
            label=self.text(d, "label", path, name.replace("_", " ").capitalize()),
            unit=self.text(d, "unit", path, ""),
            scale=scale,
            offset=self.number(d, "offset", path, 0.0),
            low=low,
            high=high,
            max_change=self.number(d, "max_change", path, positive=True),
            range=rng,
            spc=spc,
            spc_options=tuple(
                (str(k), tuple(v) if isinstance(v, list) else v) for k, v in opts.items()
            ),
            digits=digits,
            short=self.text(d, "short", path, ""),
            color=color,
            live=live,
        )

    def check_unique(self, f: FieldMap, signals: tuple[SignalSpec, ...]) -> None:
        seen: dict[str, str] = {}
        named = [
            ("fields.time", f.time),
            ("fields.x", f.x),
            ("fields.y", f.y),
            ("fields.z", f.z),
            ("fields.layer", f.layer),
            ("fields.build", f.build),
            ("fields.layer_count", f.layer_count),
        ]
        named += [(f"signals.{s.name}.field", s.field) for s in signals]
        for key, raw in named:
            if raw is None:
                continue
            if raw in seen:
                raise self.fail(key, f"field {raw!r} is already used by {seen[raw]}")
            seen[raw] = key
        # a signal's canonical name must not collide with another entry's raw field
        for s in signals:
            owner = seen.get(s.name)
            if owner is not None and owner != f"signals.{s.name}.field":
                raise self.fail(
                    f"signals.{s.name}", f"the name {s.name!r} is the raw field of {owner}"
                )
