"""Smoke tests: the real Kafka, Redis and MongoDB-wire servers answer over sockets."""

from __future__ import annotations

import time
import uuid

import pytest


def test_kafka_produce_then_consume(kafka_bootstrap: str, unique_topic: str) -> None:
    from confluent_kafka import Consumer, Producer

    delivered = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    payloads = [f"layer-{i}".encode() for i in range(3)]
    for payload in payloads:
        # One key: all three land on one partition, so their order is kept.
        producer.produce(
            unique_topic,
            key=b"build-1",
            value=payload,
            on_delivery=lambda err, msg: delivered.append((err, msg)),
        )
    assert producer.flush(30) == 0
    assert [err for err, _ in delivered] == [None, None, None]
    assert len({msg.partition() for _, msg in delivered}) == 1

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"it-group-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received, errors = [], []
    try:
        consumer.subscribe([unique_topic])
        deadline = time.monotonic() + 60
        while len(received) < len(payloads) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                # e.g. a transient "topic not available" while metadata propagates
                assert not msg.error().fatal(), msg.error()
                errors.append(msg.error())
                continue
            received.append((msg.key(), msg.value()))
    finally:
        consumer.close()

    assert received == [(b"build-1", p) for p in payloads], errors


def test_redis_setex_get_ttl(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"it:{uuid.uuid4().hex}"
    try:
        # SET with EX is SETEX (redis-py 8 deprecates its setex() wrapper).
        assert client.set(key, "melt-pool-ok", ex=120) is True
        assert client.get(key) == b"melt-pool-ok"
        assert 0 < client.ttl(key) <= 120
        assert client.exists(f"{key}:missing") == 0
    finally:
        client.delete(key)
        client.close()


@pytest.fixture
def mongo_collection(mongo_uri: str):
    import pymongo

    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    db = client.get_default_database(default="am_qadf_test")
    collection = db[f"it_{uuid.uuid4().hex}"]
    try:
        yield collection
    finally:
        collection.drop()
        client.close()


def test_mongo_insert_find_sorted_and_index(mongo_collection) -> None:
    import pymongo
    from pymongo.errors import DuplicateKeyError

    layers = [4, 1, 3, 0, 2]
    result = mongo_collection.insert_many(
        [{"build_id": "B1", "layer": n, "peak_temp_c": 1600.0 + n} for n in layers]
    )
    assert len(result.inserted_ids) == len(layers)

    docs = list(
        mongo_collection.find({"build_id": "B1"}, {"_id": 0}).sort("layer", pymongo.ASCENDING)
    )
    assert [d["layer"] for d in docs] == [0, 1, 2, 3, 4]
    assert [d["peak_temp_c"] for d in docs] == [1600.0, 1601.0, 1602.0, 1603.0, 1604.0]

    name = mongo_collection.create_index(
        [("build_id", pymongo.ASCENDING), ("layer", pymongo.ASCENDING)], unique=True
    )
    assert name == "build_id_1_layer_1"
    assert mongo_collection.index_information()[name]["unique"] is True
    with pytest.raises(DuplicateKeyError):
        mongo_collection.insert_one({"build_id": "B1", "layer": 2})
    assert mongo_collection.count_documents({}) == len(layers)


def test_mongo_data_survives_restart(mongo_collection, service_control) -> None:
    mongo_collection.insert_one({"build_id": "B2", "layer": 7})

    service_control.stop("mongo")
    assert not service_control.is_up("mongo")
    service_control.start("mongo")

    assert mongo_collection.find_one({"build_id": "B2"}, {"_id": 0}) == {
        "build_id": "B2",
        "layer": 7,
    }
