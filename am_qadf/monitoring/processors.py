"""Batch processors for the streaming client: quality, SPC and alerts.

A processor is a callable ``processor(data_batch: List[Dict]) -> Dict[str, Any]``
registered on :class:`am_qadf.streaming.StreamingClient` under a fixed name.
These are stateful callable objects; each turns the batch into numpy columns
once (:class:`~am_qadf.monitoring.batch_view.ColumnCache`, shared by the
processors that :func:`default_processors` builds) and never loops over
points in Python. Messages that lack fields or carry None/strings/NaN are
counted, never fatal. ``process_arrays`` is the same work on ready-made
numpy columns (the simulator's fast path).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile, ProfileError
from am_qadf.monitoring.alerts import Alert, AlertManager, escalation_level
from am_qadf.monitoring.batch_view import (
    ArrayBatchView,
    BatchView,
    ColumnCache,
    MessageBatchView,
)
from am_qadf.monitoring.control_charts import CHART_KINDS, ControlChart, make_chart
from am_qadf.monitoring.quality import _check_ranges, quality_metrics
from am_qadf.monitoring.resume_state import Resumable, decode, encode
from am_qadf.monitoring.rules import RULE_DESCRIPTIONS, RULE_NAMES
from am_qadf.monitoring.thresholds import (
    AlertRule,
    Candidate,
    GapRule,
    MissingDataRule,
    RateOfChangeRule,
    ThresholdRule,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_RANGES",
    "DEFAULT_SIGNALS",
    "SPC_SIGNALS",
    "AlertProcessor",
    "QualityProcessor",
    "SPCProcessor",
    "default_processors",
    "default_threshold_rules",
]

_SIMULATOR = MachineProfile.default()

# The simulator profile's figures, kept as names for code written before profiles;
# new code takes them from the active MachineProfile.
DEFAULT_SIGNALS: tuple[str, ...] = _SIMULATOR.signal_names
"""Signals of the simulator's profile (:meth:`MachineProfile.default`)."""

SPC_SIGNALS: tuple[str, ...] = _SIMULATOR.spc_signals
"""Signals the simulator's profile charts; power and speed are set-points with thresholds."""

DEFAULT_RANGES: dict[str, tuple[float, float]] = _SIMULATOR.ranges()
"""Physically plausible ranges of the simulator's profile (quality processor)."""

DEFAULT_LIMITS: dict[str, dict[str, float]] = _SIMULATOR.limits()
"""Alert thresholds of the simulator's profile; another machine's come from its profile."""


def _f(v: Any) -> float | None:
    """JSON-friendly float: None for None/NaN/inf."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None and hasattr(t, "isoformat") else None


def _batch_key(obj: Any) -> tuple[int, ...]:
    """Identity of a batch: the object, its length and its first/last items (or, for a
    dict of columns, every column array), so a reused container is not mistaken."""
    n = len(obj)
    if isinstance(obj, Mapping):
        return (id(obj), n, *map(id, obj.values()))
    return (id(obj), n, id(obj[0]) if n else 0, id(obj[-1]) if n else 0)


class _Processor(Resumable):
    """Shared plumbing: views, running point count, memo of the last batch; the
    running state (``export_state``/``import_state``) is every attribute but the
    column cache and the memo."""

    STATE_SKIP = frozenset({"column_cache", "last_result", "_last_obj", "_last_key"})

    def __init__(self, column_cache: ColumnCache | None) -> None:
        self.column_cache = column_cache if column_cache is not None else ColumnCache()
        self.points_seen = 0
        self.batches_seen = 0
        self.last_result: dict[str, Any] | None = None
        self._last_obj: Any = None
        self._last_key: tuple[int, ...] | None = None

    def _seen_before(self, obj: Any) -> bool:
        return self._last_obj is obj and self._last_key == _batch_key(obj)

    def _remember(self, obj: Any, result: dict[str, Any]) -> dict[str, Any]:
        self._last_obj, self._last_key, self.last_result = obj, _batch_key(obj), result
        return result

    def _begin(self, view: BatchView) -> int:
        start = self.points_seen
        self.points_seen += view.n
        self.batches_seen += 1
        return start

    def __call__(self, data_batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if data_batch is None:
            data_batch = []
        if self._seen_before(data_batch) and self.last_result is not None:
            return self.last_result
        return self._remember(
            data_batch, self._process(MessageBatchView(data_batch, self.column_cache))
        )

    def process_arrays(self, columns: Mapping[str, Any]) -> dict[str, Any]:
        """Process one batch given as ``{field: 1-D array}`` (``timestamp`` in epoch seconds)."""
        if self._seen_before(columns) and self.last_result is not None:
            return self.last_result
        return self._remember(columns, self._process(ArrayBatchView(columns)))

    def _process(self, view: BatchView) -> dict[str, Any]:
        raise NotImplementedError


class QualityProcessor(_Processor):
    """Data-quality metrics per batch, as a flat ``Dict[str, float]``.

    Keys: ``n_messages``, ``completeness``, ``nan_rate``, ``missing_rate``,
    ``out_of_range_rate``, ``invalid_count``, ``out_of_range_count`` and
    ``<signal>_mean``/``<signal>_std``; see
    :func:`~am_qadf.monitoring.quality.quality_metrics`. Running totals are in
    :attr:`totals`.

    >>> qp = QualityProcessor(signals=["temperature"], ranges={"temperature": (300, 4000)})
    >>> q = qp([{"temperature": 1900.0}, {"temperature": "n/a"}, {"temperature": 9000.0}])
    >>> round(q["completeness"], 3), round(q["nan_rate"], 3), q["out_of_range_rate"]
    (0.667, 0.333, 0.5)
    """

    def __init__(
        self,
        signals: Sequence[str] = DEFAULT_SIGNALS,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        *,
        required_fields: Sequence[str] | None = None,
        column_cache: ColumnCache | None = None,
    ) -> None:
        super().__init__(column_cache)
        self.signals = _signal_list(signals)
        self.ranges = _check_ranges(ranges)
        self.required_fields = list(required_fields) if required_fields is not None else None
        self.totals: dict[str, float] = {"messages": 0.0, "invalid": 0.0, "out_of_range": 0.0}

    def _process(self, view: BatchView) -> dict[str, Any]:
        self._begin(view)
        q = quality_metrics(view, self.signals, self.ranges, self.required_fields)
        self.totals["messages"] += q["n_messages"]
        self.totals["invalid"] += q["invalid_count"]
        self.totals["out_of_range"] += q["out_of_range_count"]
        return q


def _signal_list(signals: Any) -> list[str]:
    if isinstance(signals, str):
        return [signals]
    try:
        out = list(signals)
    except TypeError:
        raise TypeError(f"signals must be a list of names, got {type(signals).__name__}") from None
    if not out or not all(isinstance(s, str) and s for s in out):
        raise ValueError(f"signals must be a non-empty list of non-empty str, got {signals!r}")
    return list(dict.fromkeys(out))


@dataclass
class SPCViolations:
    """Violations of one (signal, statistic, rule) in the last batch, as arrays."""

    signal: str
    statistic: str
    rule: int
    positions: np.ndarray  # into the batch
    index: np.ndarray  # global point index
    values: np.ndarray
    scores: np.ndarray | None = None  # distance out, in units of the limit (>= 1)
    directions: np.ndarray | None = None  # +1 above the center, -1 below

    @property
    def key(self) -> str:
        return f"spc:{self.statistic}:rule_{self.rule}"


class SPCProcessor(_Processor):
    """Control charts per signal, with Nelson rules, on every batch.

    ``chart`` is ``"imr"``, ``"xbar_r"``, ``"xbar_s"``, ``"ewma"`` or ``"cusum"``;
    ``chart_options`` go to the chart (``L``, ``lam``, ``k``, ``h``,
    ``subgroup_size``, ``check_dispersion``, and for autocorrelated signals
    ``sigma_method="ar"``, ``recenter_points``, ``residual_L``, ``variance_L``;
    see :class:`~am_qadf.monitoring.control_charts.ControlChart`). With
    ``recenter_points`` each message's ``layer`` is the segment a chart recentres
    on (a message without one continues the layer before). ``rules`` (Nelson 1-8) apply to
    the Shewhart charts (default all eight); EWMA and CUSUM only have rule 1
    (beyond the limits). Each chart learns its baseline from its first
    ``baseline_points`` finite values, or from :meth:`load_baselines`.
    ``per_layer=True`` keeps a chart per (signal, layer) whose limits come from
    the first baseline learned for the signal, so run rules restart each layer.
    ``signal_charts`` gives a signal its own ``{"chart": kind, **options}``
    (``baseline_points`` among them), e.g. from a machine profile's ``spc`` settings.

    The result is JSON-friendly::

        {"signals": {name: {"chart", "status", "baseline_progress", "center",
                            "ucl", "lcl", "sigma", ..., "n_valid", "n_invalid",
                            "latest": {"index": [...], "value": [...]},
                            "n_violations", "violations": [...], "cp", "cpk"}},
         "violations": [...], "n_violations": int, "points_seen": int}

    >>> spc = SPCProcessor(signals=["temperature"], chart="imr", baseline_points=5, rules=[1])
    >>> r = spc([{"temperature": t} for t in (1900, 1910, 1895, 1905, 1900, 2300)])
    >>> v = r["violations"][0]
    >>> r["signals"]["temperature"]["status"], v["rule"], v["statistic"], v["index"]
    ('monitoring', 1, 'individual', 5)
    """

    def __init__(
        self,
        signals: Sequence[str] = SPC_SIGNALS,
        chart: str = "imr",
        baseline_points: int = 1000,
        rules: Iterable[int] | None = None,
        *,
        spec_limits: Mapping[str, tuple[float | None, float | None]] | None = None,
        per_layer: bool = False,
        max_layers: int = 8,
        n_latest: int = 20,
        max_reported: int = 100,
        column_cache: ColumnCache | None = None,
        signal_charts: Mapping[str, Mapping[str, Any]] | None = None,
        **chart_options: Any,
    ) -> None:
        super().__init__(column_cache)
        if chart not in CHART_KINDS:
            raise ValueError(f"chart must be one of {sorted(CHART_KINDS)}, got {chart!r}")
        self.signals = _signal_list(signals)
        self.chart_kind = chart
        self.baseline_points = baseline_points
        opts = dict(chart_options)
        if chart in ("ewma", "cusum"):
            if rules is not None and set(rules) != {1}:
                raise ValueError(
                    f"rules: a {chart} chart only has rule 1 (beyond limits), got {rules!r}"
                )
        else:
            opts["rules"] = None if rules is None else list(rules)
        self.chart_options = opts
        make_chart(chart, baseline_points, **opts)  # fail fast on bad options
        self.signal_charts = {s: dict(o) for s, o in (signal_charts or {}).items()}
        unknown = sorted(set(self.signal_charts) - set(self.signals))
        if unknown:
            raise ValueError(
                f"signal_charts for unknown signals {unknown}; signals: {self.signals}"
            )
        for s in self.signal_charts:
            self._new_chart(s)  # fail fast on bad options
        self.spec_limits: dict[str, tuple[float | None, float | None]] = {}
        for s, lim in (spec_limits or {}).items():
            try:
                lsl, usl = lim
            except (TypeError, ValueError):
                raise ValueError(f"spec_limits[{s!r}] must be (lsl, usl), got {lim!r}") from None
            self.spec_limits[s] = (
                None if lsl is None else float(lsl),
                None if usl is None else float(usl),
            )
        self.per_layer = bool(per_layer)
        self.max_layers = int(max_layers)
        self.n_latest = int(n_latest)
        self.max_reported = int(max_reported)
        self.charts: dict[Any, ControlChart] = {}
        self._templates: dict[str, dict[str, Any]] = {}
        if not self.per_layer:
            for s in self.signals:
                self.charts[s] = self._new_chart(s)
        self.last_violations: list[SPCViolations] = []
        self.total_violations = 0

    # running state
    STATE_SKIP = _Processor.STATE_SKIP | {"charts", "last_violations"}

    def export_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly elsewhere: counts, settings and every
        chart's settings, baseline and running state (:meth:`import_state`)."""
        charts = [
            {"key": encode(k), "chart": encode(c.to_dict()), "state": c.export_state()}
            for k, c in self.charts.items()
        ]
        return {**super().export_state(), "charts": charts}

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`export_state` of a processor charting the same signals;
        ``ValueError`` naming what does not fit, with nothing changed.

        >>> a = SPCProcessor(signals=["t"], chart="ewma", baseline_points=50)
        >>> b = SPCProcessor(signals=["t"], chart="ewma", baseline_points=50)
        >>> batch = [{"t": 1900.0 + (i % 7)} for i in range(80)]
        >>> _ = a(batch); b.import_state(a.export_state())
        >>> a(batch[:30])["signals"]["t"]["latest"] == b(batch[:30])["signals"]["t"]["latest"]
        True
        """
        if not isinstance(state, Mapping) or not isinstance(state.get("charts"), list):
            raise ValueError("SPCProcessor state needs a 'charts' list (from export_state())")
        signals = decode(state.get("signals"))
        if signals != self.signals:
            raise ValueError(f"SPCProcessor state charts {signals!r}, this one {self.signals!r}")
        charts: dict[Any, ControlChart] = {}
        for entry in state["charts"]:
            try:
                key = decode(entry["key"])
                chart = ControlChart.from_dict(decode(entry["chart"]))
                chart.import_state(entry["state"])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"SPCProcessor state: bad chart entry ({exc})") from None
            charts[tuple(key) if isinstance(key, list) else key] = chart
        super().import_state({k: v for k, v in state.items() if k != "charts"})
        self.charts = charts
        self.last_violations = []

    # baselines
    def baselines(self) -> dict[str, dict[str, Any]]:
        """``{signal: chart.to_dict()}`` for every signal with an established baseline."""
        if self.per_layer:
            return {s: dict(d) for s, d in self._templates.items()}
        return {s: c.to_dict() for s, c in self.charts.items() if c.is_ready}

    def load_baselines(self, baselines: Mapping[str, Mapping[str, Any]]) -> None:
        """Fix limits from stored ``to_dict()`` output (e.g. a previous build's baseline)."""
        for s, d in baselines.items():
            if s not in self.signals:
                raise ValueError(f"baseline for unknown signal {s!r}; signals are {self.signals}")
            chart = ControlChart.from_dict(d)
            if self.per_layer:
                self._templates[s] = chart.to_dict()
                for key in [k for k in self.charts if k[0] == s]:
                    del self.charts[key]
            else:
                self.charts[s] = chart

    def recompute_limits(self, signal: str | None = None, values: Any = None) -> None:
        """Re-estimate limits from ``values`` or each chart's most recent points."""
        for key, chart in self.charts.items():
            s = key[0] if isinstance(key, tuple) else key
            if signal is None or s == signal:
                chart.recompute_limits(values)
                if self.per_layer:
                    self._templates[s] = chart.to_dict()

    def _new_chart(self, signal: str) -> ControlChart:
        """A fresh chart for ``signal``: its ``signal_charts`` entry, else the processor's."""
        own = self.signal_charts.get(signal)
        if own is None:
            return make_chart(
                self.chart_kind, self.baseline_points, name=signal, **self.chart_options
            )
        opts = dict(own)
        kind = opts.pop("chart", self.chart_kind)
        points = opts.pop("baseline_points", self.baseline_points)
        return make_chart(kind, points, name=signal, **opts)

    def _chart_for(self, signal: str, layer: int) -> ControlChart:
        key = (signal, layer)
        chart = self.charts.get(key)
        if chart is None:
            tpl = self._templates.get(signal)
            chart = ControlChart.from_dict(tpl) if tpl is not None else self._new_chart(signal)
            self.charts[key] = chart
            layers = [k for k in self.charts if k[0] == signal]
            for old in layers[: max(0, len(layers) - self.max_layers)]:
                del self.charts[old]
        return chart

    # processing
    def _process(self, view: BatchView) -> dict[str, Any]:
        start = self._begin(view)
        n = view.n
        idx = np.arange(start, start + n, dtype=np.int64)
        found: list[SPCViolations] = []
        signals_out: dict[str, Any] = {}
        if self.per_layer:
            lay = view.column("layer")
            layers = np.unique(lay[np.isfinite(lay)]).astype(np.int64).tolist()
        segments: Any = False  # the batch's layer labels, found once when a chart needs them
        for s in self.signals:
            col = view.column(s)
            if self.per_layer:
                upd = None
                chart = None
                for L in layers:
                    m = lay == L
                    chart = self._chart_for(s, L)
                    upd = chart.update(col[m], idx[m])
                    self._collect(s, upd, start, found, chart)
                    if chart.is_ready and s not in self._templates:
                        self._templates[s] = chart.to_dict()
                if chart is None:  # no usable layer numbers in this batch
                    continue
                signals_out[s] = self._summary(s, chart, upd, layers[-1])
                signals_out[s]["n_invalid"] = int(np.count_nonzero(~np.isfinite(col)))
                signals_out[s]["n_valid"] = n - signals_out[s]["n_invalid"]
            else:
                chart = self.charts[s]
                if chart.recenter_points is not None and segments is False:
                    segments = self._segments(view)
                seg = segments if chart.recenter_points is not None else None
                upd = chart.update(col, idx, segment=seg)
                self._collect(s, upd, start, found, chart)
                signals_out[s] = self._summary(s, chart, upd, None)
        self.last_violations = found
        n_viol = int(sum(v.positions.size for v in found))
        self.total_violations += n_viol
        reported = self._violation_dicts(view, found)
        by_signal: dict[str, list[dict[str, Any]]] = {}
        for v in reported:
            by_signal.setdefault(v["signal"], []).append(v)
        for s, d in signals_out.items():
            d["violations"] = by_signal.get(s, [])
        return {
            "chart": self.chart_kind,
            "signals": signals_out,
            "violations": reported,
            "n_violations": n_viol,
            "points_seen": self.points_seen,
            "batch_size": n,
        }

    @staticmethod
    def _segments(view: BatchView) -> np.ndarray | None:
        """Layer of every message (a missing layer continues the one before), or None
        when the batch carries no layer at all (then nothing is recentred)."""
        lay = view.column("layer")
        ok = np.isfinite(lay)
        if not np.logical_or.reduce(ok):
            return None
        if not np.logical_and.reduce(ok):
            last = np.maximum.accumulate(np.where(ok, np.arange(lay.size), -1))
            lay = np.where(last >= 0, lay[np.maximum(last, 0)], lay[ok][0])
        return lay.astype(np.int64)

    @staticmethod
    def _collect(
        signal: str, upd: Any, start: int, found: list[SPCViolations], chart: ControlChart
    ) -> None:
        center = chart.baseline["mean"] if chart.baseline else 0.0
        for g in upd.groups:
            n = len(g)
            if n == 0:
                continue
            if g.statistic in ("ewma", "individual", "xbar"):
                dirs = np.sign(g.value - center).astype(np.int64)
            elif g.statistic == "residual":
                # a spike's prediction errors swing both ways: no side, one episode
                dirs = np.zeros(n, np.int64)
            elif g.statistic == "cusum_lower":
                dirs = np.full(n, -1, np.int64)
            else:
                dirs = np.ones(n, np.int64)
            rules = g.rule
            if (rules == rules[0]).all():  # the usual case: one rule, no selection
                parts: list[tuple[int, Any]] = [(int(rules[0]), slice(None))]
            else:
                parts = [(int(r), rules == r) for r in np.unique(rules).tolist()]
            for r, sel in parts:
                gi = g.index[sel]
                found.append(
                    SPCViolations(
                        signal,
                        g.statistic,
                        r,
                        gi - start,
                        gi,
                        g.value[sel],
                        None if g.score is None else g.score[sel],
                        dirs[sel],
                    )
                )

    def _summary(self, s: str, chart: ControlChart, upd: Any, layer: int | None) -> dict[str, Any]:
        lim = chart.limits()
        out: dict[str, Any] = {
            "chart": chart.kind,
            "status": "monitoring" if chart.is_ready else "baseline",
            "baseline_progress": float(chart.baseline_progress),
        }
        out.update({k: _f(v) for k, v in lim.items()})
        out.update({k: _f(v) for k, v in chart.residual_limits().items() if v is not None})
        if chart.recenter_points is not None:
            out["segment_level"] = _f(chart.segment_level)
        out["n_valid"] = int(upd.n_valid)
        out["n_invalid"] = int(upd.n_invalid)
        k = self.n_latest
        last = upd.statistic[-k:] if k else upd.statistic[:0]
        values = last.tolist()
        out["latest"] = {
            "index": upd.index[-k:].tolist() if k else [],
            "value": values
            if np.logical_and.reduce(np.isfinite(last))
            else [_f(v) for v in values],
        }
        out["n_violations"] = int(upd.n_violations)
        if layer is not None:
            out["layer"] = layer
        if s in self.spec_limits:
            lsl, usl = self.spec_limits[s]
            out.update({k2: _f(v) for k2, v in chart.capability(lsl, usl).items()})
        return out

    def _violation_dicts(self, view: BatchView, found: list[SPCViolations]) -> list[dict[str, Any]]:
        """The first ``max_reported`` violations of the batch by (position, rule), as dicts."""
        # Positions are ascending within a group, so only each group's first max_reported
        # can be among the first max_reported overall; one stable sort of those (ties keep
        # the groups' order) picks them.
        k = self.max_reported
        heads = [v.positions[:k] for v in found]
        sizes = [h.size for h in heads]
        if not sum(sizes):
            return []
        group = np.repeat(np.arange(len(found)), sizes)
        pos = np.concatenate(heads).astype(np.int64)
        rules = np.array([v.rule for v in found], np.int64)[group]
        order = np.lexsort((rules, pos))[:k]
        within = np.arange(pos.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = zip(pos[order].tolist(), group[order].tolist(), within[order].tolist(), strict=True)
        # per group: what all its rows share, and its first k indices and values as Python
        # numbers (one tolist each, not a numpy scalar per row)
        fixed: dict[int, tuple[dict[str, Any], list[int], list[float]]] = {}
        where: dict[int, dict[str, Any]] = {}  # per position: its time and place
        out = []
        for p, g, j in rows:
            at = where.get(p)
            if at is None:
                info = view.point_info(p)
                at = where[p] = {
                    "time": _iso(info["time"]),
                    "x": info["x"],
                    "y": info["y"],
                    "z": info["z"],
                    "layer": info["layer"],
                }
            group_of = fixed.get(g)
            if group_of is None:
                v = found[g]
                head = {
                    "signal": v.signal,
                    "statistic": v.statistic,
                    "rule": v.rule,
                    "rule_name": RULE_NAMES.get(v.rule, f"rule_{v.rule}"),
                    "description": RULE_DESCRIPTIONS.get(v.rule, ""),
                    "key": v.key,
                }
                group_of = fixed[g] = (head, v.index[:k].tolist(), v.values[:k].tolist())
            head, gi, gv = group_of
            out.append({**head, "index": gi[j], "value": _f(gv[j]), **at})
        return out


_DEFAULT_SPC_SEVERITY: dict[int, str] = {1: "warning", **{r: "info" for r in range(2, 9)}}
_MAIN_STATISTICS = (
    "individual",
    "xbar",
    "ewma",
    "cusum_upper",
    "cusum_lower",
    "residual",
    "residual_variance",
)
_STAT_DESCRIPTIONS = {
    "residual": "a value far from its prediction or from the level (spike or step)",
    "residual_variance": "noise variance above its baseline",
}


@dataclass
class _ScoredCandidate(Candidate):
    """An SPC candidate with how far out each point is and on which side."""

    levels: np.ndarray | None = None
    directions: np.ndarray | None = None


class AlertProcessor(_Processor):
    """Raise alerts from threshold rules and (optionally) an :class:`SPCProcessor`.

    Cooldown is the :class:`AlertManager`'s, per (metric, rule). If ``spc`` is
    given and has not seen this batch yet, it is run here; if it already has
    (registered before this processor), its result is reused, so the order of
    registration does not matter and no batch is charted twice.

    Returns ``{"alert_ids": [...], "alerts": [alert dicts], "n_candidates",
    "n_suppressed"}`` for this batch.

    >>> ap = AlertProcessor(threshold_rules=[ThresholdRule("temperature", high=2200.0)])
    >>> r = ap([{"temperature": 1900.0}, {"temperature": 2500.0, "layer": 3}])
    >>> len(r["alert_ids"]), r["alerts"][0]["rule"], r["alerts"][0]["layer"]
    (1, 'threshold_high', 3)
    >>> ap.alert_manager.acknowledge(r["alert_ids"][0]).state
    'acknowledged'
    """

    def __init__(
        self,
        alert_manager: AlertManager | None = None,
        threshold_rules: Iterable[AlertRule] = (),
        spc: SPCProcessor | None = None,
        *,
        spc_severity: Mapping[int, str] | None = None,
        column_cache: ColumnCache | None = None,
    ) -> None:
        if spc is not None and not isinstance(spc, SPCProcessor):
            raise TypeError(f"spc must be an SPCProcessor or None, got {type(spc).__name__}")
        super().__init__(
            column_cache if column_cache is not None else (spc.column_cache if spc else None)
        )
        self.alert_manager = alert_manager if alert_manager is not None else AlertManager()
        self.threshold_rules: list[AlertRule] = list(threshold_rules)
        for r in self.threshold_rules:
            if not callable(getattr(r, "evaluate", None)):
                raise TypeError(f"threshold_rules entries need an evaluate(view) method, got {r!r}")
        self.spc = spc
        sev = dict(_DEFAULT_SPC_SEVERITY)
        sev.update(spc_severity or {})
        self.spc_severity = sev
        self.total_candidates = 0

    @property
    def manager(self) -> AlertManager:
        return self.alert_manager

    # running state: counts, the rules' history and the alert manager's episodes (the
    # SPC processor keeps its own)
    STATE_SKIP = _Processor.STATE_SKIP | {
        "alert_manager",
        "threshold_rules",
        "spc",
        "spc_severity",
    }

    def export_state(self) -> dict[str, Any]:
        """Counts, each threshold rule's history and the alert manager's open episodes
        (:meth:`AlertManager.export_state`); a rule that cannot export keeps None."""
        rules = [
            [type(r).__name__, r.metric, r.export_state() if isinstance(r, Resumable) else None]
            for r in self.threshold_rules
        ]
        return {
            **super().export_state(),
            "rules": rules,
            "manager": self.alert_manager.export_state(),
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`export_state` of a processor with the same rules;
        ``ValueError`` naming what does not fit, with nothing changed.

        >>> a = AlertProcessor(threshold_rules=[MissingDataRule("t", max_consecutive=3)])
        >>> b = AlertProcessor(threshold_rules=[MissingDataRule("t", max_consecutive=3)])
        >>> _ = a([{"t": None}] * 2); b.import_state(a.export_state())
        >>> [x["rule"] for x in b([{"t": None}] * 2)["alerts"]]
        ['missing_data']
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"AlertProcessor state must be a mapping, got {type(state).__name__}")
        got = state.get("rules")
        want = [[type(r).__name__, r.metric] for r in self.threshold_rules]
        if not isinstance(got, list) or [list(g[:2]) for g in got] != want:
            raise ValueError(f"AlertProcessor state: its rules are not these ({want})")
        rules = []
        for r, (_, _, st) in zip(self.threshold_rules, got, strict=True):
            if isinstance(r, Resumable) and st is not None:
                r = copy.copy(r)  # filled apart: nothing half-applied
                r.import_state(st)
            rules.append(r)
        rest = {k: v for k, v in state.items() if k not in ("rules", "manager")}
        Resumable.import_state(copy.copy(self), rest)  # checked before anything changes
        self.alert_manager.import_state(state.get("manager"))
        super().import_state(rest)
        self.threshold_rules = rules

    def __call__(self, data_batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if data_batch is None:
            data_batch = []
        if self._seen_before(data_batch) and self.last_result is not None:
            return self.last_result
        if self.spc is not None:
            self.spc(data_batch)
        return self._remember(
            data_batch, self._process(MessageBatchView(data_batch, self.column_cache))
        )

    def process_arrays(self, columns: Mapping[str, Any]) -> dict[str, Any]:
        if self._seen_before(columns) and self.last_result is not None:
            return self.last_result
        if self.spc is not None:
            self.spc.process_arrays(columns)
        return self._remember(columns, self._process(ArrayBatchView(columns)))

    def _candidates(self, view: BatchView) -> list[Candidate]:
        out: list[Candidate] = []
        for rule in self.threshold_rules:
            out.extend(rule.evaluate(view))
        if self.spc is not None:
            for v in self.spc.last_violations:
                main = v.statistic in _MAIN_STATISTICS
                sev = self.spc_severity.get(v.rule, "info") if main else "info"
                if v.statistic in ("individual", "xbar"):
                    desc = RULE_DESCRIPTIONS.get(v.rule, "")
                else:
                    desc = _STAT_DESCRIPTIONS.get(
                        v.statistic, f"{v.statistic} beyond its control limit"
                    )
                out.append(
                    _ScoredCandidate(
                        v.signal,
                        v.key,
                        sev,
                        v.positions,
                        v.values,
                        desc,
                        levels=None if v.scores is None else escalation_level(v.scores),
                        directions=v.directions,
                    )
                )
        return out

    def _process(self, view: BatchView) -> dict[str, Any]:
        start = self._begin(view)
        raised: list[Alert] = []
        n_cand = 0
        # earliest first: a statistic that fires first opens the signal's episode
        cands = sorted(self._candidates(view), key=lambda c: c.positions[:1].tolist())
        for c in cands:
            n_cand += int(c.positions.size)
            raised.extend(self._raise(c, view, start))
        raised.sort(key=lambda a: a.index if a.index is not None else -1)
        self.total_candidates += n_cand
        return {
            "alert_ids": [a.id for a in raised],
            "alerts": [a.to_dict() for a in raised],
            "n_candidates": n_cand,
            "n_suppressed": n_cand - len(raised),
        }

    def _raise(self, c: Candidate, view: BatchView, start: int) -> list[Alert]:
        """One alert per episode of candidates (each within the cooldown of the one
        before, on the same side); the rest of an episode is counted on its alert,
        except points that escalate it (a higher level than the episode reached),
        which raise an escalation alert each."""
        mgr = self.alert_manager
        gidx = c.positions.astype(np.int64) + start
        n = gidx.size
        if n == 0:
            return []
        lvl = getattr(c, "levels", None)
        lvl = np.zeros(n, np.int64) if lvl is None else lvl
        dirs = getattr(c, "directions", None)
        dirs = np.zeros(n, np.int64) if dirs is None else dirs
        pts, secs = mgr.cooldown(c.metric, c.rule)
        within = np.zeros(n - 1, dtype=bool)  # candidate j + 1 continues candidate j's episode
        if pts is not None:
            within |= np.diff(gidx) < pts
        if secs is not None:
            with np.errstate(invalid="ignore"):  # NaN (no time) continues nothing
                within |= np.diff(view.epochs()[c.positions]) < secs
        within &= (dirs[1:] == dirs[:-1]) | (dirs[1:] == 0) | (dirs[:-1] == 0)
        starts = np.flatnonzero(np.concatenate(([True], ~within)))
        ends = np.append(starts[1:], n)
        out: list[Alert] = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            info = view.point_info(int(c.positions[s]))
            if s == 0 and mgr.continues_episode(
                c.metric,
                c.rule,
                index=int(gidx[0]),
                time=info["time"],
                level=int(lvl[0]),
                direction=int(dirs[0]),
            ):  # the episode open since an earlier batch goes on
                reached = mgr.episode_level(c.metric, c.rule) or 0
                pos = s
            else:  # this candidate begins one (or escalates the open one)
                if (a := self._raise_one(c, info, int(gidx[s]), s, int(lvl[s]))) is not None:
                    out.append(a)
                reached, pos = int(lvl[s]), s + 1
            seg = lvl[pos:e]
            before = np.maximum.accumulate(np.concatenate(([reached], seg)))[:-1]
            for j in (np.flatnonzero(seg > before) + pos).tolist():
                self._repeats(c, view, pos, j, gidx)
                inf = view.point_info(int(c.positions[j]))
                if (a := self._raise_one(c, inf, int(gidx[j]), j, int(lvl[j]))) is not None:
                    out.append(a)
                pos = j + 1
            self._repeats(c, view, pos, e, gidx)
        return out

    def _repeats(self, c: Candidate, view: BatchView, a: int, b: int, gidx: np.ndarray) -> None:
        """Count candidates ``a .. b-1`` on the open episode."""
        if b > a:
            last = view.time_at(int(c.positions[b - 1]))
            self.alert_manager.record_repeats(
                c.metric, c.rule, b - a, last_index=int(gidx[b - 1]), last_time=last
            )

    def _raise_one(
        self, c: Candidate, info: dict[str, Any], index: int, j: int, level: int = 0
    ) -> Alert | None:
        value = float(c.values[j])
        x, y, z = info["x"], info["y"], info["z"]
        where = f" at layer {info['layer']}" if info["layer"] is not None else ""
        if x is not None and y is not None and z is not None:
            where += f" (x={x:.3f}, y={y:.3f}, z={z:.3f})"
        build = f" [build {info['build_id']}]" if info["build_id"] is not None else ""
        return self.alert_manager.raise_alert(
            c.metric,
            c.rule,
            value,
            severity=c.severity,
            message=f"{c.metric} {c.rule}: {value:.6g} ({c.description}){where}{build}",
            time=info["time"],
            index=index,
            x=x,
            y=y,
            z=z,
            layer=info["layer"],
            build_id=info["build_id"],
            details={"description": c.description, **c.details},
            level=level,
            direction=int(d[j]) if (d := getattr(c, "directions", None)) is not None else 0,
        )


def default_threshold_rules(
    limits: Mapping[str, Mapping[str, float]] | None = None,
    *,
    sample_rate_hz: float | None = None,
    max_missing: int = 20,
    profile: MachineProfile | None = None,
) -> list[AlertRule]:
    """Threshold, rate-of-change, missing-data and time-gap rules for a profile's signals
    (default: the simulator's). ``limits`` replaces the profile's alarm limits.

    A charted signal (``spc`` other than ``none``) above its high limit is critical
    (too hot / too big / too bright means keyholing or spatter); anything else out
    of limits is a warning. Charted signals also get a missing-data rule.

    >>> [type(r).__name__ for r in default_threshold_rules()][:3]
    ['ThresholdRule', 'ThresholdRule', 'RateOfChangeRule']
    """
    prof = profile if profile is not None else _SIMULATOR
    lim = {k: dict(v) for k, v in (limits if limits is not None else prof.limits()).items()}
    charted = prof.spc_signals
    rules: list[AlertRule] = []
    for metric, d in lim.items():
        if "high" in d:
            sev = "critical" if metric in charted else "warning"
            rules.append(ThresholdRule(metric, high=d["high"], severity=sev))
        if "low" in d:
            rules.append(ThresholdRule(metric, low=d["low"], severity="warning"))
        if "max_change" in d:
            rules.append(RateOfChangeRule(metric, max_change=d["max_change"], severity="info"))
    for metric in charted:
        rules.append(MissingDataRule(metric, max_consecutive=max_missing, severity="warning"))
    if sample_rate_hz is None:
        sample_rate_hz = prof.machine.sample_rate_hz
    rules.append(
        GapRule(sample_rate_hz=sample_rate_hz, max_missing=max_missing, severity="warning")
    )
    return rules


def default_processors(
    *,
    profile: MachineProfile | None = None,
    alert_manager: AlertManager | None = None,
    limits: Mapping[str, Mapping[str, float]] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    sample_rate_hz: float | None = None,
    baseline_points: int = 5000,
    ewma_lambda: float | None = None,
    ewma_L: float | None = None,
    spc_options: Mapping[str, Any] | None = None,
    cooldown_points: int = 1000,
    column_cache: ColumnCache | None = None,
) -> dict[str, Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]]:
    """The quality, SPC and alert processors, configured from a machine profile
    (default: the simulator's, :meth:`MachineProfile.default`).

    Quality covers every signal of the profile (plausible ``range``s). SPC
    charts each signal whose ``spc`` is not ``none``, with that kind and its
    ``spc_options``, baseline from the first ``baseline_points`` points. The
    simulator's profile charts temperature, melt-pool area and intensity with
    an EWMA valid for autocorrelated signals: an AR model of the baseline sets
    the limits (``sigma_method="ar"``), each layer is charted against its own
    level and noise scale (``recenter_points``, a random-effects model of
    layer-to-layer shifts), and spikes/steps (``residual_L``) and variance
    increases (``variance_L``) are watched too (see
    :mod:`am_qadf.monitoring.control_charts`); λ = 0.003 and L = 4.5 keep false
    alerts below 1 per 100 k in-control points at 20 kHz while a drift of 1 sigma
    per 1,000 points is found (``bench/bench_detection_matrix.py``).
    ``ewma_lambda``/``ewma_L`` override λ and L of the EWMA charts;
    ``spc_options`` overrides chart options of every charted signal (e.g.
    ``{"sigma_method": "moving_range", "recenter_points": None, "residual_L":
    None, "variance_L": None}`` for the classic chart). The alert
    processor adds the profile's thresholds (:func:`default_threshold_rules`;
    ``limits`` replaces them), missing-data rules and a time-gap rule
    (``sample_rate_hz``, else the profile's, else learned from the first batch).
    Cooldown is ``cooldown_points`` per (metric, rule). The three share one
    column cache; the alert processor exposes the shared :class:`AlertManager`
    as ``.alert_manager``.

    >>> procs = default_processors()
    >>> sorted(procs)
    ['alert_processor', 'quality_processor', 'spc_processor']
    >>> procs["alert_processor"].alert_manager.cooldown_points
    1000
    >>> procs["spc_processor"].charts["temperature"].kind
    'ewma'
    """
    prof = profile if profile is not None else _SIMULATOR
    cache = column_cache if column_cache is not None else ColumnCache()
    manager = (
        alert_manager
        if alert_manager is not None
        else AlertManager(cooldown_points=cooldown_points)
    )
    quality = QualityProcessor(
        prof.signal_names or ("value",),
        ranges if ranges is not None else prof.ranges(),
        column_cache=cache,
    )
    charts = prof.spc_charts()
    for spec in charts.values():
        spec.update(spc_options or {})
        if spec["chart"] == "ewma":
            if ewma_lambda is not None:
                spec["lam"] = ewma_lambda
            if ewma_L is not None:
                spec["L"] = ewma_L
    spc: SPCProcessor | None = None
    if charts:
        try:
            spc = SPCProcessor(
                list(charts),
                chart=next(iter(charts.values()))["chart"],
                baseline_points=baseline_points,
                column_cache=cache,
                signal_charts=charts,
            )
        except (TypeError, ValueError) as exc:
            bad = _bad_chart(charts, baseline_points)
            raise ProfileError(prof.source, f"signals.{bad}.spc_options", str(exc)) from None
    alert = AlertProcessor(
        manager,
        default_threshold_rules(limits, sample_rate_hz=sample_rate_hz, profile=prof),
        spc=spc,
        column_cache=cache,
    )
    out: dict[str, Any] = {"quality_processor": quality}
    if spc is not None:
        out["spc_processor"] = spc
    out["alert_processor"] = alert
    return out


def _bad_chart(charts: Mapping[str, Mapping[str, Any]], baseline_points: int) -> str:
    """The first signal whose chart settings ``make_chart`` refuses."""
    for s, spec in charts.items():
        opts = dict(spec)
        kind = opts.pop("chart")
        try:
            make_chart(kind, opts.pop("baseline_points", baseline_points), **opts)
        except (TypeError, ValueError):
            return s
    return next(iter(charts))
