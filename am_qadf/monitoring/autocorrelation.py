"""Autoregressive models of an in-control baseline, for SPC on autocorrelated signals.

Melt-pool and photodiode signals are autocorrelated: the moving range then
estimates ``sigma * sqrt(1 - rho1)``, not sigma, and limits set from it are
too tight. :func:`fit_ar` fits an AR(p) model to the baseline (Yule-Walker
through the Levinson-Durbin recursion, order chosen by AIC up to
``max_order``; the fit is always stationary). From the fit, the standard
deviation of *any* linear statistic of the series follows exactly
(:meth:`ARFit.filter_sd`): the individual values, a subgroup mean, an EWMA of
any λ, the long-run sigma of the mean (the autoregressive estimate of the
spectral density at frequency 0, Berk 1974). That is the method the charts use
with ``sigma_method="ar"``; see the README's "SPC on autocorrelated signals".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ARFit", "ar_filter", "ar_impulse_response", "fit_ar", "pair_limit"]

_MAX_RESPONSE = 200_000  # impulse responses are cut here (sum(phi) is capped below 1)
_MAX_PHI_SUM = 0.999  # beyond this the long-run variance is unbounded; keep limits finite


def ar_impulse_response(phi: tuple[float, ...] | np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """psi_j of x_t = sum_j psi_j e_{t-j} for x_t = sum_i phi_i x_{t-i} + e_t, cut where the
    tail adds less than ``tol`` (relative) to the sum of squares.

    >>> ar_impulse_response((0.5,))[:4].tolist()
    [1.0, 0.5, 0.25, 0.125]
    """
    ph = np.asarray(phi, dtype=np.float64)
    p = ph.size
    if p == 0:
        return np.ones(1)
    out = [1.0]
    hist = np.zeros(p)  # psi_{j-1}, ..., psi_{j-p}
    hist[0] = 1.0
    ss, small = 1.0, 0
    # A short Python loop over lags (not data points); it stops once the response has decayed.
    for _ in range(_MAX_RESPONSE - 1):
        v = float(ph @ hist)
        out.append(v)
        hist = np.roll(hist, 1)
        hist[0] = v
        ss += v * v
        small = small + 1 if v * v < tol * ss else 0
        if small > 4 * p + 16:
            break
    return np.asarray(out)


def ar_filter(e: np.ndarray, phi: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """The AR process driven by innovations ``e`` (starting from rest), by FFT convolution.

    >>> ar_filter(np.array([1.0, 0.0, 0.0]), (0.5,)).round(6).tolist()
    [1.0, 0.5, 0.25]
    """
    e = np.asarray(e, dtype=np.float64)
    psi = ar_impulse_response(phi)
    if psi.size == 1 or e.size == 0:
        return e.copy()
    psi = psi[: e.size]
    m = e.size + psi.size - 1
    nfft = 1 << (m - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(e, nfft) * np.fft.rfft(psi, nfft), nfft)[: e.size]


def _levinson(r: np.ndarray, p: int) -> list[tuple[np.ndarray, float]]:
    """AR coefficients and innovation variance for every order 0..p from autocovariances r."""
    fits = [(np.empty(0), float(r[0]))]
    a = np.empty(0)
    v = float(r[0])
    for k in range(1, p + 1):
        if v <= 0:
            break
        refl = (r[k] - float(a @ r[k - 1 : 0 : -1])) / v if k > 1 else r[1] / v
        refl = float(np.clip(refl, -0.9999, 0.9999))
        a = np.concatenate((a - refl * a[::-1], [refl]))
        v *= 1.0 - refl * refl
        fits.append((a.copy(), v))
    return fits


def _upper_pair(c: float, rho: float) -> float:
    """P(X > c and Y > c) for standard bivariate normal X, Y with correlation ``rho``:
    the integral over x > c of phi(x)·P(Y > c | x), on a fine grid."""
    x = np.linspace(c, c + 8.0, 401)
    arg = (c - rho * x) / math.sqrt(2.0 * (1.0 - rho**2))
    cond = 0.5 * np.array([math.erfc(v) for v in arg.tolist()])  # Python floats: faster
    f = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) * cond
    return float(np.sum(0.5 * (f[1:] + f[:-1])) * (x[1] - x[0]))


def pair_limit(rho: float, L: float) -> float:
    """The limit c that two successive values of a unit Gaussian series with lag-1
    correlation ``rho`` both exceed (on one side) as rarely as one value exceeds ``L``.

    Two points in a row beyond c is a far lower bar for a short spike than one point
    beyond L, for the same false-alert rate; the more correlated the series, the closer
    c comes to L (successive values exceed together).

    >>> round(pair_limit(0.0, 5.0), 2), round(pair_limit(0.7, 5.0), 2)
    (3.27, 4.4)
    """
    target = 0.5 * math.erfc(L / math.sqrt(2.0))
    r = min(max(float(rho), 0.0), 0.999)
    lo, hi = 0.0, float(L)
    for _ in range(32):  # bisection: the probability falls as c rises
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _upper_pair(mid, r) > target else (lo, mid)
    return hi


@dataclass(frozen=True)
class ARFit:
    """An AR(p) model of a baseline: mean, coefficients and innovation sigma.

    >>> f = ARFit(mean=0.0, phi=(0.7,), sigma_e=1.0)
    >>> round(f.marginal_sigma, 4), round(f.long_run_sigma, 4)   # 1/sqrt(1-.49), 1/(1-.7)
    (1.4003, 3.3333)
    """

    mean: float
    phi: tuple[float, ...]
    sigma_e: float

    @property
    def order(self) -> int:
        return len(self.phi)

    @property
    def long_run_sigma(self) -> float:
        """sqrt of 2π·f(0): sigma_e / |1 - sum(phi)|; sd of the mean of n points ≈ this / √n."""
        return self.sigma_e / max(1.0 - sum(self.phi), 1.0 - _MAX_PHI_SUM)

    @property
    def rho1(self) -> float:
        """Lag-1 autocorrelation of the series.

        >>> round(ARFit(0.0, (0.7,), 1.0).rho1, 6)
        0.7
        """
        psi = ar_impulse_response(self.phi)
        return float(psi[:-1] @ psi[1:] / (psi @ psi)) if psi.size > 1 else 0.0

    @property
    def marginal_sigma(self) -> float:
        """Standard deviation of one value."""
        return self.filter_sd(np.ones(1))

    def filter_sd(self, weights: np.ndarray) -> float:
        """Standard deviation of ``sum_k weights[k] * x_{t-k}`` under the model.

        >>> f = ARFit(0.0, (), 2.0)
        >>> f.filter_sd(np.full(4, 0.25))   # mean of 4 white values: 2 / sqrt(4)
        1.0
        """
        w = np.asarray(weights, dtype=np.float64)
        psi = ar_impulse_response(self.phi)
        if psi.size == 1:
            return self.sigma_e * float(np.sqrt(w @ w))
        m = w.size + psi.size - 1
        nfft = 1 << (m - 1).bit_length()
        g = np.fft.irfft(np.fft.rfft(w, nfft) * np.fft.rfft(psi, nfft), nfft)[:m]
        return self.sigma_e * float(np.sqrt(g @ g))

    def ewma_sd(self, lam: float) -> float:
        """Steady-state standard deviation of an EWMA with weight ``lam`` of the series.

        >>> round(ARFit(0.0, (), 1.0).ewma_sd(0.2), 6) == round(math.sqrt(0.2 / 1.8), 6)
        True
        """
        a = 1.0 - lam
        if a <= 0.0:
            return self.marginal_sigma
        n = int(math.ceil(math.log(1e-12) / math.log(a))) + 1
        return self.filter_sd(lam * a ** np.arange(n, dtype=np.float64))

    def residuals(self, y: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """One-step prediction errors of deviations ``y`` (mean already removed);
        ``history`` holds the deviations just before ``y`` (oldest first, missing = 0).

        >>> ARFit(0.0, (0.5,), 1.0).residuals(np.array([2.0, 1.0, 3.0]), np.array([4.0])).tolist()
        [0.0, 0.0, 2.5]
        """
        p = self.order
        if p == 0:
            return np.asarray(y, dtype=np.float64).copy()
        h = np.zeros(p) if history is None else np.asarray(history, dtype=np.float64)[-p:]
        if h.size < p:
            h = np.concatenate((np.zeros(p - h.size), h))
        yy = np.concatenate((h, y))
        pred = self.phi[0] * yy[p - 1 : p - 1 + y.size]  # the sum in the same order as ever
        for i, ph in enumerate(self.phi[1:], start=2):
            pred += ph * yy[p - i : p - i + y.size]
        return y - pred


def fit_ar(data: np.ndarray, max_order: int = 5, segments: np.ndarray | None = None) -> ARFit:
    """Fit an AR(p), p <= ``max_order`` by AIC, to finite ``data`` by Yule-Walker.

    ``segments`` (one label per value, e.g. the layer) removes each segment's own
    mean first, so level shifts between layers do not pass for autocorrelation.

    >>> rng = np.random.default_rng(0)
    >>> x = ar_filter(rng.normal(size=20_000), (0.7,))
    >>> f = fit_ar(x)
    >>> f.order, round(f.phi[0], 2), round(f.sigma_e, 2)
    (1, 0.7, 1.0)
    """
    x = np.asarray(data, dtype=np.float64).ravel()
    if segments is not None:
        seg = np.asarray(segments).ravel()
        if seg.shape != x.shape:
            raise ValueError(f"segments has {seg.size} labels but data has {x.size} values")
        ok = np.isfinite(x)
        x, seg = x[ok], seg[ok]
        mean = float(np.mean(x)) if x.size else float("nan")
        _, inv = np.unique(seg, return_inverse=True)
        means = np.bincount(inv, weights=x) / np.maximum(np.bincount(inv), 1)
        y = x - means[inv]
    else:
        x = x[np.isfinite(x)]
        mean = float(np.mean(x)) if x.size else float("nan")
        y = x - mean
    n = y.size
    if n < 3:
        raise ValueError(f"fit_ar needs at least 3 finite values, got {n}")
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 0:
        raise ValueError(f"max_order must be an int >= 0, got {max_order!r}")
    p_max = min(max_order, n // 10)
    r = np.array([float(y[: n - k] @ y[k:]) / n for k in range(p_max + 1)])
    if r[0] <= 0:
        return ARFit(mean, (), 0.0)
    fits = _levinson(r, p_max)
    aic = [n * math.log(max(v, 1e-300)) + 2 * len(a) for a, v in fits]
    a, v = fits[int(np.argmin(aic))]
    return ARFit(mean, tuple(float(c) for c in a), math.sqrt(max(v, 0.0)))
