"""Streaming control charts: I-MR, X̄-R, X̄-S, EWMA and CUSUM.

Every chart learns its baseline from the first ``baseline_points`` finite
values it sees (or from :meth:`ControlChart.from_dict`), then keeps the limits
fixed until :meth:`ControlChart.recompute_limits` is called. ``update`` takes a
whole batch as a numpy array; NaN/inf values are skipped and counted. State
needed across batches (last value, partial subgroup, EWMA/CUSUM level, run-rule
history) is kept, so splitting a series into batches never changes the result.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from am_qadf.monitoring.chart_constants import c4, d2, d3
from am_qadf.monitoring.rules import NelsonRules, Violation

__all__ = [
    "CHART_KINDS",
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


class _Recent:
    """The last ``n`` finite values seen, for :meth:`ControlChart.recompute_limits`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.data = np.empty(0)

    def push(self, x: np.ndarray) -> None:
        if x.size >= self.n:
            self.data = x[-self.n :].copy()
        elif x.size:
            self.data = np.concatenate((self.data[-(self.n - x.size) :], x))


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


class ControlChart(ABC):
    """Base class: baseline collection, fixed limits, batch updates, (de)serialisation."""

    kind: ClassVar[str]
    statistic: ClassVar[str]
    _registry: ClassVar[dict[str, type[ControlChart]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:
            ControlChart._registry[cls.kind] = cls

    def __init__(self, baseline_points: int = 100, *, L: float = 3.0, name: str = "") -> None:
        self.baseline_points = _positive_int("baseline_points", baseline_points, 2)
        self.L = _positive_float("L", L)
        self.name = str(name)
        self.baseline: dict[str, float] | None = None
        self._buf: list[np.ndarray] = []
        self._nb = 0
        self._recent = _Recent(self.baseline_points)
        self.n_seen = 0
        self.n_invalid = 0

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
        """Estimated process (within) standard deviation of the individual values."""
        return None if self.baseline is None else self.baseline["sigma"]

    @abstractmethod
    def limits(self) -> dict[str, float | None]:
        """Center line and limits of the main plotted statistic (None before the baseline)."""

    def capability(self, lsl: float | None = None, usl: float | None = None) -> dict[str, Any]:
        """Cp/Cpk from the baseline mean and sigma (all None before the baseline)."""
        if self.baseline is None:
            return process_capability(float("nan"), float("nan"), lsl, usl)
        return process_capability(self.baseline["mean"], self.baseline["sigma"], lsl, usl)

    # -- updates --------------------------------------------------------------------
    def update(self, values: Any, index: Any = None) -> ChartUpdate:
        """Add a batch of values; return plotted points and violations.

        ``index`` gives each value's global point index (default: a running count).

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
        if v.shape[0]:
            self.n_seen = max(self.n_seen + v.shape[0], int(idx[-1]) + 1)
        ok = np.isfinite(v)
        n_valid = int(np.count_nonzero(ok))
        n_invalid = v.shape[0] - n_valid
        self.n_invalid += n_invalid
        if n_invalid:
            v, idx = v[ok], idx[ok]
        self._recent.push(v)
        n_base = 0
        if self.baseline is None:
            need = self._baseline_needed() - self._nb
            take = v[:need]
            if take.size:
                self._buf.append(take)
                self._nb += take.size
                n_base = int(take.size)
            v, idx = v[need:], idx[need:]
            if self._nb >= self._baseline_needed():
                data = np.concatenate(self._buf)
                self._buf, self._nb = [], 0
                self._set_baseline(self._estimate(data))
                self._after_baseline(data)
        if self.baseline is None or v.size == 0:
            return _empty_update(n_valid, n_invalid, n_base)
        upd = self._monitor(v, idx)
        upd.n_valid, upd.n_invalid, upd.n_baseline = n_valid, n_invalid, n_base
        return upd

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
        self._set_baseline(self._estimate(data))
        self._after_baseline(data)

    def _set_baseline(self, b: Mapping[str, float]) -> None:
        bl = {k: float(v) for k, v in b.items()}
        if not (math.isfinite(bl["sigma"]) and bl["sigma"] > 0):
            # A constant baseline has no spread; a tiny sigma keeps the maths finite.
            bl["sigma"] = max(abs(bl["mean"]) * 1e-12, 1e-12)
        self.baseline = bl
        self.reset_state()

    def _after_baseline(self, data: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Hook: carry the end of the baseline into the monitoring state."""

    def _baseline_needed(self) -> int:
        return self.baseline_points

    def reset_state(self) -> None:  # noqa: B027 - optional hook
        """Restart the monitoring state (run rules, EWMA/CUSUM level); keep the baseline."""

    @abstractmethod
    def _estimate(self, data: np.ndarray) -> dict[str, float]: ...

    @abstractmethod
    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate: ...

    # -- serialisation -------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {"baseline_points": self.baseline_points, "L": self.L, "name": self.name}

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
        name: str = "",
    ) -> None:
        super().__init__(baseline_points, L=L, name=name)
        self._rules = NelsonRules(rules, limit=self.L)
        self.check_dispersion = bool(check_dispersion)

    @property
    def rules(self) -> tuple[int, ...]:
        return self._rules.rules

    def reset_state(self) -> None:
        self._rules.reset()

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "rules": list(self.rules),
            "check_dispersion": self.check_dispersion,
        }

    def _main_violations(self, z: np.ndarray, idx: np.ndarray, stat: np.ndarray) -> ViolationArrays:
        pos, rule = self._rules.check(z)
        return ViolationArrays(self.statistic, idx[pos], rule, stat[pos])


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
        name: str = "",
    ) -> None:
        lam = _positive_float("lam", lam)
        if lam > 1.0:
            raise ValueError(f"lam must be in (0, 1], got {lam}")
        super().__init__(baseline_points, L=L, name=name)
        self.lam = lam
        self.exact_limits = bool(exact_limits)
        a = 1.0 - lam
        # Block length for the closed-form recursion: keep (1-λ)^-B well inside float range.
        self._block = (
            4096 if a <= 0 else max(1, min(4096, int(150.0 / -math.log10(a)) if a < 1 else 4096))
        )
        self._z = float("nan")
        self._t = 0
        self._pw: tuple[np.ndarray, np.ndarray] | None = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "lam": self.lam, "exact_limits": self.exact_limits}

    def _estimate(self, data: np.ndarray) -> dict[str, float]:
        return _mr_estimate(data)

    def reset_state(self) -> None:
        self._z = self.baseline["mean"] if self.baseline else float("nan")
        self._t = 0

    def _width(self, t: np.ndarray | float) -> np.ndarray | float:
        b = self.baseline
        assert b is not None
        f = self.lam / (2.0 - self.lam)
        steady = self.L * b["sigma"] * math.sqrt(f)
        if not self.exact_limits or self.lam >= 1.0:
            return steady if np.ndim(t) == 0 else np.full(np.shape(t), steady)
        # Past t_max the exact limit equals the steady one to 1e-16; capping t also keeps
        # the power out of subnormal floats, which are very slow.
        t_max = math.log(1e-16) / (2.0 * math.log(1.0 - self.lam))
        ta = np.asarray(t, dtype=np.float64)
        if np.ndim(ta) == 0:
            if ta >= t_max:
                return steady
        elif ta.size and ta[0] >= t_max:
            return np.full(ta.shape, steady)
        ta = np.minimum(ta, t_max)
        return steady * np.sqrt(1.0 - (1.0 - self.lam) ** (2.0 * ta))

    def limits(self) -> dict[str, float | None]:
        b = self.baseline
        if b is None:
            return {"center": None, "ucl": None, "lcl": None, "sigma": None, "lam": self.lam}
        w = float(self._width(max(self._t, 1)))
        return {
            "center": b["mean"],
            "ucl": b["mean"] + w,
            "lcl": b["mean"] - w,
            "sigma": b["sigma"],
            "lam": self.lam,
        }

    def _ewma(self, x: np.ndarray) -> np.ndarray:
        """Vectorised EWMA of deviations from the center, block by block."""
        b = self.baseline
        assert b is not None
        lam, a = self.lam, 1.0 - self.lam
        dev = x - b["mean"]
        out = np.empty_like(dev)
        z = self._z - b["mean"]
        if a == 0.0:
            out[:] = dev
            self._z = float(x[-1])
            return out
        if self._pw is None:
            k = np.arange(1, self._block + 1, dtype=np.float64)
            self._pw = (a**k, a**-k)
        down, up = self._pw
        for s in range(0, dev.size, self._block):
            d = dev[s : s + self._block]
            m = d.size
            seg = down[:m] * (z + lam * np.cumsum(d * up[:m]))
            out[s : s + d.size] = seg
            z = seg[-1]
        self._z = float(z + b["mean"])
        return out + b["mean"]

    def _monitor(self, x: np.ndarray, idx: np.ndarray) -> ChartUpdate:
        b = self.baseline
        assert b is not None
        z = self._ewma(x)
        t = np.arange(self._t + 1, self._t + 1 + x.size, dtype=np.float64)
        self._t += x.size
        w = self._width(t)
        bad = np.flatnonzero(np.abs(z - b["mean"]) > w)
        groups = (
            [ViolationArrays("ewma", idx[bad], np.ones(bad.size, np.int64), z[bad])]
            if bad.size
            else []
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
        name: str = "",
        L: float = 3.0,
    ) -> None:
        super().__init__(baseline_points, L=L, name=name)
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

    def reset_state(self) -> None:
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
                ViolationArrays("cusum_upper", idx[hp], np.ones(hp.size, np.int64), cp[hp])
            )
        if hm.size:
            groups.append(
                ViolationArrays("cusum_lower", idx[hm], np.ones(hm.size, np.int64), cm[hm])
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
