"""Hostile and oversized input from the line (issue #11), one section per class:
resource limits, bounded memory, poison messages, storage refusals, codec tags,
numbers that are not numbers, and the small leaks (Redis user, UTC-offset overflow).
The consumer runs on memory://; the real broker is in tests/integration."""

from __future__ import annotations

import copy
import gc
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from am_qadf.streaming import (
    MessageValidator,
    StreamingClient,
    StreamingConfig,
    StreamStorage,
    cache_codec,
    get_broker,
)
from am_qadf.streaming.dead_letters import HEADER_ROOM, bounded_copy
from tests.unit.test_streaming_client import Collector, clients, drain_topic, wait_until

__all__ = ["clients"]  # a fixture shared with test_streaming_client

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture
def cfg(tmp_path) -> StreamingConfig:
    return StreamingConfig.embedded(
        storage_path=str(tmp_path),
        kafka_bootstrap_servers=[f"memory://hostile-{uuid.uuid4().hex}"],
        kafka_topic="line",
        consumer_group_id="grp",
    )


def send_raw(cfg: StreamingConfig, payloads: list[bytes]) -> None:
    broker = get_broker(cfg.kafka_bootstrap_servers)
    for p in payloads:
        broker.produce(cfg.kafka_topic, p, key=b"k", partition=0)


def good(i: int, **extra: Any) -> bytes:
    t = T0 + timedelta(milliseconds=i)
    return orjson.dumps({"seq": i, "timestamp": t.isoformat(), "value": 1.0, **extra})


def run_stream(cfg, clients, payloads: list[bytes], n_good: int, n_bad: int, **kw):
    send_raw(cfg, payloads)
    client = clients(cfg, **kw)
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(
        lambda: (
            len(got.messages) >= n_good and client.get_stream_statistics()["dead_lettered"] >= n_bad
        )
    ), (len(got.messages), client.get_stream_statistics())
    return client, got


# -- resource limits per message --------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({f"f{i}": 1.0 for i in range(300)}, "300 fields, more than the limit of 256"),
        ({"a" * 65: 1.0}, "is longer than 64 characters"),
        ({"temperature\n": 1.0}, "has characters outside"),
        ({"temp\x00": 1.0}, "has characters outside"),
        ({"<img src=x onerror=alert(1)>": 1.0}, "has characters outside"),
        ({"$where": 1.0}, "has characters outside"),
        ({"a.b": 1.0}, "has characters outside"),
        ({"meta": {"bad key": 1}}, "nested field name 'bad key'"),
        ({"meta": {"k\x00": 1}}, "nested field name"),
        ({"meta": [{f"k{i}": i} for i in range(300)]}, "more than 256 fields"),
        ({"a": [[[[[[[[[1]]]]]]]]]}, "nested deeper than 8 levels"),
        ({"big": 2**63}, "integer outside the 64-bit range"),
        ({"big": 2**64 - 1}, "integer outside the 64-bit range"),
        ({"meta": {"n": -(2**63) - 1}}, "nested integer outside the 64-bit range"),
    ],
)
def test_limits_per_message_give_a_reason_in_check_and_check_batch(value, reason) -> None:
    v = MessageValidator()
    alone = v.check(copy.deepcopy(value))
    assert alone is not None and reason in alone
    # the columnar path finds the same among valid messages
    batch = [{"seq": 1, "value": 1.0}, copy.deepcopy(value), {"seq": 2, "value": 2.0}]
    assert v.check_batch(batch) == [None, alone, None]


@pytest.mark.parametrize(
    "value",
    [{"x": -(2**63), "n": 2**63 - 1}, {"_private": 1, "a-b": 2}, {"meta": {"k": [1, {"j": 2}]}}],
)
def test_limits_let_legal_messages_through(value) -> None:
    v = MessageValidator()
    assert v.check(copy.deepcopy(value)) is None
    assert v.check_batch([copy.deepcopy(value), {"value": 1.0}]) == [None, None]


def test_limits_are_settable_in_config_and_environment() -> None:
    env = {
        "AMQADF_MAX_MESSAGE_BYTES": "1000",
        "AMQADF_MAX_FIELDS": "5",
        "AMQADF_MAX_FIELD_NAME_LENGTH": "8",
        "AMQADF_FIELD_NAME_PATTERN": "[a-z]+",
        "AMQADF_MAX_NESTING_DEPTH": "3",
        "AMQADF_MAX_SIGNALS": "4",
        "AMQADF_DEAD_LETTER_MAX_BYTES": "2048",
        "AMQADF_QUERY_MAX_ROWS": "10",
        "AMQADF_QUERY_TIMEOUT_S": "2.5",
    }
    cfg = StreamingConfig.from_env(env=env)
    assert (cfg.max_message_bytes, cfg.max_fields, cfg.max_field_name_length) == (1000, 5, 8)
    assert (cfg.max_nesting_depth, cfg.max_signals, cfg.dead_letter_max_bytes) == (3, 4, 2048)
    assert (cfg.field_name_pattern, cfg.query_max_rows, cfg.query_timeout_s) == ("[a-z]+", 10, 2.5)
    v = StreamingClient(cfg).validator
    assert (v.max_bytes, v.max_fields, v.max_name_length, v.max_depth) == (1000, 5, 8, 3)
    assert "characters outside [a-z]+" in v.check({"A": 1})
    with pytest.raises(ValueError, match="AMQADF_MAX_FIELDS must be an integer"):
        StreamingConfig.from_env(env={"AMQADF_MAX_FIELDS": "many"})
    with pytest.raises(ValueError, match="max_signals must be a positive int"):
        StreamingConfig(max_signals=0)
    with pytest.raises(ValueError, match="field_name_pattern is not a regular expression"):
        StreamingConfig(field_name_pattern="[")
    with pytest.raises(ValueError, match="query_timeout_s"):
        StreamingConfig(query_timeout_s=float("inf"))


# -- memory stays bounded ---------------------------------------------------------------------
def test_distinct_numeric_fields_beyond_the_limit_are_counted_never_buffered(cfg, clients) -> None:
    """200 messages of 250 new numeric field names each (50,000 names): only
    max_signals get a buffer, the rest are counted, and memory stays flat."""
    config = StreamingConfig.embedded(
        storage_path=cfg.storage_path,
        kafka_bootstrap_servers=cfg.kafka_bootstrap_servers,
        kafka_topic=cfg.kafka_topic,
        enable_mongodb_storage=False,
        max_signals=32,
    )
    client = clients(config)
    n_messages, fields = 200, 250

    def batch(k: int) -> list[dict]:
        return [{f"s{k}_{i}_{j}": float(j) for j in range(fields)} for i in range(10)]

    client.process_stream_batch(batch(0))  # warm up (imports, first buffers)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for k in range(1, n_messages // 10):
        client.process_stream_batch(batch(k))
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats = client.get_stream_statistics()
    assert len(client.buffers) == stats["signals_buffered"] == 32
    assert stats["signals_refused"] == n_messages * fields - 32
    fit = client.mapper.statistics()  # the profile's list of other fields is bounded too
    assert len(fit["unnamed_fields"]) == 256 and fit["unnamed_fields_more"] > 40_000
    # the refused names remembered (10,000 at most) are all that grows: ~1 MB; a buffer
    # per name (the old behaviour) costs buffer_size floats and times each, ~16 kB
    assert grown < 4 * 2**20, f"memory grew by {grown / 2**20:.1f} MiB"
    print(f"50,000 distinct numeric names: +{grown / 2**20:.2f} MiB, 32 buffers")


def test_a_message_with_thousands_of_numeric_fields_is_dead_lettered(cfg, clients) -> None:
    wide = orjson.dumps({f"sig{i}": float(i) for i in range(4500)})
    client, got = run_stream(cfg, clients, [good(0), wide, good(1)], 2, 1)
    assert sorted(got.seqs()) == [0, 1]
    assert len(client.buffers) <= 2  # value, seq
    (dead,) = drain_topic(cfg, cfg.kafka_topic + ".dlq", 1)
    assert b"exceeds the limit" in dead["headers"]["error"]


# -- poison messages --------------------------------------------------------------------------
def test_one_megabyte_message_is_dead_lettered_as_a_bounded_copy(cfg, clients) -> None:
    huge = orjson.dumps({"seq": -1, "note": "A" * 1_000_000})
    client, got = run_stream(cfg, clients, [good(0), huge, good(1)], 2, 1)
    assert sorted(got.seqs()) == [0, 1]
    (dead,) = drain_topic(cfg, cfg.kafka_topic + ".dlq", 1)
    h = dead["headers"]
    assert dead["size"] == cfg.dead_letter_max_bytes and h["truncated"] == b"1"
    assert int(h["source_size"]) == len(huge)
    assert (h["source_topic"], h["source_partition"]) == (b"line", b"0")
    assert h["source_offset"] == b"1"
    assert b"exceeds the limit" in h["error"]
    broker = get_broker(cfg.kafka_bootstrap_servers)
    assert wait_until(lambda: broker.committed("grp", "line", 0) == 3)


def test_bounded_copy_fits_the_producer_limit() -> None:
    msg = {"topic": "t" * 249, "partition": 7, "offset": 2**40, "raw": b"x" * 2_000_000}
    msg["key"] = "k" * 10_000
    d = bounded_copy(msg, "why " * 1000, ".dlq", max_bytes=10**9, limit=1_000_000)
    size = len(d.value) + len(d.key) + sum(len(k) + len(v) for k, v in d.headers)
    assert size <= 1_000_000 - HEADER_ROOM + 3000
    assert len(d.key) == 1024 and len(dict(d.headers)["error"]) == 1000


def test_refused_dead_letter_copy_is_sent_again_small(cfg, clients, monkeypatch) -> None:
    """A broker whose limit is below the producer's refuses the copy: a 1 kB copy
    follows, and the stream goes on."""
    from am_qadf.streaming import kafka_producer

    original = kafka_producer.KafkaProducer.produce_confirmed

    def picky(self, records, timeout=30.0):
        errors = original(self, [r for r in records if len(r[1]) <= 1024], timeout)
        it = iter(errors)
        return [next(it) if len(r[1]) <= 1024 else "MSG_SIZE_TOO_LARGE" for r in records]

    monkeypatch.setattr(kafka_producer.KafkaProducer, "produce_confirmed", picky)
    huge = orjson.dumps({"seq": -1, "note": "B" * 200_000})
    client, got = run_stream(cfg, clients, [good(0), huge, good(1)], 2, 1)
    (dead,) = drain_topic(cfg, cfg.kafka_topic + ".dlq", 1)
    assert dead["size"] == 1024 and dead["headers"]["truncated"] == b"1"
    assert b"dead-letter copy refused: MSG_SIZE_TOO_LARGE" in dead["headers"]["error"]
    assert client.get_stream_statistics()["dead_lettered"] == 1


def test_offsets_wait_for_the_dead_letter_confirmation(cfg, clients, monkeypatch) -> None:
    """A dead letter the broker never confirms: the consumer stops without committing
    past it, so a restart delivers it again (nothing counted as dead-lettered and lost)."""
    from am_qadf.streaming import kafka_producer

    monkeypatch.setattr(
        kafka_producer.KafkaProducer,
        "produce_confirmed",
        lambda self, records, timeout=30.0: ["delivery not confirmed"] * len(records),
    )
    send_raw(cfg, [good(0), b"not json", good(1)])
    client = clients(cfg)
    client.start_consumer([cfg.kafka_topic], Collector())
    assert wait_until(lambda: client.get_stream_statistics()["consumer_state"] == "failed")
    client.stop_consumer()
    broker = get_broker(cfg.kafka_bootstrap_servers)
    assert (broker.committed("grp", "line", 0) or 0) <= 1
    assert client.get_stream_statistics()["dead_lettered"] == 0


# -- one bad document never costs its batch -------------------------------------------------
def test_storage_refusing_one_document_sets_only_it_aside(cfg, clients, monkeypatch) -> None:
    client = clients(cfg)
    history = client.storage.history
    original = history.insert_encoded

    def refuse_poison(encoded):
        if b"poison" in encoded.payload:
            raise RuntimeError("server refused the document")
        return original(encoded)

    monkeypatch.setattr(history, "insert_encoded", refuse_poison)
    payloads = [good(i, tag="poison" if i == 37 else "ok") for i in range(100)]
    send_raw(cfg, payloads)
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(
        lambda: len(got.messages) >= 99 and client.get_stream_statistics()["dead_lettered"] >= 1
    )
    client.stop_consumer()
    assert sorted(got.seqs()) == [i for i in range(100) if i != 37]
    assert client.storage.stats["documents_inserted"] == 99
    assert client.storage.stats["duplicates_ignored"] == 0  # the others stored once
    (dead,) = drain_topic(cfg, cfg.kafka_topic + ".dlq", 1)
    assert dead["value"]["seq"] == 37
    assert dead["headers"]["error"].startswith(b"storage refused: RuntimeError")


def test_unencodable_document_is_set_aside_at_preparation(tmp_path) -> None:
    storage = StreamStorage(path=tmp_path / "h.sqlite3")
    batch = [{"v": 1.0}, {"v": object()}, {"v": 2.0}]
    prepared = storage.prepare_batch(batch, ["a", "b", "c"], isolate=True)
    assert [d["_id"] for d in prepared.docs] == ["a", "c"]
    assert prepared.rejected[0][0] == 1 and "object" in prepared.rejected[0][1]
    assert storage.store_prepared(prepared) == 2
    with pytest.raises(TypeError):  # store_batch stays all-or-nothing
        storage.store_batch(batch)


# -- no in-band tags from messages ------------------------------------------------------------
TAG_SHAPED = [
    {"__datetime__": "x"},
    {"__float__": "nan"},
    {"__ndarray__": {"dtype": "<f8", "shape": [1], "b64": "AAAAAAAA8D8="}},
    {"__complex__": [1, 2]},
    {"__dict__": {"__datetime__": "y"}},
    [{"__float__": 1}],
]


@pytest.mark.parametrize("shaped", TAG_SHAPED)
def test_tag_shaped_values_round_trip_as_the_plain_data_they_were(shaped) -> None:
    value = {"meta": shaped, "t": datetime(2026, 1, 1, tzinfo=UTC), "n": float("nan")}
    back = cache_codec.decode(cache_codec.encode(value))
    assert back["meta"] == shaped and back["t"] == value["t"] and back["n"] != back["n"]
    assert cache_codec.decode(cache_codec.encode(shaped)) == shaped


def test_tag_shaped_messages_are_stored_and_queried_as_they_were(cfg, clients) -> None:
    payloads = [good(i, meta=TAG_SHAPED[i % 5]) for i in range(10)]
    client, got = run_stream(cfg, clients, payloads, 10, 0)
    client.stop_consumer()
    docs = client.storage.query_stream_history(*WIDE)
    assert [d["meta"] for d in docs] == [TAG_SHAPED[i % 5] for i in range(10)]
    assert len(client.storage.query_stream_history(*WIDE, {"seq": {"$gte": 5}})) == 5


# -- numeric fields are numbers ----------------------------------------------------------------
@pytest.mark.parametrize("field", ["x", "y", "z", "layer", "timestamp", "temperature", "value"])
@pytest.mark.parametrize("container", [[900], {"v": 3}, []])
def test_containers_in_numeric_fields_are_rejected(field, container) -> None:
    v = MessageValidator(bounds={"x": (0.0, 250.0)})
    value = {field: container}
    reason = v.check(copy.deepcopy(value))
    assert reason is not None
    assert field in reason
    assert v.check_batch([{"x": 1.0}, copy.deepcopy(value)]) == [None, reason]


def test_layer_list_never_reaches_processors(cfg, clients) -> None:
    seen: list[Any] = []
    payloads = [good(0, layer=1), good(1, layer=[3]), good(2, temperature=[99999]), good(3)]
    send_raw(cfg, payloads)
    client = clients(cfg)
    client.register_processor("spy", lambda batch: seen.extend(m.get("layer") for m in batch))
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(
        lambda: len(got.messages) >= 2 and client.get_stream_statistics()["dead_lettered"] >= 2
    )
    assert sorted(got.seqs()) == [0, 3] and [x for x in seen if x is not None] == [1]


# -- small leaks ------------------------------------------------------------------------------
def test_redis_url_keeps_the_acl_user_name() -> None:
    cfg = StreamingConfig.from_env(env={"AMQADF_REDIS_URL": "redis://plant:s3cret@h:6380/1"})
    assert (cfg.redis_username, cfg.redis_password, cfg.redis_port) == ("plant", "s3cret", 6380)
    assert "s3cret" not in str(cfg.describe())
    assert (
        StreamingConfig.from_env(env={"AMQADF_REDIS_URL": "redis://:pw@h"}).redis_username is None
    )


def test_utc_offset_overflow_is_a_reason_not_a_traceback(caplog) -> None:
    v = MessageValidator()
    batch = [
        {"timestamp": "2026-01-01T00:00:00+00:00"},
        {"timestamp": "0001-01-01T00:00:00+05:00"},
        {"timestamp": "9999-12-31T23:59:59-05:00"},
    ]
    reasons = v.check_batch(batch)
    assert reasons[0] is None
    assert all(r and "out of the datetime range" in r for r in reasons[1:])
    assert "Traceback" not in caplog.text and not caplog.records


def test_a_batch_of_many_distinct_names_costs_no_column_each() -> None:
    """400 messages of 250 names each, all different (100,000 names in one batch):
    validation and processing allocate no column per name (8 bytes x 400 messages x
    100,000 names would be 320 MB), and only max_signals names get a buffer."""
    client = StreamingClient(StreamingConfig.embedded(enable_mongodb_storage=False, max_signals=16))
    batch = [{f"n{i}_{j}": float(j) for j in range(250)} for i in range(400)]
    gc.collect()
    tracemalloc.start()
    reasons = client.validator.check_batch(batch, columns=client.column_cache)
    client.process_stream_batch(batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert reasons == [None] * 400
    stats = client.get_stream_statistics()
    assert stats["signals_buffered"] == 16 and stats["signals_refused"] == 100_000 - 16
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    print(f"100,000 names in one batch: peak +{peak / 2**20:.1f} MiB")
