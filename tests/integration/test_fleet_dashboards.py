"""Two dashboard servers on the real servers: each reads the fleet state from Redis
over its own connection (as two ``panel serve`` processes would), both show the same
machine the same way, and an operator action taken on one dashboard's controls reaches
the worker that owns the machine."""

from __future__ import annotations

import numpy as np

from am_qadf.access_policy import AccessPolicy
from am_qadf.fleet.remote_machine import RemoteMachine
from am_qadf.fleet.state_store import RedisStateStore
from am_qadf.simulation.defects import hot_spot_messages
from am_qadf.streaming import KafkaProducer
from tests.integration.test_fleet_workers import MACHINES, Fleet, _messages
from tests.waiting import wait_for

POLICY = AccessPolicy(operators={"ada"})
TARGET = "m02"


def test_two_dashboard_servers_show_the_same_machine_and_act_on_its_worker(
    fleet: Fleet, redis_url: str
) -> None:
    from dashboard.controls import Controls

    fleet.spawn("a")
    assert wait_for(lambda: fleet.members_with_partitions() == 1, timeout=120), fleet.logs()
    fleet.produce(1500, seed=5)
    last = _messages(5 + MACHINES.index(TARGET), 1500)[-1]
    hot = hot_spot_messages(last, last["timestamp"], last["build_id"], n_points=30)
    prod = KafkaProducer([fleet.kafka], fleet.topic)
    fleet.produced[TARGET] += prod.produce_batch(hot, key=TARGET)
    prod.flush()
    prod.close()

    # two dashboard processes: two connections, two RemoteMachines of the same machine
    stores = [RedisStateStore(redis_url, prefix=fleet.prefix) for _ in range(2)]
    try:

        def published() -> bool:
            s = stores[0].snapshot(TARGET)
            return bool(s and s.messages == fleet.produced[TARGET] and s.alerts_active)

        assert wait_for(published, timeout=180), fleet.logs()
        # the voxel state follows every 2 s: wait for one written after the last delta
        assert wait_for(
            lambda: stores[0].voxels(TARGET)[0] == stores[0].bricks_since(TARGET)[0], timeout=60
        ), fleet.logs()
        one, two = (RemoteMachine(s, TARGET, policy=POLICY) for s in stores)
        a, b = one.monitor_snapshot(), two.monitor_snapshot()
        for field in ("machine_id", "name", "build_id", "current_layer", "messages_new"):
            assert getattr(a, field) == getattr(b, field), field
        assert a.messages_new == fleet.produced[TARGET] and a.alerts_active >= 1
        assert [x.id for x in one.alert_list()] == [x.id for x in two.alert_list()] != []
        w1, w2 = one.signal_window("temperature", 10.0), two.signal_window("temperature", 10.0)
        assert len(w1) and np.array_equal(w1.epoch_us, w2.epoch_us)
        assert np.array_equal(w1.values, w2.values)
        signal = one.voxel_signals()[0]
        (i1, v1), (i2, v2) = one.occupied(signal), two.occupied(signal)
        assert len(i1) > 0 and np.array_equal(i1, i2) and np.array_equal(v1, v2)

        # an operator on the second dashboard pauses the machine with its controls
        controls = Controls(monitor=two.with_policy(POLICY), user="ada", policy=POLICY)
        viewer = Controls(monitor=two.with_policy(POLICY), user="bob", policy=POLICY)
        viewer.pause()  # refused on the server: nothing is sent
        assert "may not pause" in viewer.message
        controls.pause()
        assert wait_for(lambda: one.monitor_snapshot().state == "paused", timeout=60), fleet.logs()
        s = stores[0].snapshot(TARGET)
        assert s.worker == "a" and s.last_command["by"] == "ada" and s.last_command["ok"]
        assert all(stores[0].snapshot(m).state != "paused" for m in MACHINES if m != TARGET)
        # and acknowledges the critical alert from the first dashboard
        alert = one.active_alerts(severity="critical")[0]
        one.acknowledge(alert.id, by="ada")

        def acknowledged() -> bool:
            return any(x.id == alert.id and x.state == "acknowledged" for x in two.alert_list())

        assert wait_for(acknowledged, timeout=60), fleet.logs()
    finally:
        for s in stores:
            s.close()
