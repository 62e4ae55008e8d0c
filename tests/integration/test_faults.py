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
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymongo
import pytest
import redis

from am_qadf.streaming import KafkaProducer, StreamingClient, StreamingConfig, StreamStorage
from tests.waiting import wait_for

WORKER = Path(__file__).with_name("fault_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _produce(
    bootstrap: str, topic: str, start: int, n: int, pace_s: float = 0.0, wait_s: float = 120
) -> None:
    """Produce N numbered messages and wait up to WAIT_S seconds for every delivery.

    A message is never timed out by the producer (``message.timeout.ms`` 0): a broker that
    restarts slowly on a busy machine delays delivery but must not lose anything.
    """
    producer = KafkaProducer([bootstrap], topic, config={"message.timeout.ms": 0})
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    for i in range(start, start + n):
        producer.produce(
            {"seq": i, "timestamp": t0 + timedelta(milliseconds=i), "x": 1.0, "value": float(i)},
            key=f"k{i % 5}",
        )
        if pace_s and i % 1000 == 999:
            time.sleep(pace_s)
    producer.flush(wait_s)
    assert producer.failed == 0, (
        f"{producer.failed} messages were not delivered; last error: {producer.last_error}"
    )
    producer.close()


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
    # one scan: counting and distinct are slow on FerretDB
    seqs = [d["seq"] for d in coll.find({}, {"seq": 1, "_id": 0})]
    assert len(seqs) == n, f"{len(seqs)} documents stored for {n} produced"
    assert sorted(seqs) == list(range(n)), "lost or duplicated messages"


def _progress(path: Path) -> tuple[int, int]:
    """(documents inserted, consumer lag) a fault worker last reported."""
    try:
        inserted, lag = path.read_text().split()
        return int(inserted), int(lag)
    except (FileNotFoundError, ValueError):
        return 0, -1


def test_consumer_killed_five_times_loses_and_duplicates_nothing(
    kafka_bootstrap, mongo_uri, unique_topic, collection, tmp_path
):
    n = 200_000
    _produce(kafka_bootstrap, unique_topic, 0, n)
    group = f"crash-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(1234)
    # five random moments spread over the run: kill when storage passes each mark
    marks = sorted(rng.sample(range(n // 20, n * 9 // 10), 5))
    done = 0  # documents inserted by workers already killed

    def spawn(i: int) -> tuple[subprocess.Popen, Path]:
        progress = tmp_path / f"progress-{i}"
        args = [sys.executable, str(WORKER), kafka_bootstrap, unique_topic, group]
        args += [mongo_uri, collection.name, str(progress)]
        return subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        ), progress

    for i, mark in enumerate(marks):
        worker, progress = spawn(i)
        try:
            assert wait_for(
                lambda m=mark, p=progress, d=done: d + _progress(p)[0] >= m, 180, 0.02
            ), f"worker stalled below {mark} stored documents"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
        done += _progress(progress)[0]  # may lag the truth by the last 50 ms: only a guide
    worker, progress = spawn(len(marks))
    try:
        # caught up: the worker sees no lag and stores nothing new for two seconds
        last = [(-1, -1), time.monotonic()]

        def settled() -> bool:
            now = _progress(progress)
            if now != last[0]:
                last[:] = [now, time.monotonic()]
            return now[1] == 0 and done + now[0] >= n * 0.9 and time.monotonic() - last[1] > 2

        assert wait_for(settled, 300, 0.2), f"final worker did not catch up: {_progress(progress)}"
    finally:
        worker.terminate()
        worker.wait(60)
    _assert_exactly_once(collection, n)
    print(
        f"\nRELIABILITY consumer SIGKILL x{len(marks)}: "
        f"produced {n}, stored {n}, lost 0, duplicated 0"
    )


def test_broker_restart_mid_stream(kafka_bootstrap, unique_topic, collection, service_control):
    """The consumer rides out a broker restart in the middle of a stream: nothing lost,
    nothing stored twice. Half the stream is on the broker before the restart, half is
    produced after it, so the producer's own retries are not what is tested here."""
    n = 30_000
    _produce(kafka_bootstrap, unique_topic, 0, n // 2)
    storage = StreamStorage(mongo_client=collection)
    config = StreamingConfig(
        kafka_bootstrap_servers=[kafka_bootstrap],
        consumer_group_id=f"restart-{uuid.uuid4().hex[:8]}",
        enable_redis_cache=False,
        max_poll_records=500,
    )
    client = StreamingClient(config, storage=storage)
    client.start_consumer([unique_topic], lambda msgs: None)
    try:
        assert wait_for(lambda: storage.stats["documents_inserted"] > 2_000, 120, 0.2)
        began = time.monotonic()
        service_control.stop("kafka")
        stopped = time.monotonic()
        time.sleep(3)
        service_control.start("kafka")
        restarted = time.monotonic()
        timing = f"broker stop took {stopped - began:.1f} s, start {restarted - stopped - 3:.1f} s"
        _produce(kafka_bootstrap, unique_topic, n // 2, n - n // 2, wait_s=300)
        assert wait_for(lambda: storage.stats["documents_inserted"] >= n, 240, 0.5), (
            f"only {storage.stats['documents_inserted']} of {n} stored after the restart ({timing})"
        )
        recovered = time.monotonic() - restarted
    finally:
        client.stop_consumer()
    _assert_exactly_once(collection, n)
    print(
        f"\nRELIABILITY broker restart: produced {n}, stored {n}, lost 0, "
        f"caught up {recovered:.1f} s after restart"
    )


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
        assert wait_for(lambda: storage.stats["documents_inserted"] >= 5_000, 120, 0.5)
        service_control.stop("mongo")
        outage_started = time.monotonic()
        _produce(kafka_bootstrap, unique_topic, 5_000, n - 5_000)
        while time.monotonic() - outage_started < 30:
            if client.get_stream_statistics()["backpressure"]:
                seen_backpressure.append(storage.spooled)
            time.sleep(0.5)
        assert storage.spooled <= storage.spool_limit
        service_control.start("mongo")
        restarted = time.monotonic()
        assert wait_for(
            lambda: storage.spooled == 0 and storage.stats["documents_inserted"] >= n, 240
        ), f"{storage.stats['documents_inserted']} stored, {storage.spooled} still spooled"
        drained = time.monotonic() - restarted
    finally:
        client.stop_consumer()
    assert seen_backpressure, "the consumer never paused while the spool was full"
    _assert_exactly_once(coll, n)
    print(
        f"\nRELIABILITY MongoDB down 30 s: produced {n}, stored {n}, lost 0, spool peak "
        f"{max(seen_backpressure)}/{storage.spool_limit}, drained {drained:.1f} s after restart"
    )
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
        assert wait_for(lambda: storage.stats["documents_inserted"] >= 1_000, 60, 0.2)
        assert storage.health()["cache_ok"] is True
        service_control.stop("redis")
        _produce(kafka_bootstrap, unique_topic, 1_000, 2_000)
        assert wait_for(lambda: storage.stats["documents_inserted"] >= 3_000, 60, 0.2), (
            "processing and storage must carry on without Redis"
        )
        assert storage.health()["cache_ok"] is False
        assert storage.stats["cache_failures"] >= 1
        warnings = [r for r in caplog.records if "Redis cache unavailable" in r.getMessage()]
        assert len(warnings) == 1, "the outage must be logged once, not per batch"
        service_control.start("redis")
        _produce(kafka_bootstrap, unique_topic, 3_000, 500)
        assert wait_for(lambda: storage.stats["documents_inserted"] >= 3_500, 60, 0.2)
        assert wait_for(lambda: storage.health()["cache_ok"], 60, 0.5), "cache did not reconnect"
        assert wait_for(
            lambda: storage.get_cached_data(f"latest:{unique_topic}") is not None, 30, 0.5
        )
    finally:
        client.stop_consumer()
    assert storage.stats["documents_inserted"] == 3_500
