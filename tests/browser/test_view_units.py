"""Fast checks of dashboard helpers that need no browser (run with the browser tests)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from am_qadf.machine_view import MonitorSnapshot
from am_qadf.monitoring.alerts import AlertManager
from dashboard.alerts_view import alerts_frame
from dashboard.history_view import history_filters
from dashboard.live_signals import minmax_bins
from dashboard.voxel_scene import VoxelScene


def test_alert_text_is_escaped():
    mgr = AlertManager(cooldown_points=None)
    mgr.raise_alert(
        "temperature",
        "threshold_high",
        2600.0,
        severity="critical",
        message='<img src=x onerror="alert(1)"> & <b>hot</b>',
        build_id="<script>",
    )
    row = alerts_frame(mgr.history()).iloc[0]
    assert "<img" not in row["message"] and "&lt;img" in row["message"]
    assert "&amp;" in row["message"]
    assert 'class="amq-sev amq-sev-critical"' in row["severity"]


def test_alert_rows_count_the_episode():
    mgr = AlertManager(cooldown_points=10)
    t0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    mgr.raise_alert("temperature", "threshold_high", 2600.0, index=0, time=t0)
    once = alerts_frame(mgr.history()).iloc[0]
    assert once["seen"] == "1x"
    mgr.record_repeats(
        "temperature", "threshold_high", 1233, last_index=1233, last_time=t0 + timedelta(seconds=2)
    )
    row = alerts_frame(mgr.history()).iloc[0]
    assert row["seen"].startswith("1,234x") and "12:00:02.000" in row["seen"]


def test_history_filters_only_compare_fields():
    f = history_filters(build_id="b1", layers=(3, None), signal="power", value_range=(None, 300.0))
    assert f == {"build_id": "b1", "layer": {"$gte": 3}, "power": {"$lte": 300.0}}
    assert history_filters() == {}


def test_minmax_bins_keep_spikes():
    t = np.linspace(0, 0.999, 1000)
    v = np.full(1000, 1900.0)
    v[437] = 2600.0
    _, lo, hi, _ = minmax_bins(t, v, 0.1)
    assert hi.max() == 2600.0 and lo.min() == 1900.0


def _brick(bi: int, bj: int, layers: int) -> np.ndarray:
    """Voxels of brick (bi, bj, 0) filled up to ``layers`` voxel layers."""
    g = np.arange(8)
    i, j, k = np.meshgrid(bi * 8 + g, bj * 8 + g, np.arange(layers), indexing="ij")
    return np.stack((i.ravel(), j.ravel(), k.ravel()), axis=1)


def test_voxel_scene_updates_only_live_bricks():
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (64, 64, 64), settle_seconds=5, settle_interval=10)
    ijk = np.concatenate([_brick(bi, bj, 1) for bi in range(2) for bj in range(2)])
    full = scene.load(ijk, np.full(len(ijk), 1900.0))
    assert full.settled_voxels == 256 and full.live_voxels == 0
    assert full.faces == 2 * 16 * 16 + 4 * 16  # a 16 x 16 x 1 plate: top, bottom, rim
    # layer 2 in brick (0, 0, 0): the settled actor drops that brick once...
    b = _brick(0, 0, 2)
    upd = scene.update_bricks(np.array([[0, 0, 0]]), b, np.full(len(b), 1950.0), now=0.0)
    assert upd.settled_rebuilt and upd.live_voxels == 128 and upd.settled_voxels == 192
    # ...later updates of the same brick send only the live brick's faces
    b = _brick(0, 0, 3)
    upd = scene.update_bricks(np.array([[0, 0, 0]]), b, np.full(len(b), 1950.0), now=1.0)
    assert not upd.settled_rebuilt and upd.live_voxels == 192
    # the live 8 x 8 x 3 block: top, bottom, two open sides, and the two sides facing
    # the one-layer plate, covered at z = 0 only
    live_faces = 64 + 64 + 2 * 24 + 2 * 16
    assert scene._live_actor.faces == live_faces
    # corners are shared: 9 x 9 on top and bottom, the 32-point rim at z = 1 and 2;
    # 12 B per corner, 5 cell ids and a value of 4 B per face
    assert upd.bytes_new == (2 * 81 + 2 * 32) * 12 + live_faces * (5 * 4 + 4)
    # quiet bricks settle (at most once per settle_interval)
    b = _brick(1, 1, 2)
    upd = scene.update_bricks(np.array([[1, 1, 0]]), b, np.full(len(b), 1910.0), now=11.0)
    assert upd.settled_rebuilt and upd.live_voxels == 128
    assert scene.voxel_count == 3 * 64 + 128 + 128
    assert scene.set_threshold((1940.0, 2000.0)).settled_voxels == 128 + 64
    assert scene.voxel_count == 192
    scene.finalize()


def test_voxel_scene_draws_only_exposed_faces():
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (64, 64, 64))
    g = np.arange(10)
    ijk = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    values = np.where(ijk[:, 2] < 5, 1900.0, 2100.0)
    upd = scene.load(ijk, values)
    assert scene.voxel_count == 1000 and upd.faces == scene.face_count == 6 * 100
    # opacity is an actor property: nothing is rebuilt
    scene.set_opacity(0.5)
    assert scene._settled.actor.GetProperty().GetOpacity() == 0.5
    # a threshold that keeps the lower half shows that half's top, formerly inside
    upd = scene.set_threshold((1800.0, 2000.0))
    assert scene.voxel_count == 500 and upd.faces == 2 * 100 + 4 * 50
    scene.finalize()


def test_voxel_scene_faces_meet_across_chunks():
    # a 20-voxel bar across the boundary of two 16-voxel chunks has no face inside
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (64, 64, 64), chunk_bricks=2)
    ijk = np.column_stack((np.arange(6, 26), np.zeros(20, int), np.zeros(20, int)))
    assert scene.load(ijk, np.full(20, 1.0)).faces == 4 * 20 + 2
    # a live brick next to settled voxels: neither side draws the faces between them
    upd = scene.update_bricks(np.array([[1, 0, 0]]), ijk[2:10], np.full(8, 2.0), now=0.0)
    assert upd.live_voxels == 8 and upd.settled_voxels == 12
    assert upd.faces == 4 * 20 + 2
    scene.finalize()


def test_voxel_scene_coarsens_the_settled_part_to_its_face_budget():
    g = np.arange(64)
    ijk = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    values = (ijk[:, 0] // 2).astype(float)
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (64, 64, 64), face_budget=7000)
    upd = scene.load(ijk, values)
    # 6 x 64^2 = 24,576 faces at full detail; 6 x 32^2 = 6,144 at 2 voxels per cell
    assert upd.detail == scene.detail == 2 and upd.faces == 6 * 32 * 32
    assert scene.voxel_count == 64**3  # every voxel is still represented
    # a cell's value is the mean of its voxels: x // 2 is constant over each cell
    mapper = scene._settled.mapper
    mapper.Update()
    cell_values = np.asarray(mapper.GetInput().GetCellData().GetArray("value"))
    assert sorted(np.unique(cell_values).tolist()) == list(range(32))
    bounds = np.asarray(mapper.GetInput().GetBounds())
    assert bounds.tolist() == [0.0, 32.0, 0.0, 32.0, 0.0, 32.0]  # same extent as the voxels
    # the operator asks for full detail
    upd = scene.set_face_budget(10**9)
    assert upd.detail == 1 and upd.faces == 6 * 64 * 64
    with pytest.raises(ValueError, match="face budget"):
        scene.set_face_budget(0)
    assert scene.face_budget == 10**9  # a refused budget changes nothing
    scene.finalize()


def test_coarse_settled_faces_stay_under_a_partly_filled_live_brick():
    # a settled 16 x 16 x 8 block drawn at 2 voxels per cell, and one voxel of the next
    # layer in a live brick above it: that voxel covers a quarter of the coarse cell's
    # top face under it, so the settled actor must still draw that face (no hole)
    g16, g8 = np.arange(16), np.arange(8)
    i, j, k = np.meshgrid(g16, g16, g8, indexing="ij")
    block = np.stack((i.ravel(), j.ravel(), k.ravel()), axis=1)
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (64, 64, 64), face_budget=300)
    assert scene.load(block, np.full(len(block), 1900.0)).detail == 2
    assert scene._settled.faces == 2 * 8 * 8 + 4 * 8 * 4
    voxel = np.array([[0, 0, 8]])
    upd = scene.update_bricks(np.array([[0, 0, 1]]), voxel, np.array([1950.0]), now=0.0)
    assert upd.live_voxels == 1 and upd.detail == 2
    upd = scene.set_face_budget(300)  # the settled part is rebuilt with the brick live
    assert upd.detail == 2 and scene._settled.faces == 2 * 8 * 8 + 4 * 8 * 4  # top whole
    assert scene._live_actor.faces == 5  # the voxel's bottom rests on the settled top
    scene.finalize()


def test_views_in_hidden_tabs_wait_and_catch_up_when_shown(tmp_path):
    import uuid

    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig
    from dashboard.machine_dashboard import Dashboard

    servers = [f"memory://tabs-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False))
    dash = Dashboard(monitor=mon)
    tabs = dash._main()
    refreshed: list[str] = []

    def recorder(name: str):
        return lambda snap: refreshed.append(name)

    for view in dash.views:
        view.refresh = recorder(type(view).__name__)
    dash.tick()
    assert "SPCView" not in refreshed and "LiveSignals" in refreshed
    assert {"HistoryView", "HealthView", "Controls"} <= set(refreshed)  # not tab-bound

    refreshed.clear()
    tabs.active = 1  # SPC: it catches up at once; the overview's views stop
    assert refreshed == ["SPCView"]
    refreshed.clear()
    dash.tick()
    assert "SPCView" in refreshed and not {"LiveSignals", "VoxelView"} & set(refreshed)

    refreshed.clear()
    tabs.active = 0
    assert set(refreshed) == {"LiveSignals", "VoxelView", "LayerMap", "AlertsView"}
    dash.stop()


def test_loop_share_lets_view_refreshes_take_only_their_share():
    from dashboard.loop_share import LoopShare

    share = LoopShare(share=0.5, horizon_s=2.0)
    starts = 0
    for tick in range(400):  # 40 s of 100 ms ticks, each refresh asking for 150 ms
        now = tick * 0.1
        if share.allows(now):
            starts += 1
            share.spend(0.15, now)
    # 150 ms each within half of the loop: about 0.5 / 0.15 = 3.3 refreshes a second
    assert 100 <= starts <= 160  # (plus a first burst while the budget is untouched)
    with pytest.raises(ValueError, match="share"):
        LoopShare(share=0.0)


def test_voxel_view_detail_setting_sets_the_scene_face_budget(tmp_path):
    import uuid

    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig
    from dashboard.voxel_view import DETAIL_FACES, VoxelView

    servers = [f"memory://detail-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    view = VoxelView(monitor=LiveMonitor(MonitorConfig(streaming=cfg, simulate=False)))
    assert view.scene.face_budget == DETAIL_FACES["fast"]
    view.detail = "full"
    assert view.scene.face_budget == DETAIL_FACES["full"]
    assert view.last_update is not None and view.last_update.settled_rebuilt
    view.close()


def test_alerts_table_follows_counts_at_most_every_count_refresh_s(tmp_path, monkeypatch):
    import uuid

    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig
    from dashboard import alerts_view
    from dashboard.alerts_view import AlertsView

    servers = [f"memory://alerts-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    view = AlertsView(monitor=LiveMonitor(MonitorConfig(streaming=cfg, simulate=False)))
    clock = [100.0]
    monkeypatch.setattr(alerts_view.time, "monotonic", lambda: clock[0])
    mgr = view.monitor.alerts
    mgr.raise_alert("temperature", "threshold_high", 2600.0, index=0)
    view.refresh(MonitorSnapshot())
    assert view.table.value["seen"].tolist() == ["1x"]
    mgr.record_repeats("temperature", "threshold_high", 9, last_index=9)
    clock[0] += 1.0  # only the count grew, 1 s after the last rebuild: not yet
    view.refresh(MonitorSnapshot())
    assert view.table.value["seen"].tolist() == ["1x"]
    clock[0] += 1.0
    view.refresh(MonitorSnapshot())
    assert view.table.value["seen"].tolist() == ["10x"]
    mgr.raise_alert("intensity", "threshold_high", 9e3, index=3)  # a new alert: at once
    view.refresh(MonitorSnapshot())
    assert len(view.table.value) == 2


def test_health_shows_undelivered_simulated_messages_only_when_there_are_some(tmp_path):
    import uuid

    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig
    from dashboard.health_view import HealthView

    servers = [f"memory://health-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    view = HealthView(monitor=LiveMonitor(MonitorConfig(streaming=cfg, simulate=False)))
    view.refresh(MonitorSnapshot(publish_failed=None))
    assert "undelivered" not in view.compact.object
    view.refresh(MonitorSnapshot(publish_failed=18_000))
    assert "simulator undelivered" in view.compact.object and "18,000" in view.compact.object


def test_health_shows_signal_names_refused_past_the_limit(tmp_path):
    """New numeric field names beyond ``max_signals`` get no buffer: Health says so."""
    import uuid

    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig
    from dashboard.health_view import HealthView

    servers = [f"memory://refused-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=servers, storage_path=str(tmp_path), max_signals=4
    )
    monitor = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False))
    view = HealthView(monitor=monitor)
    view.refresh(monitor.monitor_snapshot())
    assert "signals refused" not in view.compact.object
    batch = [
        {"timestamp": "2026-01-01T00:00:00Z", "x": 1.0, "y": 1.0, "z": 0.1, "layer": 1}
        | {f"probe_{i}": float(i) for i in range(10)}
    ]
    monitor.client.process_stream_batch(batch)
    stats = monitor.client.get_stream_statistics()
    assert stats["signals_refused"] > 0
    view.refresh(monitor.monitor_snapshot())
    assert "signals refused" in view.compact.object
    assert f"{stats['signals_refused']:,}" in view.compact.object


def _quiet_monitor(tmp_path, name: str, **kw):
    import uuid

    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig

    servers = [f"memory://{name}-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=servers, storage_path=str(tmp_path), buffer_size=100_000
    )
    return LiveMonitor(MonitorConfig(streaming=cfg, simulate=False, **kw))


def _feed(mon, t0: float, seconds: float, rate: float = 200.0, temp: float = 1900.0) -> None:
    """Put ``seconds`` of temperature readings from epoch ``t0`` into the buffers."""
    n = int(seconds * rate)
    base = datetime.fromtimestamp(t0, tz=UTC)
    mon.client.process_stream_batch(
        [{"timestamp": base + timedelta(seconds=i / rate), "temperature": temp} for i in range(n)]
    )


def test_live_plot_breaks_the_line_over_time_without_data(tmp_path):
    from dashboard.live_signals import LiveSignals

    mon = _quiet_monitor(tmp_path, "gaps")
    view = LiveSignals(monitor=mon, signals=["temperature"], window_seconds=30.0)
    trace = view._traces["temperature"]
    t0 = 1_700_000_000.0
    _feed(mon, t0, 2.0)
    view._pull(trace)
    _feed(mon, t0 + 10.0, 2.0)  # 8 s without data (a tab in the background, a stall)
    view._pull(trace)
    data = trace.buffer.data
    secs = data["time"].astype("int64").to_numpy() / 1e9
    gap = np.flatnonzero(np.diff(secs) > 1.0)
    # no two points with data are joined across the 8 s: a NaN row lies between them
    for i in gap:
        assert np.isnan(data["temperature"].iloc[i]) or np.isnan(data["temperature"].iloc[i + 1])
    assert data["temperature"].isna().sum() >= 1
    assert data["temperature"].notna().sum() >= 30
    view.close()


def test_live_plot_spans_its_window_and_restarts_with_a_new_build(tmp_path):
    from dashboard.live_signals import LiveSignals, _mean, last_seconds

    mon = _quiet_monitor(tmp_path, "window")
    view = LiveSignals(monitor=mon, signals=["temperature"], window_seconds=30.0)
    trace = view._traces["temperature"]
    t0 = 1_700_000_000.0
    for k in range(6):  # bursts 20 s apart: the stream buffer's rows span 100 s
        _feed(mon, t0 + 20.0 * k, 1.0)
        view._pull(trace)
    shown = _mean(trace.buffer.data, vdim="temperature", window=30.0)
    times = shown.dimension_values("time")
    assert (times.max() - times.min()) / np.timedelta64(1, "s") <= 30.0
    assert len(last_seconds(trace.buffer.data, 30.0)) < len(trace.buffer.data)

    view.refresh(MonitorSnapshot(builds=1, replays=0))
    assert len(trace.buffer.data) > 0
    view.refresh(MonitorSnapshot(builds=2, replays=0))  # a new build: nothing of the old one stays
    assert len(trace.buffer.data) == 0 and trace.cursor is None
    view.close()


def test_a_dead_feed_is_shown_as_no_data_on_header_and_kiosk(tmp_path):
    from dashboard.machine_dashboard import Dashboard

    mon = _quiet_monitor(tmp_path, "stale")
    snap = replace(mon.monitor_snapshot(), state="running", feed="stale", data_age_s=7.4)
    main, kiosk = Dashboard(monitor=mon), Dashboard(monitor=mon, kiosk=True)
    main._update_header(snap)
    assert 'data-feed="stale"' in main.header.object
    assert "No data for 7 s" in main.header.object and "Running" not in main.header.object
    kiosk.kiosk_status.update(snap, {})
    assert "amq-feed-stale" in kiosk.kiosk_status.pane.object
    assert "No data for 7 s" in kiosk.kiosk_status.pane.object
    main._update_header(replace(snap, feed="live", data_age_s=0.2))
    assert 'data-feed="live"' in main.header.object and "Running" in main.header.object
    main.stop()
    kiosk.stop()


def test_health_names_the_embedded_defaults_and_waits_for_the_first_message(tmp_path):
    from dashboard.health_view import HealthView

    mon = _quiet_monitor(tmp_path, "health-embedded")
    mon.start()
    try:
        view = HealthView(monitor=mon)
        view.refresh(mon.monitor_snapshot())  # consuming, no message yet
        html = view.connections.object
        assert 'data-state="waiting"' in html and "topic am_qadf_monitoring" in html
        assert "in-process cache" in html and "embedded history (SQLite)" in html
        assert "MongoDB" not in html and 'data-state="off"' not in html
        assert str(tmp_path) in html  # where the history file is
        assert "Buffers hold" in view.n_buffer.name
    finally:
        mon.stop()


def test_spc_view_plots_each_chart_kind_over_time_or_layer_within_its_window(tmp_path):
    from dashboard.spc_view import SPCView

    mon = _quiet_monitor(tmp_path, "spc", spc_charts=("imr", "xbar_r", "xbar_s", "cusum"))
    kinds = ["ewma", "imr", "xbar_r", "xbar_s", "cusum"]  # the profile's own chart first
    assert mon.spc_kinds("temperature") == kinds
    rng = np.random.default_rng(3)
    t0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    for b in range(60):  # 60 batches of 500 points at 1 kHz: 30 s, layers 0..5
        base = t0 + timedelta(seconds=b / 2)
        batch = [
            {
                "timestamp": base + timedelta(milliseconds=i),
                "layer": b // 10,
                "temperature": float(v),
                "melt_pool_area": 0.03,
                "intensity": 2000.0,
            }
            for i, v in enumerate(rng.normal(1900.0, 15.0, 500))
        ]
        mon._on_result(batch, mon.client.process_stream_batch(batch))
    view = SPCView(monitor=mon, update_seconds=0.0)
    assert view.param.chart.objects == kinds and view.chart == "ewma"
    view.refresh(MonitorSnapshot())
    data = view._data.data
    span = (data["time"].max() - data["time"].min()).total_seconds()
    assert 20.0 < span <= 30.0, "x is time (after the 5,000-point baseline), not an index"
    assert data["time"].min() >= pd.Timestamp("2026-01-01 08:00:00")
    for kind in ("imr", "xbar_r", "cusum"):
        view.chart = kind  # re-plots at once
        assert len(view._data.data) > 0 and view._state.chart == kind
    view.x_axis = "layer"
    layers = view._data.data["layer"]
    assert layers.min() >= 0.0 and layers.max() < 6.0 and layers.is_monotonic_increasing
    view.window = "last 2 min"
    assert len(view._data.data) > 0
    assert 'data-points="' in view._summary.object


def test_spc_view_marks_violations_where_they_happened(tmp_path):
    from dashboard.spc_view import SPCView

    mon = _quiet_monitor(tmp_path, "spc-marks")
    t0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    rng = np.random.default_rng(5)
    for b in range(16):
        temps = rng.normal(1900.0, 10.0, 500)
        if b == 15:
            temps[:] = 2300.0  # far beyond the limits
        batch = [
            {"timestamp": t0 + timedelta(seconds=b, milliseconds=i), "layer": 2,
             "temperature": float(v)}
            for i, v in enumerate(temps)
        ]  # fmt: skip
        mon._on_result(batch, mon.client.process_stream_batch(batch))
    view = SPCView(monitor=mon, update_seconds=0.0, chart="imr")
    view.refresh(MonitorSnapshot())
    marks = view._marks.data
    assert len(marks) > 0 and view.marks_shown == len(marks)
    hot = marks[marks["stat"] > 2200.0]  # the jump, at its time (noise trips run rules too)
    assert len(hot) > 0 and hot["time"].min() >= pd.Timestamp("2026-01-01 08:00:15")


def _raise(mgr, metric, rule, value, severity, t, **kw):
    return mgr.raise_alert(metric, rule, value, severity=severity, time=t, **kw)


def test_alerts_critical_first_each_row_says_what_where_and_what_the_value_is(tmp_path):
    from dashboard.alerts_view import AlertsView

    mon = _quiet_monitor(tmp_path, "alerts-order")
    mgr = mon.alerts
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    for i in range(10):  # ten warnings in the same millisecond as the critical one
        _raise(mgr, "power", "threshold_low", 150.0 + i, "warning", t0, index=i)
    crit = _raise(
        mgr, "temperature", "threshold_high", 2650.0, "critical", t0,
        layer=57, x=12.34, y=56.78, z=2.28, message="temperature above 2200 K " + "x" * 200,
    )  # fmt: skip
    _raise(mgr, "temperature", "missing_data", 20.0, "warning", t0 + timedelta(seconds=1))
    _raise(mgr, "power", "rate_of_change", 130.0, "info", t0 + timedelta(seconds=2))
    view = AlertsView(monitor=mon)
    view.refresh(MonitorSnapshot())
    table = view.table.value
    assert table["id"].iloc[0] == crit.id, "the critical alert is the first row"
    row = table.iloc[0]
    assert "temperature</b> above its limit" in row["what"]
    assert row["value"] == "2,650 K" and "layer 57" in row["where"] and "x 12 y 57" in row["where"]
    assert ("x" * 200 + '">') in row["what"], "the whole message is the tooltip of 'what'"
    values = set(table["value"])
    assert "20 msgs without" in values and any(v.startswith("Δ ") for v in values)
    hidden = set(view.table.hidden_columns)
    assert not {"what", "where", "value", "seen", "ack", "clear"} & hidden

    # a new critical alert: banner and (sound off) no chime by default
    assert view.new_criticals == 1 and crit.id in view.banner.object
    assert not view.chime.enabled
    view.sound = True
    assert view.chime.enabled
    crit2 = _raise(mgr, "intensity", "threshold_high", 9e3, "critical", t0 + timedelta(seconds=3))
    view.refresh(MonitorSnapshot())
    assert view.new_criticals == 2 and crit2.id in view.banner.object
    assert view.chime.count == 2
    mon.acknowledge(crit2.id)
    mon.acknowledge(crit.id)
    view.refresh(MonitorSnapshot())
    assert view.banner.object == "", "no unacknowledged critical alert: no banner"


def test_alerts_active_all_toggle_and_clear(tmp_path):
    from dashboard.alerts_view import AlertsView

    mon = _quiet_monitor(tmp_path, "alerts-toggle")
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    a = _raise(mon.alerts, "temperature", "threshold_high", 2600.0, "critical", t0)
    b = _raise(mon.alerts, "power", "threshold_low", 150.0, "warning", t0)
    view = AlertsView(monitor=mon)
    view.refresh(MonitorSnapshot())
    assert view.clear_alert(a.id)
    assert list(view.table.value["id"]) == [b.id], "cleared alerts leave the active list"
    view.show = "all"  # takes effect at once, not on the next tick
    assert set(view.table.value["id"]) == {a.id, b.id}
    assert view.table.value.set_index("id").loc[a.id, "clear"] == ""


def test_kiosk_shows_the_newest_unacknowledged_critical_alert_full_width(tmp_path):
    from dashboard.machine_dashboard import Dashboard

    mon = _quiet_monitor(tmp_path, "kiosk-banner")
    kiosk = Dashboard(monitor=mon, kiosk=True)
    body = kiosk._kiosk_body()
    assert body.objects[0] is kiosk.alerts.banner
    alert = mon.alerts.raise_alert("temperature", "threshold_high", 2650.0, severity="critical")
    kiosk.alerts.refresh(MonitorSnapshot())
    assert "amq-kiosk-banner" in kiosk.alerts.banner.object
    assert alert.id in kiosk.alerts.banner.object and "2,650 K" in kiosk.alerts.banner.object
    kiosk.stop()


def test_layer_map_and_3d_view_name_build_layers(tmp_path):
    from dashboard.layer_map import LayerMap
    from dashboard.voxel_view import VoxelView

    mon = _quiet_monitor(tmp_path, "layers")
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    batch = [
        {"timestamp": t0 + timedelta(milliseconds=i), "layer": layer, "x": 20.0 + 0.05 * i,
         "y": 30.0, "z": 0.04 * layer + 0.02, "temperature": 1900.0}
        for layer in range(60)
        for i in range(40)
    ]  # fmt: skip
    mon._on_result(batch, mon.client.process_stream_batch(batch))
    # 0.04 mm build layers in 0.5 mm voxel layers: voxel layer 4 holds build layers 50-59
    assert mon.build_layers(4) == (50, 59) and mon.voxel_layer(57) == 4
    view = LayerMap(monitor=mon, update_seconds=0.0)
    snap = mon.monitor_snapshot()  # the laser's newest height places the followed layer
    assert snap.newest_z == pytest.approx(0.04 * 59 + 0.02)
    view.refresh(replace(snap, current_layer=59))
    assert view.build_layer == 59
    assert "build layers 50–59" in view._title.object
    assert "voxel layer" not in view._title.object
    view.build_layer = 7  # an operator asks for a build layer, not a z slab
    assert not view.follow and view.layer_k == 0
    assert "build layers 0–11" in view._title.object

    voxels = VoxelView(monitor=mon, update_seconds=0.0)
    voxels.refresh(snap)
    assert "outlined: build layers 50–59" in voxels._status.object
    voxels.close()
    view.close()


def test_points_outside_the_plate_are_warned_of_in_header_and_health(tmp_path):
    """Points beyond the plate (z = 45 mm over a 40 mm tall build volume) are in no 3D
    view: the header and Health say how many, instead of a plausible-looking page."""
    from dashboard.health_view import HealthView
    from dashboard.machine_dashboard import Dashboard

    mon = _quiet_monitor(
        tmp_path, "outside", bbox_min=(0.0, 0.0, 0.0), bbox_max=(100.0, 100.0, 40.0)
    )
    base = datetime.fromtimestamp(1_700_000_000.0, tz=UTC)
    mon.client.process_stream_batch(
        [
            {
                "timestamp": base + timedelta(milliseconds=i),
                "x": 50.0,
                "y": 50.0,
                "z": 45.0 if i % 2 else 10.0,
                "layer": 1500,
                "temperature": 1900.0,
            }
            for i in range(200)
        ]  # fmt: skip
    )
    snap = mon.monitor_snapshot()
    assert snap.points_outside_grid == 100
    main = Dashboard(monitor=mon)
    health = HealthView(monitor=mon)
    try:
        main._update_header(snap)
        assert 'data-outside="100"' in main.header.object
        assert "100</b> points outside the plate" in main.header.object
        assert "z 0–40 mm" in main.header.object  # the tooltip says where the plate ends
        health.refresh(snap)
        assert "100 points outside the plate" in health.fit.object
    finally:
        main.stop()
        health.close()
