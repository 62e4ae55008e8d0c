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
