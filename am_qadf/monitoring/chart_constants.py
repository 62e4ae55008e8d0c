"""Textbook control-chart constants for subgroup sizes 2..25.

``d2`` and ``d3`` (mean and standard deviation of the range of ``n`` standard
normal values) are tabulated; they were computed by numerical integration of
the normal range distribution (5 decimals) and agree with the usual 3-decimal tables.
``c4`` is computed exactly from the gamma function. Every other factor is
derived from these three, so the table cannot drift out of sync with itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

__all__ = ["ChartConstants", "chart_constants", "c4", "d2", "d3"]

MIN_N = 2
MAX_N = 25

# n: (d2, d3)
_D2_D3: dict[int, tuple[float, float]] = {
    2: (1.12838, 0.85250),
    3: (1.69257, 0.88837),
    4: (2.05875, 0.87981),
    5: (2.32593, 0.86408),
    6: (2.53441, 0.84804),
    7: (2.70436, 0.83320),
    8: (2.84720, 0.81983),
    9: (2.97003, 0.80783),
    10: (3.07751, 0.79705),
    11: (3.17287, 0.78731),
    12: (3.25846, 0.77848),
    13: (3.33598, 0.77041),
    14: (3.40676, 0.76302),
    15: (3.47183, 0.75621),
    16: (3.53198, 0.74991),
    17: (3.58788, 0.74405),
    18: (3.64006, 0.73859),
    19: (3.68896, 0.73348),
    20: (3.73495, 0.72868),
    21: (3.77834, 0.72417),
    22: (3.81938, 0.71991),
    23: (3.85832, 0.71588),
    24: (3.89535, 0.71207),
    25: (3.93063, 0.70844),
}


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"subgroup size n must be an int, got {type(n).__name__}")
    if not MIN_N <= n <= MAX_N:
        raise ValueError(f"subgroup size n must be in {MIN_N}..{MAX_N}, got {n}")
    return n


def d2(n: int) -> float:
    """Mean of the range of ``n`` standard normal values.

    >>> d2(5)
    2.32593
    """
    return _D2_D3[_check_n(n)][0]


def d3(n: int) -> float:
    """Standard deviation of the range of ``n`` standard normal values.

    >>> d3(2)
    0.8525
    """
    return _D2_D3[_check_n(n)][1]


def c4(n: int) -> float:
    """Bias factor of the sample standard deviation, ``E[s] = c4 * sigma``.

    >>> round(c4(5), 4)
    0.94
    """
    _check_n(n)
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


@dataclass(frozen=True)
class ChartConstants:
    """All factors for subgroup size ``n`` (3-sigma limits)."""

    n: int
    d2: float
    d3: float
    c4: float
    A2: float
    A3: float
    B3: float
    B4: float
    D3: float
    D4: float


@cache
def chart_constants(n: int) -> ChartConstants:
    """Return the control-chart factors for subgroup size ``n`` (2..25).

    >>> k = chart_constants(5)
    >>> round(k.A2, 3), round(k.D4, 3), k.D3, round(k.A3, 3), round(k.B4, 3)
    (0.577, 2.114, 0.0, 1.427, 2.089)
    """
    _check_n(n)
    dd2, dd3, cc4 = d2(n), d3(n), c4(n)
    s_ratio = 3.0 * math.sqrt(1.0 - cc4 * cc4) / cc4
    return ChartConstants(
        n=n,
        d2=dd2,
        d3=dd3,
        c4=cc4,
        A2=3.0 / (dd2 * math.sqrt(n)),
        A3=3.0 / (cc4 * math.sqrt(n)),
        B3=max(0.0, 1.0 - s_ratio),
        B4=1.0 + s_ratio,
        D3=max(0.0, 1.0 - 3.0 * dd3 / dd2),
        D4=1.0 + 3.0 * dd3 / dd2,
    )
