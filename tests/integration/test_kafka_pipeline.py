"""The streaming pipeline against a real Kafka broker (and real storage servers)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pymongo
import pytest

from am_qadf.streaming import (
    KafkaConsumer,
    KafkaProducer,
    StreamingClient,
    StreamingConfig,
    StreamStorage,
)
from tests.waiting import wait_for


def _produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    producer = KafkaProducer([bootstrap], topic)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start, start + n):
        producer.produce(
            {
                "seq": i,
                "timestamp": t0 + timedelta(microseconds=50 * i),
                "x": float(i % 250),
                "y": np.float32(1.5),
                "z": 0.03,
                "layer": 1,
                "value": float(i),
            },
            key=f"k{i % 7}",
        )
    producer.flush()
    producer.close()


@pytest.fixture
def mongo_collection(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    coll = client.get_default_database()[f"it_{uuid.uuid4().hex[:10]}"]
    yield coll
    coll.drop()
    client.close()


def _config(bootstrap: str, group: str, **kw) -> StreamingConfig:
    cfg = StreamingConfig(
        kafka_bootstrap_servers=[bootstrap],
        consumer_group_id=group,
        enable_redis_cache=False,
        max_poll_records=1000,
        **kw,
    )
    return cfg


def test_consumer_poll_returns_spec_dicts(kafka_bootstrap, unique_topic):
    _produce(kafka_bootstrap, unique_topic, 5)
    consumer = KafkaConsumer([kafka_bootstrap], unique_topic, group_id=f"g-{uuid.uuid4().hex}")
    got: list[dict] = []
    assert wait_for(lambda: got.extend(consumer.poll(timeout_ms=500)) or len(got) >= 5, 60)
    consumer.commit()
    consumer.close()
    assert sorted(m["value"]["seq"] for m in got) == [0, 1, 2, 3, 4]
    m = got[0]
    assert set(m) >= {"topic", "partition", "offset", "timestamp", "key", "value"}
    assert m["topic"] == unique_topic and m["timestamp"].tzinfo is not None
    assert m["value"]["y"] == 1.5  # numpy scalar encoded
    assert m["value"]["timestamp"].endswith("Z")


def test_100k_messages_stored_exactly_once(kafka_bootstrap, unique_topic, mongo_collection):
    n = 100_000
    _produce(kafka_bootstrap, unique_topic, n)
    storage = StreamStorage(mongo_client=mongo_collection)
    client = StreamingClient(_config(kafka_bootstrap, f"g-{uuid.uuid4().hex}"), storage=storage)
    delivered = []
    client.start_consumer([unique_topic], lambda msgs: delivered.append(len(msgs)))
    assert wait_for(lambda: sum(delivered) >= n, 240, 0.25), f"only {sum(delivered)} of {n} arrived"
    client.stop_consumer()
    assert sum(delivered) == n
    assert mongo_collection.count_documents({}) == n
    seqs = mongo_collection.distinct("seq")
    assert len(seqs) == n and min(seqs) == 0 and max(seqs) == n - 1
    history = storage.query_stream_history(
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        {"seq": {"$lt": 100}},
    )
    # MongoDB keeps milliseconds: order is by timestamp, ties in any order
    assert sorted(d["seq"] for d in history) == list(range(100))
    stamps = [d["timestamp"] for d in history]
    assert stamps == sorted(stamps)
    assert all(isinstance(d["_id"], str) for d in history)


def test_group_resumes_after_stop(kafka_bootstrap, unique_topic, tmp_path):
    group = f"g-{uuid.uuid4().hex}"
    cfg = _config(kafka_bootstrap, group, storage_path=str(tmp_path), enable_auto_commit=False)
    _produce(kafka_bootstrap, unique_topic, 300)
    seen: list[int] = []
    client = StreamingClient(cfg)
    client.start_consumer([unique_topic], lambda msgs: seen.extend(m["value"]["seq"] for m in msgs))
    assert wait_for(lambda: len(seen) >= 300, 60)
    client.stop_consumer()

    _produce(kafka_bootstrap, unique_topic, 200, start=300)
    later: list[int] = []
    client2 = StreamingClient(cfg)
    client2.start_consumer(
        [unique_topic], lambda msgs: later.extend(m["value"]["seq"] for m in msgs)
    )
    assert wait_for(lambda: len(later) >= 200, 60)
    time.sleep(1.0)  # anything re-delivered would show up now
    client2.stop_consumer()
    assert sorted(seen) == list(range(300))
    assert sorted(later) == list(range(300, 500))


def test_pause_resume_and_seek(kafka_bootstrap, unique_topic, tmp_path):
    cfg = _config(kafka_bootstrap, f"g-{uuid.uuid4().hex}", storage_path=str(tmp_path))
    seen: list[int] = []
    client = StreamingClient(cfg)
    client.start_consumer([unique_topic], lambda msgs: seen.extend(m["value"]["seq"] for m in msgs))
    _produce(kafka_bootstrap, unique_topic, 50)
    assert wait_for(lambda: len(seen) >= 50, 60)
    client.pause()
    time.sleep(0.5)  # let a poll in flight finish
    held = len(seen)
    _produce(kafka_bootstrap, unique_topic, 50, start=50)
    time.sleep(2.0)
    assert len(seen) == held == 50, "messages were delivered while paused"
    client.resume()
    assert wait_for(lambda: len(seen) >= 100, 60)
    client.seek_to_beginning()
    assert wait_for(lambda: len(seen) >= 200, 60)
    client.stop_consumer()
    assert sorted(seen[:100]) == list(range(100))
    assert sorted(seen[100:200]) == list(range(100))


def test_seek_to_beginning_before_assignment(kafka_bootstrap, unique_topic):
    _produce(kafka_bootstrap, unique_topic, 20)
    group = f"g-{uuid.uuid4().hex}"
    first = KafkaConsumer([kafka_bootstrap], unique_topic, group_id=group)
    got: list[dict] = []
    assert wait_for(lambda: got.extend(first.poll(timeout_ms=500)) or len(got) >= 20, 60)
    first.commit()
    first.close()
    again = KafkaConsumer([kafka_bootstrap], unique_topic, group_id=group)
    again.seek_to_beginning()  # before any assignment
    replay: list[dict] = []
    assert wait_for(lambda: replay.extend(again.poll(timeout_ms=500)) or len(replay) >= 20, 60)
    again.close()
    assert sorted(m["value"]["seq"] for m in replay) == list(range(20))


def test_poison_message_goes_to_dlq_and_stream_continues(kafka_bootstrap, unique_topic, tmp_path):
    from confluent_kafka import Producer

    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    raw.produce(unique_topic, b"{not json", key=b"p")
    raw.produce(unique_topic, b'{"x": "not a number"}', key=b"p")
    raw.flush(10)
    _produce(kafka_bootstrap, unique_topic, 30)
    cfg = _config(kafka_bootstrap, f"g-{uuid.uuid4().hex}", storage_path=str(tmp_path))
    cfg.kafka_topic = unique_topic
    seen: list[int] = []
    client = StreamingClient(cfg)
    client.start_consumer([unique_topic], lambda msgs: seen.extend(m["value"]["seq"] for m in msgs))
    assert wait_for(
        lambda: len(seen) >= 30 and client.get_stream_statistics()["dead_lettered"] >= 2, 60
    )
    client.stop_consumer()
    assert client.get_stream_statistics()["dead_lettered"] == 2
    dlq = KafkaConsumer([kafka_bootstrap], unique_topic + ".dlq", group_id=f"d-{uuid.uuid4().hex}")
    dead: list[dict] = []
    assert wait_for(lambda: dead.extend(dlq.poll(timeout_ms=500)) or len(dead) >= 2, 60)
    dlq.close()
    reasons = sorted(m["headers"]["error"].decode() for m in dead)
    assert reasons[0].startswith("field 'x' must be a number")
    assert reasons[1].startswith("invalid JSON")


def test_offsets_of_a_partition_revoked_meanwhile_are_not_stored(kafka_bootstrap, unique_topic):
    """Cooperative rebalancing takes single partitions away between a poll and the
    store of its offsets; that store skips them (their new owner re-reads from the
    last commit) instead of failing the consumer with librdkafka's _STATE error."""
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"{unique_topic}-coop"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    group = f"g-{uuid.uuid4().hex[:8]}"
    coop = {"partition.assignment.strategy": "cooperative-sticky"}

    def member() -> KafkaConsumer:
        return KafkaConsumer(
            [kafka_bootstrap], topic, group_id=group, auto_commit=False,
            store_on_poll=False, max_poll_records=1000, session_timeout_ms=6000,
            config=coop,
        )  # fmt: skip

    a = member()
    b = None
    try:
        _produce(kafka_bootstrap, topic, 400)
        got: list[dict] = []
        assert wait_for(lambda: bool(got.extend(a.poll(200)) or len(got) >= 400), timeout=60)
        b = member()
        # both keep polling (the rebalance callbacks run inside poll) until a gave
        # some of its partitions to b
        assert wait_for(lambda: [b.poll(50), a.poll(50)] and len(a.assignment()) < 4, timeout=60)
        kept = set(a.assignment())
        moved = [m for m in got if (m["topic"], m["partition"]) not in kept]
        assert moved
        a.store_offsets(moved)  # b's partitions now: skipped, no error
        assert a.poll(50) == []  # and a goes on
    finally:
        a.close()
        if b is not None:
            b.close()
        admin.delete_topics([topic])
