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
