"""SPC baselines per machine and recipe: learned on a build, saved beside the history,
loaded for the next build of the same machine and material, re-learned by operators."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import KafkaProducer, StreamingConfig
from am_qadf.streaming.baseline_store import BaselineStore
from am_qadf.streaming.history_store import SqliteHistory
from tests.eos_stream import EOS_PROFILE, eos_messages
from tests.waiting import wait_for


def test_store_round_trip_in_the_history_file(tmp_path) -> None:
    path = tmp_path / "history.sqlite3"
    store = BaselineStore(SqliteHistory(path))
    assert store.backend == "sqlite" and store.load("m1", "316L") is None
    store.save("m1", "316L", {"t": {"kind": "ewma", "baseline": {"center": 1.5}}}, build_id="b1")
    store.save("m1", "Ti64", {"t": {"kind": "ewma"}}, build_id="b2")
    again = BaselineStore(SqliteHistory(path))  # another process, later
    rec = again.load("m1", "316L")
    assert rec["build_id"] == "b1" and rec["baselines"]["t"]["baseline"]["center"] == 1.5
    assert again.load("m1", "Ti64")["build_id"] == "b2"
    assert again.load("m2", "316L") is None


def _monitor(tmp_path, profile: MachineProfile) -> tuple[LiveMonitor, KafkaProducer]:
    server = f"memory://bl-{uuid.uuid4().hex[:8]}"
    cfg = MonitorConfig(
        streaming=StreamingConfig.embedded(
            kafka_bootstrap_servers=[server], storage_path=str(tmp_path), max_poll_records=1000
        ),
        simulate=False,
        profile=profile,
    )
    return LiveMonitor(cfg), KafkaProducer([server], cfg.streaming.kafka_topic)


def _feed(mon: LiveMonitor, prod: KafkaProducer, n: int, start: int = 0) -> None:
    target = mon.snapshot()["stats"]["messages_processed"] + n
    prod.produce_batch(eos_messages(n, start=start), key="m290-2")
    prod.flush()
    assert wait_for(lambda: mon.snapshot()["stats"]["messages_processed"] >= target)


def test_learned_on_one_build_loaded_for_the_next_of_that_machine_and_material(tmp_path) -> None:
    eos = MachineProfile.load(EOS_PROFILE)
    mon, prod = _monitor(tmp_path, eos)
    assert mon.baseline_info()["origin"] == "learning"
    mon.start()
    try:
        _feed(mon, prod, 6_000)
        assert wait_for(lambda: mon.baseline_info()["origin"] == "learned")
        info = mon.baseline_info()
        assert info["saved"] and info["build_id"] == "job-42" and info["material"] == "316L"
        centre = mon.spc.charts["temperature"].limits()["center"]
    finally:
        mon.stop()
    # the next build of the same machine and material starts from that baseline
    nxt, _ = _monitor(tmp_path, eos)
    b = nxt.baseline_info()
    assert b["origin"] == "stored" and b["build_id"] == "job-42"
    assert b["signals"] == ["photodiode", "temperature"]
    assert nxt.spc.charts["temperature"].is_ready
    assert nxt.spc.charts["temperature"].limits()["center"] == pytest.approx(centre)
    assert nxt.snapshot()["baseline"]["origin"] == "stored"
    # another recipe learns its own
    ti = dataclasses.replace(eos, machine=dataclasses.replace(eos.machine, material="Ti64"))
    other, _ = _monitor(tmp_path, ti)
    assert other.baseline_info()["origin"] == "learning"
    assert not other.spc.charts["temperature"].is_ready


def test_relearn_replaces_the_stored_baseline(tmp_path) -> None:
    mon, prod = _monitor(tmp_path, MachineProfile.load(EOS_PROFILE))
    mon.start()
    try:
        _feed(mon, prod, 6_000)
        assert wait_for(lambda: mon.baseline_info()["origin"] == "learned")
        first = mon.baseline_info()["learned_at"]
        mon.relearn_baseline(by="alice")
        assert mon.baseline_info()["origin"] == "relearning"
        assert not mon.spc.charts["temperature"].is_ready
        _feed(mon, prod, 6_000, start=6_000)
        assert wait_for(lambda: mon.baseline_info()["origin"] == "learned")
        rec = mon.baseline_store.load("m290-2", "316L")
        assert rec["learned_by"] == "alice" and rec["learned_at"] >= first
    finally:
        mon.stop()


def test_spc_tab_relearn_is_for_operators_only(tmp_path) -> None:
    from dashboard.spc_view import SPCView

    mon, _ = _monitor(tmp_path, MachineProfile.load(EOS_PROFILE))
    mon.baseline_store.save("m290-2", "316L", mon.spc.baselines(), build_id="old")
    policy = AccessPolicy(operators=["alice"])
    viewer = SPCView(monitor=mon, user="bob", policy=policy)
    assert viewer._relearn.disabled  # and refused on the server should a click get through
    viewer.relearn_baseline()
    assert "may not relearn_baseline" in viewer.message
    assert mon.baseline_info()["origin"] == "learning"
    operator = SPCView(monitor=mon, user="alice", policy=policy)
    operator.relearn_baseline()
    assert mon.baseline_info() == {
        "machine_id": "m290-2",
        "material": "316L",
        "origin": "relearning",
        "requested_by": "alice",
    }
    assert "re-learning from the coming points" in operator._baseline.object
