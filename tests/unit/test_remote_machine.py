"""RemoteMachine: one fleet machine read from the in-process state store that a real
worker (real MachinePipelines) publishes to, shown by the machine dashboard's views,
with operator actions reaching the worker through the control stream."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.fleet.remote_machine import RemoteMachine
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.fleet.worker import FleetWorker
from am_qadf.machine_view import ChartState, MachineSource
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.simulation.defects import hot_spot_messages
from am_qadf.streaming import KafkaProducer, StreamingConfig

POLICY = AccessPolicy(operators={"ada"})


def _config() -> StreamingConfig:
    return StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://remote-{uuid.uuid4().hex}"],
        enable_mongodb_storage=False,
        max_poll_records=500,
    )


def _publish(cfg: StreamingConfig, key: str, msgs: list[dict[str, Any]]) -> None:
    prod = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    prod.produce_batch(msgs, key=key)
    prod.flush()
    prod.close()


def _build(seed: int, n: int) -> list[dict[str, Any]]:
    sim = BuildSimulator(seed, n_points=n, n_defects=0, warmup_points=0)
    msgs = [m for b in sim.iter_batches(500) for m in b]
    last = msgs[-1]
    return msgs + hot_spot_messages(last, last["timestamp"], last["build_id"], n_points=30)


@pytest.fixture(scope="module")
def fleet() -> Any:
    """A worker that processed m1 and m2 (each with a hot spot: a critical alert)."""
    cfg = _config()
    _publish(cfg, "m1", _build(1, 1500))
    _publish(cfg, "m2", _build(2, 8000))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()

    def settled() -> bool:
        s = store.snapshot("m2")
        return bool(s and s.messages == 8030 and s.alerts_active.get("critical"))

    assert worker.wait_until(settled)
    assert worker.wait_until(lambda: store.voxels("m2")[0] is not None)
    # SPC series go every few seconds: wait for a write after the last message
    signal, kinds = next(iter(worker.pipelines["m2"].view_kinds().items()))
    n = len(worker.pipelines["m2"].monitor.spc_series(kinds[0], signal)[1])
    assert n and worker.wait_until(
        lambda: len(store.spc_series("m2", kinds[0], signal)[1]) == min(n, store.window_points)
    )
    yield cfg, store, worker
    worker.stop()


def test_snapshot_signals_and_grid_match_the_worker(fleet: Any) -> None:
    _, store, worker = fleet
    m2 = RemoteMachine(store, "m2", policy=POLICY)
    mon = worker.pipelines["m2"].monitor
    assert isinstance(m2, MachineSource)
    snap = m2.monitor_snapshot()
    assert (snap.machine_id, snap.messages_new, snap.build_id) == ("m2", 8030, "sim-2")
    assert snap.current_layer == mon.monitor_snapshot().current_layer
    assert snap.state == "running" and snap.feed in ("live", "stale")
    assert snap.alerts_active >= 1 and snap.newest_z == mon.monitor_snapshot().newest_z
    assert m2.grid_info() == mon.grid_info()
    k = m2.grid_info().layer_of(snap.newest_z)
    assert m2.build_layers(k) == mon.build_layers(k)
    assert m2.voxel_layer(snap.current_layer) == mon.voxel_layer(snap.current_layer)
    window = m2.signal_window("temperature", 10.0)
    assert 0 < len(window) <= store.window_points
    assert m2.signal_newest("temperature") == pytest.approx(window.newest_s)
    assert len(m2.signal_window("no_such_signal", 10.0)) == 0
    assert m2.buffered_seconds() > 0


def test_voxels_mirror_the_workers_grid(fleet: Any) -> None:
    _, store, worker = fleet
    m2 = RemoteMachine(store, "m2", policy=POLICY)
    signal = m2.voxel_signals()[0]
    bricks, full = m2.take_updated_bricks("session-1")
    assert full and len(bricks)
    ijk, values = m2.occupied(signal)
    want_ijk, want = worker.pipelines["m2"].monitor.occupied(signal)
    order = np.lexsort(ijk.T[::-1])
    want_order = np.lexsort(want_ijk.T[::-1])
    assert np.array_equal(ijk[order], want_ijk[want_order])
    np.testing.assert_allclose(values[order], want[want_order], rtol=1e-6)
    np.testing.assert_allclose(m2.voxel_values(signal, ijk[:5]), values[:5])
    assert m2.take_updated_bricks("session-1")[0].size == 0  # nothing new since
    assert m2.occupied("no_such_signal")[0].shape == (0, 3)


def test_a_late_reader_draws_from_the_voxel_state(fleet: Any) -> None:
    """Deltas older than what the store keeps are gone: a reader that opens now still
    draws the whole build from the voxel state."""
    _, store, worker = fleet
    m1 = RemoteMachine(store, "m1", policy=POLICY)
    signal = m1.voxel_signals()[0]
    ijk, _ = m1.occupied(signal)
    assert len(ijk) == len(worker.pipelines["m1"].monitor.occupied(signal)[0]) > 0


def test_sessions_share_one_voxel_mirror(fleet: Any, monkeypatch: Any) -> None:
    """Every session's copy (``with_policy``) reads the voxels into one mirror: the
    process loads the voxel state once, not once per session."""
    _, store, _ = fleet
    loads = []
    real = store.voxels
    monkeypatch.setattr(store, "voxels", lambda m: loads.append(m) or real(m))
    remote = RemoteMachine(store, "m2", policy=POLICY)
    sessions = [remote.with_policy(AccessPolicy()) for _ in range(3)]
    signal = remote.voxel_signals()[0]
    drawn = [s.occupied(signal)[0] for s in sessions]
    assert loads == ["m2"] and all(np.array_equal(d, drawn[0]) for d in drawn)
    for i, s in enumerate(sessions):  # each session still has its own change cursor
        assert s.take_updated_bricks(f"session-{i}")[1]


class _CountingStore(InProcessStateStore):
    """Counts the alert events its readers were sent."""

    sent = 0

    def alerts(self, machine_id: str, count: int = 100) -> list[dict[str, Any]]:
        out = super().alerts(machine_id, count)
        self.sent += len(out)
        return out

    def alerts_since(self, machine_id: str, cursor: str | None = None) -> Any:
        out = super().alerts_since(machine_id, cursor)
        self.sent += len(out[1])
        return out


def test_alert_reads_do_not_grow_with_the_alerts_published(monkeypatch: Any) -> None:
    """A reader's alert read brings what is new since its last one, not every alert
    kept: its cost per refresh does not grow with how many alerts a busy machine
    published. What it shows is what a fresh reader shows (each alert's newest state,
    the newest ``max_alerts`` events)."""
    import am_qadf.fleet.remote_machine as rm
    from am_qadf.fleet.state_store import MachineSnapshot

    monkeypatch.setattr(rm, "READ_TTL_S", 0.0)  # every call reads the store
    store = _CountingStore(max_alerts=300)
    store.put_snapshot(MachineSnapshot("m1"))

    def raised(i: int) -> dict[str, Any]:
        return {"id": f"a{i}", "event": "raised", "severity": "warning", "rule": "r",
                "metric": "temperature", "value": 1.0, "message": "m", "state": "active",
                "raised_at": f"2026-01-01T00:00:{i % 60:02d}+00:00"}  # fmt: skip

    store.add_alerts("m1", [raised(i) for i in range(250)])
    reader = RemoteMachine(store, "m1")
    assert len(reader.alert_list()) == 250
    store.sent = 0
    store.add_alerts("m1", [raised(250), {**raised(3), "event": "acknowledged",
                                          "state": "acknowledged"}])  # fmt: skip
    shown = reader.alert_list()
    assert store.sent == 2  # the two new events, not the 252 kept
    store.sent = 0
    assert reader.alert_list() == shown and store.sent == 0  # nothing new: nothing sent
    fresh = RemoteMachine(store, "m1").alert_list()
    assert [(a.id, a.state) for a in shown] == [(a.id, a.state) for a in fresh]
    assert len(shown) == 251 and next(a for a in shown if a.id == "a3").state == "acknowledged"
    store.add_alerts("m1", [raised(i) for i in range(251, 400)])  # past what is kept
    assert [a.id for a in reader.alert_list()] == [
        a.id for a in RemoteMachine(store, "m1").alert_list()
    ]


def test_a_tick_reads_the_view_without_its_large_parts(monkeypatch: Any) -> None:
    """Every session's tick reads the machine's snapshot and view; the SPC chart states
    and rule violations (~100 kB each, the violations growing with how many a busy
    machine raised) are read only by the views that show them."""
    import time

    from am_qadf.fleet.state_store import MachineSnapshot

    store = InProcessStateStore()
    store.put_snapshot(MachineSnapshot("m1", state="running", updated_at=time.time()))
    store.put_view("m1", {"snapshot": {}, "layers": [[0, 1, 2]], "alert_counts": {}})
    marks = [{"signal": "temperature", "rule": "beyond_limits", "index": i} for i in range(200)]
    store.put_view_part("m1", "violations", {"ewma": marks})
    store.put_view_part("m1", "spc_charts", {"ewma": {"signals": {"t": {"x": [0.5] * 5000}}}})
    remote = RemoteMachine(store, "m1")
    read: list[int] = []
    backend = store._b

    def counting(real: Any) -> Any:
        def call(*args: Any) -> Any:
            out = real(*args)
            read.append(sum(len(v) for v in (out.values() if isinstance(out, dict) else out) if v))
            return out

        return call

    for name in ("hgetall", "hmget"):
        if hasattr(backend, name):
            monkeypatch.setattr(backend, name, counting(getattr(backend, name)))
    remote.monitor_snapshot()
    remote.alert_counts()
    assert remote.build_layers(0) == (1, 2)
    assert 0 < sum(read) < 2_000
    assert len(remote.spc_violations("ewma")) == 200  # there for the SPC view
    assert sum(read) > 10_000


def test_alerts_spc_and_unknown_machine(fleet: Any) -> None:
    _, store, worker = fleet
    m2 = RemoteMachine(store, "m2", policy=POLICY)
    mon = worker.pipelines["m2"].monitor
    critical = m2.active_alerts(severity="critical")
    assert critical and all(a.severity == "critical" for a in critical)
    assert m2.alert_counts().by_severity["critical"] == mon.alert_counts().by_severity["critical"]
    assert [a.id for a in m2.alert_list()] == [a.id for a in mon.alert_list()]
    signal = next(iter(m2.spc_state()["signals"]))
    kinds = m2.spc_kinds(signal)
    assert kinds == mon.spc_kinds(signal) and len(kinds) >= 2
    rows, us = m2.spc_series(kinds[0], signal)
    assert 0 < len(us) <= store.window_points and rows.shape == (len(us), 3)
    assert m2.spc_state(kinds[1])["signals"].keys() == mon.spc_state(kinds[1])["signals"].keys()
    # typed chart states, the same on both sources: the worker's settled state as published
    typed = m2.chart_states(kinds[1])
    assert typed == mon.chart_states(kinds[1]) and all(
        isinstance(t, ChartState) for t in typed.values()
    )
    assert m2.chart_states()[signal].chart == kinds[0]
    assert isinstance(m2.spc_violations(kinds[0], signal), list)
    typed_marks = m2.rule_violations(kinds[0], signal)
    assert [(v.rule, v.index) for v in typed_marks] == [
        (m["rule"], m["index"]) for m in m2.spc_violations(kinds[0], signal)
    ]
    with pytest.raises(KeyError, match="no machine 'm9'"):
        RemoteMachine(store, "m9")
    with pytest.raises(ValueError, match="bad machine id"):
        RemoteMachine(store, "m 9")


def test_views_of_the_machine_dashboard_render_a_remote_machine(fleet: Any) -> None:
    from dashboard.machine_dashboard import Dashboard

    _, store, _ = fleet
    m2 = RemoteMachine(store, "m2", policy=POLICY)
    dash = Dashboard(monitor=m2, policy=POLICY)
    try:
        snap = m2.monitor_snapshot()
        dash._update_header(snap)
        assert 'data-build="sim-2"' in dash.header.object
        assert f'data-layer="{snap.current_layer}"' in dash.header.object
        for view in dash.views:
            view.refresh(snap)  # raises if a view needs what a remote machine lacks
        assert dash.voxels.scene.voxel_count > 0
        assert not dash.controls._seek.visible and not dash.controls._inject.visible
        assert "critical" in dash.alerts.table.value.to_string().lower()
    finally:
        dash.stop()


def test_operator_actions_reach_the_owning_worker() -> None:
    cfg = _config()
    _publish(cfg, "m3", _build(3, 600))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: (s := store.snapshot("m3")) and s.messages == 630)
        m3 = RemoteMachine(store, "m3", policy=POLICY)
        viewer = m3.with_policy(AccessPolicy())  # a session without the operator role
        with pytest.raises(PermissionError):
            viewer.pause(by="ada")
        with pytest.raises(PermissionError):
            m3.pause(by="bob")
        assert store.read_commands({"m3": "0"}) == []  # nothing was sent
        with pytest.raises(RuntimeError, match="not offered"):
            m3.seek_to_beginning(by="ada")

        m3.pause(by="ada")
        assert worker.wait_until(lambda: m3.monitor_snapshot().state == "paused")
        m3.resume(by="ada")
        assert worker.wait_until(lambda: m3.monitor_snapshot().state == "running")
        alert = m3.active_alerts(severity="critical")[0]
        m3.acknowledge(alert.id, by="ada")

        def state_of(alert_id: str) -> str | None:
            return next((a.state for a in m3.alert_list() if a.id == alert_id), None)

        assert worker.wait_until(lambda: state_of(alert.id) == "acknowledged")
        assert next(a for a in m3.alert_list() if a.id == alert.id).acknowledged_by == "ada"
        m3.clear_alert(alert.id, by="ada")
        assert worker.wait_until(lambda: state_of(alert.id) == "cleared")
        assert alert.id not in {a.id for a in m3.active_alerts()}
    finally:
        worker.stop()


def test_history_of_a_fleet_machine_is_its_own(tmp_path: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from am_qadf.streaming import StreamStorage
    from dashboard.history_view import HistoryView

    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://remote-{uuid.uuid4().hex}"],
        storage_path=str(tmp_path),
        max_poll_records=500,
    )
    _publish(cfg, "m4", _build(4, 300))
    _publish(cfg, "m5", _build(5, 200))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: len(store.snapshots()) == 2)
        storage = worker.storage
        lo, hi = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
        assert worker.wait_until(
            lambda: storage.flush_spool() >= 0 and len(storage.query_stream_history(lo, hi)) == 560
        )
    finally:
        worker.stop()
    history = StreamStorage(path=tmp_path / "history.sqlite3")  # what the worker wrote
    m5 = RemoteMachine(store, "m5", history=history)
    assert RemoteMachine(store, "m5").has_history is False
    with pytest.raises(RuntimeError, match="no history store"):
        RemoteMachine(store, "m5").query_history(lo, hi)
    docs = m5.query_history(lo, hi, {"machine_id": "m4"})  # its own, whatever is asked
    assert len(docs) == 230 and {d["machine_id"] for d in docs} == {"m5"}
    view = HistoryView(monitor=m5)
    assert not view.delete.visible  # a machine's page does not delete the fleet's history
    df = view.query_now(lo, hi)
    assert len(df) == 230 and set(df["machine_id"]) == {"m5"}
