"""Fleet overview: worst first, stale machines flagged, one cached reader per process."""

from __future__ import annotations

import time

from am_qadf.fleet.fleet_reader import FleetReader, rank
from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot


def test_rank_orders_every_status_worst_first() -> None:
    now = 100.0
    snaps = [
        MachineSnapshot("idle", state="idle", updated_at=now),
        MachineSnapshot("run", state="running", updated_at=now),
        MachineSnapshot("dlq", state="running", dead_lettered=3, updated_at=now),
        MachineSnapshot("pause", state="paused", updated_at=now),
        MachineSnapshot("warn", state="running", alerts_active={"warning": 1}, updated_at=now),
        MachineSnapshot("stale", state="running", updated_at=now - 30),
        MachineSnapshot("crit1", alerts_active={"critical": 1}, updated_at=now),
        MachineSnapshot("crit3", alerts_active={"critical": 3}, updated_at=now - 30),
    ]
    got = [(m.machine_id, m.status) for m in rank(snaps, now=now, stale_after=6)]
    assert got == [
        ("crit3", "critical"),
        ("crit1", "critical"),
        ("stale", "stale"),
        ("warn", "warning"),
        ("pause", "paused"),
        ("dlq", "degraded"),
        ("run", "running"),
        ("idle", "idle"),
    ]


def test_reader_follows_changes() -> None:
    store = InProcessStateStore()
    store.put_snapshot(MachineSnapshot("m1", state="running", updated_at=time.time()))
    reader = FleetReader(store).start()
    try:
        assert [m.machine_id for m in reader.overview()] == ["m1"]
        v = reader.version
        store.put_snapshot(
            MachineSnapshot("m2", alerts_active={"critical": 1}, updated_at=time.time())
        )
        assert reader.wait_for_version(v + 1, timeout=30)
        assert [m.machine_id for m in reader.overview()] == ["m2", "m1"]
    finally:
        reader.stop()


def test_a_running_machine_whose_data_stopped_is_stale() -> None:
    """Its worker still publishes (fresh updated_at), but no message came for 30 s."""
    now = 100.0
    quiet = MachineSnapshot("quiet", state="running", data_at=now - 30, updated_at=now)
    done = MachineSnapshot("done", state="idle", data_at=now - 30, updated_at=now)
    live = MachineSnapshot("live", state="running", data_at=now - 1, updated_at=now)
    got = [(m.machine_id, m.status) for m in rank([live, quiet, done], now=now, stale_after=6)]
    assert got == [("quiet", "stale"), ("live", "running"), ("done", "idle")]


def test_reader_caches_the_main_signal_window_and_forgets_gone_machines() -> None:
    store = InProcessStateStore()
    store.put_windows("m1", {"other": ([1.0], [9.0]), "temp": ([1.0, 2.0], [3.0, 4.0])})
    store.put_snapshot(MachineSnapshot("m1", signal="temp", updated_at=time.time()))
    reader = FleetReader(store).start()
    try:
        assert reader.main_window("m1")[1].tolist() == [3.0, 4.0]
        assert reader.main_window("m2") is None
        v = reader.version
        store.put_windows("m1", {"temp": ([3.0], [5.0])})
        assert reader.wait_for_version(v + 1, timeout=30)
        assert reader.main_window("m1")[1].tolist() == [5.0]
        v = reader.version
        store.clear()
        store.put_snapshot(MachineSnapshot("m2", updated_at=time.time()))
        assert reader.wait_for_version(v + 1, timeout=30)
        assert reader.main_window("m1") is None
    finally:
        reader.stop()
