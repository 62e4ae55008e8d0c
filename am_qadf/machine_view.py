"""What a machine's dashboard reads and asks, whatever runs the machine's pipeline.

A view never reaches into a pipeline's client, voxel grid or alert manager: it reads
typed values through a :class:`MachineSource` — :class:`MonitorSnapshot` for the
status figures, :class:`SignalWindow` for a live signal, :class:`GridInfo` and the
bricks changed since a viewer's cursor for the 3D view and the layer map,
:class:`AlertCounts` and :class:`~am_qadf.monitoring.alerts.Alert` for alerts — and
asks for operator actions with who asked (``by``). Two sources implement it:
:class:`~am_qadf.live_monitor.LiveMonitor` (the pipeline in this process) and
:class:`~am_qadf.fleet.remote_machine.RemoteMachine` (one machine of a fleet, read
from the state store its worker publishes to).

>>> snap = MonitorSnapshot.from_dict({"state": "running", "current_layer": 4, "extra": 1})
>>> snap.state, snap.current_layer, snap.build_id
('running', 4, None)
>>> SignalWindow.empty("power").newest_s is None
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from am_qadf.machine_profile import MachineProfile
from am_qadf.monitoring.alerts import SEVERITIES, Alert, AlertManager

__all__ = [
    "ALL_ACTIONS",
    "AlertCounts",
    "ChartState",
    "GridInfo",
    "HealthReport",
    "MachineSource",
    "MonitorSnapshot",
    "SignalWindow",
    "StorageHealth",
    "StreamStats",
    "Violation",
    "alert_from_dict",
    "chart_state",
    "chart_states",
    "violations",
]

#: Operator actions a source may offer (each is an :class:`AccessPolicy` action name).
ALL_ACTIONS: frozenset[str] = frozenset(
    {
        "pause",
        "resume",
        "seek",
        "acknowledge",
        "clear_alert",
        "relearn_baseline",
        "inject_defect",
        "delete_old_data",
    }
)


def _count(data: Mapping[str, Any], key: str, kind: type, default: Any, what: str = "stats") -> Any:
    """``data[key]`` as ``kind`` (int or float; ``default`` when missing or None);
    ``ValueError`` naming the report and key when it is not a number."""
    v = _number(data.get(key), key, what)
    return default if v is None else kind(v)


def _number(v: Any, key: str, what: str) -> int | float | None:
    """``v`` if it is a number or None; else ``ValueError`` naming the report and key."""
    if v is None or (not isinstance(v, bool) and isinstance(v, int | float)):
        return v
    raise ValueError(f"{what} field {key!r} must be a number, got {v!r:.80}")


@dataclass(frozen=True)
class StreamStats:
    """The pipeline's counters (:meth:`StreamingClient.get_stream_statistics`): messages
    and batches processed, batch latency (mean, max, last, total; ms), mean throughput
    since start, errors and dead letters, signals given a buffer and refused one (past
    ``max_signals``), the newest error, the consumer's state and lag, and whether
    storage is behind (``backpressure``).

    >>> s = StreamStats.from_mapping({"messages_processed": 7, "errors": 1, "other": "x"})
    >>> s.messages_processed, s.errors, s.last_error
    (7, 1, None)
    >>> StreamStats.from_mapping({"errors": "many"})
    Traceback (most recent call last):
    ValueError: stats field 'errors' must be a number, got 'many'
    """

    messages_processed: int = 0
    batches_processed: int = 0
    average_latency_ms: float = 0.0
    max_latency_ms: float = 0.0
    last_latency_ms: float = 0.0
    total_processing_time_ms: float = 0.0
    throughput_messages_per_sec: float = 0.0
    errors: int = 0
    dead_lettered: int = 0
    signals_buffered: int = 0
    signals_refused: int = 0
    max_signals: int | None = None
    consumer_lag: int = 0
    last_error: str | None = None
    consumer_state: str = ""
    backpressure: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StreamStats:
        """From the statistics dict, as computed or as published (unknown keys are
        ignored, missing ones take their default); ``ValueError`` naming a field that
        is not of its kind."""
        if not isinstance(data, Mapping):
            raise ValueError(f"snapshot field 'stats' must be a mapping, got {data!r:.80}")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "last_error":
                kw[f.name] = None if data.get(f.name) is None else str(data[f.name])
            elif f.name == "consumer_state":
                kw[f.name] = str(data.get(f.name) or "")
            elif f.name == "backpressure":
                kw[f.name] = bool(data.get(f.name))
            elif f.name == "max_signals":
                kw[f.name] = _count(data, f.name, int, None)
            else:
                kw[f.name] = _count(data, f.name, type(f.default), f.default)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (what :meth:`from_mapping` reads)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StorageHealth:
    """The storage's part of the health report (:meth:`StreamStorage.health`): cache
    and history backends (``redis``/``memory``, ``mongodb``/``sqlite``), whether each
    answers, where the history is, documents stored, duplicates ignored and refused,
    cache writes and failures (and calls skipped while it was down), and messages
    spooled while the history was down.

    >>> StorageHealth.from_mapping({"cache_backend": "memory", "cache_ok": True,
    ...                             "documents_inserted": 5}).documents_inserted
    5
    """

    cache_backend: str = ""
    cache_ok: bool = False
    history_backend: str = ""
    history_location: str = ""
    history_ok: bool = False
    spooled: int = 0
    spool_limit: int = 0
    spooled_total: int = 0
    documents_inserted: int = 0
    duplicates_ignored: int = 0
    rejected_documents: int = 0
    cache_writes: int = 0
    cache_failures: int = 0
    cache_skipped: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StorageHealth:
        """From the storage health dict (unknown keys ignored); ``ValueError`` naming a
        count that is not a number."""
        if not isinstance(data, Mapping):
            raise ValueError(f"health field 'storage' must be a mapping, got {data!r:.80}")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = data.get(f.name)
            if isinstance(f.default, bool):
                kw[f.name] = bool(v)
            elif isinstance(f.default, int):
                kw[f.name] = _count(data, f.name, int, 0, "storage health")
            else:
                kw[f.name] = "" if v is None else str(v)
        return cls(**kw)


@dataclass(frozen=True)
class HealthReport:
    """Connection state for the health views (:meth:`StreamingClient.health`): the
    broker (``kafka`` or ``memory``, the in-process one) and its servers, the
    consumer's state, and the storage's health (None without storage).

    >>> h = HealthReport.from_mapping({"broker": "memory", "bootstrap_servers": ["memory://"],
    ...                                "consumer_state": "running", "storage": None})
    >>> h.broker, h.bootstrap_servers, h.storage
    ('memory', ('memory://',), None)
    """

    broker: str = "kafka"
    bootstrap_servers: tuple[str, ...] = ()
    consumer_state: str = ""
    storage: StorageHealth | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> HealthReport:
        """From the health dict, as computed or as published (unknown keys ignored);
        ``ValueError`` naming what is malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"snapshot field 'health' must be a mapping, got {data!r:.80}")
        servers = data.get("bootstrap_servers") or ()
        if isinstance(servers, str) or not isinstance(servers, list | tuple):
            raise ValueError(
                f"health field 'bootstrap_servers' must be a list, got {servers!r:.80}"
            )
        storage = data.get("storage")
        return cls(
            broker=str(data.get("broker") or "kafka"),
            bootstrap_servers=tuple(str(v) for v in servers),
            consumer_state=str(data.get("consumer_state") or ""),
            storage=None if not storage else StorageHealth.from_mapping(storage),
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (what :meth:`from_mapping` reads)."""
        storage = self.storage
        return {
            "broker": self.broker,
            "bootstrap_servers": list(self.bootstrap_servers),
            "consumer_state": self.consumer_state,
            "storage": None if storage is None else dataclasses.asdict(storage),
        }


@dataclass(frozen=True)
class MonitorSnapshot:
    """The status figures of one machine, cheap enough for every UI tick.

    ``state`` is the consumer's (``running``, ``paused``, ``stopped``, ``failed``;
    ``idle`` for a fleet machine without data), ``feed`` what the page says about it
    (:func:`~am_qadf.live_monitor.feed_state`), ``data_age_s`` seconds since the newest
    batch arrived. ``builds`` and ``replays`` count build starts and replays (views
    reset when they change). ``stats`` are the pipeline's counters
    (:class:`StreamStats`), ``health`` its connections (:class:`HealthReport`);
    ``profile``, ``baseline``, ``history_disk`` and
    ``build_plan`` (the shown build's ``layers``, where known) are the reports of the
    same names of :meth:`~am_qadf.live_monitor.LiveMonitor.snapshot`.

    >>> MonitorSnapshot(alerts_active=2).alerts_active
    2
    """

    machine_id: str = ""
    name: str = ""
    state: str = "stopped"
    feed: str = "stopped"
    data_age_s: float | None = None
    stale_after_s: float = 5.0
    messages_new: int = 0
    messages_replayed: int = 0
    builds: int = 0
    replays: int = 0
    replay_from_layer: int | None = None
    replayed_from_history: int = 0
    topic: str = ""
    current_layer: int | None = None
    build_id: str | None = None
    newest_timestamp: Any = None
    newest_z: float | None = None
    occupied_voxels: int = 0
    points_outside_grid: int = 0
    grid_box: tuple[list[float], list[float]] | None = None
    grid_bytes: int = 0
    alerts_active: int = 0
    published: int | None = None
    publish_failed: int | None = None
    build_plan: Mapping[str, Any] | None = None
    stats: StreamStats = field(default_factory=StreamStats)
    health: HealthReport = field(default_factory=HealthReport)
    profile: Mapping[str, Any] = field(default_factory=dict)
    baseline: Mapping[str, Any] = field(default_factory=dict)
    history_disk: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorSnapshot:
        """From a :meth:`LiveMonitor.snapshot` dict (unknown keys are ignored; a
        missing report is empty)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known and v is not None}
        for name in ("profile", "baseline", "history_disk"):
            if not isinstance(kw.get(name, {}), Mapping):
                raise ValueError(f"snapshot field {name!r} must be a mapping, got {kw[name]!r:.80}")
        if not isinstance(kw.get("stats"), StreamStats):
            kw["stats"] = StreamStats.from_mapping(kw.get("stats", {}))
        if not isinstance(kw.get("health"), HealthReport):
            kw["health"] = HealthReport.from_mapping(kw.get("health", {}))
        for name in ("build_plan", "replay_from_layer", "data_age_s", "current_layer"):
            if name in data and data[name] is None:
                kw[name] = None
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Every field, the typed reports as dicts (what :meth:`from_dict` reads back);
        the other reports are the snapshot's own objects, not copies.

        >>> snap = MonitorSnapshot(stats=StreamStats(errors=2))
        >>> MonitorSnapshot.from_dict(snap.to_dict()) == snap, snap.to_dict()["stats"]["errors"]
        (True, 2)
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stats"] = self.stats.to_dict()
        out["health"] = self.health.to_dict()
        return out


@dataclass(frozen=True)
class SignalWindow:
    """The newest values of one live signal: ``epoch_us`` (int64) and ``values``
    (float, one per time), oldest first.

    >>> w = SignalWindow("power", np.array([1_000_000, 2_000_000]), np.array([1.0, 2.0]))
    >>> w.newest_s, len(w)
    (2.0, 2)
    """

    name: str
    epoch_us: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls, name: str) -> SignalWindow:
        """A window without data (the signal has not arrived yet)."""
        return cls(name, np.empty(0, dtype=np.int64), np.empty(0))

    def __len__(self) -> int:
        return int(self.epoch_us.size)

    @property
    def newest_s(self) -> float | None:
        """Epoch seconds of the newest value (None when empty)."""
        return float(self.epoch_us[-1]) / 1e6 if self.epoch_us.size else None


@dataclass(frozen=True)
class GridInfo:
    """Where the voxel grid lies: lower and upper corner (mm), voxel size (mm) and
    voxels per axis.

    >>> g = GridInfo((0.0, 0.0, 0.0), (10.0, 10.0, 2.0), 0.5, (20, 20, 4))
    >>> g.layer_of(1.2), g.layer_of(9.0)
    (2, None)
    """

    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    resolution: float
    dims: tuple[int, int, int]

    def layer_of(self, z: float | None) -> int | None:
        """The voxel layer holding height ``z`` (None: no height, or off the grid)."""
        if z is None or not np.isfinite(z):
            return None
        k = int(np.floor((float(z) - self.bbox_min[2]) / self.resolution))
        return k if 0 <= k < self.dims[2] else None


@dataclass(frozen=True)
class AlertCounts:
    """Alert figures: ``raised`` in all, ``suppressed`` repeats, ``kept`` in the list,
    per state (``active`` unacknowledged, ``acknowledged``, ``cleared``) and
    ``by_severity``: unacknowledged active alerts per severity.

    >>> mgr = AlertManager()
    >>> _ = mgr.raise_alert("temperature", "threshold_high", 2600.0, severity="critical")
    >>> c = AlertCounts.of(mgr)
    >>> c.raised, c.active, c.by_severity["critical"]
    (1, 1, 1)
    """

    raised: int = 0
    suppressed: int = 0
    kept: int = 0
    active: int = 0
    acknowledged: int = 0
    cleared: int = 0
    by_severity: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, manager: AlertManager) -> AlertCounts:
        """The counts of an :class:`AlertManager` now."""
        stats = manager.statistics()
        by_sev = dict.fromkeys(SEVERITIES, 0)
        for a in manager.active_alerts(include_acknowledged=False):
            by_sev[a.severity] = by_sev.get(a.severity, 0) + 1
        return cls(
            raised=int(stats.get("raised", 0)),
            suppressed=int(stats.get("suppressed", 0)),
            kept=int(stats.get("kept", 0)),
            active=int(stats.get("active", 0)),
            acknowledged=int(stats.get("acknowledged", 0)),
            cleared=int(stats.get("cleared", 0)),
            by_severity=by_sev,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertCounts:
        """From ``dataclasses.asdict`` of one (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_ALERT_FIELDS = {f.name: f for f in fields(Alert)}
_ALERT_TIMES = ("time", "raised_at", "acknowledged_at", "cleared_at", "last_time")


def alert_from_dict(data: Mapping[str, Any]) -> Alert:
    """An :class:`Alert` back from :meth:`Alert.to_dict` (as stored or published);
    ``ValueError`` naming what is missing or malformed.

    >>> a = AlertManager().raise_alert("power", "ewma_high", 310.0, severity="warning")
    >>> alert_from_dict(a.to_dict()) == a
    True
    """
    missing = [k for k in ("id", "severity", "rule", "metric") if not data.get(k)]
    if missing:
        raise ValueError(f"an alert needs {', '.join(missing)}; got {dict(data)!r:.200}")
    kw = {k: v for k, v in data.items() if k in _ALERT_FIELDS}
    for k in _ALERT_TIMES:
        if isinstance(kw.get(k), str):
            try:
                kw[k] = datetime.fromisoformat(kw[k])
            except ValueError:
                raise ValueError(f"alert {data['id']!r}: {k} is not a time: {kw[k]!r}") from None
    if kw.get("value") is None:
        kw["value"] = float("nan")
    kw["details"] = dict(kw.get("details") or {})
    return Alert(**kw)


def chart_state(own: Mapping[str, Any], beside: Mapping[str, Any], chart: str) -> dict[str, Any]:
    """The SPC state of the ``chart`` kind: the results of the charts of that kind run
    beside the signals' own (``beside``), with each signal whose own chart is of that
    kind taken from ``own`` (the signals' own charts' results).

    >>> own = {"signals": {"t": {"chart": "ewma", "center": 1.0}}}
    >>> beside = {"signals": {"p": {"chart": "imr"}}, "n": 2}
    >>> sorted(chart_state(own, beside, "imr")["signals"]), chart_state(own, {}, "ewma")
    (['p'], {'signals': {'t': {'chart': 'ewma', 'center': 1.0}}})
    """
    signals = dict(beside.get("signals") or {})
    for sig, st in (own.get("signals") or {}).items():
        if st.get("chart") == chart:
            signals[sig] = st  # the signal's own chart is of this kind
    return {**beside, "signals": signals}


def _opt_float(v: Any, key: str, what: str = "SPC state") -> float | None:
    """``v`` as a float (None stays None); ``ValueError`` when it is not a number."""
    v = _number(v, key, what)
    return None if v is None else float(v)


@dataclass(frozen=True)
class ChartState:
    """One signal's latest control-chart result: the chart kind, ``status``
    (``baseline`` while the limits are being learned, then ``monitoring``) with the
    baseline's progress (0–1), centre line, sigma and control limits (None before the
    baseline), and the EWMA's ``lam`` where the chart has one.

    >>> s = ChartState.from_mapping({"chart": "ewma", "status": "monitoring",
    ...                              "center": 1900, "lcl": 1890.0, "ucl": 1910.0})
    >>> s.learning, s.center, s.limits
    (False, 1900.0, (1900.0, 1890.0, 1910.0))
    """

    chart: str = ""
    status: str = ""
    baseline_progress: float = 0.0
    center: float | None = None
    sigma: float | None = None
    lcl: float | None = None
    ucl: float | None = None
    lam: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ChartState:
        """From one signal's entry of :meth:`MachineSource.spc_state` (other keys are
        ignored); ``ValueError`` naming a field that is not of its kind."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an SPC chart state must be a mapping, got {data!r:.80}")
        nums = {k: _opt_float(data.get(k), k) for k in ("center", "sigma", "lcl", "ucl", "lam")}
        return cls(
            chart=str(data.get("chart") or ""),
            status=str(data.get("status") or ""),
            baseline_progress=_opt_float(data.get("baseline_progress"), "baseline_progress") or 0.0,
            **nums,
        )

    @property
    def learning(self) -> bool:
        """True while the chart learns its baseline (no limits to draw yet)."""
        return self.status == "baseline"

    @property
    def limits(self) -> tuple[float | None, float | None, float | None]:
        """``(center, lcl, ucl)``."""
        return self.center, self.lcl, self.ucl


def chart_states(state: Mapping[str, Any]) -> dict[str, ChartState]:
    """``{signal: ChartState}`` of an :meth:`MachineSource.spc_state` result (the one
    conversion both sources use for :meth:`MachineSource.chart_states`).

    >>> chart_states({"signals": {"t": {"chart": "imr", "status": "baseline"}}})["t"].learning
    True
    >>> chart_states({})
    {}
    """
    signals = (state or {}).get("signals") or {}
    return {str(k): ChartState.from_mapping(v) for k, v in signals.items()}


@dataclass(frozen=True)
class Violation:
    """One SPC rule violation: the ``signal``, the charted ``statistic``, the Western
    Electric ``rule`` (number and name), the point's ``index`` in the chart and its
    ``value``, and where it happened (``time``, build ``layer``, x/y/z in mm; None where
    unknown).

    >>> v = Violation.from_mapping({"signal": "t", "rule": 1, "index": 7, "value": 2.0,
    ...                             "time": "2026-01-01T08:00:00+00:00", "layer": 3})
    >>> v.time.hour, v.layer, v.is_residual
    (8, 3, False)
    """

    signal: str
    rule: int
    index: int = 0
    value: float | None = None
    statistic: str = ""
    rule_name: str = ""
    time: datetime | None = None
    layer: int | None = None
    x: float | None = None
    y: float | None = None
    z: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Violation:
        """From a violation dict (:meth:`MachineSource.spc_violations`, as recorded or as
        published, ``time`` a datetime or ISO text); ``ValueError`` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a violation must be a mapping, got {data!r:.80}")
        t = data.get("time")
        if isinstance(t, str):
            try:
                t = datetime.fromisoformat(t)
            except ValueError:
                raise ValueError(f"violation time is not a time: {t!r:.80}") from None
        elif t is not None and not isinstance(t, datetime):
            raise ValueError(f"violation time is not a time: {t!r:.80}")
        layer = _opt_float(data.get("layer"), "layer", "violation")
        rule = _opt_float(data.get("rule"), "rule", "violation")
        if rule is None:
            raise ValueError(f"a violation needs its rule, got {dict(data)!r:.120}")
        return cls(
            signal=str(data.get("signal") or ""),
            rule=int(rule),
            index=int(_opt_float(data.get("index"), "index", "violation") or 0),
            value=_opt_float(data.get("value"), "value", "violation"),
            statistic=str(data.get("statistic") or ""),
            rule_name=str(data.get("rule_name") or ""),
            time=t,
            layer=None if layer is None else int(layer),
            **{k: _opt_float(data.get(k), k, "violation") for k in ("x", "y", "z")},
        )

    @property
    def is_residual(self) -> bool:
        """True for a violation of a residual statistic (a prediction error or a
        variance ratio, not a point of the chart's own statistic)."""
        return self.statistic.startswith("residual")


def violations(marks: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """:class:`Violation` of each dict of ``marks`` (the one conversion both sources use
    for :meth:`MachineSource.rule_violations`).

    >>> [v.rule for v in violations([{"signal": "t", "rule": 2}])]
    [2]
    """
    return [Violation.from_mapping(m) for m in marks]


@runtime_checkable
class MachineSource(Protocol):
    """What a machine's dashboard reads and asks: implemented by
    :class:`~am_qadf.live_monitor.LiveMonitor` and
    :class:`~am_qadf.fleet.remote_machine.RemoteMachine`.

    Actions take who asked (``by``) and raise ``PermissionError`` (not allowed),
    ``ValueError`` (bad argument), ``KeyError`` (unknown alert) or ``RuntimeError`` (not
    possible now, or not offered: see :attr:`actions`).
    """

    profile: MachineProfile

    @property
    def actions(self) -> frozenset[str]:
        """The operator actions this source offers (of :data:`ALL_ACTIONS`)."""
        ...

    @property
    def simulated(self) -> bool:
        """True when test defects may be injected (a simulated build)."""
        ...

    @property
    def has_history(self) -> bool:
        """True when stored history can be queried here."""
        ...

    # status and signals
    def monitor_snapshot(self) -> MonitorSnapshot: ...

    def signal_newest(self, name: str) -> float | None: ...

    def signal_window(self, name: str, seconds: float) -> SignalWindow: ...

    def buffered_seconds(self) -> float: ...

    # voxels and layers
    def grid_info(self) -> GridInfo: ...

    def voxel_signals(self) -> list[str]: ...

    def take_updated_bricks(self, viewer: str) -> tuple[np.ndarray, bool]: ...

    def occupied(self, signal: str) -> tuple[np.ndarray, np.ndarray]: ...

    def voxel_values(self, signal: str, ijk: np.ndarray) -> np.ndarray: ...

    def forget_viewer(self, viewer: str) -> None: ...

    def build_layers(self, k: int) -> tuple[int, int] | None: ...

    def voxel_layer(self, build_layer: int) -> int | None: ...

    # alerts
    def alert_counts(self) -> AlertCounts: ...

    def alert_list(self, limit: int | None = None, *, state: str | None = None) -> list[Alert]: ...

    def active_alerts(
        self, *, severity: str | None = None, include_acknowledged: bool = True
    ) -> list[Alert]: ...

    # SPC
    def spc_state(self, chart: str | None = None) -> dict[str, Any]: ...

    def chart_states(self, chart: str | None = None) -> dict[str, ChartState]: ...

    def spc_kinds(self, signal: str) -> list[str]: ...

    def spc_series(
        self, chart: str, signal: str, seconds: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def spc_violations(self, chart: str, signal: str | None = None) -> list[dict[str, Any]]: ...

    def rule_violations(self, chart: str, signal: str | None = None) -> list[Violation]: ...

    def baseline_info(self) -> dict[str, Any]: ...

    # history
    def history_disk(self) -> dict[str, Any]: ...

    def query_history(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, Any] | None = None,
        limit: int = 50_000,
    ) -> list[dict[str, Any]]: ...

    # operator actions
    def pause(self, *, by: str | None = None) -> None: ...

    def resume(self, *, by: str | None = None) -> None: ...

    def seek_to_beginning(self, timeout: float = 30.0, *, by: str | None = None) -> None: ...

    def acknowledge(self, alert_id: str, by: str | None = None) -> dict[str, Any]: ...

    def clear_alert(self, alert_id: str, *, by: str | None = None) -> dict[str, Any]: ...

    def relearn_baseline(self, by: str | None = None, timeout: float = 30.0) -> None: ...

    def inject_test_defect(
        self, n_points: int = 60, temperature: float = 2650.0, *, by: str | None = None
    ) -> int: ...

    def delete_history(self, keep_hours: float, *, by: str | None = None) -> int: ...
