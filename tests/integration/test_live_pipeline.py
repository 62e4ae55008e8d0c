"""The dashboard's pipeline on the real servers: ``MonitorConfig.from_env`` pointed at
Kafka, Redis and the MongoDB-wire server (the same variables a deployment sets), the
simulated build published into Kafka, processed and stored, nothing mocked."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pymongo
import redis

from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.streaming import to_utc
from tests.waiting import wait_for


def _with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path="/" + name))


def test_live_monitor_runs_on_the_real_servers(kafka_bootstrap, redis_url, mongo_uri, unique_topic):
    database = f"am_qadf_live_{uuid.uuid4().hex[:8]}"
    uri = _with_database(mongo_uri, database)
    env = {
        "AMQADF_KAFKA": kafka_bootstrap,
        "AMQADF_TOPIC": unique_topic,
        "AMQADF_GROUP": f"live-{uuid.uuid4().hex[:8]}",
        "AMQADF_REDIS_URL": redis_url,
        "AMQADF_MONGO_URI": uri,
        "AMQADF_SIMULATE": "1",
        "AMQADF_RATE": "5000",
    }
    monitor = LiveMonitor(MonitorConfig.from_env(env))
    monitor.start()
    try:
        assert wait_for(
            lambda: monitor.snapshot()["stats"]["messages_processed"] >= 10_000, 180, 0.25
        ), f"pipeline stalled: {monitor.snapshot()['stats']}"
        snap = monitor.snapshot()
        storage = snap["health"]["storage"]
        assert snap["health"]["broker"] == "kafka" and snap["state"] == "running"
        assert storage["history_backend"] == "mongodb" and storage["history_ok"]
        assert storage["cache_backend"] == "redis" and storage["cache_ok"]
        assert snap["occupied_voxels"] > 0 and snap["publish_failed"] == 0
        assert snap["stats"]["errors"] == 0 and snap["stats"]["dead_lettered"] == 0
        newest = to_utc(snap["newest_timestamp"])
        rows = monitor.query_history(
            newest - timedelta(minutes=10), newest, {"build_id": snap["build_id"]}, limit=2_000
        )
        assert len(rows) == 2_000 and {r["build_id"] for r in rows} == {snap["build_id"]}
        assert all(r["timestamp"].tzinfo is not None for r in rows)
    finally:
        monitor.stop()
        pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000).drop_database(database)
    # the newest message of the topic is cached in Redis for other readers
    cache = redis.Redis.from_url(redis_url)
    assert cache.exists(f"latest:{unique_topic}") == 1
    cache.delete(f"latest:{unique_topic}")
