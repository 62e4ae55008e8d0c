"""Melt-pool response to the laser: temperature, melt-pool area, intensity.

A deliberately simple, vectorised model: the melt-pool temperature follows
the linear energy density ``P / v`` (relative to nominal) to a power
``temperature_exponent``, overshoots briefly at the start of every vector,
and is scaled by a heat factor (overhangs over powder, keyholing); area and
photodiode intensity follow the temperature ratio. Sensor noise is Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["ProcessModel"]


@dataclass(frozen=True)
class ProcessModel:
    """Nominal values, sensitivities and noise levels of the simulated process.

    >>> m = ProcessModel()
    >>> out = m.respond(np.array([280.0]), np.array([1000.0]), np.array([1000]),
    ...                 np.ones(1), np.random.default_rng(0), noise=False)
    >>> float(out["temperature"][0]), round(float(out["melt_pool_area"][0]), 4)
    (1900.0, 0.015)
    """

    nominal_energy: float = 0.28  # J/mm: 280 W at 1000 mm/s
    temperature_nominal: float = 1900.0  # K
    temperature_exponent: float = 0.55
    temperature_noise: float = 35.0  # K, sensor noise (1 sigma)
    area_nominal: float = 0.015  # mm²
    area_exponent: float = 2.4  # on the temperature ratio
    area_noise: float = 0.06  # relative
    intensity_nominal: float = 1000.0  # photodiode counts
    intensity_exponent: float = 3.0
    intensity_noise: float = 0.04  # relative
    power_noise: float = 0.8  # W
    speed_noise: float = 1.5  # mm/s
    transient_amplitude: float = 0.02  # relative overshoot when the laser switches on
    transient_points: float = 1.5  # decay constant, in samples
    overhang_boost: float = 0.03  # relative extra temperature over powder
    overhang_decay_layers: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"ProcessModel.{f.name} must be a finite number >= 0, got {v!r}")
        for name in (
            "nominal_energy",
            "temperature_nominal",
            "transient_points",
            "overhang_decay_layers",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"ProcessModel.{name} must be > 0")

    def overhang_factor(self, layers_above: int) -> float:
        """Relative extra heat ``layers_above`` layers after the overhang starts."""
        if layers_above < 0:
            return 0.0
        return self.overhang_boost * math.exp(-layers_above / self.overhang_decay_layers)

    def respond(
        self,
        power: np.ndarray,
        speed: np.ndarray,
        j: np.ndarray,
        heat: np.ndarray,
        rng: np.random.Generator,
        *,
        noise: bool = True,
    ) -> dict[str, np.ndarray]:
        """Measured temperature, area and intensity for commanded ``power``/``speed``;
        ``j`` counts samples since the laser switched on, ``heat`` a multiplier."""
        n = power.shape[0]
        e = (power / np.maximum(speed, 1e-9)) / self.nominal_energy
        transient = 1.0 + self.transient_amplitude * np.exp(-j / self.transient_points)
        t_true = (
            self.temperature_nominal * np.power(e, self.temperature_exponent) * transient * heat
        )
        ratio = t_true / self.temperature_nominal
        area = self.area_nominal * np.power(ratio, self.area_exponent)
        inten = self.intensity_nominal * np.power(ratio, self.intensity_exponent)
        if noise:
            t_meas = t_true + rng.normal(0.0, self.temperature_noise, n)
            area = area * (1.0 + rng.normal(0.0, self.area_noise, n))
            inten = inten * (1.0 + rng.normal(0.0, self.intensity_noise, n))
        else:
            t_meas = t_true
        return {"temperature": t_meas, "melt_pool_area": area, "intensity": inten}
