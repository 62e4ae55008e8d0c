"""The Redis state store passes the same contract as the in-process one, on the real
server (a unique key prefix per test, deleted afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from am_qadf.fleet.state_store import RedisStateStore
from tests.unit.state_store_contract import StateStoreContract
from tests.waiting import wait_for


class TestRedisStateStore(StateStoreContract):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[RedisStateStore]:
        s = RedisStateStore(
            redis_url,
            prefix=f"it-fleet-{uuid.uuid4().hex}",
            max_alerts=20,
            max_deltas=8,
            max_commands=10,
        )
        try:
            yield s
        finally:
            s.clear()
            s.close()


def test_two_readers_see_the_same_fleet(redis_url: str) -> None:
    """Two dashboard processes' readers over one Redis show the same machines in the
    same order, and both follow a change a worker writes."""
    import time

    from am_qadf.fleet.fleet_reader import FleetReader
    from am_qadf.fleet.state_store import MachineSnapshot

    prefix = f"it-fleet-{uuid.uuid4().hex}"
    writer = RedisStateStore(redis_url, prefix=prefix)
    stores = [RedisStateStore(redis_url, prefix=prefix) for _ in range(2)]
    readers = [FleetReader(s).start() for s in stores]
    try:
        now = time.time()
        writer.put_snapshot(MachineSnapshot("m1", state="running", updated_at=now))
        writer.put_snapshot(MachineSnapshot("m2", alerts_active={"critical": 2}, updated_at=now))
        for r in readers:
            assert wait_for(lambda r=r: len(r.snapshots()) == 2, timeout=30)
        views = [[(m.machine_id, m.status) for m in r.overview()] for r in readers]
        assert views[0] == views[1] == [("m2", "critical"), ("m1", "running")]
    finally:
        for r in readers:
            r.stop()
        writer.clear()
        for s in (writer, *stores):
            s.close()


def test_batched_writes_go_in_one_round_trip_at_the_end(redis_url: str) -> None:
    """A worker's publish is one pipeline: nothing of it is visible before the end, all
    of it after (in order: a reader woken by the change notice finds the data); a
    failure inside sends nothing."""
    import numpy as np

    from am_qadf.fleet.state_store import MachineSnapshot

    store = RedisStateStore(redis_url, prefix=f"it-fleet-{uuid.uuid4().hex}")
    other = RedisStateStore(redis_url, prefix=store.prefix)  # another process's view
    try:
        cursor = other.change_cursor()
        with store.batched():
            store.put_snapshot(MachineSnapshot("m1", layer=7))
            store.add_alerts("m1", [{"id": "a1", "event": "raised"}])
            store.add_bricks("m1", np.array([[0, 0, 1]]))
            store.put_episodes("m1", [{"id": "a1"}])
            assert other.snapshot("m1") is None and other.machines() == []
        _, changed = other.wait(cursor, timeout=5)
        assert changed == {"m1"}
        assert other.snapshot("m1").layer == 7
        assert [a["id"] for a in other.alerts("m1")] == ["a1"]
        assert other.episodes("m1") == [{"id": "a1"}]
        with pytest.raises(RuntimeError), store.batched():
            store.put_snapshot(MachineSnapshot("m1", layer=8))
            raise RuntimeError("publish failed midway")
        assert other.snapshot("m1").layer == 7
    finally:
        store.clear()
        store.close()
        other.close()
