"""Injected defects with ground truth, planned once per seed and applied per chunk.

Every event covers the simulator point indices ``[start_index, end_index)``.
Lack of fusion changes the commanded power or speed (so the melt-pool
physics responds); overheating multiplies the melt-pool heat; spatter spikes
the intensity; sensor drift adds a growing offset to the measured
temperature; a sensor dropout blanks the melt-pool signals (NaN, None, a
missing key) or drops whole messages.

:data:`SUBTLE_DEFECT_TYPES` are smaller, statistically defined changes, with
magnitudes in units of the signal's in-control noise sd (sigma,
:meth:`ProcessModel.noise_sigma`): ``mean_shift`` (all melt-pool signals, 1-3
sigma), ``slow_drift`` (temperature, 1-3 sigma per 1,000 points),
``variance_increase`` (temperature noise variance x2-x4), ``short_spike`` (one
signal, 6-10 sigma for 1-5 points), ``short_dropout`` (20-40 points) and
``one_signal_shift`` (area or intensity alone, 3-5 sigma). ``mode`` is ``up`` or
``down`` for the signed ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from am_qadf.simulation.process_model import ProcessModel

__all__ = [
    "ALL_DEFECT_TYPES",
    "DEFECT_TYPES",
    "DROPOUT_MODES",
    "SUBTLE_DEFECT_TYPES",
    "TEST_DEFECT_CONTEXT",
    "DefectEvent",
    "plan_defects",
    "hot_spot_messages",
]

DEFECT_TYPES: tuple[str, ...] = (
    "overheating",
    "lack_of_fusion",
    "spatter",
    "sensor_drift",
    "sensor_dropout",
)
SUBTLE_DEFECT_TYPES: tuple[str, ...] = (
    "mean_shift",
    "slow_drift",
    "variance_increase",
    "short_spike",
    "short_dropout",
    "one_signal_shift",
)
ALL_DEFECT_TYPES: tuple[str, ...] = DEFECT_TYPES + SUBTLE_DEFECT_TYPES
DROPOUT_KINDS: tuple[str, ...] = ("sensor_dropout", "short_dropout")
DROPOUT_MODES: tuple[str, ...] = ("nan", "none", "missing", "dropped")
SENSOR_SIGNALS: tuple[str, ...] = ("temperature", "melt_pool_area", "intensity", "value")

# kind: (min length, max length) in points
_LENGTHS: dict[str, tuple[int, int]] = {
    "overheating": (30, 150),
    "lack_of_fusion": (300, 1500),
    "spatter": (100, 400),
    "sensor_drift": (3000, 6000),
    "sensor_dropout": (100, 800),
    "mean_shift": (500, 2000),
    "slow_drift": (1500, 4000),
    "variance_increase": (1000, 3000),
    "short_spike": (1, 5),
    "short_dropout": (20, 40),
    "one_signal_shift": (500, 1500),
}
MELT_SIGNALS: tuple[str, ...] = ("temperature", "melt_pool_area", "intensity")


@dataclass(frozen=True)
class DefectEvent:
    """Ground truth of one event.

    ``kind`` is one of :data:`DEFECT_TYPES` (or ``"overhang_heat"`` for the
    expected, not injected, hot zones: ``injected=False``). ``mode`` refines it
    (``power_drop``/``speed_rise``, dropout ``nan``/``none``/``missing``/
    ``dropped``; ``up``/``down`` for subtle signed kinds). ``magnitude``:
    overheating heat factor, lack-of-fusion power/speed factor, spatter peak
    intensity factor, drift slope (K per 1000 points), dropout length; for the
    subtle kinds sigmas (shifts, spikes), sigmas per 1,000 points (slow drift) or
    the variance ratio. Location and times are those of the first point.
    """

    id: int
    kind: str
    start_index: int
    end_index: int
    signals: tuple[str, ...]
    magnitude: float
    mode: str = ""
    layer: int = -1
    x: float = math.nan
    y: float = math.nan
    z: float = math.nan
    start_time: datetime | None = None
    end_time: datetime | None = None
    injected: bool = True

    @property
    def n_points(self) -> int:
        return self.end_index - self.start_index

    def overlaps(self, lo: int, hi: int) -> bool:
        return self.start_index < hi and self.end_index > lo

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signals"] = list(self.signals)
        for k in ("start_time", "end_time"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d

    def located(self, **kw: Any) -> DefectEvent:
        return replace(self, **kw)


def plan_defects(
    rng: np.random.Generator,
    n_defects: int,
    first: int,
    last: int,
    kinds: tuple[str, ...] = DEFECT_TYPES,
    min_gap: int = 3000,
) -> list[DefectEvent]:
    """Place ``n_defects`` non-overlapping events in ``[first, last)``, kinds in turn
    (shuffled), at least ``min_gap`` points apart.

    >>> ev = plan_defects(np.random.default_rng(1), 5, 10_000, 200_000)
    >>> sorted(e.kind for e in ev) == sorted(DEFECT_TYPES)
    True
    """
    if n_defects < 0:
        raise ValueError(f"n_defects must be >= 0, got {n_defects}")
    bad = [k for k in kinds if k not in ALL_DEFECT_TYPES]
    if bad or not kinds:
        raise ValueError(
            f"defect kinds must be a non-empty subset of {ALL_DEFECT_TYPES}, got {kinds!r}"
        )
    if n_defects == 0:
        return []
    seq = [kinds[i % len(kinds)] for i in range(n_defects)]
    order = rng.permutation(n_defects)
    seq = [seq[i] for i in order]
    lengths = np.array([int(rng.integers(*_LENGTHS[k], endpoint=True)) for k in seq])
    span = last - first
    free = span - int(lengths.sum()) - min_gap * n_defects
    if free < 0:
        raise ValueError(
            f"{n_defects} defects need about {span - free} points but only {span} are available "
            f"after the warm-up; lower n_defects or raise n_points"
        )
    # Stars and bars: random free space before each event, events keep their order.
    offsets = np.sort(rng.integers(0, free, size=n_defects, endpoint=True))
    starts = first + offsets + np.concatenate(([0], np.cumsum(lengths + min_gap)[:-1]))
    events = []
    for i, (k, s, ln) in enumerate(zip(seq, starts.tolist(), lengths.tolist(), strict=True)):
        if k == "overheating":
            mode, mag, sig = "keyhole", float(rng.uniform(1.15, 1.30)), SENSOR_SIGNALS
        elif k == "lack_of_fusion":
            if rng.random() < 0.5:
                mode, mag, sig = (
                    "power_drop",
                    float(rng.uniform(0.55, 0.75)),
                    ("power",) + SENSOR_SIGNALS,
                )
            else:
                mode, mag, sig = (
                    "speed_rise",
                    float(rng.uniform(1.35, 1.7)),
                    ("scan_speed",) + SENSOR_SIGNALS,
                )
        elif k == "spatter":
            mode, mag, sig = "burst", float(rng.uniform(3.0, 6.0)), ("intensity",)
        elif k == "sensor_drift":
            mode, mag, sig = "ramp", float(rng.uniform(40.0, 80.0)), ("temperature", "value")
        elif k in SUBTLE_DEFECT_TYPES and k != "short_dropout":
            mode, mag, sig = _subtle(k, rng)
        else:
            mode = DROPOUT_MODES[int(rng.integers(len(DROPOUT_MODES)))]
            mag, sig = float(ln), SENSOR_SIGNALS
        events.append(DefectEvent(i, k, s, s + ln, sig, mag, mode))
    return events


def _subtle(k: str, rng: np.random.Generator) -> tuple[str, float, tuple[str, ...]]:
    """(mode, magnitude, signals) of a subtle event of kind ``k``."""
    mode = "up" if rng.random() < 0.5 else "down"
    if k == "mean_shift":
        return mode, float(rng.uniform(1.0, 3.0)), (*MELT_SIGNALS, "value")
    if k == "slow_drift":
        return mode, float(rng.uniform(1.0, 3.0)), ("temperature", "value")
    if k == "variance_increase":
        return "", float(rng.uniform(2.0, 4.0)), ("temperature", "value")
    if k == "short_spike":
        s = MELT_SIGNALS[int(rng.integers(3))]
        sig = (s, "value") if s == "temperature" else (s,)
        return mode, float(rng.uniform(6.0, 10.0)), sig
    s = MELT_SIGNALS[1 + int(rng.integers(2))]  # one_signal_shift: area or intensity alone
    return mode, float(rng.uniform(3.0, 5.0)), (s,)


def _slices(ev: DefectEvent, lo: int, hi: int) -> tuple[slice, int]:
    """Slice of the chunk ``[lo, hi)`` covered by ``ev`` and the offset into the event."""
    a, b = max(ev.start_index, lo), min(ev.end_index, hi)
    return slice(a - lo, b - lo), a - ev.start_index


def apply_commanded(
    events: list[DefectEvent], lo: int, hi: int, power: np.ndarray, speed: np.ndarray
) -> None:
    """Lack of fusion: scale the commanded power or speed in place."""
    for ev in events:
        if ev.kind == "lack_of_fusion" and ev.overlaps(lo, hi):
            sl, _ = _slices(ev, lo, hi)
            (power if ev.mode == "power_drop" else speed)[sl] *= ev.magnitude


def heat_factor(events: list[DefectEvent], lo: int, hi: int, heat: np.ndarray) -> None:
    """Overheating: multiply the heat factor (3-point ramps at both ends) in place."""
    for ev in events:
        if ev.kind == "overheating" and ev.overlaps(lo, hi):
            sl, off = _slices(ev, lo, hi)
            k = np.arange(off, off + (sl.stop - sl.start))
            ramp = np.minimum(1.0, np.minimum(k + 1, ev.n_points - k) / 3.0)
            heat[sl] *= 1.0 + (ev.magnitude - 1.0) * ramp


def apply_measured(
    events: list[DefectEvent],
    lo: int,
    hi: int,
    sig: dict[str, np.ndarray],
    seed: int,
    model: ProcessModel | None = None,
) -> np.ndarray:
    """Spatter, drift, dropouts and the subtle kinds on the measured signals, in place
    (``model`` gives the sigma of each signal; default :class:`ProcessModel()`).

    Returns a boolean mask of points whose messages are dropped.
    """
    model = model or ProcessModel()
    drop = np.zeros(hi - lo, dtype=bool)
    for ev in events:
        if not ev.overlaps(lo, hi):
            continue
        sl, off = _slices(ev, lo, hi)
        m = sl.stop - sl.start
        if ev.kind == "spatter":
            # Spikes drawn for the whole event from its own stream, so chunking cannot change them.
            r = np.random.default_rng([seed, 3, ev.id])
            spikes = r.random(ev.n_points) < 0.25
            spikes[0] = True
            factor = np.where(spikes, r.uniform(2.5, ev.magnitude, ev.n_points), 1.0)
            sig["intensity"][sl] *= factor[off : off + m]
        elif ev.kind == "sensor_drift":
            k = np.arange(off + 1, off + m + 1, dtype=np.float64)
            sig["temperature"][sl] += ev.magnitude * k / 1000.0
        elif ev.kind in ("mean_shift", "one_signal_shift", "short_spike", "slow_drift"):
            sign = 1.0 if ev.mode == "up" else -1.0
            step = ev.magnitude * sign
            if ev.kind == "slow_drift":
                step = step * np.arange(off + 1, off + m + 1, dtype=np.float64) / 1000.0
            for s in MELT_SIGNALS:
                if s in ev.signals:
                    sig[s][sl] += step * model.noise_sigma(s)
        elif ev.kind == "variance_increase":
            # independent extra noise like the sensor's (same autocorrelation), of variance
            # (ratio - 1) sigma², from the event's own stream so chunking cannot change it
            r = np.random.default_rng([seed, 6, ev.id])
            extra = model.noise(ev.n_points, r)[off : off + m]
            sig["temperature"][sl] += (
                math.sqrt(ev.magnitude - 1.0) * model.noise_sigma("temperature") * extra
            )
        elif ev.kind in DROPOUT_KINDS:
            if ev.mode == "dropped":
                drop[sl] = True
            else:
                for s in ("temperature", "melt_pool_area", "intensity"):
                    sig[s][sl] = np.nan
    return drop


#: Fields of the newest simulated point that a test defect copies (where it goes, and
#: the set-points it keeps).
TEST_DEFECT_CONTEXT: tuple[str, ...] = ("x", "y", "z", "layer", "power", "scan_speed")


def hot_spot_messages(
    latest: dict[str, float],
    newest: datetime,
    build_id: str,
    n_points: int = 60,
    temperature: float = 2650.0,
) -> list[dict[str, Any]]:
    """``n_points`` overheating simulator messages at the laser's latest position
    (``latest``: :data:`TEST_DEFECT_CONTEXT` values), 10 µs apart after ``newest``,
    stepping 0.05 mm along x: a hot spot for an operator's end-to-end check.

    >>> from datetime import UTC
    >>> m = hot_spot_messages({"x": 1.0, "layer": 3}, datetime(2026, 1, 1, tzinfo=UTC),
    ...                          "sim-7", n_points=2)
    >>> m[1]["x"], m[1]["layer"], m[1]["temperature"], m[1]["timestamp"].microsecond
    (1.05, 3, 2650.0, 20)
    """
    from datetime import timedelta

    return [
        {
            "timestamp": newest + timedelta(microseconds=10 * (i + 1)),
            "build_id": build_id,
            "layer": int(latest.get("layer", 0)),
            "x": latest.get("x", 0.0) + 0.05 * i,
            "y": latest.get("y", 0.0),
            "z": latest.get("z", 0.0),
            "power": latest.get("power", 280.0),
            "scan_speed": latest.get("scan_speed", 1000.0),
            "temperature": float(temperature),
            "melt_pool_area": 0.03,
            "intensity": 2600.0,
            "value": float(temperature),
        }
        for i in range(n_points)
    ]
