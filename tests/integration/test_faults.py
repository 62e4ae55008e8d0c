"""Faults lose nothing: consumer crashes, broker restart, MongoDB and Redis outages.

Every test talks to the real servers on loopback, is bounded in messages and time, and
stops by itself.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymongo
import pytest
import redis

from am_qadf.streaming import KafkaProducer, StreamingClient, StreamingConfig, StreamStorage

WORKER = Path(__file__).with_name("fault_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _produce(bootstrap: str, topic: str, start: int, n: int, pace_s: float = 0.0) -> None:
    producer = KafkaProducer([bootstrap], topic, config={"message.timeout.ms": 120_000})
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    for i in range(start, start + n):
        producer.produce(
            {"seq": i, "timestamp": t0 + timedelta(milliseconds=i), "x": 1.0, "value": float(i)},
            key=f"k{i % 5}",
        )
        if pace_s and i % 1000 == 999:
            time.sleep(pace_s)
    producer.flush(120)
    assert producer.failed == 0, f"{producer.failed} messages were not delivered"
    producer.close()


def _wait_for(predicate, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture
def collection(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    coll = client.get_default_database()[f"fault_{uuid.uuid4().hex[:10]}"]
    yield coll
    try:
        coll.drop()
    finally:
        client.close()


def _assert_exactly_once(coll, n: int) -> None:
    assert coll.count_documents({}) == n, "stored document count differs from produced"
    seqs = coll.distinct("seq")
    assert len(seqs) == n and min(seqs) == 0 and max(seqs) == n - 1


def test_consumer_killed_five_times_loses_and_duplicates_nothing(
    kafka_bootstrap, mongo_uri, unique_topic, collection
):
    n = 200_000
    _produce(kafka_bootstrap, unique_topic, 0, n)
    group = f"crash-{uuid.uuid4().hex[:8]}"
    args = [
        sys.executable,
        str(WORKER),
        kafka_bootstrap,
        unique_topic,
        group,
        mongo_uri,
        collection.name,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(1234)
    kills = 0
    while kills < 5:
        worker = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            before = collection.count_documents({})
            # kill only once the worker has stored something, at a random moment after that
            _wait_for(lambda b=before: collection.count_documents({}) > b, 60, 0.1)
            time.sleep(rng.uniform(0.2, 2.0))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
        kills += 1
        if collection.count_documents({}) >= n:
            break
    stored_after_kills = collection.count_documents({})
    worker = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert _wait_for(lambda: collection.count_documents({}) >= n, 300), (
            f"only {collection.count_documents({})} of {n} stored"
        )
        time.sleep(2.0)  # anything duplicated would be stored now
    finally:
        worker.terminate()
        worker.wait(60)
    print(f"kills={kills} stored before last restart={stored_after_kills} final={n}")
    assert kills == 5, "the run finished before five kills could happen"
    _assert_exactly_once(collection, n)


def test_broker_restart_mid_stream(kafka_bootstrap, unique_topic, collection, service_control):
    n = 30_000
    storage = StreamStorage(mongo_client=collection)
    config = StreamingConfig(
        kafka_bootstrap_servers=[kafka_bootstrap],
        consumer_group_id=f"restart-{uuid.uuid4().hex[:8]}",
        enable_redis_cache=False,
        max_poll_records=500,
    )
    client = StreamingClient(config, storage=storage)
    client.start_consumer([unique_topic], lambda msgs: None)
    producer = threading.Thread(target=_produce, args=(kafka_bootstrap, unique_topic, 0, n, 0.05))
    producer.start()
    try:
        assert _wait_for(lambda: collection.count_documents({}) > 2_000, 120, 0.2)
        service_control.stop("kafka")
        time.sleep(3)
        service_control.start("kafka")
        producer.join(240)
        assert not producer.is_alive(), "producer did not finish after the broker restart"
        assert _wait_for(lambda: collection.count_documents({}) >= n, 240), (
            f"only {collection.count_documents({})} of {n} stored after the restart"
        )
    finally:
        client.stop_consumer()
    _assert_exactly_once(collection, n)


def test_mongo_outage_backpressure_then_drain(
    kafka_bootstrap, mongo_uri, unique_topic, service_control
):
    n = 40_000
    name = f"fault_{uuid.uuid4().hex[:10]}"
    mongo = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
    coll = mongo.get_default_database()[name]
    storage = StreamStorage(mongo_client=coll, spool_limit=5_000)
    storage.retry_interval_s = 0.5
    config = StreamingConfig(
        kafka_bootstrap_servers=[kafka_bootstrap],
        consumer_group_id=f"outage-{uuid.uuid4().hex[:8]}",
        enable_redis_cache=False,
        max_poll_records=500,
    )
    client = StreamingClient(config, storage=storage)
    seen_backpressure = []
    client.start_consumer([unique_topic], lambda msgs: None)
    try:
        _produce(kafka_bootstrap, unique_topic, 0, 5_000)
        assert _wait_for(lambda: coll.count_documents({}) >= 5_000, 120)
        service_control.stop("mongo")
        outage_started = time.monotonic()
        _produce(kafka_bootstrap, unique_topic, 5_000, n - 5_000)
        while time.monotonic() - outage_started < 30:
            if client.get_stream_statistics()["backpressure"]:
                seen_backpressure.append(storage.spooled)
            time.sleep(0.5)
        assert storage.spooled <= storage.spool_limit
        service_control.start("mongo")
        assert _wait_for(lambda: storage.spooled == 0 and coll.count_documents({}) >= n, 240), (
            f"{coll.count_documents({})} stored, {storage.spooled} still spooled"
        )
    finally:
        client.stop_consumer()
    assert seen_backpressure, "the consumer never paused while the spool was full"
    _assert_exactly_once(coll, n)
    coll.drop()
    mongo.close()


def test_redis_outage_degrades_caching_only(
    kafka_bootstrap, redis_url, unique_topic, tmp_path, service_control, caplog
):
    r = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    storage = StreamStorage(
        redis_client=r, path=tmp_path / "h.sqlite3", key_prefix=f"{unique_topic}:"
    )
    config = StreamingConfig(
        kafka_bootstrap_servers=[kafka_bootstrap],
        consumer_group_id=f"redis-{uuid.uuid4().hex[:8]}",
        max_poll_records=200,
    )
    client = StreamingClient(config, storage=storage)
    client.start_consumer([unique_topic], lambda msgs: None)
    try:
        _produce(kafka_bootstrap, unique_topic, 0, 1_000)
        assert _wait_for(lambda: storage.stats["documents_inserted"] >= 1_000, 60, 0.2)
        assert storage.health()["cache_ok"] is True
        service_control.stop("redis")
        _produce(kafka_bootstrap, unique_topic, 1_000, 2_000)
        assert _wait_for(lambda: storage.stats["documents_inserted"] >= 3_000, 60, 0.2), (
            "processing and storage must carry on without Redis"
        )
        assert storage.health()["cache_ok"] is False
        assert storage.stats["cache_failures"] >= 1
        warnings = [r for r in caplog.records if "Redis cache unavailable" in r.getMessage()]
        assert len(warnings) == 1, "the outage must be logged once, not per batch"
        service_control.start("redis")
        _produce(kafka_bootstrap, unique_topic, 3_000, 500)
        assert _wait_for(lambda: storage.health()["cache_ok"], 60, 0.5), "cache did not reconnect"
        assert _wait_for(lambda: storage.get_cached_data(f"latest:{unique_topic}") is not None, 30)
    finally:
        client.stop_consumer()
    assert storage.stats["documents_inserted"] == 3_500
