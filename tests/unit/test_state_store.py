"""The in-process state store passes the state-store contract (the Redis one runs the
same contract in tests/integration/test_fleet_state_redis.py)."""

from __future__ import annotations

import numpy as np
import pytest

from am_qadf.fleet.state_store import (
    InProcessStateStore,
    MachineSnapshot,
    downsample,
    open_state_store,
)
from tests.unit.state_store_contract import StateStoreContract


class TestInProcessStateStore(StateStoreContract):
    @pytest.fixture
    def store(self) -> InProcessStateStore:
        return InProcessStateStore(max_alerts=20, max_deltas=8, max_commands=10)


def test_snapshot_from_dict_ignores_unknown_keys_and_needs_an_id() -> None:
    s = MachineSnapshot.from_dict({"machine_id": "m1", "from_a_newer_worker": 1})
    assert s.machine_id == "m1"
    with pytest.raises(ValueError, match="machine_id"):
        MachineSnapshot.from_dict({"layer": 3})


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_deltas"):
        InProcessStateStore(max_deltas=0)
    with pytest.raises(ValueError, match="AMQADF_STATE"):
        open_state_store("http://x")


def test_downsample_keeps_extremes_of_every_bin() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=100_001)
    t = np.arange(v.size, dtype=float)
    ts, vs = downsample(t, v, 200)
    assert len(vs) <= 200 and vs.max() == v.max() and vs.min() == v.min()
    assert np.all(np.diff(ts) > 0)


def test_first_rows_is_np_unique_by_rows() -> None:
    """The one-key dedup of voxel deltas picks the rows np.unique(axis=0) picks."""
    from am_qadf.fleet.state_store import _first_rows

    rng = np.random.default_rng(3)
    for lo, hi in ((0, 6), (-40, 40), (0, 2**20)):
        ijk = rng.integers(lo, hi, size=(5000, 3)).astype(np.int32)
        want = np.unique(ijk, axis=0, return_index=True)[1]
        assert np.array_equal(_first_rows(ijk), want)
    assert _first_rows(np.empty((0, 3), np.int32)).size == 0
