"""Streaming control charts: I-MR, X̄-R, X̄-S, EWMA and CUSUM.

Every chart learns its baseline from the first ``baseline_points`` finite
values it sees (or from :meth:`ControlChart.from_dict`), then keeps the limits
fixed until :meth:`ControlChart.recompute_limits` is called. ``update`` takes a
whole batch as a numpy array; NaN/inf values are skipped and counted. State
needed across batches (last value, partial subgroup, EWMA/CUSUM level, run-rule
history) is kept, so splitting a series into batches never changes the result.

Autocorrelated signals: ``sigma_method="ar"`` fits an AR(p) model to the
baseline (:mod:`am_qadf.monitoring.autocorrelation`) and sets every chart's
sigma to the exact standard deviation of *its* statistic under that model
(individual value, subgroup mean, EWMA, long-run sigma for the CUSUM) instead
of the moving range, which underestimates it. ``recenter_points=m`` with a
``segment`` label per value (the layer) charts each segment against its own
level, learned from its first ``m`` values, so level shifts between layers are
not taken for defects; the level's estimation error is added to the EWMA's
variance. ``residual_L`` and ``variance_L`` add more statistics: the
model's one-step prediction errors beyond ``residual_L`` sds of one value, or
two values in a row far from both the (segment's) level and a local mean, as
rarely as one value beyond ``residual_L`` sds (``residual``: spikes, abrupt
steps; see :func:`~am_qadf.monitoring.autocorrelation.pair_limit`), and an EWMA
of squared successive differences of the prediction errors
(``residual_variance``: variance increases).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import insort
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from am_qadf.monitoring.autocorrelation import ARFit, fit_ar, pair_limit
from am_qadf.monitoring.chart_constants import c4, d2, d3
from am_qadf.monitoring.resume_state import Resumable
from am_qadf.monitoring.rules import NelsonRules, Violation

__all__ = [
    "CHART_KINDS",
    "SIGMA_METHODS",
    "CUSUMChart",
    "ChartUpdate",
    "ControlChart",
    "EWMAChart",
    "IMRChart",
    "ViolationArrays",
    "XbarRChart",
    "XbarSChart",
    "make_chart",
    "process_capability",
]


@dataclass
class ViolationArrays:
    """Violations of one statistic in one update, as parallel arrays."""

    statistic: str
    index: np.ndarray
    rule: np.ndarray
    value: np.ndarray
    #: How far out each point is, in units of its limit's distance from the center
    #: (>= 1 beyond the limit); None when the rule has no such measure.
    score: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass
class ChartUpdate:
    """What one :meth:`ControlChart.update` call produced.

    ``index``/``statistic`` are the plotted points of the monitoring phase
    (values absorbed into the baseline are not plotted); ``groups`` holds the
    violations per statistic.
    """

    index: np.ndarray
    statistic: np.ndarray
    n_valid: int = 0
    n_invalid: int = 0
    n_baseline: int = 0
    groups: list[ViolationArrays] = field(default_factory=list)

    @property
    def n_violations(self) -> int:
        return sum(len(g) for g in self.groups)

    def violations(self, signal: str | None = None) -> list[Violation]:
        """Violations as objects, ordered by point index."""
        out = [
            Violation(
                rule=int(r), statistic=g.statistic, index=int(i), value=float(v), signal=signal
            )
            for g in self.groups
            for i, r, v in zip(g.index.tolist(), g.rule.tolist(), g.value.tolist(), strict=True)
        ]
        out.sort(key=lambda v: (v.index, v.rule))
        return out


def _empty_update(n_valid: int, n_invalid: int, n_baseline: int) -> ChartUpdate:
    e = np.empty(0)
    return ChartUpdate(np.empty(0, np.int64), e, n_valid, n_invalid, n_baseline)


def _merge(parts: list[ChartUpdate]) -> ChartUpdate:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return _empty_update(0, 0, 0)
    return ChartUpdate(
        np.concatenate([p.index for p in parts]),
        np.concatenate([p.statistic for p in parts]),
        groups=[g for p in parts for g in p.groups],
    )


_VARIANCE_CLIP = 3.0
_LEVEL_L = 3.0
_RESIDUAL_MARGIN = 3.0
_NO_POINTS = np.empty(0, np.int64)
# The ufuncs' reductions, called directly: ndarray.any()/.max() go through Python-level
# helpers, a cost that counts on every chart update.
_ANY, _MAX, _MIN = np.logical_or.reduce, np.maximum.reduce, np.minimum.reduce
_OUT_BLOCKS = 3  # out-of-control blocks in a row after which they count for the level
_BLOCK_FACTOR = 2  # refinement blocks are this many learning windows long
_SIDE_STATISTICS = ("residual", "residual_variance", "moving_range", "range", "stdev")
# Scan-vector start transients lift a value and, less, the next: two extreme values in a
# row are likelier than a Gaussian series with the bulk's lag-1 correlation says. The
# pair limit assumes at least this much dependence between neighbours in the tail.
_PAIR_RHO_MIN = 0.5
_DEV_LAM = 0.01  # weight of the local mean that spikes are measured from
_DEV_FADED = 3000  # points after which (1 - _DEV_LAM)^t is below 1e-13
_MIN_WINDOWS = 8  # segments seen before the between-segment variance is trusted
_WINDOWS_KEPT = 50


def _sorted_median(a: list[float]) -> float:
    n = len(a)
    return a[n // 2] if n % 2 else 0.5 * (a[n // 2 - 1] + a[n // 2])


def _weight(between2: float | None, noise2: float) -> float:
    """Weight of a segment's own estimate: between / (between + noise); 1 if unknown."""
    if between2 is None or between2 + noise2 <= 0:
        return 1.0
    return between2 / (between2 + noise2)


def _random_effect(
    history: list[float], noise2: float, fallback: float
) -> tuple[float, float | None]:
    """(typical value, between-segment variance) under a one-way random-effects model:
    each segment's true value varies around the typical one with variance ``between``;
    each window estimate adds noise of variance ``noise2``. The typical value is the
    median and the spread the variance without the window farthest from it, so one
    window spoilt by a defect does not count (a MAD would, with few windows, take two
    close layers for no spread at all). Unknown (None) before ``_MIN_WINDOWS``."""
    if len(history) < _MIN_WINDOWS:
        return (float(np.median(history)) if history else fallback), None
    h = np.asarray(history)
    ref = float(np.median(h))
    kept = np.delete(h, int(np.argmax(np.abs(h - ref))))
    # Upper 90 % confidence bound of the spread (chi-square, Wilson-Hilferty): with few
    # segments an underestimate would pull a shifted layer's level toward the others and
    # hold its chart out of control; an overestimate only costs a little precision.
    nu = kept.size - 1
    c = 1.0 - 2.0 / (9.0 * nu) - 1.2816 * math.sqrt(2.0 / (9.0 * nu))
    upper = float(np.var(kept, ddof=1)) * nu / (nu * max(c, 0.05) ** 3)
    return ref, max(upper - noise2, 0.0)


def _terms_sd(q: np.ndarray) -> float:
    """sd of the variance terms, times sqrt(1 + 2·rho1): neighbouring terms share a residual
    (rho1 = 1/4 for Gaussian residuals), and an EWMA of them varies that much more."""
    if q.size < 3:
        return 1.5
    c = q - q.mean()
    v = float(c @ c) / q.size
    if v <= 0:
        return 1.5
    rho1 = float(np.clip((c[1:] @ c[:-1]) / q.size / v, 0.0, 0.9))
    return math.sqrt(v * (1.0 + 2.0 * rho1))


def _variance_terms(r: np.ndarray, prev: float = math.nan) -> np.ndarray:
    """Half squared successive differences of standardised residuals (``prev`` is the one
    before ``r``), capped at 3². Successive differences (von Neumann's MSSD) make the
    variance statistic blind to a shift of the mean, which the EWMA answers for; the
    cap leaves single spikes to the residual statistic. Mean 1 for white residuals.
    A missing predecessor gives the mean, 1."""
    if r.size == 0:
        return np.empty(0)
    d = np.empty(r.size)
    d[0] = r[0] - prev
    np.subtract(r[1:], r[:-1], out=d[1:])
    t = np.minimum(0.5 * d * d, _VARIANCE_CLIP * _VARIANCE_CLIP)
    if not math.isfinite(t[0]):
        t[0] = 1.0
    return t


SIGMA_METHODS: tuple[str, ...] = ("moving_range", "ar")
"""How a chart estimates sigma from its baseline: the classic within estimate
(moving range, or R̄/S̄ for subgrouped charts), valid for independent values, or
an AR(p) model of the baseline, valid for autocorrelated ones."""


def _ewma_recursion(
    dev: np.ndarray, z0: float, lam: float, cache: dict[float, tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """z_t = λ·dev_t + (1-λ)·z_{t-1} from z0, vectorised block by block (closed form per
    block; blocks short enough that (1-λ)^-B stays well inside float range)."""
    pw = cache.get(lam)  # keyed by λ: one chart runs EWMAs of several weights
    if pw is None:
        a = 1.0 - lam
        if a <= 0.0:
            return dev.astype(np.float64, copy=True)
        block = max(1, min(4096, int(150.0 / -math.log10(a)) if a < 1 else 4096))
        k = np.arange(1, block + 1, dtype=np.float64)
        pw = cache[lam] = (a**k, a**-k)
    down, up = pw
    block = down.size
    n = dev.size
    if n <= block:  # the usual case: one block, no copy into ``out``
        return down[:n] * (z0 + lam * (dev * up[:n]).cumsum())
    out = np.empty(dev.size)
    z = z0
    for s in range(0, dev.size, block):
        d = dev[s : s + block]
        m = d.size
        seg = down[:m] * (z + lam * (d * up[:m]).cumsum())
        out[s : s + m] = seg
        z = float(seg[-1])
    return out


def _ewma_last(
    dev: np.ndarray, z0: float, lam: float, cache: dict[float, tuple[np.ndarray, np.ndarray]]
) -> float:
    """The last value of :func:`_ewma_recursion` alone: one dot product with the powers of
    (1-λ) it caches (the whole recursion where a run is longer than they are).

    >>> x = np.arange(5.0)
    >>> cache = {}
    >>> bool(_ewma_last(x, 1.0, 0.1, cache) == _ewma_recursion(x, 1.0, 0.1, cache)[-1])
    True
    """
    pw = cache.get(lam)
    n = dev.size
    if n == 0:
        return z0
    if pw is None or n - 1 > pw[0].size:
        return float(_ewma_recursion(dev, z0, lam, cache)[-1])
    down = pw[0]  # (1-λ)^k, k = 1, 2, ...
    tail = float(dev[:-1] @ down[n - 2 :: -1]) if n > 1 else 0.0
    return float(down[n - 1] * z0 + lam * (tail + float(dev[-1])))


def process_capability(
    mean: float, sigma: float, lsl: float | None = None, usl: float | None = None
) -> dict[str, float | None]:
    """Cp, Cpk (and the one-sided Cpu/Cpl) for a process with ``mean`` and ``sigma``.

    Cp needs both spec limits; Cpk uses whichever are given.

    >>> process_capability(10.0, 1.0, lsl=4.0, usl=19.0)
    {'cp': 2.5, 'cpk': 2.0, 'cpu': 3.0, 'cpl': 2.0}
    """
    if lsl is not None and usl is not None and usl <= lsl:
        raise ValueError(f"usl must be greater than lsl, got lsl={lsl}, usl={usl}")
    out: dict[str, float | None] = {"cp": None, "cpk": None, "cpu": None, "cpl": None}
    if not (np.isfinite(mean) and np.isfinite(sigma)) or sigma <= 0:
        return out
    if usl is not None:
        out["cpu"] = (usl - mean) / (3.0 * sigma)
    if lsl is not None:
        out["cpl"] = (mean - lsl) / (3.0 * sigma)
    if usl is not None and lsl is not None:
        out["cp"] = (usl - lsl) / (6.0 * sigma)
    sides = [v for v in (out["cpu"], out["cpl"]) if v is not None]
    out["cpk"] = min(sides) if sides else None
    return out


class _Recent(Resumable):
    """The last ``n`` finite values seen, for :meth:`ControlChart.recompute_limits`.

    Batches are kept as they come and joined only when read (rarely): each update
    costs a copy of its own values, not of all ``n``.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._parts: list[np.ndarray] = []
        self._size = 0

    def push(self, x: np.ndarray) -> None:
        if x.size >= self.n:
            self._parts, self._size = [x[-self.n :].copy()], self.n
        elif x.size:
            self._parts.append(x.copy())
            self._size += x.size
            while self._size - self._parts[0].size >= self.n:
                self._size -= self._parts.pop(0).size

    @property
    def data(self) -> np.ndarray:
        if not self._parts:
            return np.empty(0)
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)[-self.n :]]
            self._size = self._parts[0].size
        return self._parts[0]


def _positive_int(name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def _positive_float(name: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {v!r}")
    return f


class ControlChart(Resumable, ABC):
    """Base class: baseline collection, fixed limits, batch updates, (de)serialisation.

    Options shared by every chart (see the module docstring): ``sigma_method``
    (``"moving_range"`` or ``"ar"``), ``max_ar_order``, ``recenter_points``,
    ``residual_L``, ``variance_L`` and ``variance_lam``. :meth:`to_dict` keeps the
    settings and baseline; ``export_state``/:meth:`import_state` the whole running
    state (levels, EWMA and CUSUM values, counts, model and rule history, segment
    levels and their estimates), so a chart continues elsewhere as if never moved.
    """

    kind: ClassVar[str]
    statistic: ClassVar[str]
    _registry: ClassVar[dict[str, type[ControlChart]]] = {}
    # caches and per-update output; the model follows from the baseline
    STATE_SKIP = frozenset({"_pw_cache", "_steady_key", "_steady_w", "model", "last_lower"})

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:
            ControlChart._registry[cls.kind] = cls

    def __init__(
        self,
        baseline_points: int = 100,
        *,
        L: float = 3.0,
        name: str = "",
        sigma_method: str = "moving_range",
        max_ar_order: int = 5,
        recenter_points: int | None = None,
        residual_L: float | None = None,
        variance_L: float | None = None,
        variance_lam: float = 0.01,
    ) -> None:
        self.baseline_points = _positive_int("baseline_points", baseline_points, 2)
        self.L = _positive_float("L", L)
        self.name = str(name)
        if sigma_method not in SIGMA_METHODS:
            raise ValueError(f"sigma_method must be one of {SIGMA_METHODS}, got {sigma_method!r}")
        self.sigma_method = sigma_method
        self.max_ar_order = _positive_int("max_ar_order", max_ar_order, 0)
        self.recenter_points = (
            None if recenter_points is None else _positive_int("recenter_points", recenter_points)
        )
        self.residual_L = None if residual_L is None else _positive_float("residual_L", residual_L)
        self.variance_L = None if variance_L is None else _positive_float("variance_L", variance_L)
        self.variance_lam = _positive_float("variance_lam", variance_lam)
        if self.variance_lam > 1.0:
            raise ValueError(f"variance_lam must be in (0, 1], got {variance_lam}")
        self.baseline: dict[str, float] | None = None
        self.model: ARFit | None = None
        self._buf: list[np.ndarray] = []
        self._buf_seg: list[np.ndarray] = []
        self._nb = 0
        self._recent = _Recent(self.baseline_points)
        self._pw_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._seg_label: Any = None
        self._learning = True
        self._seg_level: float | None = None
        self._seg_scale = 1.0
        self._blk_means: list[float] = []  # block means of the current segment
        self._blk_logscales: list[float] = []
        self._blk_buf: list[np.ndarray] = []
        self._blk_n, self._blk_ss, self._blk_ssn = 0, 0.0, 0
        self._blk_out, self._out_run = False, 0
        self._run_ss, self._run_n = 0.0, 0  # residual sum of squares of the last stretch
        self._scale_ref, self._scale_b2 = 0.0, None
        #: sd of log(segment noise scale) estimate (0 without recentering)
        self.scale_sd = 0.0
        self._win_means: list[float] = []  # learning-window means of recent segments
        self._win_logscales: list[float] = []
        self._level_ref: float = 0.0
        self._level_b2: float | None = None
        #: sd of the current segment's level estimate (0 without recentering)
        self.level_sd = 0.0
        self._seg_buf: list[np.ndarray] = []
        self._seg_n = 0
        self._seg_fresh = False
        self._res_hist = np.empty(0)
        self._res_last = math.nan
        self._dev_last, self._dev_m, self._dev_t = math.nan, 0.0, 0
        self._y_last = math.nan
        self._pair_c, self._dev_sd = math.inf, 1.0
        self._var_z = 1.0
        self.n_seen = 0
        self.n_invalid = 0
        self.n_learning = 0

    # -- public state -------------------------------------------------------------
    @property
    def is_ready(self) -> bool:
        """True once the baseline is established and points are being monitored."""
        return self.baseline is not None

    @property
    def baseline_progress(self) -> float:
        return 1.0 if self.is_ready else self._nb / self._baseline_needed()

    @property
    def center(self) -> float | None:
        return self.limits()["center"]

    @property
    def ucl(self) -> float | None:
        return self.limits()["ucl"]

    @property
    def lcl(self) -> float | None:
        return self.limits()["lcl"]

    @property
    def sigma(self) -> float | None:
        """The sigma the limits are built on (for ``"ar"``: that of the chart's statistic
        expressed per value; ``baseline["sigma_marginal"]`` is the sd of one value)."""
        return None if self.baseline is None else self.baseline["sigma"]

    @property
    def segment_level(self) -> float | None:
        """Level of the current segment (``recenter_points``): while it is learned, the
        typical segment's once known, else None."""
        return self._seg_level

    @property
    def segment_scale(self) -> float:
        """Noise of the current segment relative to the baseline (1.0 without recentering)."""
        return self._seg_scale

    @abstractmethod
    def limits(self) -> dict[str, float | None]:
        """Center line and limits of the main plotted statistic (None before the baseline)."""

    def capability(self, lsl: float | None = None, usl: float | None = None) -> dict[str, Any]:
        """Cp/Cpk from the baseline mean and the sd of one value (all None before it)."""
        if self.baseline is None:
            return process_capability(float("nan"), float("nan"), lsl, usl)
        b = self.baseline
        return process_capability(b["mean"], b.get("sigma_marginal", b["sigma"]), lsl, usl)

    # -- updates --------------------------------------------------------------------
    def update(self, values: Any, index: Any = None, segment: Any = None) -> ChartUpdate:
        """Add a batch of values; return plotted points and violations.

        ``index`` gives each value's global point index (default: a running count);
        ``segment`` one label per value (e.g. the layer) for ``recenter_points``.

        >>> ch = IMRChart(baseline_points=4)
        >>> ch.update([10.0, 11.0, 10.0, 11.0]).n_baseline
        4
        >>> [(v.statistic, v.rule) for v in ch.update([10.5, 40.0]).violations()]
        [('individual', 1), ('moving_range', 1)]
        """
        v = np.asarray(values, dtype=np.float64).ravel()
        if index is None:
            idx = np.arange(self.n_seen, self.n_seen + v.shape[0], dtype=np.int64)
        else:
            idx = np.asarray(index, dtype=np.int64).ravel()
            if idx.shape != v.shape:
                raise ValueError(
                    f"index has {idx.shape[0]} entries but values has {v.shape[0]}; they must match"
                )
        seg = None
        if segment is not None:
            seg = np.asarray(segment).ravel()
            if seg.shape != v.shape:
                raise ValueError(
                    f"segment has {seg.shape[0]} labels but values has {v.shape[0]}; "
                    "they must match"
                )
        if v.shape[0]:
            self.n_seen = max(self.n_seen + v.shape[0], int(idx[-1]) + 1)
        ok = np.isfinite(v)
        n_valid = int(np.count_nonzero(ok))
        n_invalid = v.shape[0] - n_valid
        self.n_invalid += n_invalid
        if n_invalid:
            v, idx = v[ok], idx[ok]
            seg = None if seg is None else seg[ok]
        self._recent.push(v)
        n_base = 0
        if self.baseline is None:
            need = self._baseline_needed() - self._nb
            take = v[:need]
            if take.size:
                self._buf.append(take)
                if seg is not None:
                    self._buf_seg.append(seg[:need])
                self._nb += take.size
                n_base = int(take.size)
            v, idx = v[need:], idx[need:]
            seg = None if seg is None else seg[need:]
            if self._nb >= self._baseline_needed():
                data = np.concatenate(self._buf)
                whole = len(self._buf_seg) == len(self._buf)
                segs = np.concatenate(self._buf_seg) if whole else None
                self._buf, self._buf_seg, self._nb = [], [], 0
                self._set_baseline(self._estimate_all(data, segs))
                self._after_baseline(data)
        if self.baseline is None or v.size == 0:
            return _empty_update(n_valid, n_invalid, n_base)
        if self.recenter_points is not None and seg is not None:
            parts = []
            for x, i, fresh, learning in self._recenter(v, idx, seg):
                if fresh:
                    self.reset_state()
                # Blocks close at exact counts and the level may change there, so the run is
                # charted piece by piece: batching never changes the result.
                pos = 0
                while pos < x.size:
                    assert self._seg_level is not None and self.recenter_points is not None
                    take = x.size - pos if learning else self._block_points() - self._blk_n
                    xs, js = x[pos : pos + take], i[pos : pos + take]
                    y = xs - self._seg_level  # (xs - level) / scale + mean, in place
                    y /= self._seg_scale
                    y += self.baseline["mean"]
                    upd = self._monitor_all(y, js)
                    if not learning:
                        out = any(g.statistic not in _SIDE_STATISTICS for g in upd.groups)
                        self._add_to_block(xs, out)
                    parts.append(upd)
                    pos += xs.size
            upd = _merge(parts)
        else:
            upd = self._monitor_all(v, idx)
        upd.n_valid, upd.n_invalid, upd.n_baseline = n_valid, n_invalid, n_base
        return upd

    def _learned(self, learn: np.ndarray) -> None:
        """A segment's learning window is complete: estimate how much levels (and noise
        scales) vary between segments from the earlier windows, then set this segment's
        level and scale by shrinking its own estimates toward the typical one."""
        b = self.baseline
        assert b is not None and self.recenter_points is not None
        m = float(learn.size)
        mean = float(np.mean(learn))
        scale = self._segment_scale(learn - mean)
        lr2 = b["sigma_long_run"] ** 2
        self._level_ref, self._level_b2 = _random_effect(self._win_means, lr2 / m, b["mean"])
        self._scale_ref, self._scale_b2 = _random_effect(self._win_logscales, 0.5 / m, 0.0)
        self._win_means.append(mean)
        self._win_logscales.append(math.log(scale))
        del self._win_means[:-_WINDOWS_KEPT], self._win_logscales[:-_WINDOWS_KEPT]
        # kept sorted: the median is then the middle item, no numpy call per block
        self._blk_means, self._blk_logscales = [mean], [math.log(scale)]
        self._blk_buf, self._blk_n, self._blk_ss, self._blk_ssn = [], 0, 0.0, 0
        self._blk_out, self._out_run = False, 0
        self._set_level()

    def _block_points(self) -> int:
        assert self.recenter_points is not None
        return _BLOCK_FACTOR * self.recenter_points

    def _add_to_block(self, x: np.ndarray, out: bool) -> None:
        """Collect monitored values (and their residuals' sum of squares) into blocks of
        2 x ``recenter_points``; each full block adds its mean and noise scale to the
        segment's estimates, unless the chart was out of control in it (``out``): a
        defect must not move the level it is measured from. Only when that lasts for
        ``_OUT_BLOCKS`` blocks in a row is it taken as the segment's new normal."""
        assert self.baseline is not None and self.recenter_points is not None
        self._blk_buf.append(x)
        self._blk_n += x.size
        self._blk_ss += self._run_ss * self._seg_scale**2
        self._blk_ssn += self._run_n
        self._blk_out = self._blk_out or out
        if self._blk_n < self._block_points():
            return
        self._out_run = self._out_run + 1 if self._blk_out else 0
        self._blk_out = False
        if 0 < self._out_run < _OUT_BLOCKS:
            self._blk_buf, self._blk_n, self._blk_ss, self._blk_ssn = [], 0, 0.0, 0
            return
        blk = np.concatenate(self._blk_buf)
        # np.mean's own sum and division, without its Python-level argument handling
        insort(self._blk_means, float(np.add.reduce(blk) / blk.size))
        if self._blk_ssn > 1 and self.baseline["sigma_e"] > 0:
            rms = math.sqrt(self._blk_ss / self._blk_ssn) / self.baseline["sigma_e"]
            insort(self._blk_logscales, math.log(min(max(rms, 0.5), 2.0)))
        self._blk_buf, self._blk_n, self._blk_ss, self._blk_ssn = [], 0, 0.0, 0
        self._set_level()

    def _set_level(self) -> None:
        """Segment level and scale: the median over the segment's blocks so far (one block
        spoilt by a defect, even the learning window, does not move it), shrunk toward
        the typical segment by between / (between + within) variance."""
        b = self.baseline
        assert b is not None and self.recenter_points is not None
        k = len(self._blk_means)
        # variance of a median of k block means: about pi/2 that of their mean
        eff = self.recenter_points * k / (math.pi / 2 if k >= 3 else 1.0)
        noise2 = b["sigma_long_run"] ** 2 / eff
        w = _weight(self._level_b2, noise2)
        own = _sorted_median(self._blk_means)
        old = self._seg_level
        self._seg_level = self._level_ref + w * (own - self._level_ref)
        if old is not None and not self._learning:
            # the refined level re-expresses what was charted against the old one
            self._shift_state((old - self._seg_level) / self._seg_scale)
        self.level_sd = math.sqrt(w * noise2)
        ks = max(len(self._blk_logscales), 1)
        effs = self.recenter_points * ks / (math.pi / 2 if ks >= 3 else 1.0)
        ws = _weight(self._scale_b2, 0.5 / effs)
        own_s = _sorted_median(self._blk_logscales) if self._blk_logscales else 0.0
        self._seg_scale = math.exp(self._scale_ref + ws * (own_s - self._scale_ref))
        self.scale_sd = math.sqrt(ws * 0.5 / effs)

    def _recenter(
        self, v: np.ndarray, idx: np.ndarray, seg: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray, bool, bool]]:
        """Runs of one segment (raw values, index, whether a new segment begins, whether
        the values are its learning window). A new segment's level is learned from its
        first ``recenter_points`` values; meanwhile they are watched against the typical
        segment (limits widened by the between-segment spread) once that is known, and
        not watched before. The level is then refined by the values that follow."""
        assert self.baseline is not None and self.recenter_points is not None
        if seg.dtype.kind in "iu" and seg.size and _MIN(seg) == _MAX(seg):
            cuts = []  # the usual batch: one segment (two reductions, no index array)
        else:
            cuts = ((seg[1:] != seg[:-1]).nonzero()[0] + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, seg.size], strict=True):
            label = seg[a].item()
            x, i = v[a:b], idx[a:b]
            if label != self._seg_label:
                self._seg_label, self._learning = label, True
                self._seg_buf, self._seg_n, self._seg_fresh = [], 0, True
            if self._learning:
                need = self.recenter_points - self._seg_n
                lx, li = x[:need], i[:need]
                self._seg_buf.append(lx)
                self._seg_n += lx.size
                self.n_learning += lx.size
                x, i = x[need:], i[need:]
                if self._level_b2 is not None and lx.size:
                    self._typical_level()
                    yield lx, li, self._seg_fresh, True
                    self._seg_fresh = False
                if self._seg_n < self.recenter_points:
                    continue
                learn = np.concatenate(self._seg_buf)
                self._seg_buf, self._learning = [], False
                self._learned(learn)
                # the statistics restart on the segment's own level
                self._seg_fresh = True
            if x.size:
                yield x, i, self._seg_fresh, False
                self._seg_fresh = False

    def _shift_state(self, d: float) -> None:
        """The charted deviations move by ``d`` (a refined level): carry the state along."""
        self._res_hist = self._res_hist + d
        self._y_last += d
        self._dev_m += d  # the deviations from the local mean do not move

    def _typical_level(self) -> None:
        """Level and scale of the typical segment, with their spread as the error."""
        b = self.baseline
        assert b is not None and self.recenter_points is not None
        m = self.recenter_points * max(len(self._win_means), 1)
        self._seg_level = self._level_ref
        self.level_sd = math.sqrt((self._level_b2 or 0.0) + b["sigma_long_run"] ** 2 / m)
        self._seg_scale = math.exp(self._scale_ref)
        self.scale_sd = math.sqrt((self._scale_b2 or 0.0) + 0.5 / m)

    def _segment_scale(self, y: np.ndarray) -> float:
        """Noise of a segment relative to the baseline's: the sd of the model's residuals
        over the learning values (a precise estimate even when the values are strongly
        autocorrelated), kept within [0.5, 2] so a freak window cannot blind the chart."""
        b = self.baseline
        assert b is not None and self.model is not None
        e = self.model.residuals(y)[self.model.order :]
        if e.size < 2 or not b["sigma_e"] > 0:
            return 1.0
        return float(np.clip(np.sqrt(np.mean(e * e)) / b["sigma_e"], 0.5, 2.0))

    def _monitor_all(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate:
        upd = self._monitor(x, idx)
        if self.residual_L is not None or self.variance_L is not None:
            upd.groups.extend(self._residual_groups(x, idx))
        return upd

    def residual_limits(self) -> dict[str, float | None]:
        """Limits of the residual statistics (None where not configured or not ready)."""
        b = self.baseline
        out: dict[str, float | None] = {
            "residual_ucl": None,
            "deviation_ucl": None,
            "variance_ucl": None,
        }
        if b is None:
            return out
        if self.residual_L is not None:
            out["residual_ucl"] = self._residual_ucl(b, self.residual_L)
            out["deviation_ucl"] = float(self._deviation_width(self._dev_t))
        if self.variance_L is not None:
            out["variance_ucl"] = self._variance_ucl(b, self.variance_L)
        return out

    @staticmethod
    def _residual_ucl(b: Mapping[str, float], residual_L: float) -> float:
        # A value may sit L sds of one value from the level. Its prediction error may be as
        # large, or, when the model predicts well (strong autocorrelation: sigma_e a
        # fraction of that sd), no more than the baseline's own 99.9th percentile plus
        # 3 sigma_e: scan-vector start transients live in that percentile.
        sd = b.get("sigma_marginal", b["sigma_e"])
        q = b.get("res_q999", math.inf) + _RESIDUAL_MARGIN
        return min(residual_L * sd, q * b["sigma_e"])

    def _variance_ucl(self, b: Mapping[str, float], variance_L: float) -> float:
        lv = self.variance_lam
        noise = variance_L * b["res_sq_sd"] * math.sqrt(lv / (2.0 - lv))
        # a recentred segment's scale error s (in log) moves the terms' mean by ~2s
        return b["res_sq_mean"] * (1.0 + 2.0 * _LEVEL_L * self.scale_sd) + noise

    def _local_deviations(self, y: np.ndarray) -> np.ndarray:
        """Each deviation's distance from the local mean just before it (an EWMA of weight
        ``_DEV_LAM`` of the deviations, from the level at a segment's start). A spike of a
        few points stands out from it; a sustained shift or a drift, the EWMA's business,
        is soon absorbed, and the segment level's error fades from it."""
        m = _ewma_recursion(y, self._dev_m, _DEV_LAM, self._pw_cache)
        return y - np.concatenate(([self._dev_m], m[:-1]))

    def _deviation_width(self, t0: int, n: int = 0) -> np.ndarray | float:
        """Limit of two successive distances from the local mean (from the ``t0``-th point
        after it started at the level, for ``n`` points; one value if ``n`` is 0): as rare
        as one value beyond ``residual_L`` sds (the model's lag-1 correlation sets how
        far: pair_limit), widened, in quadrature, by what is left of the level's error."""
        assert self.baseline is not None
        sd = self._dev_sd * self.baseline["sigma_e"]
        if self.level_sd <= 0 or t0 > _DEV_FADED:
            return self._pair_c * sd
        t = np.minimum(t0 + np.arange(n), _DEV_FADED) if n else min(t0, _DEV_FADED)
        left = self.level_sd * (1.0 - _DEV_LAM) ** t
        return self._pair_c * np.hypot(sd, left)

    def _pairs(self, y: np.ndarray, wy: float) -> np.ndarray | None:
        """How far beyond their limits the nearer of each value and the one before it lie,
        from the level (deviations ``y``, limit ``wy``) and from the local mean (limit
        :meth:`_deviation_width`), on one side for all four; 0 where not all are beyond,
        None where none is. Carries the local mean and the last values on."""
        n = y.size
        if n == 0:
            return None
        t0, lam = self._dev_t, _DEV_LAM
        self._dev_t += n
        prev_d, prev_y = self._dev_last, self._y_last
        self._y_last = float(y[-1])
        # cheap: the local mean is needed only where a value is this far from the level
        if _MAX(y) <= wy and _MIN(y) >= -wy:
            m_end = _ewma_last(y, self._dev_m, lam, self._pw_cache)
            # the last distance is from the local mean before the last value
            self._dev_last = float(y[-1]) - (m_end - lam * float(y[-1])) / (1.0 - lam)
            self._dev_m = m_end
            return None
        far = np.abs(y) > wy
        d = self._local_deviations(y)
        self._dev_last = float(d[-1])
        self._dev_m = (1.0 - lam) * (float(y[-1]) - self._dev_last) + lam * float(y[-1])
        wd = self._deviation_width(t0, n)
        cur = (np.abs(d) > wd) & far  # the pair's second value
        if not cur.any():
            return None
        j = np.flatnonzero(cur)
        near = np.zeros(n)
        pd = np.concatenate(([prev_d], d))[j]  # the value before each
        py = np.concatenate(([prev_y], y))[j]
        sg = np.sign(d[j])
        wj = wd[j] if np.ndim(wd) else wd
        parts = (sg * d[j] / wj, sg * pd / wj, sg * y[j] / wy, sg * py / wy)
        m = np.minimum(np.minimum(parts[0], parts[1]), np.minimum(parts[2], parts[3]))
        near[j] = np.where(m > 1.0, m, 0.0)  # NaN (no value before) compares False
        return near

    def _residual_groups(self, x: np.ndarray, idx: np.ndarray) -> list[ViolationArrays]:
        b = self.baseline
        assert b is not None and self.model is not None
        y = x - b["mean"]
        e = self.model.residuals(y, self._res_hist)
        self._run_ss, self._run_n = float(e @ e), e.size
        p = self.model.order
        if p:
            # the last p deviations: a view of y, which nothing writes to afterwards
            tail = y[-p:]
            self._res_hist = tail if tail.size == p else np.concatenate((self._res_hist, tail))[-p:]
        groups = []
        if self.residual_L is not None:
            # the limits alone, not residual_limits(): its deviation limit is for display
            w = self._residual_ucl(b, self.residual_L)
            # A short spike shows as a big prediction error at its first point and as values
            # far from the level on every point: a prediction error beyond its limit, or two
            # values in a row beyond the pair limit on one side, finds it. Those two values
            # must be far from the local mean too: a shift or a drift that lasts (the
            # EWMA's business) is soon absorbed by it, and the step back at a defect's end
            # lands near the level. The value reported is the prediction error where that
            # is beyond its limit, else the distance from the level.
            wy = self._pair_c * math.hypot(b.get("sigma_marginal", b["sigma_e"]), self.level_sd)
            near = self._pairs(y, wy)
            ae = np.abs(e)
            if near is None:  # the usual piece: one reduction tells that nothing is out
                bad = (ae > w).nonzero()[0] if _MAX(ae, initial=-math.inf) > w else _NO_POINTS
            else:
                hit = (ae > w) | (near > 1.0)
                bad = hit.nonzero()[0] if _ANY(hit) else _NO_POINTS
            if bad.size:
                eb = ae[bad] > w
                r = np.where(eb, e[bad], y[bad])
                score = np.where(eb, ae[bad] / w, 0.0 if near is None else near[bad])
                groups.append(
                    ViolationArrays("residual", idx[bad], np.ones(bad.size, np.int64), r, score)
                )
        if self.variance_L is not None:
            prev = self._res_last
            r = e / b["sigma_e"]
            sq = _variance_terms(r, prev)
            self._res_last = float(r[-1]) if e.size else prev
            m0 = b["res_sq_mean"]
            sq -= m0
            z = _ewma_recursion(sq, self._var_z - m0, self.variance_lam, self._pw_cache)
            z += m0
            self._var_z = float(z[-1])
            u = self._variance_ucl(b, self.variance_L)
            bad = (z > u).nonzero()[0] if _MAX(z, initial=-math.inf) > u else _NO_POINTS
            if bad.size:
                groups.append(
                    ViolationArrays(
                        "residual_variance",
                        idx[bad],
                        np.ones(bad.size, np.int64),
                        z[bad],
                        (z[bad] - m0) / (u - m0),
                    )
                )
        return groups

    def recompute_limits(self, values: Any = None) -> None:
        """Re-estimate the baseline from ``values`` (default: the last ``baseline_points``
        finite values seen) and restart the run-rule/EWMA/CUSUM state."""
        data = self._recent.data if values is None else np.asarray(values, dtype=np.float64).ravel()
        data = data[np.isfinite(data)]
        if data.size < self._baseline_needed():
            raise ValueError(
                f"recompute_limits needs at least {self._baseline_needed()} finite values, "
                f"got {data.size}"
            )
        self._set_baseline(self._estimate_all(data, None))
        self._after_baseline(data)

    def _estimate_all(self, data: np.ndarray, segs: np.ndarray | None) -> dict[str, float]:
        """The chart's own estimate, then (``"ar"``) the model-based sigma and the
        residual statistics' baseline."""
        est = self._estimate(data)
        if self.sigma_method == "ar":
            fit = fit_ar(data, self.max_ar_order, segs)
        else:
            fit = ARFit(float(np.mean(data)), (), float(est["sigma"]))
        est["sigma_e"] = fit.sigma_e
        est["sigma_marginal"] = fit.marginal_sigma
        est["sigma_long_run"] = fit.long_run_sigma
        for i, ph in enumerate(fit.phi, start=1):
            est[f"phi_{i}"] = ph
        if self.sigma_method == "ar":
            est["sigma"] = self._model_sigma(fit)
        if fit.sigma_e > 0:
            y = data - fit.mean
            if segs is not None:
                _, inv = np.unique(segs, return_inverse=True)
                y = data - (np.bincount(inv, weights=data) / np.bincount(inv))[inv]
            r = fit.residuals(y)[fit.order :] / fit.sigma_e
            est["res_q999"] = float(np.quantile(np.abs(r), 0.999)) if r.size else 3.3
            sq = _variance_terms(r)[1:]
            est["res_sq_mean"] = float(np.mean(sq)) if sq.size else 1.0
            est["res_sq_sd"] = _terms_sd(sq)
        else:
            est["res_sq_mean"], est["res_sq_sd"] = 1.0, 1.5
        return est

    def _model_sigma(self, fit: ARFit) -> float:
        """Sigma for the limits under an AR model (default: the sd of one value)."""
        return fit.marginal_sigma

    def _set_baseline(self, b: Mapping[str, float]) -> None:
        bl = {k: float(v) for k, v in b.items()}
        if not (math.isfinite(bl["sigma"]) and bl["sigma"] > 0):
            # A constant baseline has no spread; a tiny sigma keeps the maths finite.
            bl["sigma"] = max(abs(bl["mean"]) * 1e-12, 1e-12)
        bl.setdefault("sigma_e", bl["sigma"])
        if not (math.isfinite(bl["sigma_e"]) and bl["sigma_e"] > 0):
            bl["sigma_e"] = bl["sigma"]
        bl.setdefault("res_sq_mean", 1.0)
        bl.setdefault("res_sq_sd", math.sqrt(2.0))
        if not bl["res_sq_sd"] > 0:
            bl["res_sq_sd"] = math.sqrt(2.0)
        self.model = _model_of(bl)
        if self.residual_L is not None:
            self._pair_c = pair_limit(max(self.model.rho1, _PAIR_RHO_MIN), self.residual_L)
            # sd of a deviation minus the local mean before it, per unit of sigma_e
            k = np.arange(int(math.log(1e-12) / math.log(1.0 - _DEV_LAM)), dtype=np.float64)
            w = np.concatenate(([1.0], -_DEV_LAM * (1.0 - _DEV_LAM) ** k))
            self._dev_sd = ARFit(0.0, self.model.phi, 1.0).filter_sd(w)
        self.baseline = bl
        self._seg_label, self._seg_level, self._seg_buf, self._seg_n = None, None, [], 0
        self._learning = True
        self._seg_scale, self.level_sd = 1.0, 0.0
        self.scale_sd, self._run_ss, self._run_n = 0.0, 0.0, 0
        self._win_means, self._win_logscales = [], []
        self._level_ref, self._level_b2 = bl["mean"], None
        self.reset_state()

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Continue from ``export_state()`` of a chart made with the same settings
        (``ValueError`` naming what does not fit, the chart unchanged).

        >>> x = np.random.default_rng(1).normal(10.0, 1.0, 400)
        >>> a, b = EWMAChart(baseline_points=100, lam=0.1), EWMAChart(baseline_points=100, lam=0.1)
        >>> _ = a.update(x[:250]); b.import_state(a.export_state())
        >>> bool((b.update(x[250:]).statistic == a.update(x[250:]).statistic).all())
        True
        """
        super().import_state(state)
        self.model = None if self.baseline is None else _model_of(self.baseline)

    def _after_baseline(self, data: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Hook: carry the end of the baseline into the monitoring state."""

    def _baseline_needed(self) -> int:
        return self.baseline_points

    def reset_state(self) -> None:
        """Restart the monitoring state (run rules, EWMA/CUSUM level, residual history);
        keep the baseline. Called at every new segment when recentering."""
        self._res_hist = np.empty(0)
        self._res_last = math.nan
        self._dev_last, self._dev_m, self._dev_t = math.nan, 0.0, 0
        self._y_last = math.nan
        self._var_z = self.baseline["res_sq_mean"] if self.baseline else 1.0

    @abstractmethod
    def _estimate(self, data: np.ndarray) -> dict[str, float]: ...

    @abstractmethod
    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate: ...

    # -- serialisation -------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {
            "baseline_points": self.baseline_points,
            "L": self.L,
            "name": self.name,
            "sigma_method": self.sigma_method,
            "max_ar_order": self.max_ar_order,
            "recenter_points": self.recenter_points,
            "residual_L": self.residual_L,
            "variance_L": self.variance_L,
            "variance_lam": self.variance_lam,
        }

    def to_dict(self) -> dict[str, Any]:
        """Parameters and baseline (not the running state), JSON-friendly.

        >>> ch = IMRChart(baseline_points=3); _ = ch.update([1.0, 2.0, 3.0])
        >>> IMRChart.from_dict(ch.to_dict()).center
        2.0
        """
        return {
            "kind": self.kind,
            "params": self.params(),
            "baseline": dict(self.baseline or {}) or None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControlChart:
        """Rebuild a chart (any kind when called on ControlChart) with its baseline fixed."""
        try:
            kind = d["kind"]
            params = dict(d.get("params") or {})
        except (KeyError, TypeError, AttributeError):
            raise ValueError(
                "chart dict needs 'kind' and 'params' (as made by to_dict())"
            ) from None
        target = ControlChart._registry.get(kind)
        if target is None:
            raise ValueError(f"unknown chart kind {kind!r}; expected one of {sorted(CHART_KINDS)}")
        if cls is not ControlChart and not issubclass(target, cls):
            raise ValueError(f"dict describes a {kind!r} chart, not {cls.kind!r}")
        chart = target(**params)
        if d.get("baseline"):
            chart._set_baseline(d["baseline"])
        return chart

    def __repr__(self) -> str:
        lim = self.limits()
        return (
            f"{type(self).__name__}(ready={self.is_ready}, center={lim['center']}, "
            f"ucl={lim['ucl']}, lcl={lim['lcl']})"
        )


def _model_of(bl: Mapping[str, float]) -> ARFit:
    """The AR model a baseline describes (no coefficients: white noise)."""
    phi = []
    while f"phi_{len(phi) + 1}" in bl:
        phi.append(bl[f"phi_{len(phi) + 1}"])
    return ARFit(bl["mean"], tuple(phi), bl["sigma_e"])


def _mr_estimate(data: np.ndarray) -> dict[str, float]:
    mr_bar = float(np.mean(np.abs(np.diff(data)))) if data.size > 1 else 0.0
    return {"mean": float(np.mean(data)), "mr_bar": mr_bar, "sigma": mr_bar / d2(2)}


class _RuleChart(ControlChart):
    """Shared parts of the Shewhart charts: Nelson rules (default all eight) on the main
    statistic, rule 1 on the dispersion statistic (``check_dispersion``)."""

    def __init__(
        self,
        baseline_points: int = 100,
        *,
        L: float = 3.0,
        rules: Iterable[int] | None = None,
        check_dispersion: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(baseline_points, L=L, **kw)
        self._rules = NelsonRules(rules, limit=self.L)
        self.check_dispersion = bool(check_dispersion)

    @property
    def rules(self) -> tuple[int, ...]:
        return self._rules.rules

    def reset_state(self) -> None:
        super().reset_state()
        self._rules.reset()

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "rules": list(self.rules),
            "check_dispersion": self.check_dispersion,
        }

    def _main_violations(self, z: np.ndarray, idx: np.ndarray, stat: np.ndarray) -> ViolationArrays:
        pos, rule = self._rules.check(z)
        score = np.where(rule == 1, np.abs(z[pos]) / self.L, 1.0)
        return ViolationArrays(self.statistic, idx[pos], rule, stat[pos], score)


class IMRChart(_RuleChart):
    """Individuals and moving-range chart (moving range of 2).

    sigma = MR̄ / d2(2); individuals limits center ± L·sigma; MR limits
    MR̄·(1 ± L·d3/d2), i.e. D3·MR̄ and D4·MR̄ for L = 3.

    >>> ch = IMRChart(baseline_points=5)
    >>> _ = ch.update([10, 12, 11, 13, 12])
    >>> round(ch.center, 3), round(ch.ucl, 3), round(ch.limits()["mr_ucl"], 3)
    (11.6, 15.588, 4.9)
    """

    kind = "imr"
    statistic = "individual"

    def __init__(self, baseline_points: int = 100, **kw: Any) -> None:
        super().__init__(baseline_points, **kw)
        self._last = float("nan")

    def _estimate(self, data: np.ndarray) -> dict[str, float]:
        return _mr_estimate(data)

    def _after_baseline(self, data: np.ndarray) -> None:
        self._last = float(data[-1])

    def limits(self) -> dict[str, float | None]:
        b = self.baseline
        if b is None:
            return {
                "center": None,
                "ucl": None,
                "lcl": None,
                "sigma": None,
                "mr_center": None,
                "mr_ucl": None,
                "mr_lcl": None,
            }
        k = self.L * d3(2) / d2(2)
        return {
            "center": b["mean"],
            "ucl": b["mean"] + self.L * b["sigma"],
            "lcl": b["mean"] - self.L * b["sigma"],
            "sigma": b["sigma"],
            "mr_center": b["mr_bar"],
            "mr_ucl": b["mr_bar"] * (1.0 + k),
            "mr_lcl": max(0.0, b["mr_bar"] * (1.0 - k)),
        }

    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate:
        b = self.baseline
        assert b is not None
        prev = self._last
        mr = np.abs(np.diff(x, prepend=prev))
        self._last = float(x[-1])
        z = (x - b["mean"]) / b["sigma"]
        groups = [self._main_violations(z, idx, x)]
        if self.check_dispersion:
            lim = self.limits()
            bad = np.flatnonzero(mr > lim["mr_ucl"])  # NaN (no previous value) compares False
            if bad.size:
                groups.append(
                    ViolationArrays("moving_range", idx[bad], np.ones(bad.size, np.int64), mr[bad])
                )
        return ChartUpdate(idx, x, groups=[g for g in groups if len(g)])


class _SubgroupChart(_RuleChart):
    """X̄ charts on consecutive subgroups of ``subgroup_size`` finite values."""

    dispersion: ClassVar[str]

    def __init__(self, baseline_points: int = 100, *, subgroup_size: int = 5, **kw: Any) -> None:
        self.subgroup_size = _positive_int("subgroup_size", subgroup_size, 2)
        if self.subgroup_size > 25:
            raise ValueError(f"subgroup_size must be in 2..25, got {subgroup_size}")
        super().__init__(baseline_points, **kw)
        if self.baseline_points < 2 * self.subgroup_size:
            raise ValueError(
                f"baseline_points ({baseline_points}) must cover at least two subgroups of "
                f"{self.subgroup_size}"
            )
        self._pend_x = np.empty(0)
        self._pend_i = np.empty(0, np.int64)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "subgroup_size": self.subgroup_size}

    def _baseline_needed(self) -> int:
        return (self.baseline_points // self.subgroup_size) * self.subgroup_size

    def reset_state(self) -> None:
        super().reset_state()
        self._pend_x = np.empty(0)
        self._pend_i = np.empty(0, np.int64)

    @abstractmethod
    def _spread(self, g: np.ndarray) -> np.ndarray:
        """Within-subgroup spread (R or S) of each row of ``g``."""

    @abstractmethod
    def _dispersion_limits(self) -> tuple[float, float, float]:
        """(center, lcl, ucl) of the dispersion chart."""

    def _estimate(self, data: np.ndarray) -> dict[str, float]:
        n = self.subgroup_size
        m = data.size // n
        g = data[: m * n].reshape(m, n)
        return {
            "mean": float(g.mean()),
            "spread_bar": float(self._spread(g).mean()),
            "sigma": self._sigma_from(float(self._spread(g).mean())),
        }

    @abstractmethod
    def _sigma_from(self, spread_bar: float) -> float: ...

    def _model_sigma(self, fit: ARFit) -> float:
        # sd of a subgroup mean, expressed per value so that limits stay mean ± L·sigma/√n
        n = self.subgroup_size
        return fit.filter_sd(np.full(n, 1.0 / n)) * math.sqrt(n)

    def limits(self) -> dict[str, float | None]:
        b = self.baseline
        if b is None:
            return {
                "center": None,
                "ucl": None,
                "lcl": None,
                "sigma": None,
                f"{self.dispersion}_center": None,
                f"{self.dispersion}_ucl": None,
                f"{self.dispersion}_lcl": None,
            }
        s_xbar = b["sigma"] / math.sqrt(self.subgroup_size)
        dc, dl, du = self._dispersion_limits()
        return {
            "center": b["mean"],
            "ucl": b["mean"] + self.L * s_xbar,
            "lcl": b["mean"] - self.L * s_xbar,
            "sigma": b["sigma"],
            f"{self.dispersion}_center": dc,
            f"{self.dispersion}_ucl": du,
            f"{self.dispersion}_lcl": dl,
        }

    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate:
        b = self.baseline
        assert b is not None
        n = self.subgroup_size
        if self._pend_x.size:
            x = np.concatenate((self._pend_x, x))
            idx = np.concatenate((self._pend_i, idx))
        m = x.size // n
        self._pend_x, self._pend_i = x[m * n :].copy(), idx[m * n :].copy()
        if m == 0:
            return ChartUpdate(np.empty(0, np.int64), np.empty(0))
        g = x[: m * n].reshape(m, n)
        gi = idx[n - 1 : m * n : n]  # a subgroup is plotted at its last point
        xbar = g.mean(axis=1)
        z = (xbar - b["mean"]) / (b["sigma"] / math.sqrt(n))
        groups = [self._main_violations(z, gi, xbar)]
        if self.check_dispersion:
            sp = self._spread(g)
            _, dl, du = self._dispersion_limits()
            bad = np.flatnonzero((sp > du) | (sp < dl))
            if bad.size:
                groups.append(
                    ViolationArrays(self.dispersion, gi[bad], np.ones(bad.size, np.int64), sp[bad])
                )
        return ChartUpdate(gi, xbar, groups=[g_ for g_ in groups if len(g_)])


class XbarRChart(_SubgroupChart):
    """X̄ and R chart: X̿ ± A2·R̄, R in [D3·R̄, D4·R̄] (for L = 3).

    >>> ch = XbarRChart(baseline_points=6, subgroup_size=3)
    >>> _ = ch.update([1, 2, 3, 2, 4, 6])       # means 2, 4; ranges 2, 4
    >>> round(ch.center, 3), round(ch.ucl, 3), round(ch.limits()["range_ucl"], 3)
    (3.0, 6.07, 7.724)
    """

    kind = "xbar_r"
    statistic = "xbar"
    dispersion = "range"

    def _spread(self, g: np.ndarray) -> np.ndarray:
        return g.max(axis=1) - g.min(axis=1)

    def _sigma_from(self, spread_bar: float) -> float:
        return spread_bar / d2(self.subgroup_size)

    def _dispersion_limits(self) -> tuple[float, float, float]:
        b = self.baseline
        assert b is not None
        n = self.subgroup_size
        r_bar = b["spread_bar"]
        k = self.L * d3(n) / d2(n)
        return r_bar, max(0.0, r_bar * (1.0 - k)), r_bar * (1.0 + k)


class XbarSChart(_SubgroupChart):
    """X̄ and S chart: X̿ ± A3·S̄, S in [B3·S̄, B4·S̄] (for L = 3).

    >>> ch = XbarSChart(baseline_points=6, subgroup_size=3)
    >>> _ = ch.update([1, 2, 3, 2, 4, 6])       # means 2, 4; sds 1, 2
    >>> round(ch.center, 3), round(ch.ucl, 3), round(ch.limits()["stdev_ucl"], 3)
    (3.0, 5.932, 3.852)
    """

    kind = "xbar_s"
    statistic = "xbar"
    dispersion = "stdev"

    def _spread(self, g: np.ndarray) -> np.ndarray:
        return g.std(axis=1, ddof=1)

    def _sigma_from(self, spread_bar: float) -> float:
        return spread_bar / c4(self.subgroup_size)

    def _dispersion_limits(self) -> tuple[float, float, float]:
        b = self.baseline
        assert b is not None
        cc4 = c4(self.subgroup_size)
        s_bar = b["spread_bar"]
        k = self.L * math.sqrt(1.0 - cc4 * cc4) / cc4
        return s_bar, max(0.0, s_bar * (1.0 - k)), s_bar * (1.0 + k)


class EWMAChart(ControlChart):
    """Exponentially weighted moving average chart.

    z_t = λ·x_t + (1-λ)·z_{t-1}, z_0 = baseline mean; limits
    mean ± L·sigma·sqrt(λ/(2-λ)·(1-(1-λ)^(2t))) (time-varying, ``exact_limits``)
    or their steady-state value. sigma = MR̄/d2(2) from the baseline.

    >>> ch = EWMAChart(baseline_points=2, lam=0.5, L=3.0)
    >>> _ = ch.update([10.0, 12.0])             # mean 11, sigma = 2/1.128
    >>> ch.update([13.0, 13.0]).statistic.tolist()
    [12.0, 12.5]
    """

    kind = "ewma"
    statistic = "ewma"

    def __init__(
        self,
        baseline_points: int = 100,
        *,
        lam: float = 0.2,
        L: float = 3.0,
        exact_limits: bool = True,
        **kw: Any,
    ) -> None:
        lam = _positive_float("lam", lam)
        if lam > 1.0:
            raise ValueError(f"lam must be in (0, 1], got {lam}")
        self.lam = lam
        self._z = float("nan")
        self._t = 0
        self._steady_key: tuple[float, ...] | None = None
        self._steady_w = math.nan
        super().__init__(baseline_points, L=L, **kw)
        self.exact_limits = bool(exact_limits)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "lam": self.lam, "exact_limits": self.exact_limits}

    def _estimate(self, data: np.ndarray) -> dict[str, float]:
        return _mr_estimate(data)

    def _model_sigma(self, fit: ARFit) -> float:
        # The EWMA's exact steady sd under the model, per value: limits keep their form.
        return fit.ewma_sd(self.lam) * math.sqrt((2.0 - self.lam) / self.lam)

    def reset_state(self) -> None:
        super().reset_state()
        self._z = self.baseline["mean"] if self.baseline else float("nan")
        self._t = 0

    def _shift_state(self, d: float) -> None:
        super()._shift_state(d)
        # as if the refined level had been used since the statistic restarted
        self._z += d * (1.0 - (1.0 - self.lam) ** min(self._t, 100_000))

    def _width(self, t: np.ndarray | float) -> np.ndarray | float:
        # A recentred segment's level error b is an offset constant over the segment. The
        # charted deviation is b + noise, of sd sqrt(level_sd² + noise sd²), and the chance
        # that a point crosses L of those sds is the designed one whatever b turned out to
        # be on average over segments: the expected number of false alerts stays that of
        # the chart without recentring. So the two add in quadrature.
        return np.hypot(self._noise_width(t), self.L * self.level_sd)

    def _noise_width(self, t: np.ndarray | float) -> np.ndarray | float:
        b = self.baseline
        assert b is not None
        f = self.lam / (2.0 - self.lam)
        steady = self.L * b["sigma"] * math.sqrt(f)
        if not self.exact_limits or self.lam >= 1.0:
            return steady if np.ndim(t) == 0 else np.full(np.shape(t), steady)
        t_max = self._t_steady()
        if isinstance(t, int | float) and t >= t_max:  # a plain number: no numpy call
            return steady
        ta = np.asarray(t, dtype=np.float64)
        if np.ndim(ta) == 0:
            if ta >= t_max:
                return steady
        elif ta.size and ta[0] >= t_max:
            return np.full(ta.shape, steady)
        ta = np.minimum(ta, t_max)
        return steady * np.sqrt(1.0 - (1.0 - self.lam) ** (2.0 * ta))

    def _steady_width(self) -> float:
        """:meth:`_width` of a point past :meth:`_t_steady`, kept until what it depends
        on (the segment's level error, above all) changes: charting a piece of a batch
        then costs no scalar maths."""
        b = self.baseline
        assert b is not None
        key = (b["sigma"], self.level_sd, self.L, self.lam, self.exact_limits)
        if key != self._steady_key:
            self._steady_key, self._steady_w = key, self._width(math.inf)
        return self._steady_w

    def _t_steady(self) -> float:
        """Points after which the exact limit equals the steady one to 1e-16 (0 without
        exact limits); capping t there also keeps the power out of subnormal floats,
        which are very slow."""
        if not self.exact_limits or self.lam >= 1.0:
            return 0.0
        return math.log(1e-16) / (2.0 * math.log(1.0 - self.lam))

    def limits(self) -> dict[str, float | None]:
        b = self.baseline
        if b is None:
            return {"center": None, "ucl": None, "lcl": None, "sigma": None, "lam": self.lam}
        t = max(self._t, 1)
        w = float(self._steady_width() if t >= self._t_steady() else self._width(t))
        return {
            "center": b["mean"],
            "ucl": b["mean"] + w,
            "lcl": b["mean"] - w,
            "sigma": b["sigma"],
            "lam": self.lam,
        }

    def _ewma(self, x: np.ndarray) -> np.ndarray:
        b = self.baseline
        assert b is not None
        m = b["mean"]
        z = _ewma_recursion(x - m, self._z - m, self.lam, self._pw_cache)
        z += m
        self._z = float(z[-1])
        return z

    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate:
        b = self.baseline
        assert b is not None
        z = self._ewma(x)
        t0 = self._t + 1
        self._t += x.size
        if t0 >= self._t_steady():  # the usual case: one width for every point
            w = self._steady_width()
        else:
            w = self._width(np.arange(t0, t0 + x.size, dtype=np.float64))
        dist = z - b["mean"]
        groups = []
        # |dist| > w exactly when dist > w or dist < -w: two reductions tell that no point
        # is out, which is the usual piece
        if np.ndim(w) == 0 and _MAX(dist) <= w and _MIN(dist) >= -w:
            return ChartUpdate(idx, z, groups=groups)
        np.abs(dist, out=dist)
        bad = (dist > w).nonzero()[0]
        if bad.size:
            score = dist[bad] / (w[bad] if np.ndim(w) else w)
            groups.append(
                ViolationArrays("ewma", idx[bad], np.ones(bad.size, np.int64), z[bad], score)
            )
        return ChartUpdate(idx, z, groups=groups)


def _lindley(d: np.ndarray, c0: float, h: float, reset: bool) -> tuple[np.ndarray, np.ndarray]:
    """C_t = max(0, C_{t-1} + d_t) from C_0 = c0; signal when C_t > h (restart at 0 if ``reset``).

    Closed form per stretch without a reset: C_t = S_t - min(-c0, min_{s<=t} S_s).
    Stretches are short windows that grow, so dense signals cost O(n), not O(n^2).
    """
    n = d.size
    out = np.empty(n)
    hits: list[int] = []
    start, c, w = 0, c0, 32
    while start < n:
        seg = d[start : start + w]
        s = np.cumsum(seg)
        cs = s - np.minimum(np.minimum.accumulate(s), -c)
        if reset:
            over = np.flatnonzero(cs > h)
            if over.size:
                j = int(over[0])
                out[start : start + j + 1] = cs[: j + 1]
                hits.append(start + j)
                start, c, w = start + j + 1, 0.0, 32
                continue
        out[start : start + seg.size] = cs
        c = float(cs[-1])
        start += seg.size
        w *= 4
    if not reset:
        hits = np.flatnonzero(out > h).tolist()
    return out, np.asarray(hits, dtype=np.int64)


class CUSUMChart(ControlChart):
    """Tabular CUSUM with reference value k·sigma and decision interval h·sigma.

    C⁺_t = max(0, C⁺_{t-1} + x_t - (μ0 + kσ)), C⁻_t = max(0, C⁻_{t-1} + (μ0 - kσ) - x_t);
    a signal when either exceeds hσ, after which that side restarts at 0
    (``reset_on_signal``). μ0 and σ (MR̄/d2) come from the baseline.

    >>> ch = CUSUMChart.from_dict({"kind": "cusum", "params": {"k": 0.5, "h": 4.0},
    ...     "baseline": {"mean": 10.0, "sigma": 1.0, "mr_bar": 1.128}})
    >>> ch.update([12, 12, 12]).statistic.tolist()
    [1.5, 3.0, 4.5]
    """

    kind = "cusum"
    statistic = "cusum"

    def __init__(
        self,
        baseline_points: int = 100,
        *,
        k: float = 0.5,
        h: float = 5.0,
        reset_on_signal: bool = True,
        L: float = 3.0,
        **kw: Any,
    ) -> None:
        super().__init__(baseline_points, L=L, **kw)
        self.k = float(k)
        if not math.isfinite(self.k) or self.k < 0:
            raise ValueError(f"k must be a finite number >= 0, got {k!r}")
        self.h = _positive_float("h", h)
        self.reset_on_signal = bool(reset_on_signal)
        self._cp = 0.0
        self._cm = 0.0
        self.last_lower = np.empty(0)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "k": self.k,
            "h": self.h,
            "reset_on_signal": self.reset_on_signal,
        }

    def _estimate(self, data: np.ndarray) -> dict[str, float]:
        return _mr_estimate(data)

    def _model_sigma(self, fit: ARFit) -> float:
        # k and h act on sums of many values: the long-run sigma is their scale.
        return fit.long_run_sigma

    def reset_state(self) -> None:
        super().reset_state()
        self._cp = 0.0
        self._cm = 0.0

    def limits(self) -> dict[str, float | None]:
        b = self.baseline
        if b is None:
            return {"center": None, "ucl": None, "lcl": None, "sigma": None, "target": None}
        # Plotted statistics are C⁺ and C⁻ (both >= 0); the decision interval is hσ.
        return {
            "center": 0.0,
            "ucl": self.h * b["sigma"],
            "lcl": 0.0,
            "sigma": b["sigma"],
            "target": b["mean"],
        }

    @property
    def upper(self) -> float:
        return self._cp

    @property
    def lower(self) -> float:
        return self._cm

    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate:
        b = self.baseline
        assert b is not None
        s = b["sigma"]
        kk, hh = self.k * s, self.h * s
        dev = x - b["mean"]
        cp, hp = _lindley(dev - kk, self._cp, hh, self.reset_on_signal)
        cm, hm = _lindley(-dev - kk, self._cm, hh, self.reset_on_signal)
        self._cp = (
            0.0 if self.reset_on_signal and hp.size and hp[-1] == x.size - 1 else float(cp[-1])
        )
        self._cm = (
            0.0 if self.reset_on_signal and hm.size and hm[-1] == x.size - 1 else float(cm[-1])
        )
        self.last_lower = cm
        groups = []
        if hp.size:
            groups.append(
                ViolationArrays(
                    "cusum_upper", idx[hp], np.ones(hp.size, np.int64), cp[hp], cp[hp] / hh
                )
            )
        if hm.size:
            groups.append(
                ViolationArrays(
                    "cusum_lower", idx[hm], np.ones(hm.size, np.int64), cm[hm], cm[hm] / hh
                )
            )
        # The main plotted statistic is the larger side, signed (+ for C⁺, - for C⁻).
        stat = np.where(cp >= cm, cp, -cm)
        return ChartUpdate(idx, stat, groups=groups)


CHART_KINDS: dict[str, type[ControlChart]] = {
    "imr": IMRChart,
    "xbar_r": XbarRChart,
    "xbar_s": XbarSChart,
    "ewma": EWMAChart,
    "cusum": CUSUMChart,
}


def make_chart(kind: str, baseline_points: int = 100, **options: Any) -> ControlChart:
    """Create a chart by kind name: ``imr``, ``xbar_r``, ``xbar_s``, ``ewma`` or ``cusum``.

    >>> make_chart("xbar_s", baseline_points=50, subgroup_size=5).kind
    'xbar_s'
    """
    try:
        cls = CHART_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"chart must be one of {sorted(CHART_KINDS)}, got {kind!r}") from None
    return cls(baseline_points, **options)
