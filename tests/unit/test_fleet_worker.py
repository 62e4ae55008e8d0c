"""The fleet worker on the in-process broker: one pipeline per machine key, derived
state in the store, dead letters for bad keys, history tagged per machine, operator
commands applied by the owner, two workers sharing a group."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.fleet.commands import send_action
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.fleet.worker import FleetWorker, _by_key
from am_qadf.machine_profile import MachineProfile
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.simulation.defects import hot_spot_messages
from am_qadf.streaming import KafkaProducer, StreamingConfig
from am_qadf.streaming.kafka_consumer import KafkaConsumer
from am_qadf.streaming.memory_broker import get_broker

OPEN = AccessPolicy(open_access=True)


def _config(tmp_path: Any, *, history: bool = False) -> StreamingConfig:
    return StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://fleet-{uuid.uuid4().hex}"],
        enable_mongodb_storage=history,
        storage_path=str(tmp_path) if history else None,
        max_poll_records=500,
    )


def _sim_batch(seed: int, n: int) -> list[dict[str, Any]]:
    sim = BuildSimulator(seed, n_points=n, n_defects=0, warmup_points=0)
    return [m for b in sim.iter_batches(500) for m in b]


def _publish(cfg: StreamingConfig, key: str | None, msgs: list[dict[str, Any]]) -> None:
    prod = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    prod.produce_batch(msgs, key=key)
    prod.flush()
    prod.close()


def _total(store: InProcessStateStore) -> int:
    return sum(s.messages for s in store.snapshots().values())


def test_by_key_groups_in_arrival_order() -> None:
    msgs = [{"key": k, "i": i} for i, k in enumerate(["b", "a", None, "b", "a", None])]
    got = {k: [m["i"] for m in part] for k, part in _by_key(msgs)}
    assert got == {"a": [1, 4], "b": [0, 3], None: [2, 5]}
    assert _by_key(msgs[:1]) == [("b", msgs[:1])]


def test_each_machine_gets_its_own_pipeline_and_state(tmp_path: Any) -> None:
    cfg = _config(tmp_path)
    _publish(cfg, "m1", _sim_batch(1, 1500))
    _publish(cfg, "m2", _sim_batch(2, 700))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: _total(store) == 2200)
    finally:
        worker.stop()
    s1, s2 = store.snapshot("m1"), store.snapshot("m2")
    assert (s1.messages, s2.messages) == (1500, 700)
    assert (s1.build_id, s2.build_id) == ("sim-1", "sim-2")
    assert s1.worker == worker.worker_id and s1.state == "running"
    p1, p2 = worker.pipelines["m1"], worker.pipelines["m2"]
    assert p1.monitor.grid is not p2.monitor.grid  # not one grid for both machines
    assert p1.monitor.grid.occupied_count > p2.monitor.grid.occupied_count > 0
    assert "temperature" in store.windows("m1")
    _, bricks, _ = store.bricks_since("m1", "0-0/0")
    assert len(bricks) > 0
    _, ijk, values, _ = store.voxels_since("m1", "0-0/0")
    assert len(ijk) == p1.monitor.grid.occupied_count  # every voxel, with its value
    want = p1.monitor.grid.get_values("temperature", ijk.astype(np.int64))
    assert np.allclose(values, want, rtol=1e-6)


def test_bad_keys_are_dead_lettered_and_no_key_is_the_default_machine(tmp_path: Any) -> None:
    cfg = _config(tmp_path)
    _publish(cfg, "no spaces allowed", _sim_batch(3, 50))
    _publish(cfg, None, _sim_batch(4, 60))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()
    default_id = MachineProfile.default().machine.id
    try:
        assert worker.wait_until(lambda: _total(store) == 60)
        assert worker.wait_until(lambda: worker.statistics()["dead_lettered"] == 50)
    finally:
        worker.stop()
    assert store.machines() == [default_id]
    dlq = KafkaConsumer(cfg.kafka_bootstrap_servers, [cfg.kafka_topic + ".dlq"], group_id="check")
    got = dlq.poll(timeout_ms=1000)
    dlq.close()
    assert len(got) == 50
    assert "not a machine id" in dict(got[0]["headers"])["error"].decode()


def test_a_machine_uses_its_own_profile(tmp_path: Any) -> None:
    own = MachineProfile.from_dict(
        {
            "machine": {"id": "eos1", "name": "EOS one", "plate_mm": [250, 250, 300]},
            "fields": {"time": "ts", "time_unit": "ms", "layer": "n"},
            "signals": {"temperature": {"field": "T_C", "offset": 273.15, "spc": "ewma"}},
        }
    )
    cfg = _config(tmp_path)
    t0 = 1_700_000_000_000
    msgs = [{"ts": t0 + i, "x": 1.0, "y": 2.0, "z": 0.1, "n": 3, "T_C": 1600.0} for i in range(40)]
    _publish(cfg, "eos1", msgs)
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, profiles={"eos1": own}, publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: _total(store) == 40)
    finally:
        worker.stop()
    snap = store.snapshot("eos1")
    assert snap.name == "EOS one" and snap.layer == 3
    t, v = store.windows("eos1")["temperature"]
    assert v[-1] == pytest.approx(1873.15)


def test_history_is_tagged_with_the_machine_and_keyed_by_offset(tmp_path: Any) -> None:
    cfg = _config(tmp_path, history=True)
    _publish(cfg, "m1", _sim_batch(5, 300))
    _publish(cfg, "m2", _sim_batch(6, 200))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: _total(store) == 500)
        storage = worker.storage
        assert worker.wait_until(lambda: storage.flush_spool() or True)
        lo, hi = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
        docs = storage.query_stream_history(lo, hi, limit=10_000)
    finally:
        worker.stop()
    assert len(docs) == 500
    assert {d["machine_id"] for d in docs} == {"m1", "m2"}
    assert all(d["_id"].startswith(cfg.kafka_topic + ":") for d in docs)


def test_a_machine_whose_processing_fails_is_set_aside_alone(tmp_path: Any, monkeypatch) -> None:
    """One machine's pipeline raises: its messages are dead-lettered (confirmed), the
    other machine's are processed and stored, and the offsets move past both."""
    from am_qadf.fleet import machine_pipeline

    original = machine_pipeline.MachinePipeline.process

    def failing(self: Any, msgs: list[dict[str, Any]], values: list[Any]) -> Any:
        if self.machine_id == "m1":
            raise RuntimeError("m1's pipeline is broken")
        return original(self, msgs, values)

    monkeypatch.setattr(machine_pipeline.MachinePipeline, "process", failing)
    cfg = _config(tmp_path, history=True)
    _publish(cfg, "m1", _sim_batch(8, 300))
    _publish(cfg, "m2", _sim_batch(9, 200))
    broker = get_broker(cfg.kafka_bootstrap_servers)
    parts = range(broker.partitions(cfg.kafka_topic))

    def committed() -> int:
        return sum(broker.committed(cfg.consumer_group_id, cfg.kafka_topic, p) or 0 for p in parts)

    worker = FleetWorker(cfg, InProcessStateStore(), publish_interval=0.05).start()
    try:
        assert worker.wait_until(lambda: worker.statistics()["dead_lettered"] == 300)
        assert worker.wait_until(lambda: committed() == 500)
        stats = worker.statistics()
        lo, hi = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
        docs = worker.storage.query_stream_history(lo, hi, limit=10_000)
    finally:
        worker.stop()
    assert {d["machine_id"] for d in docs} == {"m2"} and len(docs) == 200
    assert stats["errors"] >= 1 and "m1's pipeline is broken" in stats["last_error"]


def _latest(cfg: StreamingConfig, key: str, msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = msgs[-1]
    return hot_spot_messages(last, last["timestamp"], last["build_id"], n_points=30)


def test_operator_commands_reach_the_owner(tmp_path: Any, caplog: Any) -> None:
    cfg = _config(tmp_path)
    msgs = _sim_batch(7, 400)
    _publish(cfg, "m1", msgs)
    _publish(cfg, "m1", _latest(cfg, "m1", msgs))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()

    def outcome(cid: str) -> dict[str, Any] | None:
        s = store.snapshot("m1")
        return s.last_command if s and s.last_command and s.last_command["id"] == cid else None

    try:
        assert worker.wait_until(lambda: _total(store) == 430)
        assert worker.wait_until(lambda: store.snapshot("m1").alerts_active.get("critical"))
        raised = [a for a in store.alerts("m1") if a["event"] == "raised"]
        critical = next(a for a in raised if a["severity"] == "critical")

        cid = send_action(store, OPEN, "ada", "m1", "pause")
        assert worker.wait_until(lambda: outcome(cid))
        assert outcome(cid)["ok"] and store.snapshot("m1").state == "paused"
        _publish(cfg, "m1", _sim_batch(8, 100))  # stored, not analysed
        assert worker.wait_until(lambda: store.snapshot("m1").held == 100)

        cid = send_action(store, OPEN, "ada", "m1", "resume")
        assert worker.wait_until(lambda: outcome(cid))
        assert store.snapshot("m1").state == "running"

        cid = send_action(store, OPEN, "ada", "m1", "acknowledge", alert_id=critical["id"])
        assert worker.wait_until(lambda: outcome(cid))
        assert outcome(cid)["ok"]
        acks = [a for a in store.alerts("m1") if a["event"] == "acknowledged"]
        assert acks[-1]["id"] == critical["id"] and acks[-1]["acknowledged_by"] == "ada"

        cid = send_action(store, OPEN, "ada", "m1", "acknowledge", alert_id="no-such-alert")
        assert worker.wait_until(lambda: outcome(cid))
        assert not outcome(cid)["ok"] and "no-such-alert" in outcome(cid)["reason"]

        with caplog.at_level(logging.WARNING, logger="am_qadf.fleet.worker"):
            cid = store.send_command("m1", {"action": "format_disk", "by": "eve"})
            assert worker.wait_until(lambda: outcome(cid))
        assert not outcome(cid)["ok"] and "unknown action" in outcome(cid)["reason"]
        assert "ignored: unknown action" in caplog.text
        assert store.snapshot("m1").state == "running"  # nothing half-applied

        cid = send_action(store, OPEN, "ada", "m1", "relearn_baseline")
        assert worker.wait_until(lambda: outcome(cid))
        assert outcome(cid)["ok"] and store.snapshot("m1").baseline == "relearning"
    finally:
        worker.stop()


def test_viewers_cannot_send_commands() -> None:
    store = InProcessStateStore()
    policy = AccessPolicy(operators={"ada"})
    with pytest.raises(PermissionError, match="may not pause"):
        send_action(store, policy, "bob", "m1", "pause")
    with pytest.raises(PermissionError):
        send_action(store, policy, "ada", "m1", "pause", kiosk=True)
    with pytest.raises(ValueError, match="alert_id"):
        send_action(store, policy, "ada", "m1", "acknowledge")
    assert store.read_commands({"m1": "0"}) == []


def _assigned(*workers: FleetWorker) -> list[set[tuple[str, int]]]:
    out = []
    for w in workers:
        out.append(set(w.kafka_consumer.assignment()))
    return out


def test_two_workers_share_the_partitions_and_each_message_once(tmp_path: Any) -> None:
    cfg = _config(tmp_path)
    get_broker(cfg.kafka_bootstrap_servers[0]).create_topic(cfg.kafka_topic, 4)
    store = InProcessStateStore()
    a = FleetWorker(cfg, store, worker_id="a", publish_interval=0.05).start()
    b = FleetWorker(
        StreamingConfig(**{**cfg.__dict__}), store, worker_id="b", publish_interval=0.05
    ).start()
    keys = [f"m{i}" for i in range(6)]
    try:
        # both in the group with their share before anything is published: no
        # rebalance while messages flow, so each is processed exactly once
        assert a.wait_until(lambda: all(len(s) == 2 for s in _assigned(a, b)))
        for i, k in enumerate(keys):
            _publish(cfg, k, _sim_batch(10 + i, 200))
        assert a.wait_until(lambda: _total(store) == 1200)
        assert {s.worker for s in store.snapshots().values()} == {"a", "b"}
        assert not set(a.pipelines) & set(b.pipelines)
        assert all(s.messages == 200 for s in store.snapshots().values())
    finally:
        a.stop()
        b.stop()
    assert store.machines() == keys


def test_worker_metrics_count_per_machine_and_serve_metrics(tmp_path: Any) -> None:
    import urllib.request

    from am_qadf.fleet.worker_metrics import WorkerMetrics

    cfg = _config(tmp_path)
    msgs = _sim_batch(20, 300)
    _publish(cfg, "m1", msgs)
    _publish(cfg, "m1", _latest(cfg, "m1", msgs))
    _publish(cfg, "bad key", _sim_batch(21, 20))
    store, metrics = InProcessStateStore(), WorkerMetrics()
    worker = FleetWorker(cfg, store, publish_interval=0.05, metrics=metrics).start()
    server = metrics.serve(0)
    try:
        assert worker.wait_until(lambda: _total(store) == 330)
        assert worker.wait_until(lambda: store.snapshot("m1").alerts_active.get("critical"))
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        worker.stop()
    assert 'amqadf_messages_in_total{machine="m1"} 330.0' in text
    assert 'amqadf_messages_out_total{machine="m1"} 330.0' in text
    assert 'amqadf_dead_letters_total{machine="<refused>"} 20.0' in text
    assert 'amqadf_alerts_total{machine="m1",severity="critical"}' in text
    assert "bad key" not in text  # a label from outside would grow without bound
    assert "amqadf_batch_seconds_count" in text and "amqadf_consumer_lag{" in text


def test_a_worker_drops_machines_whose_partition_moved_away(tmp_path: Any) -> None:
    cfg = _config(tmp_path)
    get_broker(cfg.kafka_bootstrap_servers[0]).create_topic(cfg.kafka_topic, 4)
    keys = [f"m{i}" for i in range(6)]
    for i, k in enumerate(keys):
        _publish(cfg, k, _sim_batch(30 + i, 100))
    store = InProcessStateStore()
    a = FleetWorker(cfg, store, worker_id="a", publish_interval=0.05).start()
    b = None
    try:
        assert a.wait_until(lambda: len(a.pipelines) == 6)
        b = FleetWorker(
            StreamingConfig(**{**cfg.__dict__}), store, worker_id="b", publish_interval=0.05
        ).start()
        assert a.wait_until(lambda: all(len(s) == 2 for s in _assigned(a, b)))
        for i, k in enumerate(keys):  # more for every machine, after the rebalance
            _publish(cfg, k, _sim_batch(40 + i, 100))

        def settled() -> bool:
            snaps = store.snapshots()  # a machine not published yet has none
            return bool(b.pipelines) and all(
                k in snaps and snaps[k].worker == ("b" if k in b.pipelines else "a") for k in keys
            )

        assert a.wait_until(settled)
        assert a.wait_until(lambda: not set(a.pipelines) & set(b.pipelines))
        assert set(a.pipelines) | set(b.pipelines) == set(keys)
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_an_idle_machine_snapshot_keeps_its_heartbeat(tmp_path: Any) -> None:
    cfg = _config(tmp_path)
    _publish(cfg, "m1", _sim_batch(50, 100))
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05, heartbeat=0.1).start()
    try:
        assert worker.wait_until(lambda: _total(store) == 100)
        first = store.snapshot("m1").updated_at
        # no new message: the snapshot is still republished (a dead worker's is not)
        assert worker.wait_until(lambda: store.snapshot("m1").updated_at > first)
    finally:
        worker.stop()
