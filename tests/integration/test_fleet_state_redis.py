"""The Redis state store passes the same contract as the in-process one, on the real
server (a unique key prefix per test, deleted afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from am_qadf.fleet.state_store import RedisStateStore
from tests.unit.state_store_contract import StateStoreContract


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
