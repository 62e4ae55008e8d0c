"""Per-message cost of the fleet path: what a worker already knows about a batch is not
found again, and the producer serves Kafka once per batch, not once per message; the
results (history documents, delivered messages) stay the same."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from am_qadf.fleet.fleet_simulation import FLEET_LAYOUTS
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.fleet.worker import FleetWorker
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.simulation.publisher import SimulationPublisher
from am_qadf.streaming import KafkaProducer, StreamingConfig
from am_qadf.streaming.memory_broker import get_broker
from am_qadf.streaming.message_columns import ColumnCache
from am_qadf.streaming.serialization import dumps


def _config(tmp_path: Any) -> StreamingConfig:
    return StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://throughput-{uuid.uuid4().hex}"],
        enable_mongodb_storage=True,
        storage_path=str(tmp_path),
        max_poll_records=500,
    )


def _history(tmp_path: Any, spy: bool) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Two machines' messages through a worker: the stored documents, and the fields the
    consume loop's own column cache converted (``spy``) while history was prepared."""
    cfg = _config(tmp_path)
    prod = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    for seed, key in ((3, "m1"), (4, "m2")):
        sim = BuildSimulator(seed, n_points=600, n_defects=0, warmup_points=0)
        sim.start_at(datetime(2026, 1, 1, tzinfo=UTC))
        for batch in sim.iter_batches(150):  # interleaved: joined batches of both
            prod.produce_batch(batch, key=key)
    prod.flush()
    store = InProcessStateStore()
    worker = FleetWorker(cfg, store, publish_interval=0.05).start()
    converted: list[list[str]] = []
    if spy:
        cache = worker.loop_or_fail().columns
        assert cache is not None
        real = cache._columns

        def columns(batch: Any, fields: list[str]) -> Any:
            converted.append([f for f in fields if f not in cache._cols])
            return real(batch, fields)

        cache._columns = columns  # type: ignore[method-assign]
    try:
        total = lambda: sum(s.messages for s in store.snapshots().values())  # noqa: E731
        assert worker.wait_until(lambda: total() == 1200)
        storage = worker.storage
        assert storage is not None
        assert worker.wait_until(lambda: storage.flush_spool())
        lo, hi = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
        docs = storage.query_stream_history(lo, hi, limit=10_000)
    finally:
        worker.stop()
    return sorted(docs, key=lambda d: d["_id"]), converted


def test_the_joined_batch_is_not_scanned_again_for_history(tmp_path: Any) -> None:
    # each machine's validation found its values' types; history's check of the
    # batch of all machines reads them instead of converting every field again
    docs, converted = _history(tmp_path / "a", spy=True)
    assert len(docs) == 1200
    assert not any(converted), converted[:3]


def test_history_documents_are_the_same_as_with_a_full_scan(tmp_path: Any, monkeypatch) -> None:
    fast, _ = _history(tmp_path / "fast", spy=False)
    monkeypatch.setattr(ColumnCache, "note_value_types", lambda self, batch, types: None)
    scanned, _ = _history(tmp_path / "scanned", spy=False)
    assert len(fast) == 1200
    assert fast == scanned
    assert {d["machine_id"] for d in fast} == {"m1", "m2"}


def test_noted_value_types_are_forgotten_when_the_batch_or_its_columns_change() -> None:
    cache = ColumnCache()
    batch = [{"x": 1.0}, {"x": 2.0}]
    cache.note_value_types(batch, {float})
    assert cache.value_types(batch) == {float}
    batch[0]["x"] = "one"  # a step rewrites it and says so
    cache.assign(batch, {}, types={"x": {str, float}})
    assert cache.value_types(batch) == {str, float}
    other = [{"x": 1, "id": "a"}]
    assert cache.value_types(other) == {int, str}  # another batch: scanned
    cache.note_value_types(batch, {float})
    assert cache.value_types([*batch]) == {str, float}  # a new list is another batch


def test_encoded_extra_fields_must_not_be_message_fields() -> None:
    sim = BuildSimulator(1, n_points=500, n_defects=0)
    with pytest.raises(ValueError, match=r"must not be message fields, got \['layer'\]"):
        next(sim.iter_encoded(100, extra={"layer": 3}))


class _FakeProducer:
    """Records what a confluent-kafka Producer is asked to do."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.produced: list[tuple[str, bytes, bytes | None]] = []
        self.polls = 0
        self.full_once = True

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        if self.full_once and len(self.produced) == 3:
            self.full_once = False
            raise BufferError("queue full")
        self.produced.append((topic, value, key))
        kw["on_delivery"](None, None)

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def test_produce_batch_serves_the_producer_once_per_batch(monkeypatch) -> None:
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _FakeProducer)
    prod = KafkaProducer(["127.0.0.1:1"], "plant")
    fake = prod._producer
    assert prod.produce_batch([{"i": i} for i in range(10)], key="m1") == 10
    # every message, in order, with its key, also the one refused once (queue full)
    assert [(t, v, k) for t, v, k in fake.produced] == [
        ("plant", f'{{"i":{i}}}'.encode(), b"m1") for i in range(10)
    ]
    assert prod.delivered == 10
    assert fake.polls == 2  # one for the full queue, one for the batch: not one per message
    with pytest.raises(TypeError, match=r"values\[1\] must be a dict"):
        prod.produce_batch([{"i": 1}, 2], key="m1")  # type: ignore[list-item]
    assert len(fake.produced) == 10  # nothing of a bad batch is sent


def test_produce_batch_raw_sends_encoded_values_or_nothing(monkeypatch) -> None:
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _FakeProducer)
    prod = KafkaProducer(["127.0.0.1:1"], "plant")
    fake = prod._producer
    fake.full_once = False
    with pytest.raises(TypeError, match="must be bytes"):
        prod.produce_batch_raw([b"{}", "{}"], key="m1")  # type: ignore[list-item]
    assert fake.produced == []
    assert prod.produce_batch_raw([b'{"a":1}', b'{"a":2}'], key=b"m2") == 2
    assert fake.produced == [("plant", b'{"a":1}', b"m2"), ("plant", b'{"a":2}', b"m2")]
    assert fake.polls == 1


@pytest.mark.parametrize(
    ("seed", "kw", "extra"),
    [
        # defects, dropouts among them (those chunks go through the dicts)
        (3, {"n_points": 60_000, "n_defects": 8, "warmup_points": 20_000}, None),
        # an odd rate and start (fractions of every length), a build id JSON escapes
        # and that has a %, fields added to every message
        (
            7,
            {
                "n_points": 40_000,
                "n_defects": 4,
                "warmup_points": 5_000,
                "sensor_rate_hz": 37_000.0,
                "start_time": datetime(2026, 12, 5, 14, 0, 0, 123_457, tzinfo=UTC),
                "build_id": 'b%s"\\x',
                "parts": FLEET_LAYOUTS[2],
            },
            {"layer_count": 57, "p%s": "q"},
        ),
        # slower than one message per second: whole seconds, no fraction
        (9, {"n_points": 3_000, "n_defects": 0, "sensor_rate_hz": 3.0}, None),
    ],
)
def test_encoded_messages_are_the_bytes_dumps_writes(
    seed: int, kw: dict[str, Any], extra: dict[str, Any] | None
) -> None:
    expected = [
        dumps({**m, **(extra or {})})
        for b in BuildSimulator(seed, **kw).iter_batches(333)
        for m in b
    ]
    batches = list(BuildSimulator(seed, **kw).iter_encoded(333, extra=extra))
    assert [m for b, _ in batches for m in b] == expected
    sim = BuildSimulator(seed, **kw)
    assert [layer for _, layer in batches] == [
        b[-1]["layer"] for b in BuildSimulator(seed, **kw).iter_batches(333)
    ]
    assert len(batches[0][0]) == min(333, sim.total_points)


def test_a_simulated_machine_publishes_the_same_messages(monkeypatch) -> None:
    start = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)
    monkeypatch.setattr("am_qadf.simulation.publisher.now_utc", lambda: start)
    url = f"memory://throughput-pub-{uuid.uuid4().hex}"
    pub = SimulationPublisher(
        [url], "plant", rate=200_000.0, seed=21, builds=1, n_points=40_000, n_defects=4,
        key="m03", parts=FLEET_LAYOUTS[1], layer_count_field="layer_count",
    )  # fmt: skip
    pub.run()
    sim = BuildSimulator(
        21, n_points=40_000, n_defects=4, sensor_rate_hz=200_000.0, start_time=start,
        parts=FLEET_LAYOUTS[1], build_id="m03-21",
    )  # fmt: skip
    sim.start_at(start)
    layers = sim.layer_of(sim.total_points - 1) + 1  # sent last in every message
    expected = [dumps({**m, "layer_count": layers}) for b in sim.iter_batches(250) for m in b]
    broker = get_broker([url])
    got = [
        r.value
        for p in range(broker.partitions("plant"))
        for r in broker.fetch("plant", p, 0, 10**6)
    ]
    assert got == expected
    assert pub.published == len(expected) and pub.layer == sim.layer_of(sim.total_points - 1)


def test_the_worker_cli_polls_large_batches(monkeypatch, tmp_path: Any) -> None:  # noqa: ANN001
    # per-batch costs (store offsets, one process call per machine, state writes) are
    # shared by up to 5,000 messages; a poll still returns within its 100 ms
    import am_qadf.fleet.worker as worker_module
    from am_qadf.cli import main

    seen: list[StreamingConfig] = []

    class Recorder(FleetWorker):
        def __init__(self, config: StreamingConfig, *a: Any, **kw: Any) -> None:
            seen.append(config)
            super().__init__(config, *a, **kw)

    monkeypatch.setattr(worker_module, "FleetWorker", Recorder)
    monkeypatch.setenv("AMQADF_MONGO_URI", "none")
    monkeypatch.setenv("AMQADF_REDIS_URL", "none")
    monkeypatch.setenv("AMQADF_DATA_DIR", str(tmp_path))
    bootstrap = f"memory://cli-worker-{uuid.uuid4().hex}"
    args = ["worker", "--bootstrap", bootstrap, "--topic", "plant", "--state", "memory://"]
    assert main([*args, "--seconds", "0.2", "--interval", "0.05"]) == 0
    assert [c.max_poll_records for c in seen] == [5000]


def test_a_worker_fetches_in_larger_steps_from_kafka() -> None:
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=["127.0.0.1:1"])
    worker = FleetWorker(cfg, InProcessStateStore())
    assert worker.config.kafka_config["fetch.min.bytes"] == 262144
    assert worker.config.kafka_config["fetch.wait.max.ms"] == 25
    mine = dataclasses.replace(cfg, kafka_config={"fetch.wait.max.ms": 5})
    assert FleetWorker(mine, InProcessStateStore()).config.kafka_config["fetch.wait.max.ms"] == 5
