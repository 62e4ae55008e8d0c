"""``am-qadf`` with machine profiles: --profile, profile draft/check, replay; and
LiveMonitor on another machine's profile."""

from __future__ import annotations

import gc
import uuid

import pandas as pd
import pytest

from am_qadf.cli import main as cli_main
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import MonitorSnapshot
from am_qadf.streaming import KafkaConsumer, KafkaProducer, StreamingConfig
from tests.eos_stream import EOS_PROFILE, eos_messages
from tests.waiting import wait_for


def test_draft_from_a_recording_is_a_valid_commented_profile(tmp_path, capsys) -> None:
    rec = tmp_path / "m290.csv"
    pd.DataFrame(eos_messages(3_000, t0_ms=1_760_000_000_000)).to_csv(rec, index=False)
    out = tmp_path / "m290.toml"
    assert cli_main(["profile", "draft", str(rec), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.count("#") > 10  # commented for the user
    p = MachineProfile.load(out)
    f = p.fields
    assert (f.time, f.time_unit, f.x, f.y, f.layer, f.build) == (
        "ts",
        "ms",
        "pos_x",
        "pos_y",
        "layer_no",
        "job",
    )
    t = p.signal("mp_temp_c")
    assert t.field == "mp_temp_C" and t.low < 2026.85 < t.high  # robust limits around the median
    assert "chamber_o2_ppm" in p.signal_names
    # never overwrites a profile someone edited
    with pytest.raises(FileExistsError):
        cli_main(["profile", "draft", str(rec), "-o", str(out)])
    assert cli_main(["profile", "draft", str(rec)]) == 0
    assert "[signals.photodiode_mv]" in capsys.readouterr().out


def test_every_command_takes_profile_and_a_bad_one_stops_it(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[machine]\nid = "m"\n[signals.t]\nspc = "pie"\n')
    for cmd in (
        ["monitor", "--seconds", "0.1"],
        ["simulate", "--points", "10"],
        ["replay", str(tmp_path / "x.csv")],
        ["profile", "check"],
    ):
        assert cli_main([*cmd, "--profile", str(bad)]) == 2
        assert "bad.toml: signals.t.spc: must be one of" in capsys.readouterr().err
    assert cli_main(["profile", "check", "--profile", str(EOS_PROFILE)]) == 0
    assert "mp_temp_C" in capsys.readouterr().out


def test_replay_publishes_a_recording_in_its_own_shape(tmp_path) -> None:
    rec = tmp_path / "m290.parquet"
    pd.DataFrame(eos_messages(1_200, t0_ms=1_760_000_000_000)).to_parquet(rec)
    server = f"memory://replay-{uuid.uuid4().hex[:8]}"
    args = [
        "replay",
        str(rec),
        "--profile",
        str(EOS_PROFILE),
        "--bootstrap",
        server,
        "--topic",
        "m290",
        "--speed",
        "0",
    ]
    assert cli_main(args) == 0
    consumer = KafkaConsumer([server], ["m290"], group_id="g")
    got = []
    assert wait_for(lambda: got.extend(consumer.poll(timeout_ms=100)) or len(got) >= 1_200)
    assert got[0]["key"] in (b"m290-2", "m290-2")
    assert got[0]["value"]["ts"] == 1_760_000_000_000 and "mp_temp_C" in got[0]["value"]


def test_live_monitor_on_another_machines_profile(tmp_path) -> None:
    server = f"memory://eos-{uuid.uuid4().hex[:8]}"
    cfg = MonitorConfig(
        streaming=StreamingConfig.embedded(
            kafka_bootstrap_servers=[server], storage_path=str(tmp_path), max_poll_records=1000
        ),
        simulate=False,
    )
    mon = LiveMonitor(cfg, profile=str(EOS_PROFILE))
    assert mon.grid.bbox_max.tolist() == [250.0, 250.0, 325.0]
    prod = KafkaProducer([server], cfg.streaming.kafka_topic)
    prod.produce_batch(eos_messages(12_000, hot=(9_000, 9_050)), key="m290-2")
    prod.flush()
    mon.start()
    try:
        assert wait_for(lambda: mon.snapshot()["stats"]["messages_processed"] >= 12_000)
        snap = mon.snapshot()
        assert snap["profile"]["machine_id"] == "m290-2"
        assert snap["profile"]["problems"] == []  # every field there, all points on the plate
        assert snap["current_layer"] == 6 and snap["build_id"] == "job-42"
        spc = mon.spc_state()["signals"]
        assert spc["temperature"]["chart"] == "ewma" and spc["photodiode"]["chart"] == "imr"
        assert 2250 < spc["temperature"]["center"] < 2350  # its own baseline, in K
        alerts = {(a.metric, a.rule) for a in mon.alerts.history()}
        assert ("temperature", "threshold_high") in alerts
        assert {"temperature", "photodiode", "laser_power", "chamber_o2_ppm"} <= set(
            mon.client.buffers
        )
        assert mon.grid.occupied_count > 0
    finally:
        mon.stop()


def test_a_profile_that_does_not_fit_is_visible_in_the_snapshot(tmp_path) -> None:
    server = f"memory://fit-{uuid.uuid4().hex[:8]}"
    cfg = MonitorConfig(
        streaming=StreamingConfig.embedded(
            kafka_bootstrap_servers=[server], storage_path=str(tmp_path), max_poll_records=1000
        ),
        rate=20_000,
        profile=MachineProfile.load(EOS_PROFILE),
    )
    mon = LiveMonitor(cfg)  # the simulator publishes its own shape: nothing fits
    mon.start()
    try:
        assert wait_for(lambda: mon.snapshot()["profile"]["recent"] >= 2_000)
        problems = mon.snapshot()["profile"]["problems"]
        assert any(p.startswith("field mp_temp_C missing in 100 % of the last") for p in problems)
    finally:
        mon.stop()


def test_history_offers_fields_the_profile_does_not_name(tmp_path) -> None:
    from dashboard.history_view import HistoryView

    mon = LiveMonitor(
        MonitorConfig(
            streaming=StreamingConfig.embedded(storage_path=str(tmp_path)), simulate=False
        ),
        profile=str(EOS_PROFILE),
    )
    view = HistoryView(monitor=mon)
    assert list(view.signal.options.values()) == ["temperature", "photodiode", "laser_power"]
    assert view.signal.value == "temperature"
    assert "Photodiode signal" in view.signal.options
    view.refresh(MonitorSnapshot(profile={"unnamed_fields": ["chamber_o2_ppm"]}))
    assert view.signal.options["chamber_o2_ppm"] == "chamber_o2_ppm"
    view.signal.value = "temperature"
    now = pd.Timestamp.now()
    view._plot(pd.DataFrame({"timestamp": [now, now], "temperature": [2300.0, 2310.0]}))
    assert view.plot.object.opts["title"].startswith("Melt-pool temperature (K): 2 rows")


def test_dashboard_embedded_takes_a_profile(tmp_path, monkeypatch) -> None:
    from dashboard.machine_dashboard import Dashboard
    from dashboard.pipeline_cache import shutdown_monitor

    monkeypatch.setenv("AMQADF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AMQADF_KAFKA", f"memory://emb-{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("AMQADF_PROFILE", raising=False)
    shutdown_monitor()
    thresholds = gc.get_threshold()  # the server's GC tuning must not outlive the test
    try:
        dash = Dashboard.embedded(profile=MachineProfile.load(EOS_PROFILE))
        assert dash.monitor.profile.machine.id == "m290-2"
        assert dash.live.signals == ["temperature", "photodiode", "laser_power"]
        assert dash.spc.param.signal.objects == ["temperature", "photodiode"]
        with pytest.raises(ValueError, match="already monitors"):
            Dashboard.embedded(profile=MachineProfile.default())  # one pipeline per process
        assert Dashboard.embedded().monitor is dash.monitor
    finally:
        shutdown_monitor()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_kiosk_tile_uses_the_profile() -> None:
    from dashboard.kiosk import KioskStatus

    k = KioskStatus()
    k.update(
        MonitorSnapshot(state="running"), {"temperature": 2301.4}, MachineProfile.load(EOS_PROFILE)
    )
    assert "Temperature" in k.pane.object and "2,301" in k.pane.object and " K<" in k.pane.object
