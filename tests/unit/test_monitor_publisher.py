"""The embedded monitor published as one machine of a fleet (am_qadf.fleet.monitor_publisher),
and the dashboard process starting it with the embedded pipeline."""

from __future__ import annotations

import gc
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from am_qadf.fleet.fleet_reader import FleetReader
from am_qadf.fleet.monitor_publisher import MonitorPublisher
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.streaming import KafkaProducer, StreamingConfig
from tests.waiting import wait_for


def _quiet_config(tmp_path) -> MonitorConfig:
    servers = [f"memory://mpub-{uuid.uuid4().hex[:8]}"]
    streaming = StreamingConfig.embedded(
        kafka_bootstrap_servers=servers, storage_path=str(tmp_path), max_poll_records=1000
    )
    return MonitorConfig(streaming=streaming, simulate=False)


def _messages(n: int) -> list[dict[str, Any]]:
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    return [
        {
            "timestamp": (t0 + timedelta(milliseconds=i)).isoformat(),
            "build_id": "b1",
            "layer": 3,
            "x": 10.0 + 0.01 * i,
            "y": 20.0,
            "z": 0.1,
            "temperature": 1900.0 + i % 7,
            "value": 1900.0,
        }
        for i in range(n)
    ]


def test_publisher_writes_the_monitor_as_a_fleet_machine(tmp_path) -> None:
    cfg = _quiet_config(tmp_path)
    mon = LiveMonitor(cfg)
    store = InProcessStateStore()
    pub = MonitorPublisher(mon, store, interval=0.05)
    mid = mon.profile.machine.id
    pub.publish()
    first = store.snapshot(mid)
    assert (first.state, first.messages, first.data_at) == ("idle", 0, None)
    mon.start()
    pub.start()
    reader = FleetReader(store).start()
    try:
        prod = KafkaProducer(cfg.streaming.kafka_bootstrap_servers, cfg.streaming.kafka_topic)
        prod.produce_batch(_messages(300))
        assert wait_for(lambda: (s := store.snapshot(mid)) is not None and s.messages == 300)
        snap = store.snapshot(mid)
        assert snap.state == "running" and snap.worker == "embedded"
        assert snap.build_id == "b1" and snap.layer == 3
        assert snap.data_at is not None and abs(snap.data_at - time.time()) < 3600
        assert snap.signal == mon.profile.live_signals[0]
        assert wait_for(lambda: reader.main_window(mid) is not None)
        window = reader.main_window(mid)
        assert len(window[1]) > 0

        mon.alerts.raise_alert(
            "temperature", "threshold_high", 2500.0, severity="critical", layer=3, message="hot"
        )
        assert wait_for(lambda: store.snapshot(mid).alerts_active.get("critical") == 1)
        snap = store.snapshot(mid)
        assert snap.newest_alert["message"] == "hot"
        # the data raised warnings of its own before; each event is published once
        events = store.alerts(mid)
        assert [e["message"] for e in events].count("hot") == 1
        assert {e["event"] for e in events} == {"raised"}
        assert len({e["id"] for e in events}) == len(events)
        assert wait_for(lambda: [m.status for m in reader.overview()] == ["critical"])
    finally:
        reader.stop()
        pub.stop()
        mon.stop()


def test_publisher_refuses_a_bad_interval(tmp_path) -> None:
    mon = LiveMonitor(_quiet_config(tmp_path))
    with pytest.raises(ValueError, match="interval must be > 0 s"):
        MonitorPublisher(mon, InProcessStateStore(), interval=0)


@pytest.mark.parametrize("state", [None, "redis://127.0.0.1:1/0"])
def test_embedded_pipeline_publishes_only_without_amqadf_state(tmp_path, monkeypatch, state):
    """The one-process demo puts its machine into the in-process store the fleet page
    reads; with AMQADF_STATE the workers publish the fleet, not the dashboard."""
    import panel as pn

    from dashboard.pipeline_cache import embedded_state_store, get_monitor, shutdown_monitor

    if state is None:
        monkeypatch.delenv("AMQADF_STATE", raising=False)
    else:
        monkeypatch.setenv("AMQADF_STATE", state)
    shutdown_monitor()
    thresholds = gc.get_threshold()  # the server's GC tuning must not outlive the test
    try:
        mon = get_monitor(_quiet_config(tmp_path))
        publisher = pn.state.cache.get("am_qadf_monitor_publisher")
        if state is None:
            assert publisher is not None and publisher.monitor is mon
            assert wait_for(lambda: mon.profile.machine.id in embedded_state_store().machines())
        else:
            assert publisher is None
    finally:
        shutdown_monitor()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert "am_qadf_monitor_publisher" not in pn.state.cache


def test_a_profile_id_that_names_no_fleet_machine_leaves_app_working(tmp_path, monkeypatch):
    """Profile ids are free text; fleet machine ids are not ('EOS M290 #2' has spaces):
    the embedded pipeline still starts, only its fleet tile is missing."""
    import dataclasses

    import panel as pn

    from am_qadf.machine_profile import MachineProfile
    from dashboard.pipeline_cache import get_monitor, shutdown_monitor

    monkeypatch.delenv("AMQADF_STATE", raising=False)
    base = MachineProfile.default()
    profile = dataclasses.replace(base, machine=dataclasses.replace(base.machine, id="EOS M290 #2"))
    cfg = _quiet_config(tmp_path)
    cfg.profile = profile
    shutdown_monitor()
    thresholds = gc.get_threshold()
    try:
        mon = get_monitor(cfg)
        assert mon.profile.machine.id == "EOS M290 #2"
        assert "am_qadf_monitor_publisher" not in pn.state.cache
    finally:
        shutdown_monitor()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
