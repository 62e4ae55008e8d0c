"""StreamStorage against real Redis and a MongoDB-wire server."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pymongo
import pytest
import redis

from am_qadf.streaming import StreamStorage


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def mongo_db(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    yield client.get_default_database()
    client.close()


def test_redis_round_trip_with_ttl(redis_client):
    storage = StreamStorage(
        redis_client=redis_client, mongo_client=None, key_prefix=f"it:{uuid.uuid4().hex}:"
    )
    data = {
        "ints": [1, 2, 3],
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "nested": {"a": {"b": None}},
    }
    assert storage.cache_recent_data("state", data, ttl_seconds=120) is True
    back = storage.get_cached_data("state")
    assert back["ints"] == [1, 2, 3] and back["nested"] == {"a": {"b": None}}
    assert back["array"].dtype == np.float32 and back["array"].shape == (2, 3)
    assert np.array_equal(back["array"], data["array"])
    assert back["when"] == data["when"]
    ttl = redis_client.ttl(storage.key_prefix + "state")
    assert 100 < ttl <= 120
    assert storage.cache_recent_data("short", {"v": 1}, ttl_seconds=1)
    time.sleep(2.2)
    assert storage.get_cached_data("short") is None


def test_cache_many_is_pipelined(redis_client):
    storage = StreamStorage(redis_client=redis_client, key_prefix=f"it:{uuid.uuid4().hex}:")
    items = {f"k{i}": {"i": i} for i in range(50)}
    assert storage.cache_many(items, ttl_seconds=60) == 50
    assert storage.get_cached_data("k42") == {"i": 42}


@pytest.mark.parametrize("kind", ["client", "database", "collection"])
def test_mongo_client_forms_and_dedup(mongo_uri, mongo_db, kind):
    name = f"it_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    target = {
        "client": client,
        "database": client.get_default_database(),
        "collection": mongo_db[name],
    }[kind]
    storage = StreamStorage(mongo_client=target, collection_name=name)
    t0 = datetime(2026, 3, 1)  # naive: taken as UTC
    batch = [
        {
            "topic": "t",
            "partition": 0,
            "offset": i,
            "timestamp": t0 + timedelta(seconds=10 - i),
            "value": np.float64(i),
            "layer": np.int64(i % 3),
            "build_id": "B1",
        }
        for i in range(10)
    ]
    assert storage.store_batch(batch) == 10
    assert storage.store_batch(batch) == 0  # replay after a crash stores nothing twice
    assert mongo_db[name].count_documents({}) == 10
    docs = storage.query_stream_history(t0, t0 + timedelta(seconds=60))
    assert [d["offset"] for d in docs] == list(range(9, -1, -1))  # ascending timestamp
    assert docs[0]["_id"] == "t:0:9" and docs[0]["timestamp"].tzinfo is not None
    only = storage.query_stream_history(t0, t0 + timedelta(seconds=60), {"layer": 1})
    assert sorted(d["offset"] for d in only) == [1, 4, 7]
    # a filter cannot widen the time range
    narrow = storage.query_stream_history(
        t0 + timedelta(seconds=5), t0 + timedelta(seconds=6), {"timestamp": {"$gte": t0}}
    )
    assert sorted(d["offset"] for d in narrow) == [4, 5]
    with pytest.raises(ValueError, match=r"\$where"):
        storage.query_stream_history(t0, t0 + timedelta(seconds=60), {"$where": "true"})
    storage.create_time_series_index()
    names = {ix["name"] for ix in mongo_db[name].list_indexes()}
    assert {"timestamp_1", "build_id_1_timestamp_1", "layer_1_timestamp_1"} <= names
    assert storage.delete_old_data(t0 + timedelta(seconds=5)) == 4
    mongo_db[name].drop()
    client.close()


def test_store_batch_rate_is_measurable(mongo_db):
    name = f"it_{uuid.uuid4().hex[:10]}"
    storage = StreamStorage(mongo_client=mongo_db[name])
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    batch = [{"timestamp": t0 + timedelta(milliseconds=i), "value": float(i)} for i in range(5000)]
    assert storage.store_batch(batch) == 5000
    assert mongo_db[name].count_documents({}) == 5000
    mongo_db[name].drop()


def test_mongo_outage_spools_and_drains(mongo_uri, service_control):
    name = f"it_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
    storage = StreamStorage(mongo_client=client.get_default_database()[name], spool_limit=10_000)
    storage.retry_interval_s = 0.2
    t0 = datetime(2026, 4, 1, tzinfo=UTC)

    def batch(start: int) -> list[dict]:
        return [
            {
                "topic": "s",
                "partition": 0,
                "offset": i,
                "timestamp": t0 + timedelta(seconds=i),
                "v": i,
            }
            for i in range(start, start + 100)
        ]

    assert storage.store_batch(batch(0)) == 100
    service_control.stop("mongo")
    try:
        assert storage.store_batch(batch(100)) == 0
        time.sleep(0.3)
        assert storage.store_batch(batch(200)) == 0
        assert storage.spooled == 200
        assert storage.health()["history_ok"] is False
    finally:
        service_control.start("mongo")
    deadline = time.monotonic() + 60
    while not storage.flush_spool() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert storage.spooled == 0
    assert storage.store_batch(batch(300)) == 100
    docs = storage.query_stream_history(t0, t0 + timedelta(hours=1))
    assert [d["v"] for d in docs] == list(range(400))
    client.get_default_database()[name].drop()
    client.close()


def test_storage_from_redis_address_and_statistics(redis_url, mongo_uri, redis_client):
    """The published AM-QADF's way to reach Redis (host/port/db, no client) and its
    get_statistics / redis_client / mongo_client, against the real servers (#15)."""
    from urllib.parse import urlparse

    u = urlparse(redis_url)
    name = f"it_{uuid.uuid4().hex[:10]}"
    storage = StreamStorage(
        mongo_client=mongo_uri,
        collection_name=name,
        redis_host=u.hostname,
        redis_port=u.port or 6379,
        redis_db=int(u.path.strip("/") or 0),
        key_prefix=f"it:{uuid.uuid4().hex}:",
    )
    assert storage.cache_recent_data("state", {"layer": 7}, ttl_seconds=60) is True
    assert redis_client.exists(storage.key_prefix + "state") == 1  # the same server and db
    assert storage.get_cached_data("state") == {"layer": 7}
    assert isinstance(storage.mongo_client, pymongo.MongoClient)
    assert storage.store_batch([{"value": float(i)} for i in range(3)]) == 3
    stats = storage.get_statistics()
    assert stats["redis_available"] is True and stats["mongodb_available"] is True
    assert stats["collection_name"] == name and stats["document_count"] == 3
    storage.mongo_client.get_default_database()[name].drop()
    storage.mongo_client.close()


def test_same_filters_same_results_on_mongodb_and_sqlite(mongo_db, tmp_path):
    """The shared filter suite (tests/unit/test_history_filters_sql.py) on the
    MongoDB-wire server: native queries give what SQLite and the reference give."""
    from tests.unit.test_history_filters_sql import DOCS, FILTERS, check_backend, reference

    name = f"filters_{uuid.uuid4().hex[:8]}"
    mongo = StreamStorage(mongo_client=mongo_db, collection_name=name)
    sqlite = StreamStorage(path=tmp_path / "h.sqlite3")
    try:
        on_mongo, on_sqlite = check_backend(mongo), check_backend(sqlite)
    finally:
        mongo_db.drop_collection(name)
    differ = {
        f: (on_mongo[repr(f_)], on_sqlite[repr(f_)])
        for f_ in FILTERS
        if on_mongo[(f := repr(f_))] != on_sqlite[f]
    }
    assert not differ, differ
    assert all(on_sqlite[repr(f)] == reference(DOCS, f) for f in FILTERS)


def test_mongodb_row_limit_and_refusals(mongo_db):
    from tests.unit.test_history_filters_sql import DOCS, WIDE

    name = f"limits_{uuid.uuid4().hex[:8]}"
    storage = StreamStorage(mongo_client=mongo_db, collection_name=name, max_rows=10)
    try:
        storage.store_batch([dict(d) for d in DOCS])
        docs = storage.query_stream_history(*WIDE)
        assert len(docs) == 10 and docs.truncated and docs.reason == "row limit of 10 reached"
        assert [d["seq"] for d in docs] == list(range(10))
        import re

        with pytest.raises(ValueError, match="values must be"):
            storage.query_stream_history(*WIDE, {"build_id": re.compile("b")})
        # one document BSON cannot hold never costs the others of its batch
        batch = [{"seq": 100, "v": 1}, {"seq": 101, "big": 2**63}, {"seq": 102, "v": 2}]
        prepared = storage.prepare_batch(batch, ["a", "b", "c"], isolate=True)
        assert storage.store_prepared(prepared) == 2
        assert [i for i, _ in prepared.rejected] == [1]
    finally:
        mongo_db.drop_collection(name)


def test_mongodb_time_budget_cuts_and_says_so(mongo_db):
    """maxTimeMS reaches the server: a scan of 50,000 documents given 1 ms comes back
    cut, with the reason, instead of running on."""
    name = f"budget_{uuid.uuid4().hex[:8]}"
    storage = StreamStorage(mongo_client=mongo_db, collection_name=name, query_timeout_s=1e-6)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        storage.store_batch(
            [{"timestamp": t0 + timedelta(milliseconds=i), "b": f"b{i % 7}"} for i in range(50_000)]
        )
        docs = storage.query_stream_history(t0, t0 + timedelta(hours=1), {"b": "b3"})
        assert docs.truncated and docs.reason.startswith("time budget")
    finally:
        mongo_db.drop_collection(name)
