"""Melt-pool response to the laser: temperature, melt-pool area, intensity.

A deliberately simple, vectorised model: the melt-pool temperature follows
the linear energy density ``P / v`` (relative to nominal) to a power
``temperature_exponent``, overshoots briefly at the start of every vector,
and is scaled by a heat factor (overhangs over powder, keyholing, and a small
random level offset per layer and per part); area and photodiode intensity
follow the temperature ratio. Sensor noise is Gaussian and autocorrelated (an
AR(p) process with coefficients ``noise_ar``, scaled to the stated marginal sd);
the temperature noise grows with the melt-pool temperature
(``noise_temperature_exponent``); area and intensity noise are relative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from am_qadf.monitoring.autocorrelation import ARFit, ar_filter, ar_impulse_response

__all__ = ["ProcessModel"]

_SIGNAL_NOISE = ("temperature", "melt_pool_area", "intensity")


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
    noise_ar: tuple[float, ...] = (0.5,)  # AR coefficients of the sensor noise; () = white
    layer_shift: float = 0.25  # sd of a layer's level offset, in temperature-noise sds
    part_shift: float = 0.0  # sd of a part's level offset within a layer, same unit
    noise_temperature_exponent: float = 1.0  # temperature noise sd ∝ (T / nominal)^this

    def __post_init__(self) -> None:
        phi = self.noise_ar
        if not isinstance(phi, tuple) or not all(
            isinstance(c, int | float) and math.isfinite(c) for c in phi
        ):
            raise ValueError(f"ProcessModel.noise_ar must be a tuple of numbers, got {phi!r}")
        if phi and np.max(np.abs(np.roots([1.0, *(-c for c in phi)]))) >= 1.0:
            raise ValueError(
                f"ProcessModel.noise_ar {phi!r} is not stationary (a root on or "
                "outside the unit circle); use smaller coefficients"
            )
        for f in fields(self):
            if f.name == "noise_ar":
                continue
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

    def noise_sigma(self, signal: str) -> float:
        """Marginal in-control noise sd of ``signal`` at nominal (its unit).

        >>> ProcessModel().noise_sigma("temperature"), ProcessModel().noise_sigma("intensity")
        (35.0, 40.0)
        """
        if signal == "temperature":
            return self.temperature_noise
        if signal == "melt_pool_area":
            return self.area_noise * self.area_nominal
        if signal == "intensity":
            return self.intensity_noise * self.intensity_nominal
        raise ValueError(f"signal must be one of {_SIGNAL_NOISE}, got {signal!r}")

    def level_offset(self, layer_draw: float, part_draws: np.ndarray) -> np.ndarray:
        """Heat multipliers of a layer's parts from standard normal draws."""
        rel = self.temperature_noise / self.temperature_nominal
        return 1.0 + rel * (self.layer_shift * layer_draw + self.part_shift * part_draws)

    def noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` values of unit-variance sensor noise with the ``noise_ar`` correlation
        (started from its stationary state by a burn-in)."""
        if not self.noise_ar:
            return rng.normal(0.0, 1.0, n)
        burn = min(ar_impulse_response(self.noise_ar).size, 20_000)
        x = ar_filter(rng.normal(0.0, 1.0, n + burn), self.noise_ar)[burn:]
        return x / ARFit(0.0, self.noise_ar, 1.0).marginal_sigma

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
            grow = np.power(ratio, self.noise_temperature_exponent)
            t_meas = t_true + self.temperature_noise * grow * self.noise(n, rng)
            area = area * (1.0 + self.area_noise * self.noise(n, rng))
            inten = inten * (1.0 + self.intensity_noise * self.noise(n, rng))
        else:
            t_meas = t_true
        return {"temperature": t_meas, "melt_pool_area": area, "intensity": inten}
