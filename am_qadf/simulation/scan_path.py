"""Scan paths of an L-PBF build: parts, contour and hatch vectors, sample points.

Geometry only (no randomness): a layer's vectors are computed with numpy
from the parts' footprints, and the sensor sample points along them are
expanded with ``np.repeat`` (no per-point Python loop). The hatch direction
rotates by ``rotation_deg`` (67° by default) every layer and alternates
direction line by line (meander).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "DEFAULT_PARTS",
    "LayerVectors",
    "Part",
    "ScanStrategy",
    "expand_points",
    "layer_vectors",
]

CONTOUR, HATCH = 0, 1


@dataclass(frozen=True)
class Part:
    """A part on the plate: a box (``size`` = width x depth) or a cylinder
    (``size[0]`` = diameter), ``height`` mm tall. A box with ``overhang`` > 0
    grows by that much on its +x side above ``overhang_z``: the new strip is
    built over powder and runs hot.

    >>> Part("cube", "box", (50.0, 50.0), (10.0, 10.0), 5.0).footprint(1.0)
    (45.0, 55.0, 45.0, 55.0)
    """

    name: str
    kind: Literal["box", "cylinder"]
    center: tuple[float, float]
    size: tuple[float, float]
    height: float
    overhang: float = 0.0
    overhang_z: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("box", "cylinder"):
            raise ValueError(f"Part.kind must be 'box' or 'cylinder', got {self.kind!r}")
        if min(self.size) <= 0 or self.height <= 0:
            raise ValueError(f"Part {self.name!r}: size and height must be positive")
        if self.overhang and self.kind != "box":
            raise ValueError(f"Part {self.name!r}: only boxes can have an overhang")

    @property
    def overhang_edge(self) -> float:
        """x of the +x edge below the overhang."""
        return self.center[0] + self.size[0] / 2

    def has_overhang_at(self, z: float) -> bool:
        return self.overhang > 0 and z > self.overhang_z

    def footprint(self, z: float) -> tuple[float, float, float, float]:
        """Box: (xmin, xmax, ymin, ymax) at height ``z``; cylinder: (cx, cy, r, r)."""
        cx, cy = self.center
        if self.kind == "cylinder":
            r = self.size[0] / 2
            return (cx, cy, r, r)
        w, d = self.size
        grow = self.overhang if self.has_overhang_at(z) else 0.0
        return (cx - w / 2, cx + w / 2 + grow, cy - d / 2, cy + d / 2)


DEFAULT_PARTS: tuple[Part, ...] = (
    Part("box_a", "box", (95.0, 95.0), (10.0, 10.0), 10.0),
    Part("cylinder_b", "cylinder", (155.0, 95.0), (10.0, 10.0), 10.0),
    Part("bar_c", "box", (95.0, 155.0), (6.0, 12.0), 10.0),
    Part("overhang_d", "box", (155.0, 155.0), (8.0, 8.0), 10.0, overhang=4.0, overhang_z=0.26),
)
"""Four small parts on a 250 x 250 mm plate; ``overhang_d`` overhangs from layer 6 (40 µm)."""


@dataclass(frozen=True)
class ScanStrategy:
    """Process parameters of the scan strategy (mm, W, mm/s, Hz)."""

    layer_thickness: float = 0.04
    hatch_spacing: float = 0.1
    rotation_deg: float = 67.0
    contour_offset: float = 0.05
    hatch_offset: float = 0.1
    hatch_power: float = 280.0
    hatch_speed: float = 1000.0
    contour_power: float = 210.0
    contour_speed: float = 750.0
    contour_segment: float = 0.5
    sensor_rate_hz: float = 20_000.0

    def __post_init__(self) -> None:
        names = ("layer_thickness", "hatch_spacing", "hatch_power", "hatch_speed")
        names += ("contour_power", "contour_speed", "contour_segment", "sensor_rate_hz")
        for name in names:
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"ScanStrategy.{name} must be a finite positive number, got {v!r}")


@dataclass
class LayerVectors:
    """The scan vectors of one layer, in scan order."""

    layer: int
    z: float
    start: np.ndarray  # (m, 2)
    direction: np.ndarray  # (m, 2) unit vectors
    length: np.ndarray  # (m,)
    power: np.ndarray
    speed: np.ndarray
    kind: np.ndarray  # CONTOUR / HATCH
    part: np.ndarray  # index into the parts tuple
    count: np.ndarray  # sample points per vector
    step: np.ndarray  # mm between samples
    path_offset: np.ndarray  # samples since laser-on at the vector start (contours run on)

    @property
    def n_points(self) -> int:
        return int(self.count.sum())


def _contour(part: Part, z: float, off: float, seg: float) -> np.ndarray:
    """Closed polygon (k+1, 2) of the contour, counter-clockwise."""
    if part.kind == "cylinder":
        cx, cy, r, _ = part.footprint(z)
        r -= off
        k = max(12, math.ceil(2 * math.pi * r / seg))
        a = np.linspace(0.0, 2 * math.pi, k + 1)
        return np.column_stack((cx + r * np.cos(a), cy + r * np.sin(a)))
    x0, x1, y0, y1 = part.footprint(z)
    x0, x1, y0, y1 = x0 + off, x1 - off, y0 + off, y1 - off
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])


def _hatch(
    part: Part, z: float, inset: float, h: float, theta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points (m, 2) of meander hatch lines clipped to the inset footprint."""
    u = np.array([math.cos(theta), math.sin(theta)])
    nrm = np.array([-u[1], u[0]])
    if part.kind == "cylinder":
        cx, cy, r, _ = part.footprint(z)
        r -= inset
        c = np.array([cx, cy])
        s = np.arange(-r + h / 2, r, h)
        half = np.sqrt(np.maximum(r * r - s * s, 0.0))
        t0, t1 = -half, half
    else:
        x0, x1, y0, y1 = part.footprint(z)
        x0, x1, y0, y1 = x0 + inset, x1 - inset, y0 + inset, y1 - inset
        c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        rad = math.hypot(x1 - x0, y1 - y0) / 2
        s = np.arange(-rad + h / 2, rad, h)
        p = c[None, :] + s[:, None] * nrm[None, :]
        t0 = np.full(s.size, -np.inf)
        t1 = np.full(s.size, np.inf)
        # Slab clipping (Liang-Barsky) of every line against the rectangle at once.
        for dim, lo, hi in ((0, x0, x1), (1, y0, y1)):
            if abs(u[dim]) > 1e-12:
                a = (lo - p[:, dim]) / u[dim]
                b = (hi - p[:, dim]) / u[dim]
                t0 = np.maximum(t0, np.minimum(a, b))
                t1 = np.minimum(t1, np.maximum(a, b))
            else:
                outside = (p[:, dim] < lo) | (p[:, dim] > hi)
                t1 = np.where(outside, -np.inf, t1)
    keep = (t1 - t0) > 2 * h
    s, t0, t1 = s[keep], t0[keep], t1[keep]
    base = c[None, :] + s[:, None] * nrm[None, :]
    a = base + t0[:, None] * u[None, :]
    b = base + t1[:, None] * u[None, :]
    odd = (np.arange(s.size) % 2) == 1
    start = np.where(odd[:, None], b, a)
    end = np.where(odd[:, None], a, b)
    return start, end


def layer_vectors(parts: tuple[Part, ...], layer: int, strategy: ScanStrategy) -> LayerVectors:
    """Contour then hatch vectors of every part present in ``layer`` (0-based).

    >>> lv = layer_vectors(DEFAULT_PARTS, 0, ScanStrategy())
    >>> lv.z, bool((lv.kind[:4] == 0).all()), lv.n_points > 50_000
    (0.04, True, True)
    """
    st = strategy
    z = round((layer + 1) * st.layer_thickness, 9)
    theta = math.radians((st.rotation_deg * layer) % 180.0)
    starts, ends, kinds, pidx = [], [], [], []
    for i, part in enumerate(parts):
        if z > part.height + 1e-9:
            continue
        poly = _contour(part, z, st.contour_offset, st.contour_segment)
        starts.append(poly[:-1])
        ends.append(poly[1:])
        kinds.append(np.full(poly.shape[0] - 1, CONTOUR, np.int8))
        pidx.append(np.full(poly.shape[0] - 1, i, np.int16))
        a, b = _hatch(part, z, st.hatch_offset, st.hatch_spacing, theta)
        starts.append(a)
        ends.append(b)
        kinds.append(np.full(a.shape[0], HATCH, np.int8))
        pidx.append(np.full(a.shape[0], i, np.int16))
    if not starts:
        e2, e1 = np.empty((0, 2)), np.empty(0)
        i8, i16, i64 = np.empty(0, np.int8), np.empty(0, np.int16), np.empty(0, np.int64)
        return LayerVectors(layer, z, e2, e2, e1, e1, e1, i8, i16, i64, e1, i64)
    start = np.concatenate(starts)
    end = np.concatenate(ends)
    kind = np.concatenate(kinds)
    part = np.concatenate(pidx)
    vec = end - start
    length = np.hypot(vec[:, 0], vec[:, 1])
    direction = vec / np.where(length > 0, length, 1.0)[:, None]
    hatch = kind == HATCH
    power = np.where(hatch, st.hatch_power, st.contour_power)
    speed = np.where(hatch, st.hatch_speed, st.contour_speed)
    step = speed / st.sensor_rate_hz
    count = np.maximum(1, np.floor(length / step)).astype(np.int64)
    # A contour polygon is one continuous exposure: only its first segment starts
    # the melt pool afresh; every hatch line does.
    new_path = (kind == HATCH) | np.concatenate(
        ([True], (part[1:] != part[:-1]) | (kind[:-1] != CONTOUR))
    )
    before = np.concatenate(([0], np.cumsum(count)[:-1]))
    path_start = np.maximum.accumulate(np.where(new_path, np.arange(kind.size), 0))
    path_offset = before - before[path_start]
    return LayerVectors(
        layer, z, start, direction, length, power, speed, kind, part, count, step, path_offset
    )


def expand_points(lv: LayerVectors, lo: int = 0, hi: int | None = None) -> dict[str, np.ndarray]:
    """Sample points ``lo:hi`` of a layer: x, y, vector id, position along the vector
    (``j``) and since laser-on (``path_j``), part, kind, and nominal power and speed.

    >>> lv = layer_vectors(DEFAULT_PARTS, 0, ScanStrategy())
    >>> p = expand_points(lv, 0, 3)
    >>> p["j"].tolist(), round(float(p["x"][1] - p["x"][0]), 4)   # 750 mm/s at 20 kHz
    ([0, 1, 2], 0.0375)
    """
    total = lv.n_points
    hi = total if hi is None else min(hi, total)
    lo = max(0, lo)
    n = max(0, hi - lo)
    offsets = np.concatenate(([0], np.cumsum(lv.count)))
    k = np.arange(lo, lo + n, dtype=np.int64)
    vec = np.searchsorted(offsets, k, side="right") - 1
    j = k - offsets[vec]
    jp = j + lv.path_offset[vec]
    d = j * lv.step[vec]
    x = lv.start[vec, 0] + lv.direction[vec, 0] * d
    y = lv.start[vec, 1] + lv.direction[vec, 1] * d
    return {
        "x": x,
        "y": y,
        "vector": vec,
        "j": j,
        "path_j": jp,
        "part": lv.part[vec],
        "kind": lv.kind[vec],
        "power": lv.power[vec],
        "speed": lv.speed[vec],
    }
