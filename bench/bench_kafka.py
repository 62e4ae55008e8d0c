"""End-to-end benchmark against the real servers (start them with `services/run start`).

Measured in one run on the same topic:
  * baseline: a bare confluent-kafka consume + orjson decode loop (the practical ceiling)
  * ours: Kafka -> StreamingClient (validation, processors, buffers) -> storage, with the
    embedded SQLite history and with MongoDB-wire (FerretDB) history
  * StreamStorage.store_batch documents/s against the MongoDB-wire server
Targets (issue "real backends"): end to end >= 50 % of the baseline and >= 50 k msg/s;
store_batch >= 20 k documents/s.
Run: python bench/bench_kafka.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pymongo
from confluent_kafka import Consumer, Producer

from am_qadf.streaming import StreamingClient, StreamingConfig, StreamStorage

KAFKA = os.environ.get("AMQADF_KAFKA", "127.0.0.1:9092")
MONGO = os.environ.get("AMQADF_MONGO_URI", "mongodb://127.0.0.1:27017/am_qadf_bench")


def produce(topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "compression.type": "lz4"})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        msg = {
            "timestamp": (t0 + timedelta(microseconds=50 * i)).isoformat(),
            "build_id": "B1",
            "layer": i // 20000,
            "x": 80.0 + (i % 900) * 0.1,
            "y": 80.0 + (i // 900 % 900) * 0.1,
            "z": 0.04 * (i // 20000),
            "power": 200.0,
            "scan_speed": 1000.0,
            "temperature": 1900.0 + (i % 17),
            "melt_pool_area": 0.02,
            "intensity": 1.0,
            "value": 1900.0 + (i % 17),
        }
        while True:
            try:
                p.produce(topic, orjson.dumps(msg), key=b"B1")
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(60)


def bare_consume(topic: str, n: int) -> float:
    c = Consumer(
        {
            "bootstrap.servers": KAFKA,
            "group.id": f"bare-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    got = 0
    t0 = None
    while got < n:
        for m in c.consume(1000, 1.0):
            if m.error() is None:
                if t0 is None:
                    t0 = time.perf_counter()
                orjson.loads(m.value())
                got += 1
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def client_consume(topic: str, n: int, storage: StreamStorage) -> tuple[float, float]:
    """(messages/s, process CPU µs per message) through StreamingClient into storage."""
    cfg = StreamingConfig(
        kafka_bootstrap_servers=[KAFKA],
        consumer_group_id=f"ours-{uuid.uuid4().hex}",
        max_poll_records=1000,
        enable_redis_cache=False,
        buffer_size=100_000,
    )
    client = StreamingClient(cfg, storage=storage)
    done = [0]
    first = [None]

    def callback(msgs):
        if first[0] is None:
            first[0] = time.perf_counter()
        done[0] += len(msgs)

    cpu0 = time.process_time()
    client.start_consumer([topic], callback)
    while done[0] < n:
        time.sleep(0.01)
    dt = time.perf_counter() - first[0]
    cpu = time.process_time() - cpu0
    client.stop_consumer()
    return n / dt, cpu / n * 1e6


def store_batch_rate(n: int) -> float:
    client = pymongo.MongoClient(MONGO, serverSelectionTimeoutMS=5000)
    coll = client.get_default_database()[f"bench_{uuid.uuid4().hex[:8]}"]
    storage = StreamStorage(mongo_client=coll)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    docs = [
        {
            "timestamp": t0 + timedelta(microseconds=50 * i),
            "x": 1.0,
            "y": 2.0,
            "value": float(i),
            "layer": 1,
        }
        for i in range(n)
    ]
    start = time.perf_counter()
    for i in range(0, n, 1000):
        storage.store_batch(docs[i : i + 1000])
    dt = time.perf_counter() - start
    assert coll.count_documents({}) == n, "store_batch lost documents"
    coll.drop()
    client.close()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    n = ap.parse_args().messages
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    produce(topic, n)
    base = bare_consume(topic, n)
    sqlite = client_consume(topic, n, StreamStorage(path=tempfile.mkdtemp() + "/bench.sqlite3"))
    mongo_client = pymongo.MongoClient(MONGO, serverSelectionTimeoutMS=5000)
    coll = mongo_client.get_default_database()[f"bench_{uuid.uuid4().hex[:8]}"]
    mongo = client_consume(topic, n, StreamStorage(mongo_client=coll))
    stored = coll.count_documents({})
    coll.drop()
    store = store_batch_rate(50_000)
    print(f"{'measure':50s} {'msg/s':>12s} {'vs bare':>8s}  target   CPU us/msg")
    print(f"{'bare confluent consume + orjson decode':50s} {base:12,.0f} {1.0:8.2f}")
    for name, (rate, cpu) in (
        ("Kafka -> client -> SQLite history", sqlite),
        ("Kafka -> client -> MongoDB-wire history", mongo),
    ):
        verdict = "PASS" if rate >= 0.5 * base and rate >= 50_000 else "MISS"
        print(f"{name:50s} {rate:12,.0f} {rate / base:8.2f}  {verdict}     {cpu:6.1f}")
    verdict = "PASS" if store >= 20_000 else "MISS"
    print(f"{'store_batch into MongoDB-wire, documents/s':50s} {store:12,.0f} {'':8s}  {verdict}")
    if stored != n:
        print(f"ERROR: {stored} of {n} messages stored")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
