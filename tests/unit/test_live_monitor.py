"""The live pipeline the dashboard runs: simulated build -> in-process broker ->
client with voxel/quality/SPC/alert processors -> grid, change log, storage."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from am_qadf import live_monitor
from am_qadf.cli import main as cli_main
from am_qadf.live_monitor import KEEP_HOURS_RANGE, LiveMonitor, MonitorConfig, check_keep_hours
from am_qadf.simulation.publisher import SimulationPublisher
from am_qadf.streaming import IncrementalProcessor, KafkaProducer, StreamingConfig, get_broker
from am_qadf.streaming.brick_changes import BrickChangeLog
from am_qadf.streaming.voxel_processor import VoxelProcessor
from am_qadf.voxelization.voxel_grid import VoxelGrid
from tests.waiting import wait_for


@pytest.fixture
def monitor(tmp_path):
    servers = [f"memory://lm-{uuid.uuid4().hex[:8]}"]
    cfg = MonitorConfig(
        streaming=StreamingConfig.embedded(
            kafka_bootstrap_servers=servers, storage_path=str(tmp_path), max_poll_records=1000
        ),
        rate=20_000,
    )
    mon = LiveMonitor(cfg)
    yield mon
    mon.stop()


def test_monitor_streams_the_simulated_build(monitor):
    monitor.start()
    assert wait_for(lambda: monitor.snapshot()["stats"]["messages_processed"] >= 5_000)
    snap = monitor.snapshot()
    assert snap["state"] == "running" and snap["build_id"] == "sim-7"
    assert snap["occupied_voxels"] > 0 and snap["published"] >= 5_000
    assert snap["publish_failed"] == 0  # the in-process broker takes everything
    assert 0 < snap["grid_bytes"] <= monitor.grid.get_statistics()["memory_bytes"]  # only grows
    assert snap["health"]["storage"]["history_backend"] == "sqlite"
    assert set(monitor.client.buffers) >= {"temperature", "melt_pool_area", "power", "scan_speed"}
    values, times, _ = monitor.client.get_buffer("temperature").get_time_window(1.0)
    assert len(values) > 0 and times[-1].tzinfo is not None
    spc = monitor.spc_state()
    assert spc["chart"] == "ewma" and "temperature" in spc["signals"]


def test_viewers_get_full_then_incremental_changes(monitor):
    monitor.start()
    assert wait_for(lambda: monitor.grid.occupied_count > 50)
    ijk, full = monitor.take_updated_voxels("a")
    assert full and len(ijk) > 0, "a new viewer gets every occupied voxel"
    assert wait_for(lambda: len(monitor.take_updated_bricks("b")[0]) > 0)
    monitor.pause()
    time.sleep(0.5)  # let the batch in flight finish
    monitor.take_updated_voxels("a")
    again, full_again = monitor.take_updated_voxels("a")
    assert not full_again and len(again) == 0, "nothing changed while paused"
    monitor.resume()
    assert wait_for(lambda: len(monitor.take_updated_voxels("a")[0]) > 0)
    monitor.forget_viewer("a")
    assert monitor.take_updated_voxels("a")[1], "a forgotten viewer starts over with a full redraw"


def test_seek_replays_with_clean_state(monitor):
    monitor.start()
    assert wait_for(lambda: monitor.snapshot()["stats"]["messages_processed"] >= 20_000)
    monitor.take_updated_bricks("v")
    assert monitor.snapshot()["replay_from_layer"] is None  # no replay yet
    monitor.pause()
    monitor.seek_to_beginning()
    assert monitor.snapshot()["replay_from_layer"] is None  # nothing replayed yet
    assert monitor.grid.occupied_count == 0
    assert monitor.alerts.active_alerts() == []
    assert all(
        b.get_buffer_statistics()["current_size"] == 0 for b in monitor.client.buffers.values()
    )
    assert monitor.take_updated_bricks("v")[1], "after a replay every viewer redraws"
    monitor.resume()
    assert wait_for(
        lambda: monitor.snapshot()["current_layer"] == 0 and monitor.grid.occupied_count > 0
    )
    # the lowest layer replayed is kept as the pipeline delivers, whenever a UI looks
    assert wait_for(lambda: (monitor.snapshot()["current_layer"] or 0) >= 2)
    assert monitor.snapshot()["replay_from_layer"] == 0


def test_acknowledge_and_history(monitor):
    monitor.start()
    assert wait_for(lambda: monitor.snapshot()["stats"]["messages_processed"] >= 5_000)
    now = monitor.snapshot()["newest_timestamp"]
    rows = monitor.query_history(now.replace(year=now.year - 1), now, {"layer": 0}, limit=100)
    assert 0 < len(rows) <= 100 and all(r["layer"] == 0 for r in rows)
    alert = monitor.alerts.raise_alert("temperature", "test_rule", 2500.0, severity="critical")
    acked = monitor.acknowledge(alert.id, by="ada")
    assert acked["state"] == "acknowledged"
    with pytest.raises(KeyError):
        monitor.acknowledge("no-such-alert")


def test_monitor_config_from_env():
    cfg = MonitorConfig.from_env({"AMQADF_KAFKA": "127.0.0.1:9092", "AMQADF_RATE": "1000"})
    assert cfg.simulate is False and cfg.rate == 1000.0
    assert MonitorConfig.from_env({}).simulate is True
    with pytest.raises(ValueError, match="rate"):
        MonitorConfig(rate=0)


def test_voxel_processor_reports_each_batch_only():
    proc = VoxelProcessor(IncrementalProcessor(VoxelGrid((0, 0, 0), (32, 32, 32), 1.0)))
    first = proc(
        [{"x": 1.5, "y": 1.5, "z": 1.5, "temperature": 1.0}, {"x": 20.5, "y": 1.5, "z": 1.5}]
    )
    assert first["updated_voxels"] == 2 and first["bricks"].tolist() == [[0, 0, 0], [2, 0, 0]]
    second = proc([{"x": 9.5, "y": 9.5, "z": 9.5, "temperature": 2.0}])
    assert second["updated_voxels"] == 1 and second["bricks"].tolist() == [[1, 1, 1]]
    outside = proc([{"x": 99.0, "y": 1.0, "z": 1.0, "temperature": 3.0}])
    assert outside["updated_voxels"] == 0 and outside["bricks"].size == 0


def test_brick_change_log_cursors_are_per_viewer():
    log = BrickChangeLog((4, 4, 4))
    log.mark(np.array([[0, 0, 0]]))
    assert log.take("a")[0].tolist() == [[0, 0, 0]]
    log.mark(np.array([[1, 1, 1]]))
    assert log.take("a")[0].tolist() == [[1, 1, 1]]
    bricks, full = log.take("b")
    assert full and sorted(bricks.tolist()) == [[0, 0, 0], [1, 1, 1]]
    log.reset()
    bricks, full = log.take("a")
    assert full and bricks.size == 0, "after a reset every viewer redraws (nothing marked yet)"
    log.mark(np.array([[2, 2, 2]]))
    assert log.take("a")[0].tolist() == [[2, 2, 2]]


def test_publisher_stamps_wall_clock_and_counts():
    servers = [f"memory://pub-{uuid.uuid4().hex[:8]}"]
    pub = SimulationPublisher(servers, "sim", rate=100_000, builds=1, n_points=3000, n_defects=0)
    pub.run()
    assert pub.published == 3000 and pub.build_id == "sim-7"
    parts = get_broker(servers).describe()["topics"]["sim"]
    assert sum(end - start for start, end in parts) == 3000
    with pytest.raises(ValueError, match="rate"):
        SimulationPublisher(servers, "sim", rate=0)


def test_cli_monitor_runs_and_stops(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AMQADF_KAFKA", f"memory://cli-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("AMQADF_DATA_DIR", str(tmp_path))
    assert cli_main(["monitor", "--seconds", "1.5", "--interval", "0.5", "--rate", "20000"]) == 0
    out = capsys.readouterr().out
    assert "monitoring am_qadf_monitoring" in out and "msgs" in out and "layer" in out


# -- operator actions: every precondition checked by the monitor, whoever calls ------------


def _line(tmp_path, *, simulate: bool, rate: float = 2_000) -> LiveMonitor:
    servers = [f"memory://lm-op-{uuid.uuid4().hex[:8]}"]
    cfg = MonitorConfig(
        streaming=StreamingConfig.embedded(
            kafka_bootstrap_servers=servers, storage_path=str(tmp_path), max_poll_records=1000
        ),
        simulate=simulate,
        rate=rate,
    )
    return LiveMonitor(cfg)


def _produce(mon: LiveMonitor, *msgs: dict) -> None:
    cfg = mon.config.streaming
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    for m in msgs:
        producer.produce(m)
    producer.flush()
    producer.close()


def _real(i: int, build: str = "real-42", **extra) -> dict:
    t = datetime(2026, 3, 1, 8, 0, tzinfo=UTC) + timedelta(milliseconds=i)
    return {"timestamp": t, "build_id": build, "layer": 3, "x": 10.0, "y": 10.0, "z": 0.12,
            "temperature": 1900.0, **extra}  # fmt: skip


def test_test_defects_are_refused_on_a_line_that_is_not_simulated(tmp_path, monkeypatch):
    mon = _line(tmp_path, simulate=False)
    mon.start()
    try:
        _produce(mon, _real(0))
        assert wait_for(lambda: mon.snapshot()["stats"]["messages_processed"] == 1)
        producers = []
        monkeypatch.setattr(live_monitor, "KafkaProducer", lambda *a, **k: producers.append(a))
        with pytest.raises(RuntimeError, match="only into a simulated build"):
            mon.inject_test_defect()
        assert producers == [], "refused before anything could be published"
        assert mon.alerts.statistics()["raised"] == 0
    finally:
        mon.stop()


def test_test_defects_go_only_into_the_simulated_build(tmp_path):
    mon = _line(tmp_path, simulate=True)
    mon.start()
    try:
        assert wait_for(lambda: mon.snapshot()["build_id"] == "sim-7")
        with pytest.raises(ValueError, match="n_points"):
            mon.inject_test_defect(n_points=0)
        with pytest.raises(ValueError, match="n_points"):
            mon.inject_test_defect(n_points=10**9)
        for bad in (float("nan"), float("inf"), "hot"):
            with pytest.raises(ValueError, match="temperature"):
                mon.inject_test_defect(temperature=bad)
        assert mon.inject_test_defect(n_points=5) == 5
        # a real machine's build arrives on the same topic: no fake samples into it
        mon._publisher.stop()
        _produce(mon, _real(0, build="real-42"))
        assert wait_for(lambda: mon.snapshot()["build_id"] == "real-42")
        with pytest.raises(RuntimeError, match="'real-42', not the simulated build 'sim-7'"):
            mon.inject_test_defect()
    finally:
        mon.stop()


def test_keep_hours_are_checked_before_anything_is_deleted(tmp_path):
    mon = _line(tmp_path, simulate=False)
    now = datetime.now(UTC)
    docs = [
        {"timestamp": now - timedelta(hours=5), "build_id": "b", "layer": 1},
        {"timestamp": now - timedelta(minutes=5), "build_id": "b", "layer": 2},
    ]
    assert mon.storage.store_batch(docs) == 2
    for bad in (1e-9, 0.0, -1.0, float("inf"), float("nan"), 1e300, "24", None, True):
        with pytest.raises(ValueError, match="keep hours"):
            mon.delete_history(bad)
    assert len(mon.query_history(now - timedelta(days=1), now)) == 2, "nothing was deleted"
    assert check_keep_hours(np.float32(2.0)) == 2.0
    assert mon.delete_history(KEEP_HOURS_RANGE[0]) == 1
    assert [d["layer"] for d in mon.query_history(now - timedelta(days=1), now)] == [2]


def test_one_replay_at_a_time(tmp_path, monkeypatch):
    mon = _line(tmp_path, simulate=False)
    entered, release = threading.Event(), threading.Event()

    def slow_between_batches(fn):
        entered.set()
        release.wait(30)
        done = Future()
        done.set_result(None)
        return done

    monkeypatch.setattr(mon.client, "run_between_batches", slow_between_batches)
    first = threading.Thread(target=mon.seek_to_beginning)
    first.start()
    assert entered.wait(30)
    with pytest.raises(RuntimeError, match="already starting"):
        mon.seek_to_beginning()
    release.set()
    first.join(30)
    mon.seek_to_beginning()  # the first one is done: a new replay may start


def _quiet_monitor(tmp_path, **kw):
    """A monitor without simulator on its own in-process broker, and a producer to it."""
    from am_qadf.streaming import KafkaProducer

    servers = [f"memory://lmq-{uuid.uuid4().hex[:8]}"]
    streaming = StreamingConfig.embedded(
        kafka_bootstrap_servers=servers, storage_path=str(tmp_path), max_poll_records=1000
    )
    mon = LiveMonitor(MonitorConfig(streaming=streaming, simulate=False, **kw))
    return mon, KafkaProducer(servers, streaming.kafka_topic)


def _messages(build, n, x0=10.0, t0=None, layer=0):
    from datetime import UTC, datetime, timedelta

    t0 = t0 or datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=layer)  # an old build
    return [
        {
            "timestamp": (t0 + timedelta(milliseconds=i)).isoformat(),
            "build_id": build,
            "layer": layer,
            "x": x0 + 0.01 * i,
            "y": 20.0,
            "z": 0.02 + 0.04 * layer,
            "temperature": 1900.0,
            "value": 1900.0,
        }
        for i in range(n)
    ]


def _processed(mon):
    return mon.snapshot()["stats"]["messages_processed"]


def test_a_dead_feed_turns_stale_from_arrival_time_not_message_time(tmp_path):
    mon, producer = _quiet_monitor(tmp_path, stale_after_s=5.0)
    now = [1000.0]  # the monitor's clock, driven by the test: no race with a loaded machine
    mon.clock = lambda: now[0]
    mon.start()
    try:
        snap = mon.snapshot()
        assert snap["feed"] == "waiting" and snap["data_age_s"] is not None
        # embedded storage is built (and labelled) before the first message
        assert snap["health"]["storage"]["history_backend"] == "sqlite"
        # messages stamped in 2020 are live while they arrive
        producer.produce_batch(_messages("b1", 50))
        producer.flush()
        assert wait_for(lambda: _processed(mon) == 50)
        # the arrival is noted once the batch is stored, just after it is counted
        assert wait_for(lambda: mon.snapshot()["feed"] == "live")
        now[0] += 5.5  # nothing more comes for longer than stale_after_s
        snap = mon.snapshot()
        assert snap["feed"] == "stale" and snap["data_age_s"] == pytest.approx(5.5)
        producer.produce_batch(_messages("b1", 5, t0=None))
        producer.flush()
        assert wait_for(lambda: mon.snapshot()["feed"] == "live")
        assert _processed(mon) == 55 and mon.snapshot()["data_age_s"] == 0.0
    finally:
        producer.close()
        mon.stop()
    with pytest.raises(ValueError, match="stale_after_s"):
        MonitorConfig(stale_after_s=0)


def test_a_new_build_starts_with_a_clean_grid_spc_and_buffers(tmp_path):
    mon, producer = _quiet_monitor(tmp_path)
    mon.start()
    try:
        producer.produce_batch(_messages("A", 300, x0=10.0))
        producer.flush()
        assert wait_for(lambda: _processed(mon) == 300)
        alert = mon.alerts.raise_alert("temperature", "test_rule", 2500.0, severity="critical")
        spc_a = mon.client.processors["spc_processor"]
        assert mon.snapshot()["builds"] == 1
        producer.produce_batch(_messages("B", 200, x0=100.0))
        producer.flush()
        assert wait_for(lambda: _processed(mon) == 500)
        snap = mon.snapshot()
        assert snap["builds"] == 2 and snap["build_id"] == "B"
        xs = mon.grid.occupied_indices()[:, 0] * mon.grid.resolution
        assert xs.size and xs.min() >= 99.0, "only build B's voxels are left"
        assert mon.client.processors["spc_processor"] is not spc_a, "a new SPC baseline"
        # ... learned from build B, as none is stored for this machine and material
        assert snap["baseline"]["origin"] == "learning"
        temps, _ = mon.client.get_buffer("temperature").get_time_window_arrays(3600)
        assert temps.size == 200, "the live buffers hold only build B"
        assert mon.alerts.get(alert.id) is not None, "the previous build's alerts are kept"
        assert mon.take_updated_bricks("viewer")[1]
    finally:
        producer.close()
        mon.stop()


def test_replayed_messages_are_counted_apart(tmp_path):
    mon, producer = _quiet_monitor(tmp_path)
    mon.start()
    try:
        producer.produce_batch(_messages("A", 400))
        producer.flush()
        assert wait_for(lambda: _processed(mon) == 400)
        mon.seek_to_beginning()
        assert wait_for(lambda: _processed(mon) == 800)
        snap = mon.snapshot()
        assert (snap["messages_new"], snap["messages_replayed"]) == (400, 400)
        assert mon.grid.occupied_count > 0 and snap["builds"] == 2  # the replay began A again
        producer.produce_batch(_messages("A", 100, x0=50.0))
        producer.flush()
        assert wait_for(lambda: _processed(mon) == 900)
        snap = mon.snapshot()
        assert (snap["messages_new"], snap["messages_replayed"]) == (500, 400)
    finally:
        producer.close()
        mon.stop()


def test_replay_from_start_begins_at_the_first_layer_the_broker_no_longer_holds(tmp_path):
    mon, producer = _quiet_monitor(tmp_path)
    get_broker(mon.config.streaming.kafka_bootstrap_servers).retention = 300  # per partition
    mon.start()
    try:
        for layer in range(4):  # 4 x 200 messages; the broker keeps the last 300
            producer.produce_batch(_messages("A", 200, x0=10.0 + 40 * layer, layer=layer), key="A")
            producer.flush()
            assert wait_for(lambda n=200 * (layer + 1): _processed(mon) == n)
        mon.seek_to_beginning()
        assert wait_for(lambda: mon.snapshot()["current_layer"] == 3)
        assert wait_for(lambda: _processed(mon) >= 1600)
        ks = mon.grid.occupied_indices()[:, 2]
        assert (ks == 0).any(), "layer 0 is back in the grid after the replay"
        snap = mon.snapshot()
        assert snap["replayed_from_history"] == 500  # the broker had only the last 300
        assert snap["replay_from_layer"] == 0
        assert (snap["messages_new"], snap["messages_replayed"]) == (800, 800)
    finally:
        producer.close()
        mon.stop()


def test_spc_chart_kinds_are_checked():
    assert MonitorConfig(spc_charts=("cusum",)).spc_charts == ("cusum",)
    env = {"AMQADF_SPC_CHARTS": "imr, xbar_s"}
    assert MonitorConfig.from_env(env).spc_charts == ("imr", "xbar_s")
    assert MonitorConfig.from_env({}).spc_charts == ("imr", "xbar_r")
    assert MonitorConfig.from_env({"AMQADF_SPC_CHARTS": ""}).spc_charts == ()
    # each signal's own chart first (the simulator's profile: EWMA), then those beside it
    assert LiveMonitor(MonitorConfig(simulate=False)).spc_kinds("temperature") == [
        "ewma",
        "imr",
        "xbar_r",
    ]
    for bad in (("pareto",), ("imr", "")):
        with pytest.raises(ValueError, match="spc_charts"):
            MonitorConfig(spc_charts=bad)
