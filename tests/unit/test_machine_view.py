"""The machine-source interface: typed snapshots and values, LiveMonitor as a source,
and no dashboard view reaching into a pipeline's internals."""

from __future__ import annotations

import ast
import json
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from am_qadf import machine_view
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_view import (
    AlertCounts,
    ChartState,
    GridInfo,
    HealthReport,
    MachineSource,
    MonitorSnapshot,
    SignalWindow,
    StorageHealth,
    StreamStats,
    Violation,
    alert_from_dict,
    chart_states,
)
from am_qadf.monitoring.alerts import AlertManager
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.streaming import StreamingConfig

ROOT = Path(__file__).resolve().parents[2]
#: What a view must not reach into: the pipeline's collaborators.
FORBIDDEN = {"client", "grid", "alerts", "storage", "config", "changes", "incremental", "spc"}
_MONITOR_NAMES = {"monitor", "mon"}


def _reaches_in(node: ast.AST) -> str | None:
    """``monitor.client`` / ``self.monitor.grid`` / ``getattr(monitor, "alerts")``."""
    if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
        owner = node.value
        if (isinstance(owner, ast.Name) and owner.id in _MONITOR_NAMES) or (
            isinstance(owner, ast.Attribute) and owner.attr in _MONITOR_NAMES
        ):
            return node.attr
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value in FORBIDDEN
    ):
        owner = node.args[0]
        if (isinstance(owner, ast.Name) and owner.id in _MONITOR_NAMES) or (
            isinstance(owner, ast.Attribute) and owner.attr in _MONITOR_NAMES
        ):
            return str(node.args[1].value)
    return None


def violations(source: str, filename: str = "<view>") -> list[str]:
    tree = ast.parse(source, filename)
    return [
        f"{filename}:{n.lineno}: monitor.{attr}" for n in ast.walk(tree) if (attr := _reaches_in(n))
    ]


def test_the_check_finds_a_view_reaching_into_the_pipeline():
    bad = (
        "class V:\n"
        "    def refresh(self, snap):\n"
        "        self.monitor.client.get_buffer('z')\n"
        "        mon = self.monitor\n"
        "        mon.grid.get_occupied('t')\n"
        "        getattr(self.monitor, 'config', None)\n"
        "        self.monitor.alerts.history()\n"
    )
    assert sorted(v.rsplit(".", 1)[1] for v in violations(bad)) == [
        "alerts",
        "client",
        "config",
        "grid",
    ]
    assert violations("self.monitor.alert_list(5); self.monitor.grid_info()") == []


#: Not views: the module that builds and owns the embedded pipeline (and wires its
#: counters to /metrics) may hold its parts.
OWNERS = {"pipeline_cache.py"}


def test_no_dashboard_view_reaches_into_the_pipeline():
    found = []
    for path in sorted((ROOT / "dashboard").glob("*.py")):
        if path.name not in OWNERS:
            found += violations(path.read_text(encoding="utf-8"), path.name)
    assert found == [], "views must use the MachineSource interface:\n" + "\n".join(found)


# -- the dataclasses ----------------------------------------------------------------------
def test_monitor_snapshot_is_typed_frozen_and_ignores_unknown_keys():
    snap = MonitorSnapshot.from_dict(
        {"state": "running", "current_layer": 12, "stats": {"errors": 1}, "future_key": 3}
    )
    assert (snap.state, snap.current_layer, snap.stats.errors) == ("running", 12, 1)
    assert snap.build_plan is None and snap.health == HealthReport()
    with pytest.raises(FrozenInstanceError):
        snap.state = "paused"  # type: ignore[misc]
    with pytest.raises(ValueError, match="'stats' must be a mapping"):
        MonitorSnapshot.from_dict({"stats": [1, 2]})


def test_stream_stats_are_typed_and_read_once_for_both_sources():
    mon = LiveMonitor(MonitorConfig(simulate=False))
    raw = mon.client.get_stream_statistics()
    typed = mon.monitor_snapshot().stats
    assert isinstance(typed, StreamStats)
    assert set(raw) == set(StreamStats.__dataclass_fields__)  # every counter, typed
    assert typed.to_dict() == {**raw, "last_error": None}
    # as a worker publishes it (JSON) and a reader reads it back: the same counters
    published = json.loads(json.dumps(mon.monitor_snapshot().to_dict(), default=str))
    assert MonitorSnapshot.from_dict(published).stats == typed
    with pytest.raises(ValueError, match="stats field 'consumer_lag' must be a number"):
        MonitorSnapshot.from_dict({"stats": {"consumer_lag": [3]}})
    assert StreamStats.from_mapping({"errors": 2.0, "max_signals": None}).errors == 2


def test_health_report_is_typed_with_its_storage_part(tmp_path):
    streaming = StreamingConfig.embedded(storage_path=str(tmp_path))
    mon = LiveMonitor(MonitorConfig(streaming=streaming, simulate=False))
    raw = mon.client.health()
    typed = mon.monitor_snapshot().health
    assert isinstance(typed, HealthReport) and isinstance(typed.storage, StorageHealth)
    assert (typed.broker, typed.consumer_state) == (raw["broker"], raw["consumer_state"])
    assert typed.storage.history_backend == raw["storage"]["history_backend"] == "sqlite"
    assert set(raw["storage"]) == set(StorageHealth.__dataclass_fields__)  # every figure
    assert typed.to_dict() == {**raw, "storage": raw["storage"]}
    published = json.loads(json.dumps(typed.to_dict()))
    assert HealthReport.from_mapping(published) == typed
    assert HealthReport.from_mapping({"storage": None}).storage is None
    with pytest.raises(ValueError, match="storage health field 'spooled' must be a number"):
        HealthReport.from_mapping({"storage": {"cache_backend": "redis", "spooled": "3"}})
    with pytest.raises(ValueError, match="'bootstrap_servers' must be a list"):
        MonitorSnapshot.from_dict({"health": {"bootstrap_servers": "kafka:9092"}})


def test_chart_states_are_typed_from_the_spc_results_of_both_sources():
    mon = LiveMonitor(MonitorConfig(simulate=False))
    sim = BuildSimulator(3, n_points=3000, n_defects=0, warmup_points=0)
    sim_msgs = [m for b in sim.iter_batches(1000) for m in b]
    for i in range(0, len(sim_msgs), 1000):  # as the consumer does: processors, listeners
        batch = sim_msgs[i : i + 1000]
        mon.client.notify_listeners(batch, mon.client.process_stream_batch(batch))
    raw = mon.spc_state()["signals"]
    typed = mon.chart_states()
    assert raw and typed.keys() == raw.keys()
    for name, t in typed.items():
        assert (t.chart, t.status, t.center, t.ucl) == (
            raw[name]["chart"],
            raw[name]["status"],
            raw[name].get("center"),
            raw[name].get("ucl"),
        )
        assert t.learning == (raw[name]["status"] == "baseline")
    # a jump far beyond the I-MR chart's limits (run beside the profile's): typed rule
    # violations with their time and place
    t0, rng = datetime(2026, 1, 1, 8, 0, tzinfo=UTC), np.random.default_rng(5)
    for b in range(16):
        temps = rng.normal(1900.0, 10.0, 500) if b < 15 else np.full(500, 2300.0)
        batch = [{"timestamp": t0 + timedelta(seconds=b, milliseconds=i), "layer": 2,
                  "temperature": float(v)} for i, v in enumerate(temps)]  # fmt: skip
        mon.client.notify_listeners(batch, mon.client.process_stream_batch(batch))
    raw_marks = mon.spc_violations("imr", "temperature")
    marks = mon.rule_violations("imr", "temperature")
    assert marks and len(marks) == len(raw_marks)
    for v, m in zip(marks, raw_marks, strict=True):
        assert isinstance(v, Violation)
        assert (v.signal, v.rule, v.index, v.value) == (
            m["signal"],
            m["rule"],
            m["index"],
            m["value"],
        )
        assert v.time is not None and v.time.isoformat() == m["time"] and v.layer == 2
    with pytest.raises(ValueError, match="violation time is not a time"):
        Violation.from_mapping({"signal": "t", "rule": 1, "time": "yesterday"})
    with pytest.raises(ValueError, match="needs its rule"):
        machine_view.violations([{"signal": "t"}])
    with pytest.raises(ValueError, match="SPC state field 'ucl' must be a number"):
        ChartState.from_mapping({"chart": "ewma", "ucl": "high"})
    assert chart_states({"signals": {}}) == {} and ChartState().limits == (None, None, None)


def test_live_monitor_snapshot_carries_every_dict_figure():
    mon = LiveMonitor(MonitorConfig(simulate=False))
    raw, typed = mon.snapshot(), mon.monitor_snapshot()
    names = set(MonitorSnapshot.__dataclass_fields__)
    assert set(raw) <= names, set(raw) - names  # nothing of the dict is lost
    assert typed.state == raw["state"] and typed.topic == raw["topic"]
    assert typed.machine_id == mon.profile.machine.id


def test_signal_window_and_grid_info():
    w = SignalWindow("power", np.array([1_000_000, 3_000_000]), np.array([1.0, 2.0]))
    assert (len(w), w.newest_s) == (2, 3.0)
    assert SignalWindow.empty("x").newest_s is None
    g = GridInfo((0.0, 0.0, -1.0), (4.0, 4.0, 1.0), 0.5, (8, 8, 4))
    assert [g.layer_of(z) for z in (-1.0, -0.01, 0.99, 1.0, None, float("nan"))] == [
        0,
        1,
        3,
        None,
        None,
        None,
    ]


def test_alert_counts_and_alerts_round_trip():
    mgr = AlertManager()
    crit = mgr.raise_alert("temperature", "threshold_high", 2650.0, severity="critical", x=1.0)
    warn = mgr.raise_alert("power", "ewma_high", 300.0, severity="warning")
    mgr.acknowledge(warn.id, by="ada")
    counts = AlertCounts.of(mgr)
    assert (counts.raised, counts.active, counts.acknowledged) == (2, 1, 1)
    assert counts.by_severity == {"info": 0, "warning": 0, "critical": 1}
    assert AlertCounts.from_dict({**counts.__dict__, "new": 1}) == counts
    back = alert_from_dict(mgr.get(warn.id).to_dict())
    assert back == mgr.get(warn.id) and back.acknowledged_by == "ada"
    assert alert_from_dict(crit.to_dict()).x == 1.0
    with pytest.raises(ValueError, match="needs id"):
        alert_from_dict({"severity": "info", "rule": "r", "metric": "m"})
    with pytest.raises(ValueError, match="raised_at is not a time"):
        alert_from_dict({**crit.to_dict(), "raised_at": "yesterday"})


# -- LiveMonitor as a source ---------------------------------------------------------------
def test_live_monitor_is_a_machine_source(tmp_path):
    cfg = StreamingConfig.embedded(storage_path=str(tmp_path), enable_mongodb_storage=False)
    mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False))
    assert isinstance(mon, MachineSource)
    assert "inject_defect" not in mon.actions and "pause" in mon.actions
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    batch = [
        {"timestamp": t0 + timedelta(milliseconds=i), "layer": 3, "x": 10.0 + 0.1 * i,
         "y": 20.0, "z": 0.3, "temperature": 1900.0 + i}
        for i in range(50)
    ]  # fmt: skip
    mon._on_result(batch, mon.client.process_stream_batch(batch))
    snap = mon.monitor_snapshot()
    assert snap.newest_z == pytest.approx(0.3) and snap.current_layer == 3
    assert mon.grid_info().layer_of(snap.newest_z) == 0
    assert mon.signal_newest("temperature") == pytest.approx(
        (t0 + timedelta(milliseconds=49)).timestamp()
    )
    window = mon.signal_window("temperature", 3600.0)
    assert len(window) == 50 and window.values[-1] == 1949.0
    assert len(mon.signal_window("no_such_signal", 10.0)) == 0
    bricks, full = mon.take_updated_bricks("v1")
    ijk, values = mon.occupied("temperature")
    assert full and len(ijk) == mon.grid.occupied_count
    assert np.array_equal(mon.voxel_values("temperature", ijk), values)
    assert mon.occupied("nothing")[0].shape == (0, 3)
    assert np.isnan(mon.voxel_values("nothing", ijk[:1])).all()
    assert "temperature" in mon.voxel_signals()
    assert mon.buffered_seconds() > 0
    mon.alerts.raise_alert("temperature", "threshold_high", 2650.0, severity="critical")
    assert mon.alert_counts().by_severity["critical"] == 1
    assert mon.alert_list(5)[-1].severity == "critical"
    assert {a.severity for a in mon.active_alerts(severity="warning")} <= {"warning"}
