"""Threshold rules: absolute high/low, rate of change, missing data, time gaps.

Each rule looks at a whole batch (a :class:`~am_qadf.monitoring.batch_view.BatchView`)
and returns :class:`Candidate` points; the alert processor applies the
cooldown and raises the alerts. Rules that need history (rate of change,
missing-data runs, time gaps) carry it between batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from am_qadf.monitoring.alerts import SEVERITIES
from am_qadf.monitoring.batch_view import BatchView
from am_qadf.monitoring.resume_state import Resumable

__all__ = [
    "Candidate",
    "GapRule",
    "MissingDataRule",
    "RateOfChangeRule",
    "ThresholdRule",
    "AlertRule",
]


@dataclass
class Candidate:
    """Points of one batch where ``rule`` fired for ``metric``."""

    metric: str
    rule: str
    severity: str
    positions: np.ndarray  # into the batch, ascending
    values: np.ndarray
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AlertRule(Protocol):
    """What the alert processor needs from a rule."""

    metric: str

    def evaluate(self, view: BatchView) -> list[Candidate]: ...

    def reset(self) -> None: ...


def _severity(s: str) -> str:
    if s not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {s!r}")
    return s


def _metric(m: Any) -> str:
    if not isinstance(m, str) or not m:
        raise ValueError(f"metric must be a non-empty str, got {m!r}")
    return m


def _finite_or_none(name: str, v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or None, got {type(v).__name__}") from None
    if math.isnan(f):
        raise ValueError(f"{name} must not be NaN")
    return f


class ThresholdRule(Resumable):
    """Absolute limits: fires where ``value > high`` or ``value < low`` (NaN never fires).

    Rule names are ``f"{name}_high"`` and ``f"{name}_low"``, each with its own cooldown.

    >>> from am_qadf.monitoring.batch_view import ArrayBatchView
    >>> r = ThresholdRule("temperature", high=2200.0, low=1500.0)
    >>> [(c.rule, c.positions.tolist()) for c in r.evaluate(ArrayBatchView(
    ...     {"temperature": np.array([1900.0, 2300.0, 1400.0, np.nan])}))]
    [('threshold_high', [1]), ('threshold_low', [2])]
    """

    def __init__(
        self,
        metric: str,
        *,
        high: float | None = None,
        low: float | None = None,
        severity: str = "warning",
        name: str = "threshold",
    ) -> None:
        self.metric = _metric(metric)
        self.high = _finite_or_none("high", high)
        self.low = _finite_or_none("low", low)
        if self.high is None and self.low is None:
            raise ValueError(f"ThresholdRule for {metric!r} needs high, low or both")
        if self.high is not None and self.low is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        self.severity = _severity(severity)
        self.name = str(name)

    def evaluate(self, view: BatchView) -> list[Candidate]:
        x = view.column(self.metric)
        out = []
        # fmax/fmin skip NaN: one pass tells whether any point is out before finding which
        if self.high is not None and np.fmax.reduce(x, initial=-math.inf) > self.high:
            p = np.flatnonzero(x > self.high)
            if p.size:
                out.append(
                    Candidate(
                        self.metric,
                        f"{self.name}_high",
                        self.severity,
                        p,
                        x[p],
                        f"above {self.high:g}",
                    )
                )
        if self.low is not None and np.fmin.reduce(x, initial=math.inf) < self.low:
            p = np.flatnonzero(x < self.low)
            if p.size:
                out.append(
                    Candidate(
                        self.metric,
                        f"{self.name}_low",
                        self.severity,
                        p,
                        x[p],
                        f"below {self.low:g}",
                    )
                )
        return out

    def reset(self) -> None:
        """Stateless; nothing to reset."""

    def __repr__(self) -> str:
        return (
            f"ThresholdRule({self.metric!r}, high={self.high}, low={self.low}, "
            f"severity={self.severity!r})"
        )


class RateOfChangeRule(Resumable):
    """Fires where ``|x_t - x_{t-lag}| > max_change`` over consecutive finite values.

    The last ``lag`` finite values are carried to the next batch.

    >>> from am_qadf.monitoring.batch_view import ArrayBatchView
    >>> r = RateOfChangeRule("power", max_change=50.0)
    >>> def view(*p): return ArrayBatchView({"power": np.array(p)})
    >>> r.evaluate(view(280.0, 281.0, 150.0))[0].positions.tolist()
    [2]
    >>> r.evaluate(view(280.0))[0].values.tolist()  # across batches
    [130.0]
    """

    def __init__(
        self,
        metric: str,
        *,
        max_change: float,
        lag: int = 1,
        severity: str = "warning",
        name: str = "rate_of_change",
    ) -> None:
        self.metric = _metric(metric)
        mc = _finite_or_none("max_change", max_change)
        if mc is None or mc <= 0 or math.isinf(mc):
            raise ValueError(f"max_change must be a finite positive number, got {max_change!r}")
        self.max_change = mc
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1:
            raise ValueError(f"lag must be an int >= 1, got {lag!r}")
        self.lag = lag
        self.severity = _severity(severity)
        self.name = str(name)
        self._tail = np.empty(0)

    def evaluate(self, view: BatchView) -> list[Candidate]:
        x = view.column(self.metric)
        fin = np.isfinite(x)
        every = bool(np.logical_and.reduce(fin)) if x.size else False
        ok = None if every else np.flatnonzero(fin)  # None: every value (no copy)
        if not every and ok.size == 0:
            return []
        k = self._tail.size
        xs = x if ok is None else x[ok]
        xx = np.concatenate((self._tail, xs)) if k else xs
        self._tail = xx[-self.lag :].copy()
        if xx.size <= self.lag:
            return []
        d = xx[self.lag :] - xx[: -self.lag]  # d[j] belongs to xx[j + lag]
        ad = np.abs(d)
        if not np.maximum.reduce(ad) > self.max_change:  # the usual batch: no jump at all
            return []
        hit = np.flatnonzero(ad > self.max_change)
        hit = hit[hit + self.lag >= k]  # only points of this batch
        if hit.size == 0:
            return []
        pos = hit + self.lag - k if ok is None else ok[hit + self.lag - k]
        return [
            Candidate(
                self.metric,
                self.name,
                self.severity,
                pos,
                d[hit],
                f"changed by more than {self.max_change:g}",
            )
        ]

    def reset(self) -> None:
        self._tail = np.empty(0)


class MissingDataRule(Resumable):
    """Fires once per run of ``max_consecutive`` messages without a finite ``metric``
    (key missing, None, NaN, string); the run length is carried across batches.

    >>> from am_qadf.monitoring.batch_view import ArrayBatchView
    >>> r = MissingDataRule("temperature", max_consecutive=3)
    >>> def view(*t): return ArrayBatchView({"temperature": np.array(t)})
    >>> r.evaluate(view(1.0, np.nan, np.nan))
    []
    >>> r.evaluate(view(np.nan, np.nan))[0].positions.tolist()
    [0]
    """

    def __init__(
        self,
        metric: str,
        *,
        max_consecutive: int = 10,
        severity: str = "warning",
        name: str = "missing_data",
    ) -> None:
        self.metric = _metric(metric)
        if (
            isinstance(max_consecutive, bool)
            or not isinstance(max_consecutive, int)
            or max_consecutive < 1
        ):
            raise ValueError(f"max_consecutive must be an int >= 1, got {max_consecutive!r}")
        self.max_consecutive = max_consecutive
        self.severity = _severity(severity)
        self.name = str(name)
        self._run = 0

    def evaluate(self, view: BatchView) -> list[Candidate]:
        x = view.column(self.metric)
        n = x.size
        if n == 0:
            return []
        fin = np.isfinite(x)
        if np.logical_and.reduce(fin):  # the usual batch: every value there
            self._run = 0
            return []
        miss = ~fin
        pos = np.arange(n)
        # Index of the last finite value at or before each point (-1: none in this batch).
        last_ok = np.maximum.accumulate(np.where(miss, -1, pos))
        run = pos - last_ok
        head = last_ok < 0
        run[head] += self._run  # runs continuing from the previous batch
        self._run = int(run[-1]) if miss[-1] else 0
        hit = np.flatnonzero(miss & (run == self.max_consecutive))
        if hit.size == 0:
            return []
        return [
            Candidate(
                self.metric,
                self.name,
                self.severity,
                hit,
                run[hit].astype(np.float64),
                f"{self.max_consecutive} consecutive messages without a valid {self.metric}",
            )
        ]

    def reset(self) -> None:
        self._run = 0


class GapRule(Resumable):
    """Fires on a message that follows the previous one by more than ``max_missing``
    sample periods (messages lost), from the message ``timestamp``.

    ``sample_rate_hz=None`` learns the period from the first batch (median
    spacing). Cheap when nothing is lost: only the batch's first and last times
    are read unless the batch spans more time than its message count allows.

    >>> from am_qadf.monitoring.batch_view import ArrayBatchView
    >>> r = GapRule(sample_rate_hz=10.0, max_missing=2)
    >>> t = np.array([0.0, 0.1, 0.2, 0.9, 1.0])          # 6 samples lost before 0.9
    >>> c = r.evaluate(ArrayBatchView({"timestamp": t}))[0]
    >>> c.positions.tolist(), c.values.round(3).tolist()
    ([3], [6.0])
    """

    def __init__(
        self,
        *,
        sample_rate_hz: float | None = None,
        max_missing: int = 10,
        severity: str = "warning",
        name: str = "time_gap",
        metric: str = "timestamp",
    ) -> None:
        if sample_rate_hz is not None:
            r = _finite_or_none("sample_rate_hz", sample_rate_hz)
            if r is None or r <= 0 or math.isinf(r):
                raise ValueError(
                    f"sample_rate_hz must be a positive number or None, got {sample_rate_hz!r}"
                )
        self.sample_rate_hz = None if sample_rate_hz is None else float(sample_rate_hz)
        self._learn = sample_rate_hz is None
        if isinstance(max_missing, bool) or not isinstance(max_missing, int) or max_missing < 0:
            raise ValueError(f"max_missing must be an int >= 0, got {max_missing!r}")
        self.max_missing = max_missing
        self.severity = _severity(severity)
        self.name = str(name)
        self.metric = _metric(metric)
        self._last_t = math.nan

    def _learn_rate(self, view: BatchView) -> bool:
        t = view.epochs()
        d = np.diff(t[np.isfinite(t)])
        d = d[d > 0]
        if d.size < 2:
            if t.size and np.isfinite(t).any():
                self._last_t = float(t[np.isfinite(t)][-1])
            return False
        self.sample_rate_hz = 1.0 / float(np.median(d))
        return True

    def evaluate(self, view: BatchView) -> list[Candidate]:
        n = view.n
        if n == 0:
            return []
        if self.sample_rate_hz is None and not self._learn_rate(view):
            return []
        assert self.sample_rate_hz is not None
        period = 1.0 / self.sample_rate_hz
        limit = (self.max_missing + 1.5) * period  # +0.5 period of slack for clock jitter
        t0, t1 = view.epoch_at(0), view.epoch_at(n - 1)
        prev = self._last_t
        suspect = not (math.isfinite(t0) and math.isfinite(t1))
        suspect = suspect or (t1 - t0) > (n - 1 + self.max_missing + 0.5) * period
        suspect = suspect or (math.isfinite(prev) and t0 - prev > limit)
        if not suspect:
            self._last_t = t1
            return []
        t = view.epochs()
        ok = np.flatnonzero(np.isfinite(t))
        if ok.size == 0:
            return []
        tt = t[ok]
        full = (
            np.concatenate(([prev], tt)) if math.isfinite(prev) else np.concatenate(([tt[0]], tt))
        )
        gap = np.diff(full)
        self._last_t = float(tt[-1])
        hit = np.flatnonzero(gap > limit)
        if hit.size == 0:
            return []
        missing = np.rint(gap[hit] / period) - 1.0
        return [
            Candidate(
                self.metric,
                self.name,
                self.severity,
                ok[hit],
                missing,
                f"more than {self.max_missing} samples missing",
            )
        ]

    def reset(self) -> None:
        self._last_t = math.nan
        if self._learn:
            self.sample_rate_hz = None
