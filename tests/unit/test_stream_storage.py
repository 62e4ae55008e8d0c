"""StreamStorage: cache codec, TTL cache, SQLite history, filters, spool and cache outages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import redis

from am_qadf.streaming import SpoolFullError, StreamStorage, cache_codec, stream_storage, ttl_cache
from am_qadf.streaming.history_filters import matches
from am_qadf.streaming.history_store import (
    MongoHistory,
    SqliteHistory,
    _fixed_width,
    prepare_documents,
)
from am_qadf.streaming.ttl_cache import TTLCache

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
LOGGER = "am_qadf.streaming.stream_storage"


def ts(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def storage(tmp_path):
    s = StreamStorage(path=tmp_path / "history.sqlite3")
    yield s
    s.history.close()


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now


class FakeHistory:
    """A HistoryStore that can be switched off (raises ConnectionError while down)."""

    name = "fake"

    def __init__(self) -> None:
        self.down = False
        self.insert_calls = 0
        self.batches: list[list[Any]] = []
        self.docs: dict[str, dict[str, Any]] = {}

    def encode(self, docs):
        return list(docs)

    def insert(self, docs):
        return self.insert_encoded(self.encode(docs))

    def insert_encoded(self, docs):
        self.insert_calls += 1
        if self.down:
            raise ConnectionError("fake history backend is down")
        self.batches.append([d.get("seq") for d in docs])
        inserted = 0
        for d in docs:
            key = d.get("_id") or f"auto-{len(self.docs)}"
            if key not in self.docs:
                self.docs[key] = dict(d)
                inserted += 1
        return inserted, len(docs) - inserted

    def query(self, start, end, filters, limit=None, timeout_s=None):
        out = [d for d in self.docs.values() if start <= d["timestamp"] <= end]
        found = sorted((d for d in out if matches(d, filters)), key=lambda d: d["timestamp"])
        return found[:limit] if limit else found

    def create_indexes(self):
        return []

    def delete_before(self, before):
        old = [k for k, d in self.docs.items() if d["timestamp"] < before]
        for k in old:
            del self.docs[k]
        return len(old)

    def count(self):
        return len(self.docs)

    def ping(self):
        return not self.down


@pytest.fixture
def spooling(tmp_path):
    s = StreamStorage(path=tmp_path / "unused.sqlite3", spool_limit=5)
    s.history.close()
    s.history = FakeHistory()
    s.retry_interval_s = 0.0
    return s


def docs(seqs, start=0):
    return [{"seq": i, "timestamp": ts(i)} for i in range(start, start + seqs)]


# -- cache codec -------------------------------------------------------------------------
ARRAYS = [
    np.arange(6, dtype=np.float64).reshape(2, 3) / 7,
    np.array([1.5, -2.25, 3.0, 0.0], dtype=np.float32),
    np.array(7, dtype=np.int16),
    np.arange(8, dtype=np.uint8).reshape(2, 2, 2),
    np.array([2**62, -(2**62)], dtype=np.int64),
    np.array([2**64 - 1], dtype=np.uint64),
    np.array([True, False, True]),
    np.array(["ab", "cde"], dtype="<U5"),
    np.array([0.5, 1.25], dtype=np.float16),
    np.empty((0, 3)),
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.arange(20.0)[::3],
    np.array([1, 2, 3], dtype=">i4"),
    np.array([1.0, np.nan, 3.0]),
]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype.str}{list(a.shape)}")
def test_codec_round_trips_arrays(arr) -> None:
    out = cache_codec.decode(cache_codec.encode({"a": arr, "nested": [arr]}))
    for got in (out["a"], out["nested"][0]):
        assert isinstance(got, np.ndarray)
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


def test_codec_round_trips_plain_values_and_datetimes() -> None:
    value = {
        "n": None,
        "b": True,
        "i": 3,
        "f": 1.5,
        "s": "text",
        "list": [1, [2, {"x": 3}]],
        "tuple": (1, 2),
        "np_scalar": np.float32(2.5),
        "np_int": np.int64(9),
        "naive": datetime(2026, 1, 2, 3, 4, 5, 678901),
        "aware": datetime(2026, 1, 2, 8, 34, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        "in_list": [datetime(2026, 1, 1)],
        "keys": {1: "int key"},
    }
    out = cache_codec.decode(cache_codec.encode(value))
    assert out["n"] is None and out["b"] is True and out["i"] == 3 and out["f"] == 1.5
    assert out["s"] == "text" and out["list"] == [1, [2, {"x": 3}]]
    assert out["tuple"] == [1, 2]
    assert out["np_scalar"] == 2.5 and type(out["np_scalar"]) is float
    assert out["np_int"] == 9 and type(out["np_int"]) is int
    assert out["naive"] == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert out["naive"].utcoffset() == timedelta(0)
    assert out["aware"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert out["aware"].utcoffset() == timedelta(0)
    assert out["in_list"] == [datetime(2026, 1, 1, tzinfo=UTC)]
    assert out["keys"] == {"1": "int key"}


def test_codec_round_trips_a_top_level_list() -> None:
    out = cache_codec.decode(cache_codec.encode([np.arange(2), {"t": datetime(2026, 1, 1)}]))
    assert out[0].tolist() == [0, 1] and out[1]["t"].tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        {"s": {1, 2}},
        {"o": np.array([object()], dtype=object)},
        {"d": np.array(["2026-01-01"], dtype="datetime64[D]")},
        {"x": object()},
    ],
)
def test_codec_refuses_unknown_types(value) -> None:
    with pytest.raises(TypeError):
        cache_codec.encode(value)


@pytest.mark.parametrize(
    "value",
    [np.array([1.0, np.inf]), np.array([-np.inf]), float("nan"), float("inf")],
    ids=["array_inf", "array_neg_inf", "scalar_nan", "scalar_inf"],
)
def test_codec_keeps_non_finite_floats(value) -> None:
    out = cache_codec.decode(cache_codec.encode({"v": value}))["v"]
    assert type(out) is type(value)
    np.testing.assert_array_equal(out, value)


def test_codec_round_trips_complex_arrays() -> None:
    arr = np.array([1 + 2j, -0.5j], dtype=np.complex128)
    out = cache_codec.decode(cache_codec.encode({"c": arr}))["c"]
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


# -- TTL cache ----------------------------------------------------------------------------
def test_in_process_cache_expires_after_ttl(storage, monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(ttl_cache, "time", SimpleNamespace(monotonic=clock.monotonic))
    payload = {"data": np.arange(3), "at": datetime(2026, 1, 1)}
    assert storage.cache_recent_data("recent", payload, ttl_seconds=1) is True
    got = storage.get_cached_data("recent")
    assert got["data"].tolist() == [0, 1, 2] and got["at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert storage._cache.ttl("recent") == 1
    clock.now += 0.999
    assert storage.get_cached_data("recent") is not None
    clock.now += 0.001
    assert storage.get_cached_data("recent") is None
    assert storage._cache.ttl("recent") == -2
    assert storage.get_cached_data("never-set") is None


def test_ttl_cache_overwrite_delete_and_bound(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(ttl_cache, "time", SimpleNamespace(monotonic=clock.monotonic))
    cache = TTLCache(max_keys=3)
    cache.setex("a", 10, b"1")
    cache.setex("a", 100, b"2")  # overwrite renews value and expiry
    clock.now += 50
    assert cache.get("a") == b"2" and cache.ttl("a") == 50
    for k in ("b", "c", "d"):
        cache.setex(k, 10, k.encode())
    assert cache.get("a") is None  # oldest insertion dropped beyond max_keys
    assert [cache.get(k) for k in ("b", "c", "d")] == [b"b", b"c", b"d"]
    assert cache.delete("b") == 1 and cache.delete("b") == 0
    clock.now += 10
    cache.setex("e", 10, b"e")
    assert cache.get("c") is None and cache.get("e") == b"e"


def test_cache_many_and_key_prefix(tmp_path) -> None:
    fake = FakeRedis()
    s = StreamStorage(redis_client=fake, path=tmp_path / "h.sqlite3", key_prefix="amqadf:")
    assert s.cache_many({"a": {"v": 1}, "b": {"v": 2}}, ttl_seconds=30) == 2
    assert sorted(fake.store) == ["amqadf:a", "amqadf:b"]
    assert fake.store["amqadf:a"][0] == 30
    assert s.get_cached_data("b") == {"v": 2}
    assert s.stats["cache_writes"] == 2


@pytest.mark.parametrize("ttl", [0, -5, 1.5, True, "60", None])
def test_ttl_must_be_positive_int(storage, ttl) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        storage.cache_recent_data("k", {"v": 1}, ttl_seconds=ttl)
    assert storage.get_cached_data("k") is None


def test_cache_argument_validation(storage) -> None:
    with pytest.raises(ValueError, match="key"):
        storage.cache_recent_data("", {"v": 1})
    with pytest.raises(TypeError, match="must be a dict"):
        storage.cache_recent_data("k", [1, 2])
    with pytest.raises(TypeError, match="must be a dict"):
        storage.cache_many({"ok": {"v": 1}, "bad": "x"})
    assert storage.get_cached_data("ok") is None  # nothing of the failed call was cached


# -- Redis outages ---------------------------------------------------------------------------
class FakeRedis:
    def __init__(self) -> None:
        self.down = False
        self.store: dict[str, tuple[int, bytes]] = {}

    def pipeline(self, transaction: bool = True):
        return FakePipeline(self)

    def get(self, key):
        if self.down:
            raise redis.exceptions.ConnectionError("Connection refused")
        item = self.store.get(key)
        return None if item is None else item[1]

    def ping(self):
        if self.down:
            raise redis.exceptions.ConnectionError("Connection refused")
        return True


class FakePipeline:
    def __init__(self, owner: FakeRedis) -> None:
        self.owner = owner
        self.ops: list[tuple[str, int, bytes]] = []

    def setex(self, key, ttl, value):
        self.ops.append((key, ttl, value))
        return self

    def execute_command(self, *args):
        assert args[0].upper() == "SETEX", args
        return self.setex(*args[1:])

    def execute(self):
        if self.owner.down:
            raise redis.exceptions.ConnectionError("Connection refused")
        for key, ttl, value in self.ops:
            self.owner.store[key] = (ttl, value)
        return [True] * len(self.ops)


def test_redis_outage_returns_false_and_warns_once(tmp_path, caplog) -> None:
    fake = FakeRedis()
    s = StreamStorage(redis_client=fake, path=tmp_path / "h.sqlite3")
    s.cache_retry_interval_s = 0.0  # every call tries the server (backoff tested below)
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert s.cache_recent_data("k", {"v": 0}) is True
    fake.down = True
    assert [s.cache_recent_data("k", {"v": i}) for i in range(1, 4)] == [False] * 3
    assert s.get_cached_data("k") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis" in warnings[0].getMessage()
    assert s.health()["cache_ok"] is False and s.health()["cache_backend"] == "redis"
    fake.down = False
    assert s.cache_recent_data("k", {"v": 5}) is True
    assert s.get_cached_data("k") == {"v": 5}
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    fake.down = True
    assert s.cache_recent_data("k", {"v": 6}) is False  # a new outage warns again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert s.stats["cache_failures"] == 7  # 3 writes + 1 read + 2 health pings + 1 write
    assert s.stats["cache_writes"] == 2


def test_a_down_cache_is_not_called_again_until_its_backoff_ends(tmp_path, monkeypatch) -> None:
    # Each call to a dead Redis can block for its timeouts and retries, so after a failure
    # the stream must not pay that on every batch: calls rest, backing off 1, 2, 4 .. 15 s.
    fake = FakeRedis()
    s = StreamStorage(redis_client=fake, path=tmp_path / "h.sqlite3")
    now = [1000.0]
    monkeypatch.setattr("am_qadf.streaming.stream_storage.time.monotonic", lambda: now[0])
    calls = []
    for name in ("pipeline", "get", "ping"):
        real = getattr(fake, name)
        monkeypatch.setattr(fake, name, lambda *a, _f=real, **kw: calls.append(1) or _f(*a, **kw))
    fake.down = True
    assert s.cache_recent_data("k", {"v": 1}) is False
    assert [s.cache_recent_data("k", {"v": i}) for i in range(5)] == [False] * 5
    assert s.get_cached_data("k") is None and s.health()["cache_ok"] is False
    assert len(calls) == 1 and s.stats["cache_failures"] == 1
    assert s.stats["cache_skipped"] == 6
    waits = []
    for _ in range(6):  # each retry fails and doubles the rest, up to the maximum
        start, tried = now[0], len(calls)
        while len(calls) == tried:
            now[0] += 0.25
            s.cache_recent_data("k", {"v": 0})
        waits.append(now[0] - start)
    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    fake.down = False
    now[0] += 15.0
    assert s.cache_recent_data("k", {"v": 7}) is True and s.get_cached_data("k") == {"v": 7}
    fake.down = True  # a fresh outage starts again from the shortest rest
    assert s.cache_recent_data("k", {"v": 8}) is False
    now[0] += 1.0
    assert s.cache_recent_data("k", {"v": 9}) is False and s.stats["cache_failures"] == 9


# -- history: storing ----------------------------------------------------------------------
def test_store_batch_dedupes_by_kafka_coordinates(storage) -> None:
    batch = [
        {"topic": "t", "partition": 0, "offset": 5, "value": 1.0, "timestamp": ts(1)},
        {"topic": "t", "partition": 1, "offset": 5, "value": 2.0, "timestamp": ts(2)},
    ]
    assert storage.store_batch(batch) == 2
    assert storage.store_batch(batch) == 0
    assert storage.store_batch([dict(batch[0], value=99.0)]) == 0  # same coordinates
    got = storage.query_stream_history(*WIDE)
    assert [d["_id"] for d in got] == ["t:0:5", "t:1:5"]
    assert [d["value"] for d in got] == [1.0, 2.0]
    assert storage.stats["documents_inserted"] == 2
    assert storage.stats["duplicates_ignored"] == 3
    assert storage.history.count() == 2


def test_explicit_id_wins_and_docs_without_coordinates_are_all_kept(storage) -> None:
    assert storage.store_batch([{"_id": "mine", "topic": "t", "partition": 0, "offset": 1}]) == 1
    assert storage.store_batch([{"_id": "mine", "value": 2}]) == 0
    plain = [{"value": 1.0, "timestamp": ts(0)}]
    assert storage.store_batch(plain) == 1
    assert storage.store_batch(plain) == 1
    ids = [d["_id"] for d in storage.query_stream_history(*WIDE)]
    assert "mine" in ids and len(ids) == 3 and len(set(ids)) == 3


def test_duplicate_within_one_batch_counted_once(storage) -> None:
    doc = {"topic": "t", "partition": 2, "offset": 0, "timestamp": ts(0)}
    assert storage.store_batch([doc, dict(doc)]) == 1
    assert storage.stats["duplicates_ignored"] == 1


@pytest.mark.parametrize(
    ("batch", "exc", "match"),
    [
        ([{"value": 1.0}, "oops"], TypeError, r"batch_data\[1\]"),
        ([{"value": 1.0}, None], TypeError, r"batch_data\[1\]"),
        ({"value": 1.0}, TypeError, "batch_data must be a list"),
        (
            [{"value": 1.0}, {"timestamp": "last tuesday"}],
            ValueError,
            r"batch_data\[1\]\.timestamp",
        ),
        ([{"timestamp": None}], ValueError, r"batch_data\[0\]\.timestamp"),
    ],
)
def test_bad_batches_store_nothing(storage, batch, exc, match) -> None:
    with pytest.raises(exc, match=match):
        storage.store_batch(batch)
    assert storage.history.count() == 0
    assert storage.stats["documents_inserted"] == 0


def test_documents_are_made_storable(storage) -> None:
    before = datetime.now(UTC)
    storage.store_batch(
        [
            {
                "v": np.float32(1.5),
                "arr": np.arange(3),
                "nested": {"t": datetime(2026, 1, 1, 1)},
                "tup": (1, 2),
            },
            {"timestamp": "2026-01-01T02:00:00+02:00", "layer": np.int64(4)},
        ]
    )
    after = datetime.now(UTC)
    got = storage.query_stream_history(*WIDE)
    assert len(got) == 2
    first, second = got  # ascending: the ISO one (00:00 UTC) comes before "now"
    assert second["timestamp"] >= before - timedelta(seconds=1)
    assert second["timestamp"] <= after + timedelta(seconds=1)  # missing -> ingest time
    assert second["v"] == 1.5 and second["arr"] == [0, 1, 2] and second["tup"] == [1, 2]
    assert second["nested"]["t"] == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert first["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC) and first["layer"] == 4


def test_prepare_documents_does_not_mutate_input() -> None:
    item = {"topic": "t", "partition": 0, "offset": 3, "timestamp": datetime(2026, 1, 1)}
    doc = prepare_documents([item])[0]
    assert doc["_id"] == "t:0:3" and doc["timestamp"].tzinfo is not None
    assert "_id" not in item and item["timestamp"].tzinfo is None


def test_sqlite_insert_keeps_documents_and_exact_values(tmp_path) -> None:
    # The batch is encoded as one JSON array with _id and timestamp taken out; the
    # documents must come back whole (they are retried from the spool) and exact.
    history = SqliteHistory(tmp_path / "h.sqlite3")
    docs = prepare_documents(
        [
            {"_id": "a", "timestamp": ts(1), "v": 0.1 + 0.2, "n": None, "nan": float("nan")},
            {"timestamp": ts(2), "big": 2**62, "text": 'null "quoted" é', "arr": np.arange(2.0)},
        ]
    )
    snapshot = [dict(d) for d in docs]
    assert history.insert(docs) == (2, 0)
    assert docs == snapshot  # same keys and values (the NaN is the same object)
    assert docs[0]["_id"] == "a" and docs[1]["timestamp"] == ts(2)
    first, second = history.query(*WIDE, {})
    assert first["_id"] == "a" and first["timestamp"] == ts(1)
    assert first["v"] == 0.1 + 0.2 and first["n"] is None and np.isnan(first["nan"])
    assert second["big"] == 2**62 and second["text"] == 'null "quoted" é'
    assert second["arr"] == [0.0, 1.0] and second["timestamp"] == ts(2)
    assert history.insert(docs) == (1, 1)  # "a" again is ignored; no _id: a new document
    history.close()


def test_sqlite_insert_ids_and_timestamps_of_any_shape(tmp_path) -> None:
    # ids and timestamps go to SQLite beside the JSON documents, as fixed-width numbers
    # and one blob of ids: ids of any length and script, timestamps before 1970 and far
    # ahead, generated ids for documents without one
    history = SqliteHistory(tmp_path / "h.sqlite3")
    items = [
        ("é-ü:0:1", datetime(1900, 1, 1, tzinfo=UTC)),
        ("x", datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("日本:3:" + "9" * 40, ts(0)),
        (None, datetime(2200, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ]
    docs = prepare_documents(
        [{"timestamp": t, "v": i} | ({"_id": d} if d else {}) for i, (d, t) in enumerate(items)]
    )
    assert history.insert(docs) == (4, 0)
    got = history.query(datetime(1800, 1, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC), {})
    assert [(d["_id"], d["timestamp"], d["v"]) for d in got[:3]] == [
        (d, t, i) for i, (d, t) in enumerate(items[:3])
    ]
    assert len(got[3]["_id"]) == 32 and got[3]["timestamp"] == items[3][1]
    assert history.insert(docs[:3]) == (0, 3)
    history.close()


def test_prepare_documents_copies_documents_that_need_nothing() -> None:
    ready = [{"_id": "a", "timestamp": T0, "v": 1.0}, {"_id": "b", "timestamp": ts(1)}]
    docs = prepare_documents(ready)
    assert docs == ready and all(d is not r for d, r in zip(docs, ready, strict=True))
    # one document that needs something: each is completed as usual
    plus2 = datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    mixed = [ready[0], {"timestamp": plus2, "topic": "t", "partition": 1, "offset": 2}]
    second = prepare_documents(mixed)[1]
    assert second["_id"] == "t:1:2" and second["timestamp"] == T0
    assert second["timestamp"].tzinfo is UTC


def test_fixed_width_numbers_read_back_exactly() -> None:
    rng = np.random.default_rng(7)
    numbers = np.concatenate(
        (rng.integers(-(2**62), 2**62, 3000), [0, 1, -1, 9999, 10_000, -10_001, 2**63 - 1])
    )
    text = _fixed_width(numbers.reshape(-1, 1))
    assert len(text) == 20 * len(numbers)
    assert [int(text[i : i + 20]) for i in range(0, len(text), 20)] == numbers.tolist()


def test_prepare_documents_with_ids() -> None:
    plain = [{"timestamp": T0, "v": 1.0}, {"timestamp": ts(1), "v": 2.0}]
    nested = [{"timestamp": T0, "v": np.float32(1.5)}, {"timestamp": ts(1), "v": [1, 2]}]
    for batch in (plain, nested):  # the fast copy and the converting copy
        docs = prepare_documents(batch, ids=["a:0:1", "a:0:2"])
        assert [d["_id"] for d in docs] == ["a:0:1", "a:0:2"]
        assert "_id" not in batch[0]  # the input is left alone
    with pytest.raises(ValueError, match="ids has 1 entries for 2 documents"):
        prepare_documents(plain, ids=["x"])


def test_prepare_documents_unchecked_copies_plain_batches_alike() -> None:
    plain = [{"timestamp": T0, "v": 1.0, "id": "a", "n": None, "ok": True}, {"timestamp": ts(1)}]
    checked = prepare_documents(plain, ids=["t:0:1", "t:0:2"])
    unchecked = prepare_documents(plain, ids=["t:0:1", "t:0:2"], check_types=False)
    assert unchecked == checked and all(u is not p for u, p in zip(unchecked, plain, strict=True))


def test_unchecked_batches_with_other_values_are_still_stored_faithfully(storage) -> None:
    # check_types=False trusts the caller; a value it should not have held (a processor
    # enriched the message with numpy, say) is converted by the backend's encoding
    odd = [{"timestamp": T0, "score": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2)}]
    storage.store_prepared(storage.prepare_batch(odd, ["t:0:1"], check_types=False))
    got = storage.query_stream_history(*WIDE)[0]
    assert (got["score"], got["n"], got["_id"]) == (0.5, 3, "t:0:1")
    pymongo = pytest.importorskip("pymongo")
    client = pymongo.MongoClient("mongodb://127.0.0.1:1", connect=False)
    encoded = MongoHistory(client["db"]["c"]).encode(prepare_documents(odd, check_types=False))
    assert encoded[0]["score"] == 0.5 and type(encoded[0]["n"]) is int
    assert encoded[0]["arr"] == [0, 1] and encoded[0] is not odd[0]


def test_prepared_batch_is_stored_once_however_often_it_is_written(storage) -> None:
    # documents without _id get theirs when encoded: writing the same prepared batch
    # again (a retry after a failed write) stores nothing twice
    prepared = storage.prepare_batch([{"timestamp": T0, "v": 1.0}, {"timestamp": ts(1)}])
    assert len(prepared.docs) == 2
    assert storage.store_prepared(prepared) == 2
    assert storage.store_prepared(prepared) == 0
    assert storage.history.count() == 2
    assert storage.stats["duplicates_ignored"] == 2


def test_prepared_batch_follows_a_replaced_history(spooling) -> None:
    fake = spooling.history
    prepared = spooling.prepare_batch(docs(3))
    spooling.history = type(fake)()  # prepared for another backend: encoded anew
    assert spooling.store_prepared(prepared) == 3
    assert spooling.history.batches == [[0, 1, 2]] and fake.batches == []


def test_store_prepared_refuses_anything_else(storage) -> None:
    with pytest.raises(TypeError, match="expected a PreparedBatch, got list"):
        storage.store_prepared([{"v": 1.0}])
    assert storage.history.count() == 0


# -- history: querying ----------------------------------------------------------------------
def test_query_sorted_ascending_even_when_inserted_out_of_order(storage) -> None:
    order = [5, 1, 4, 0, 3, 2]
    storage.store_batch([{"seq": s, "timestamp": ts(s)} for s in order[:3]])
    storage.store_batch([{"seq": s, "timestamp": ts(s)} for s in order[3:]])
    got = storage.query_stream_history(*WIDE)
    assert [d["seq"] for d in got] == [0, 1, 2, 3, 4, 5]
    assert [d["timestamp"] for d in got] == [ts(s) for s in range(6)]
    assert all(d["timestamp"].utcoffset() == timedelta(0) for d in got)


def test_query_range_is_inclusive_and_naive_bounds_are_utc(storage) -> None:
    storage.store_batch(docs(10))
    got = storage.query_stream_history(datetime(2026, 1, 1, 0, 0, 2), datetime(2026, 1, 1, 0, 0, 5))
    assert [d["seq"] for d in got] == [2, 3, 4, 5]
    plus2 = timezone(timedelta(hours=2))
    got = storage.query_stream_history(
        datetime(2026, 1, 1, 2, 0, 7, tzinfo=plus2), datetime(2026, 1, 1, 2, 0, 7, tzinfo=plus2)
    )
    assert [d["seq"] for d in got] == [7]
    with pytest.raises(ValueError, match="before start_time"):
        storage.query_stream_history(ts(5), ts(4))
    with pytest.raises(TypeError, match="start_time"):
        storage.query_stream_history(None, ts(4))


@pytest.mark.parametrize(
    "filters",
    [
        {"timestamp": {"$gte": datetime(2000, 1, 1, tzinfo=UTC)}},
        {"timestamp": {"$exists": True}},
        {"$or": [{"timestamp": {"$lt": ts(100)}}, {"seq": 0}]},
        {"$nor": [{"timestamp": {"$gt": ts(3)}}]},
    ],
)
def test_time_range_always_applies(storage, filters) -> None:
    storage.store_batch(docs(10))
    got = storage.query_stream_history(ts(3), ts(6), filters)
    assert {d["seq"] for d in got} <= {3, 4, 5, 6}
    expected = [3] if "$nor" in filters else [3, 4, 5, 6]
    assert [d["seq"] for d in got] == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"layer": 2}, [4, 5]),
        ({"layer": {"$gt": 3}}, [8, 9]),
        ({"layer": {"$gte": 3, "$lt": 4}}, [6, 7]),
        ({"layer": {"$lte": 0}}, [0, 1]),
        ({"layer": {"$in": [1, 4]}}, [2, 3, 8, 9]),
        ({"layer": {"$nin": [0, 1, 2, 3]}}, [8, 9]),
        ({"layer": {"$ne": 0}, "kind": "odd"}, [3, 5, 7, 9]),
        ({"$or": [{"layer": 0}, {"kind": "odd", "layer": 4}]}, [0, 1, 9]),
        ({"$and": [{"layer": {"$gte": 1}}, {"layer": {"$lte": 2}}]}, [2, 3, 4, 5]),
        ({"$nor": [{"kind": "odd"}, {"layer": {"$lt": 3}}]}, [6, 8]),
        ({"meta.machine": "m2"}, [2, 5, 8]),
        ({"flag": {"$exists": True}}, [0]),
        ({"flag": {"$exists": False}, "layer": 0}, [1]),
        ({"build_id": "b1", "layer": {"$in": [4]}}, [8, 9]),
    ],
)
def test_filters(storage, filters, expected) -> None:
    rows = []
    for i in range(10):
        row = {
            "seq": i,
            "timestamp": ts(i),
            "layer": i // 2,
            "kind": "odd" if i % 2 else "even",
            "meta": {"machine": f"m{i % 3}"},
            "build_id": "b1",
        }
        if i == 0:
            row["flag"] = True
        rows.append(row)
    storage.store_batch(rows)
    assert [d["seq"] for d in storage.query_stream_history(*WIDE, filters)] == expected


@pytest.mark.parametrize(
    ("filters", "exc", "match"),
    [
        ({"$where": "sleep(1000)"}, ValueError, r"\$where"),
        (
            {"$and": [{"layer": 1}, {"$function": {"body": "x", "args": [], "lang": "js"}}]},
            ValueError,
            r"\$function",
        ),
        ({"layer": {"$accumulator": {}}}, ValueError, r"\$accumulator"),
        ({"$or": [{"$where": "1"}]}, ValueError, r"\$where"),
        ({"layer": {"$regex": ".*"}}, ValueError, "not supported"),
        ({"bad field!": 1}, ValueError, "field name"),
        ({"layer": {"$in": 3}}, ValueError, "list"),
        ({"$or": []}, ValueError, "non-empty list"),
        (["layer"], TypeError, "filters must be a dict"),
    ],
)
def test_dangerous_or_malformed_filters_refused(storage, filters, exc, match) -> None:
    storage.store_batch(docs(3))
    with pytest.raises(exc, match=match):
        storage.query_stream_history(*WIDE, filters)


# -- history: persistence, deletion, indexes ------------------------------------------
def test_history_survives_reopening(tmp_path) -> None:
    path = tmp_path / "nested" / "history.sqlite3"
    first = StreamStorage(path=path)
    first.store_batch(
        [
            {"topic": "t", "partition": 0, "offset": i, "seq": i, "timestamp": ts(i)}
            for i in range(4)
        ]
    )
    first.history.close()
    second = StreamStorage(path=path)
    got = second.query_stream_history(*WIDE)
    assert [d["seq"] for d in got] == [0, 1, 2, 3]
    assert [d["_id"] for d in got] == [f"t:0:{i}" for i in range(4)]
    assert second.store_batch([{"topic": "t", "partition": 0, "offset": 2, "seq": 2}]) == 0
    second.history.close()


def test_collections_in_one_file_are_separate(tmp_path) -> None:
    path = tmp_path / "h.sqlite3"
    a = StreamStorage(path=path, collection_name="a")
    b = StreamStorage(path=path, collection_name="b")
    a.store_batch(docs(3))
    assert len(a.query_stream_history(*WIDE)) == 3 and b.query_stream_history(*WIDE) == []


def test_delete_old_data_counts(storage) -> None:
    storage.store_batch(docs(10))
    assert storage.delete_old_data(ts(4)) == 4  # strictly older than the cutoff
    assert storage.delete_old_data(ts(4)) == 0
    assert [d["seq"] for d in storage.query_stream_history(*WIDE)] == [4, 5, 6, 7, 8, 9]
    assert storage.delete_old_data(datetime(2026, 1, 1, 0, 0, 6)) == 2  # naive is UTC
    assert storage.history.count() == 4


def test_create_time_series_index(storage) -> None:
    storage.store_batch(docs(3))
    assert storage.create_time_series_index() is None
    storage.create_time_series_index()  # idempotent
    names = {
        r[0]
        for r in storage.history._db.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {"stream_data_ts", "stream_data_build_id_ts", "stream_data_layer_ts"} <= names
    assert len(storage.query_stream_history(*WIDE, {"layer": {"$exists": False}})) == 3


def test_constructor_validation(tmp_path) -> None:
    with pytest.raises(ValueError, match="collection_name"):
        StreamStorage(path=tmp_path / "h.sqlite3", collection_name="")
    with pytest.raises(ValueError, match="collection_name"):
        StreamStorage(path=tmp_path / "h.sqlite3", collection_name='x"; DROP TABLE y; --')
    with pytest.raises(ValueError, match="spool_limit"):
        StreamStorage(path=tmp_path / "h.sqlite3", spool_limit=-1)
    with pytest.raises(ValueError, match="collection_name"):
        SqliteHistory(tmp_path / "h.sqlite3", "a-b")


def test_health_of_embedded_storage(storage) -> None:
    storage.store_batch(docs(2))
    health = storage.health()
    assert health["cache_backend"] == "memory" and health["history_backend"] == "sqlite"
    assert health["history_ok"] is True and health["spooled"] == 0
    assert health["documents_inserted"] == 2


# -- spool -----------------------------------------------------------------------------------
def test_batches_spool_while_down_and_drain_in_order(spooling, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake = spooling.history
    fake.down = True
    assert spooling.store_batch(docs(2, start=0)) == 0
    assert spooling.store_batch(docs(1, start=2)) == 0
    assert spooling.spooled == 3 and spooling.stats["spooled_total"] == 3
    assert spooling.health()["history_ok"] is False and spooling.health()["spooled"] == 3
    assert fake.batches == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "spooling" in warnings[0].getMessage()
    fake.down = False
    assert spooling.store_batch(docs(2, start=3)) == 2  # only the new batch is counted
    assert fake.batches == [[0, 1], [2], [3, 4]]  # spooled batches first, in order
    assert spooling.spooled == 0
    assert spooling.stats["documents_inserted"] == 5
    assert [d["seq"] for d in spooling.query_stream_history(*WIDE)] == [0, 1, 2, 3, 4]
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_flush_spool(spooling) -> None:
    fake = spooling.history
    fake.down = True
    spooling.store_batch(docs(2))
    assert spooling.flush_spool() is False and spooling.spooled == 2
    fake.down = False
    assert spooling.flush_spool() is True
    assert spooling.spooled == 0 and fake.batches == [[0, 1]]
    assert spooling.flush_spool() is True


def test_spool_full_raises_and_takes_nothing(spooling) -> None:
    fake = spooling.history
    fake.down = True
    assert spooling.store_batch(docs(3)) == 0
    with pytest.raises(SpoolFullError, match="spool full"):
        spooling.store_batch(docs(3, start=3))
    assert spooling.spooled == 3 and spooling.stats["spooled_total"] == 3
    assert spooling.store_batch(docs(2, start=6)) == 0  # exactly at the limit is fine
    assert spooling.spooled == 5
    fake.down = False
    assert spooling.flush_spool() is True
    assert fake.batches == [[0, 1, 2], [6, 7]]
    assert spooling.spooled == 0


def test_retry_waits_for_the_interval(spooling, monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(stream_storage, "time", SimpleNamespace(monotonic=clock.monotonic))
    spooling.retry_interval_s = 5.0
    fake = spooling.history
    fake.down = True
    spooling.store_batch(docs(1))
    assert fake.insert_calls == 1
    fake.down = False
    clock.now += 4.9
    assert spooling.store_batch(docs(1, start=1)) == 0  # not retried yet: spooled behind
    assert fake.insert_calls == 1 and spooling.spooled == 2
    clock.now += 0.1
    assert spooling.store_batch(docs(1, start=2)) == 1
    assert fake.batches == [[0], [1], [2]] and spooling.spooled == 0


def test_spool_dedupes_replayed_coordinates_on_drain(spooling) -> None:
    fake = spooling.history
    batch = [
        {"topic": "t", "partition": 0, "offset": i, "seq": i, "timestamp": ts(i)} for i in range(3)
    ]
    fake.down = True
    spooling.store_batch(batch)
    spooling.store_batch(batch[1:])  # a replay of part of it while down
    fake.down = False
    assert spooling.flush_spool() is True
    assert fake.count() == 3
    assert spooling.stats["documents_inserted"] == 3 and spooling.stats["duplicates_ignored"] == 2


def test_spool_never_exceeds_its_limit(spooling) -> None:
    spooling.history.down = True
    with pytest.raises(SpoolFullError):
        spooling.store_batch(docs(6))
    assert spooling.spooled <= spooling.spool_limit


def test_history_limit_and_paging_keep_order(tmp_path):
    from datetime import UTC, datetime, timedelta

    storage = StreamStorage(path=tmp_path / "paged.sqlite3")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # 12,000 documents with many equal timestamps, stored out of order
    docs = [
        {"i": i, "layer": i % 4, "timestamp": t0 + timedelta(seconds=(i * 7919) % 3000)}
        for i in range(12_000)
    ]
    assert storage.store_batch(docs) == 12_000
    everything = storage.query_stream_history(t0, t0 + timedelta(hours=1))
    assert len(everything) == 12_000
    stamps = [d["timestamp"] for d in everything]
    assert stamps == sorted(stamps)
    first = storage.query_stream_history(t0, t0 + timedelta(hours=1), limit=50)
    assert [d["i"] for d in first] == [d["i"] for d in everything[:50]]
    layer3 = storage.query_stream_history(t0, t0 + timedelta(hours=1), {"layer": 3}, limit=7000)
    assert len(layer3) == 3000 and all(d["layer"] == 3 for d in layer3)
    with pytest.raises(ValueError, match="limit"):
        storage.query_stream_history(t0, t0, limit=0)
