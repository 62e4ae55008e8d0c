"""StreamingClient (batch processing, statistics, buffers, background consumer on memory://)
and StreamingConfig (validation, from_env, describe)."""

from __future__ import annotations

import copy
import math
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from am_qadf.streaming import (
    KafkaConsumer,
    KafkaProducer,
    MessageValidator,
    StreamingClient,
    StreamingConfig,
    StreamStorage,
    get_broker,
    latency_stats,
    streaming_client,
)
from am_qadf.streaming.message_columns import ColumnCache, to_columns

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def ts(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@pytest.fixture
def cfg(tmp_path) -> StreamingConfig:
    return StreamingConfig.embedded(
        storage_path=str(tmp_path),
        kafka_bootstrap_servers=[f"memory://client-{uuid.uuid4().hex}"],
        kafka_topic="monitoring",
        consumer_group_id="grp",
    )


@pytest.fixture
def clients():
    made: list[StreamingClient] = []

    def make(config, **kwargs) -> StreamingClient:
        c = StreamingClient(config, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop_consumer()


class Collector:
    """A callback that records every delivered message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.batches = 0
        self._lock = threading.Lock()

    def __call__(self, messages) -> None:
        with self._lock:
            self.messages.extend(messages)
            self.batches += 1

    def seqs(self) -> list[int]:
        with self._lock:
            return [m["value"]["seq"] for m in self.messages]


def produce(cfg: StreamingConfig, n: int, start: int = 0, **extra) -> None:
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    for i in range(start, start + n):
        producer.produce(
            {"seq": i, "value": float(i), "timestamp": ts(i), **extra}, key=f"k{i % 4}"
        )
    producer.close()


def drain_topic(cfg: StreamingConfig, topic: str, expected: int) -> list[dict]:
    consumer = KafkaConsumer(
        cfg.kafka_bootstrap_servers, topic, group_id=f"check-{uuid.uuid4().hex}"
    )
    out: list[dict] = []
    empty = 0
    while len(out) < expected and empty < 5:
        got = consumer.poll(timeout_ms=50)
        out += got
        empty = 0 if got else empty + 1
    consumer.close()
    return out


# -- process_stream_batch -------------------------------------------------------------------
def test_processor_names_map_to_result_fields(cfg, clients) -> None:
    client = clients(cfg)
    client.register_processor("voxel_processor", lambda b: {"updated_voxels": len(b)})
    client.register_processor("quality_processor", lambda b: {"score": 0.93})
    client.register_processor("spc_processor", lambda b: {"out_of_control": False})
    client.register_processor("alert_processor", lambda b: {"alert_ids": [7, "a-2"], "n": 2})
    client.register_processor("my_processor", lambda b: {"sum": sum(m["value"] for m in b)})
    result = client.process_stream_batch([{"value": 1.0}, {"value": 2.0}])
    assert result.processed_count == 2
    assert result.voxel_updates == {"updated_voxels": 2}
    assert result.quality_metrics == {"score": 0.93}
    assert result.spc_results == {"out_of_control": False}
    assert result.alerts_generated == ["7", "a-2"]
    processors = result.metadata["processors"]
    assert processors["my_processor"] == {"sum": 3.0}
    assert not {"voxel_processor", "quality_processor", "spc_processor"} & set(processors)
    assert "errors" not in result.metadata
    assert result.processing_time_ms >= 0.0
    assert result.timestamp.tzinfo is not None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"alert_ids": []}, []),
        ({}, []),
        (None, []),
        (["x", 3], ["x", "3"]),
        ({"alert_ids": None}, []),
    ],
)
def test_alert_processor_outputs(cfg, clients, output, expected) -> None:
    client = clients(cfg)
    client.register_processor("alert_processor", lambda b: output)
    assert client.process_stream_batch([{"value": 1.0}]).alerts_generated == expected


def test_no_processors(cfg, clients) -> None:
    result = clients(cfg).process_stream_batch([{"value": 1.0}])
    assert result.voxel_updates is None and result.quality_metrics is None
    assert result.spc_results is None and result.alerts_generated == []
    assert result.metadata == {"processors": {}, "processor_count": 0}


def test_raising_processor_counted_once_and_others_still_run(cfg, clients) -> None:
    client = clients(cfg)
    calls: list[str] = []

    def broken(batch):
        calls.append("broken")
        raise RuntimeError("sensor model exploded")

    client.register_processor("broken", broken)
    client.register_processor("spc_processor", lambda b: calls.append("spc") or {"ok": True})
    client.register_processor("custom", lambda b: calls.append("custom") or len(b))
    result = client.process_stream_batch([{"value": 1.0}, {"value": 2.0}, {"value": 3.0}])
    assert calls == ["broken", "spc", "custom"]
    assert result.spc_results == {"ok": True}
    assert result.metadata["processors"] == {"custom": 3}
    assert result.metadata["errors"] == {"broken": "RuntimeError: sensor model exploded"}
    stats = client.get_stream_statistics()
    assert stats["errors"] == 1 and stats["messages_processed"] == 3
    assert stats["last_error"] == "RuntimeError: sensor model exploded"
    client.process_stream_batch([{"value": 4.0}])
    assert client.get_stream_statistics()["errors"] == 2


def test_data_batch_is_float_with_nan_where_no_value(cfg, clients) -> None:
    client = clients(cfg)
    batch = [{"value": 1}, {"other": 2.0}, {"value": None}, {"value": "hot"}, {"value": 2.5}]
    data = client.process_stream_batch(batch).data_batch
    assert data.dtype == np.float64 and data.shape == (5,)
    assert data[0] == 1.0 and data[4] == 2.5
    assert np.isnan(data[1:4]).all()
    empty = client.process_stream_batch([])
    assert empty.processed_count == 0 and empty.data_batch.shape == (0,)
    tup = client.process_stream_batch(({"value": 3.0},))
    assert tup.data_batch.tolist() == [3.0]


@pytest.mark.parametrize("value", [True, "3.5"], ids=["bool", "numeric_string"])
def test_data_batch_non_numbers_are_nan_regardless_of_batch(cfg, clients, value) -> None:
    client = clients(cfg)
    alone = client.process_stream_batch([{"value": value}]).data_batch
    mixed = client.process_stream_batch([{"value": value}, {"value": None}]).data_batch
    assert np.isnan(mixed[0])
    assert np.isnan(alone[0])


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({"value": 1.0}, "data_batch must be a list"),
        ("abc", "data_batch must be a list"),
        (None, "data_batch must be a list"),
        ([{"value": 1.0}, {"value": 2.0}, 3.0], r"data_batch\[2\] must be a dict, got float"),
        ([["value", 1.0]], r"data_batch\[0\] must be a dict, got list"),
    ],
)
def test_bad_batches_raise_type_error_and_process_nothing(cfg, clients, batch, match) -> None:
    client = clients(cfg)
    seen = []
    client.register_processor("p", seen.append)
    with pytest.raises(TypeError, match=match):
        client.process_stream_batch(batch)
    assert seen == []
    assert client.get_stream_statistics()["messages_processed"] == 0
    assert client.buffers == {}


def test_register_processor_validation(cfg, clients) -> None:
    client = clients(cfg)
    with pytest.raises(ValueError, match="name"):
        client.register_processor("", lambda b: None)
    with pytest.raises(TypeError, match="processor must be callable"):
        client.register_processor("p", {"not": "callable"})
    client.register_processor("p", len)
    client.register_processor("p", sum)  # replaces
    assert client.processors == {"p": sum}
    client.processors.clear()  # a copy
    assert list(client.processors) == ["p"]
    client.unregister_processor("p")
    with pytest.raises(KeyError, match="no processor named 'p'"):
        client.unregister_processor("p")
    with pytest.raises(TypeError, match="config"):
        StreamingClient({"kafka_topic": "x"})


# -- statistics ------------------------------------------------------------------------------
def test_throughput_is_messages_over_wall_time(cfg, clients, monkeypatch) -> None:
    clock = SimpleNamespace(now=500.0)
    monkeypatch.setattr(latency_stats, "time", SimpleNamespace(monotonic=lambda: clock.now))
    perf = iter([0.0, 0.010, 1.0, 1.030, 5.0, 5.002])
    monkeypatch.setattr(streaming_client, "time", SimpleNamespace(perf_counter=lambda: next(perf)))
    client = clients(cfg)
    client.process_stream_batch([{"value": float(i)} for i in range(10)])
    clock.now += 2.0
    stats = client.get_stream_statistics()
    assert stats["messages_processed"] == 10 and stats["batches_processed"] == 1
    assert stats["throughput_messages_per_sec"] == pytest.approx(5.0)
    assert stats["average_latency_ms"] == pytest.approx(10.0)
    client.process_stream_batch([{"value": 1.0}] * 6)
    clock.now += 2.0  # 16 messages in 4 s
    stats = client.get_stream_statistics()
    assert stats["throughput_messages_per_sec"] == pytest.approx(4.0)
    assert stats["average_latency_ms"] == pytest.approx(20.0)
    assert stats["max_latency_ms"] == pytest.approx(30.0)
    assert stats["last_latency_ms"] == pytest.approx(30.0)
    assert stats["consumer_lag"] == 0 and stats["consumer_state"] == "stopped"

    clock.now += 100.0  # idle time before the reset does not count afterwards
    client.reset_statistics()
    stats = client.get_stream_statistics()
    assert stats["messages_processed"] == 0 and stats["errors"] == 0
    assert stats["throughput_messages_per_sec"] == 0.0 and stats["average_latency_ms"] == 0.0
    client.process_stream_batch([{"value": 1.0}] * 3)
    clock.now += 0.5
    stats = client.get_stream_statistics()
    assert stats["throughput_messages_per_sec"] == pytest.approx(6.0)
    assert stats["average_latency_ms"] == pytest.approx(2.0)


def test_reset_clears_errors_and_last_error(cfg, clients) -> None:
    client = clients(cfg)
    client.register_processor("bad", lambda b: 1 / 0)
    client.process_stream_batch([{"value": 1.0}])
    assert client.get_stream_statistics()["errors"] == 1
    client.reset_statistics()
    stats = client.get_stream_statistics()
    assert stats["errors"] == 0 and stats["last_error"] is None and stats["dead_lettered"] == 0


# -- buffers -------------------------------------------------------------------------------
def test_buffers_fed_per_numeric_signal(tmp_path, clients) -> None:
    config = StreamingConfig.embedded(
        storage_path=str(tmp_path), buffer_size=4, processing_batch_size=2
    )
    client = clients(config)
    batch = [
        {
            "value": float(i),
            "temperature": 1000.0 + i,
            "layer": 3,
            "ok": True,
            "name": "part",
            "nested": {"a": 1},
            "timestamp": ts(i),
            "offset": 99,
        }
        for i in range(6)
    ]
    client.process_stream_batch(batch)
    assert sorted(client.buffers) == ["layer", "temperature", "value"]
    temp = client.get_buffer("temperature")
    assert (temp.buffer_size, temp.window_size) == (4, 2)
    data, times, _ = temp.get_sliding_window(10)
    assert data.tolist() == [1002.0, 1003.0, 1004.0, 1005.0]
    assert times == [ts(i) for i in range(2, 6)]
    assert client.get_buffer("value").get_time_window(1.0)[0].tolist() == [4.0, 5.0]
    assert client.get_buffer("layer").get_sliding_window()[0].tolist() == [3.0, 3.0]
    with pytest.raises(
        KeyError, match=r"no buffer for signal 'name'; have \['layer', 'temperature', 'value'\]"
    ):
        client.get_buffer("name")


def test_buffers_accumulate_and_fill_gaps(cfg, clients) -> None:
    client = clients(cfg)
    before = datetime.now(UTC)
    client.process_stream_batch([{"value": 1.0, "timestamp": "2026-01-01T00:00:01Z"}, {"other": 5}])
    client.process_stream_batch([{"value": 2.0}])  # no timestamp: ingest time
    data, times, _ = client.get_buffer("value").get_sliding_window(10)
    assert data[0] == 1.0 and math.isnan(data[1]) and data[2] == 2.0
    assert times[0] == ts(1)
    assert before - timedelta(seconds=1) <= times[2] <= datetime.now(UTC) + timedelta(seconds=1)


def test_signal_missing_from_first_message_is_still_buffered(cfg, clients) -> None:
    client = clients(cfg)
    client.process_stream_batch([{"value": 1.0}, {"value": 2.0, "temperature": 900.0}])
    assert client.get_buffer("temperature").get_sliding_window(5)[0][-1] == 900.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"x": 1.0, "layer": 3, "note": float("nan")}, None),
        ({"x": 1.0, "big": 10**400}, "field 'big': integer outside the 64-bit range"),
        ({"x": float("nan")}, "field 'x' is not finite"),
        ({"value": float("-inf")}, "field 'value' is not finite"),
        ({"layer": True}, "field 'layer' must be a number, got bool"),
        ({"x": "1.0"}, "field 'x' must be a number, got str"),
        ({"x": 300.0}, "x=300.0 outside [0.0, 250.0]"),
        ({"x": 250}, None),
        ({"other": 900.0}, None),  # bounds apply to numeric fields only
    ],
)
def test_validator_numbers_and_bounds(value, reason) -> None:
    validator = MessageValidator(bounds={"x": (0.0, 250.0), "other": (0.0, 1.0)})
    assert validator.check(value) == reason


_ODD_VALUES = [
    {"x": 1.0, "layer": 3, "timestamp": "2026-01-01T00:00:00.000050+00:00"},
    {"x": float("nan"), "timestamp": "2026-01-01T00:00:01Z"},
    {"value": float("inf")},
    {"layer": True},
    {"x": "1.0"},
    {"x": 300.0},
    {"x": None, "layer": 2},
    {"other": 900.0, "build_id": "B1"},
    {"x": np.int64(3)},
    {"x": np.float64(3.0)},
    {"big": 10**400, "x": 2},
    {"x": 10**400},
    {"timestamp": "not a time"},
    {"timestamp": "2026-01-01T02:00:00+02:00"},
    {"timestamp": "2026-01-01T00:00:00"},
    {"timestamp": 1767225600.5},
    {"timestamp": datetime(2026, 1, 1)},
    {"nested": {"a": [1, 2]}},
    {"nested": [[[[[[[[[[1]]]]]]]]]]},
    {"seq": 1, "required_too": 1},
    None,
    [1, 2],
]


@pytest.mark.parametrize("odd", range(len(_ODD_VALUES)))
@pytest.mark.parametrize("where", ["alone", "among valid ones"])
def test_check_batch_says_what_check_says(odd, where) -> None:
    """check_batch is check for every value: the same reasons and, for values accepted,
    the same converted timestamps, whether the odd value comes alone or among valid ones."""
    validator = MessageValidator(bounds={"x": (0.0, 250.0), "other": (0.0, 1.0)}, max_bytes=500)
    valid = [{"x": float(i), "layer": i, "timestamp": f"2026-01-01T00:00:0{i}Z"} for i in range(5)]
    batch = [_ODD_VALUES[odd]] if where == "alone" else [*valid[:3], _ODD_VALUES[odd], *valid[3:]]
    sizes = [100] * len(batch)
    sizes[-1] = 501  # over max_bytes
    one, many = copy.deepcopy(batch), copy.deepcopy(batch)
    expected = [validator.check(v, size) for v, size in zip(one, sizes, strict=True)]
    assert validator.check_batch(many, sizes) == expected
    accepted = [(m, o) for m, o, why in zip(many, one, expected, strict=True) if why is None]
    for m, o in accepted:  # the same values, timestamps converted alike
        assert m == o and type(m.get("timestamp")) is type(o.get("timestamp"))


def test_check_batch_required_fields_and_subclasses() -> None:
    validator = MessageValidator(required=("seq",))
    assert validator.check_batch([{"seq": 1}, {"x": 1.0}]) == [None, "missing required field 'seq'"]

    class NoOdd(MessageValidator):
        def check(self, value, size=0):
            return "odd" if value.get("seq", 0) % 2 else super().check(value, size)

    assert NoOdd().check_batch([{"seq": 1}, {"seq": 2}]) == ["odd", None]
    with pytest.raises(ValueError, match="sizes has 1 entries for 2 values"):
        validator.check_batch([{"seq": 1}, {"seq": 2}], [1])


def test_check_batch_shares_its_columns_with_processing(cfg, clients) -> None:
    client = clients(cfg)
    batch = [{"x": 1.0, "value": 2.0}, {"x": 3.0, "value": 4.0}]
    client.validator.check_batch(batch, columns=client.column_cache)
    built = client.column_cache.columns(batch, ["x"])["x"]
    client.process_stream_batch(batch)
    assert client.column_cache.columns(batch, ["x"])["x"] is built


def test_column_cache_keeps_names_and_types_per_batch() -> None:
    cache = ColumnCache()
    batch = [{"x": 1.0, "id": "a"}, {"x": None}]
    names = cache.field_names(batch)
    assert names == {"x", "id"} and cache.field_names(batch) is names
    assert cache.value_types(batch) == {float, str, type(None)}
    batch[1]["x"] = "changed"  # kept as first seen for this batch ...
    assert cache.value_types(batch) == {float, str, type(None)}
    other = [{"y": 2}]  # ... and computed anew for another batch
    assert cache.field_names(other) == {"y"} and cache.value_types(other) == {int}


@pytest.mark.parametrize(
    "extra",
    [{"build_id": "B1", "layer": 2}, {"meta": {"part": "A", "path": [1, 2]}}],
    ids=["plain", "nested"],
)
def test_stored_history_is_what_was_produced(cfg, clients, extra) -> None:
    """Plain messages take the validated fast path into storage, nested ones the
    converting one; both are stored exactly, with aware UTC timestamps."""
    produce(cfg, 20, **extra)
    client = clients(cfg)
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(lambda: len(got.messages) >= 20)
    client.stop_consumer()
    history = client.storage.query_stream_history(*WIDE)
    assert [d["seq"] for d in history] == list(range(20))
    assert all(d["timestamp"] == ts(d["seq"]) and d["timestamp"].tzinfo is UTC for d in history)
    assert all({k: d[k] for k in extra} == extra for d in history)


def test_to_columns_by_field() -> None:
    # a field in every message goes without a Python call per message; text fields
    # become NaN without one; fields missing somewhere, bools and None are NaN there
    batch = [
        {"x": 1.0, "y": 2, "id": "a", "ok": True, "f": np.float32(1.5)},
        {"x": 3.0, "y": None, "id": "b", "ok": 1.0, "f": 2.5},
        {"x": 4.0, "id": "c", "ok": False, "f": "7"},
    ]
    cols = to_columns(batch, ["x", "y", "id", "ok", "f", "absent"])
    assert cols["x"].tolist() == [1.0, 3.0, 4.0]
    assert cols["y"][0] == 2.0 and np.isnan(cols["y"][1:]).all()
    assert np.isnan(cols["id"]).all() and cols["id"].dtype == np.float64
    assert np.isnan(cols["ok"][[0, 2]]).all() and cols["ok"][1] == 1.0
    assert cols["f"][:2].tolist() == [1.5, 2.5] and np.isnan(cols["f"][2])
    assert np.isnan(cols["absent"]).all()
    assert to_columns([], ["x"])["x"].shape == (0,)
    assert np.isnan(to_columns([{"x": 10**400}, {"x": 1}], ["x"])["x"][0])  # beyond float


def test_buffers_take_aware_naive_string_and_missing_timestamps(cfg, clients) -> None:
    client = clients(cfg)
    plus2 = timezone(timedelta(hours=2))
    client.process_stream_batch(
        [
            {"value": 1.0, "timestamp": ts(1)},
            {"value": 2.0, "timestamp": ts(2).astimezone(plus2)},
            {"value": 3.0, "timestamp": ts(3).replace(tzinfo=None)},
            {"value": 4.0, "timestamp": "2026-01-01T00:00:04Z"},
        ]
    )
    client.process_stream_batch([{"value": 5.0, "timestamp": ts(5)}, {"value": 6.0}])
    data, times, _ = client.get_buffer("value").get_sliding_window(10)
    assert data.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert times[:5] == [ts(i) for i in range(1, 6)] and times[5] > ts(5)


# -- background consumer -------------------------------------------------------------------
def test_consumer_delivers_good_messages_once_and_dead_letters_poison(cfg, clients) -> None:
    broker = get_broker(cfg.kafka_bootstrap_servers)
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    poison = [
        (b"{not json", "invalid JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'{"seq": -1, "value": "hot"}', "field 'value' must be a number"),
        (b'{"seq": -2, "value": 1.0, "timestamp": "not-a-time"}', "bad timestamp"),
    ]
    for i in range(30):
        producer.produce({"seq": i, "value": float(i), "timestamp": ts(i)}, key=f"k{i % 4}")
        if i % 8 == 3:
            producer.produce_raw(poison[i // 8][0], key="bad")
    producer.close()
    client = clients(cfg)
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(
        lambda: len(got.messages) >= 30 and client.get_stream_statistics()["dead_lettered"] >= 4
    )
    client.stop_consumer()
    assert sorted(got.seqs()) == list(range(30))
    assert all(
        set(m) >= {"topic", "partition", "offset", "timestamp", "key", "value"}
        for m in got.messages
    )
    stats = client.get_stream_statistics()
    assert stats["dead_lettered"] == 4 and stats["errors"] == 0
    assert stats["messages_processed"] == 30

    history = client.storage.query_stream_history(*WIDE)
    assert [d["seq"] for d in history] == list(range(30))  # once each, oldest first
    assert {d["_id"] for d in history} == {
        f"{m['topic']}:{m['partition']}:{m['offset']}" for m in got.messages
    }
    assert sorted(client.get_buffer("value").get_sliding_window(100)[0].tolist()) == [
        float(i) for i in range(30)
    ]

    dlq = drain_topic(cfg, cfg.kafka_topic + ".dlq", 4)
    assert len(dlq) == 4
    reasons = sorted(m["headers"]["error"].decode() for m in dlq)
    for (_, expected), reason in zip(
        sorted(poison, key=lambda p: p[1]), sorted(reasons), strict=True
    ):
        assert expected in reason
    raw_bad = [m for m in dlq if b"invalid JSON" in m["headers"]["error"]][0]
    assert raw_bad["raw"] == b"{not json"  # the original bytes are kept
    for m in dlq:
        assert m["headers"]["source_topic"] == cfg.kafka_topic.encode()
        src = (int(m["headers"]["source_partition"]), int(m["headers"]["source_offset"]))
        assert broker.fetch(cfg.kafka_topic, src[0], src[1], 1)[0].key == b"bad"
    cached = client.storage.get_cached_data(f"latest:{cfg.kafka_topic}")
    assert cached is not None and cached["message"]["seq"] in range(30)


def test_callback_that_always_raises_dead_letters_each_batch(cfg, clients) -> None:
    produce(cfg, 12)
    attempts = []

    def callback(messages):
        attempts.append(len(messages))
        raise ValueError("downstream is broken")

    client = clients(cfg)
    client.start_consumer([cfg.kafka_topic], callback)
    assert wait_until(lambda: client.get_stream_statistics()["dead_lettered"] >= 12)
    client.stop_consumer()
    stats = client.get_stream_statistics()
    batches = stats["batches_processed"]
    assert batches >= 1 and sum(attempts) == 3 * 12  # every batch tried three times
    assert len(attempts) == 3 * batches
    assert stats["errors"] == batches  # once per batch, not per attempt
    assert stats["dead_lettered"] == 12
    assert "callback failed: ValueError: downstream is broken" in stats["last_error"]
    dlq = drain_topic(cfg, cfg.kafka_topic + ".dlq", 12)
    assert sorted(m["value"]["seq"] for m in dlq) == list(range(12))
    assert all(m["headers"]["error"].startswith(b"callback failed") for m in dlq)


def test_stop_then_new_client_in_group_resumes_without_redelivery(cfg, clients) -> None:
    produce(cfg, 10)
    first_seen = Collector()
    first = clients(cfg)
    first.start_consumer([cfg.kafka_topic], first_seen)
    assert first.is_running
    assert wait_until(lambda: len(first_seen.messages) >= 10)
    first.stop_consumer()
    assert not first.is_running and first.get_stream_statistics()["consumer_state"] == "stopped"
    produce(cfg, 5, start=10)
    second_seen = Collector()
    second = clients(cfg)
    second.start_consumer([cfg.kafka_topic], second_seen)
    assert wait_until(lambda: len(second_seen.messages) >= 5)
    assert wait_until(lambda: second.get_stream_statistics()["consumer_lag"] == 0)
    time.sleep(0.3)  # a few poll cycles: nothing old may show up
    second.stop_consumer()
    assert sorted(first_seen.seqs()) == list(range(10))
    assert sorted(second_seen.seqs()) == list(range(10, 15))


def test_pause_resume_and_seek_through_the_client(cfg, clients) -> None:
    client = clients(cfg)
    with pytest.raises(RuntimeError, match="start_consumer"):
        client.pause()
    with pytest.raises(RuntimeError, match="start_consumer"):
        client.seek_to_beginning()
    produce(cfg, 5)
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(lambda: len(got.messages) >= 5)
    client.pause()
    assert client.get_stream_statistics()["consumer_state"] == "paused"
    produce(cfg, 5, start=5)
    time.sleep(0.3)  # several poll cycles while paused
    assert sorted(got.seqs()) == list(range(5))
    assert client.get_stream_statistics()["consumer_lag"] == 5
    client.resume()
    assert client.get_stream_statistics()["consumer_state"] == "running"
    assert wait_until(lambda: len(got.messages) >= 10)
    assert sorted(got.seqs()) == list(range(10))
    client.seek_to_beginning()
    assert wait_until(lambda: len(got.messages) >= 20)
    client.stop_consumer()
    assert sorted(got.seqs()) == sorted(list(range(10)) * 2)  # replayed once
    assert [d["seq"] for d in client.storage.query_stream_history(*WIDE)] == list(range(10))


def test_start_consumer_validation(cfg, clients) -> None:
    client = clients(cfg)
    for topics in ("monitoring", [], [""], [3], None):
        with pytest.raises(ValueError, match="topics"):
            client.start_consumer(topics, print)
    with pytest.raises(TypeError, match="callback"):
        client.start_consumer(["monitoring"], "print")
    client.start_consumer(["monitoring"], print)
    with pytest.raises(RuntimeError, match="already running"):
        client.start_consumer(["monitoring"], print)
    client.stop_consumer()
    client.stop_consumer()  # harmless twice
    assert client.health()["consumer_state"] == "stopped"


def test_a_failing_batch_validation_falls_back_to_one_by_one(cfg, clients) -> None:
    class Broken(MessageValidator):
        def check_batch(self, values, sizes=None, *, columns=None):
            raise RuntimeError("validator bug")

    produce(cfg, 10)
    client = clients(cfg, validator=Broken())
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(lambda: len(got.messages) >= 10)
    client.stop_consumer()
    assert sorted(got.seqs()) == list(range(10))
    assert all(m["value"]["timestamp"].tzinfo is UTC for m in got.messages)


@pytest.mark.parametrize("step", ["prepare_batch", "store_prepared"])
def test_failed_batch_is_not_lost(cfg, clients, tmp_path, step) -> None:
    """Storage fails the first batch while preparing it (consumer thread) or writing it
    (writer thread): the batch is dead-lettered or delivered again, never skipped."""
    get_broker(cfg.kafka_bootstrap_servers).create_topic(cfg.kafka_topic, 1)
    produce(cfg, 6)
    calls = [0]

    def rejects_first(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("document rejected")
        return getattr(StreamStorage, step)(self, *args, **kwargs)

    RejectsFirstBatch = type("RejectsFirstBatch", (StreamStorage,), {step: rejects_first})

    small = StreamingConfig.embedded(
        storage_path=str(tmp_path),
        kafka_bootstrap_servers=cfg.kafka_bootstrap_servers,
        kafka_topic=cfg.kafka_topic,
        consumer_group_id="grp",
        max_poll_records=2,
    )
    first_seen = Collector()
    first = clients(small, storage=RejectsFirstBatch(path=tmp_path / "a.sqlite3"))
    first.start_consumer([small.kafka_topic], first_seen)
    assert wait_until(lambda: len(first_seen.messages) >= 4)
    first.stop_consumer()
    assert first.get_stream_statistics()["errors"] == 1
    dead = first.get_stream_statistics()["dead_lettered"]
    second_seen = Collector()
    second = clients(small, storage=StreamStorage(path=tmp_path / "b.sqlite3"))
    second.start_consumer([small.kafka_topic], second_seen)
    wait_until(lambda: len(second_seen.messages) >= 2, timeout=2.0)
    second.stop_consumer()
    # messages 0 and 1 must be delivered again or be on the dead-letter topic
    assert dead == 2 or sorted(second_seen.seqs())[:2] == [0, 1]


def small_batches(cfg: StreamingConfig, tmp_path) -> StreamingConfig:
    return StreamingConfig.embedded(
        storage_path=str(tmp_path),
        kafka_bootstrap_servers=cfg.kafka_bootstrap_servers,
        kafka_topic=cfg.kafka_topic,
        consumer_group_id="grp",
        max_poll_records=5,
    )


def test_each_batch_is_stored_before_the_callback_gets_it(cfg, clients, tmp_path) -> None:
    small = small_batches(cfg, tmp_path)
    client = clients(small)
    missing: list[int] = []

    def check(messages) -> None:
        stored = {d["seq"] for d in client.storage.query_stream_history(*WIDE)}
        missing.extend(m["value"]["seq"] for m in messages if m["value"]["seq"] not in stored)

    produce(small, 40)
    got = Collector()
    client.start_consumer([small.kafka_topic], lambda msgs: (check(msgs), got(msgs)))
    assert wait_until(lambda: len(got.messages) >= 40)
    client.stop_consumer()
    assert missing == []


def test_nothing_is_delivered_after_pause_returns(cfg, clients, tmp_path) -> None:
    # A slow callback keeps batches queued behind the consumer thread; pause() must
    # wait for them, or deliveries would go on after it returned.
    small = small_batches(cfg, tmp_path)
    client = clients(small)
    got = Collector()

    def slow(messages) -> None:
        time.sleep(0.05)
        got(messages)

    produce(small, 200)
    client.start_consumer([small.kafka_topic], slow)
    assert wait_until(lambda: got.batches >= 2)
    client.pause()
    held = len(got.messages)
    time.sleep(0.5)
    assert len(got.messages) == held < 200
    client.resume()
    assert wait_until(lambda: len(got.messages) >= 200)
    client.stop_consumer()
    assert sorted(got.seqs()) == list(range(200))


def test_stop_stores_and_commits_every_delivered_batch(cfg, clients, tmp_path) -> None:
    small = small_batches(cfg, tmp_path)
    first = clients(small)
    seen = Collector()
    produce(small, 100)
    first.start_consumer([small.kafka_topic], seen)
    assert wait_until(lambda: seen.batches >= 3)
    first.stop_consumer()
    delivered = sorted(seen.seqs())
    stored = sorted(d["seq"] for d in first.storage.query_stream_history(*WIDE))
    assert stored == delivered
    again = Collector()
    second = clients(small)
    second.start_consumer([small.kafka_topic], again)
    assert wait_until(lambda: len(again.messages) >= 100 - len(delivered))
    time.sleep(0.2)
    second.stop_consumer()
    assert sorted(delivered + again.seqs()) == list(range(100))  # none twice, none lost


def test_oversized_messages_are_dead_lettered(cfg, clients) -> None:
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    producer.produce({"seq": 0, "value": 1.0, "blob": "x" * 500})
    producer.produce({"seq": 1, "value": 2.0})
    producer.close()
    client = clients(cfg, validator=MessageValidator(max_bytes=200))
    got = Collector()
    client.start_consumer([cfg.kafka_topic], got)
    assert wait_until(
        lambda: len(got.messages) + client.get_stream_statistics()["dead_lettered"] >= 2
    )
    client.stop_consumer()
    assert got.seqs() == [1]
    assert client.get_stream_statistics()["dead_lettered"] == 1


# -- StreamingConfig ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kafka_bootstrap_servers", []),
        ("kafka_bootstrap_servers", " , "),
        ("kafka_topic", ""),
        ("consumer_group_id", None),
        ("redis_host", ""),
        ("auto_commit_interval_ms", "5000"),
        ("max_poll_records", 0),
        ("session_timeout_ms", -1),
        ("buffer_size", 0),
        ("processing_batch_size", True),
        ("storage_batch_size", 1.5),
        ("spool_limit", 0),
        ("redis_port", 0),
        ("redis_port", 70000),
        ("redis_db", -1),
        ("redis_db", "0"),
        ("auto_offset_reset", "middle"),
    ],
)
def test_config_validation_names_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=rf"StreamingConfig\.{field}"):
        StreamingConfig(**{field: value})


def test_config_servers_string_and_embedded() -> None:
    assert StreamingConfig(kafka_bootstrap_servers="a:1, b:2,").kafka_bootstrap_servers == [
        "a:1",
        "b:2",
    ]
    emb = StreamingConfig.embedded(buffer_size=10)
    assert emb.kafka_bootstrap_servers == ["memory://"]
    assert emb.enable_redis_cache is False and emb.enable_mongodb_storage is True
    assert emb.mongodb_uri is None and emb.buffer_size == 10
    assert StreamingConfig.embedded(enable_redis_cache=True).enable_redis_cache is True


def test_config_rejects_empty_dead_letter_suffix() -> None:
    with pytest.raises(ValueError, match="dead_letter_suffix"):
        StreamingConfig(dead_letter_suffix="")


def test_from_env_parses_amqadf_variables() -> None:
    env = {
        "AMQADF_KAFKA": "k1:9092, k2:9092",
        "AMQADF_TOPIC": "plant",
        "AMQADF_GROUP": "dash",
        "AMQADF_REDIS_URL": "rediss://:s3cret@cache.local:6380/2",
        "AMQADF_MONGO_URI": "mongodb://u:pw@db:27017/am",
        "AMQADF_DATA_DIR": "/data/amqadf",
        "AMQADF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AMQADF_KAFKA_SASL_MECHANISM": "PLAIN",
        "AMQADF_KAFKA_USERNAME": "alice",
        "AMQADF_KAFKA_PASSWORD": "kpass",
        "AMQADF_KAFKA_CA": "/etc/ca.pem",
        "UNRELATED": "x",
    }
    cfg = StreamingConfig.from_env(env=env)
    assert cfg.kafka_bootstrap_servers == ["k1:9092", "k2:9092"]
    assert (cfg.kafka_topic, cfg.consumer_group_id) == ("plant", "dash")
    assert cfg.enable_redis_cache is True and cfg.redis_ssl is True
    assert (cfg.redis_host, cfg.redis_port, cfg.redis_db) == ("cache.local", 6380, 2)
    assert cfg.redis_password == "s3cret"
    assert cfg.mongodb_uri == "mongodb://u:pw@db:27017/am"
    assert cfg.storage_path == "/data/amqadf"
    assert cfg.kafka_config == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": "kpass",
        "ssl.ca.location": "/etc/ca.pem",
    }


def test_from_env_defaults_none_and_base() -> None:
    assert StreamingConfig.from_env(env={}) == StreamingConfig()
    base = StreamingConfig.embedded(kafka_topic="base-topic", mongodb_uri="mongodb://h/db")
    cfg = StreamingConfig.from_env(
        base, env={"AMQADF_REDIS_URL": "None", "AMQADF_MONGO_URI": "none", "AMQADF_TOPIC": ""}
    )
    assert cfg.kafka_topic == "base-topic" and cfg.kafka_bootstrap_servers == ["memory://"]
    assert cfg.enable_redis_cache is False and cfg.mongodb_uri is None
    plain = StreamingConfig.from_env(env={"AMQADF_REDIS_URL": "redis://h"})
    assert (plain.redis_host, plain.redis_port, plain.redis_db) == ("h", 6379, 0)
    assert plain.redis_password is None and plain.redis_ssl is False
    assert StreamingConfig.from_env(env={"AMQADF_KAFKA": "memory://x"}).kafka_bootstrap_servers == [
        "memory://x"
    ]
    with pytest.raises(ValueError, match="AMQADF_REDIS_URL must start with redis://"):
        StreamingConfig.from_env(env={"AMQADF_REDIS_URL": "http://h:1/0"})


@pytest.mark.parametrize("url", ["redis://h:port/0", "redis://h:1/db"], ids=["port", "db"])
def test_from_env_bad_redis_url_names_the_variable(url) -> None:
    with pytest.raises(ValueError, match="AMQADF_REDIS_URL"):
        StreamingConfig.from_env(env={"AMQADF_REDIS_URL": url})


def test_describe_masks_secrets() -> None:
    cfg = StreamingConfig(
        redis_password="r3dis",
        mongodb_uri="mongodb://admin:m0ngo@db:27017/am?authSource=admin",
        kafka_config={
            "sasl.username": "alice",
            "sasl.password": "k4fka",
            "ssl.key.password": "keypw",
            "sasl.oauthbearer.client.secret": "shh",
            "security.protocol": "SASL_SSL",
        },
    )
    d = cfg.describe()
    assert d["redis_password"] == "***"
    assert d["mongodb_uri"] == "mongodb://admin:***@db:27017/am?authSource=admin"
    assert d["kafka_config"] == {
        "sasl.username": "alice",
        "sasl.password": "***",
        "ssl.key.password": "***",
        "sasl.oauthbearer.client.secret": "***",
        "security.protocol": "SASL_SSL",
    }
    for secret in ("r3dis", "m0ngo", "k4fka", "keypw", "shh"):
        assert secret not in repr(d)
    assert d["kafka_topic"] == "am_qadf_monitoring" and d["buffer_size"] == 1000
    assert cfg.redis_password == "r3dis"  # describe does not change the config
    plain = StreamingConfig().describe()
    assert plain["redis_password"] is None and plain["mongodb_uri"] is None
    assert set(plain) == set(StreamingConfig.__dataclass_fields__)


def test_config_repr_does_not_leak_secrets() -> None:
    cfg = StreamingConfig(
        redis_password="r3dis",
        mongodb_uri="mongodb://admin:m0ngo@db:27017/am",
        kafka_config={"sasl.password": "k4fka"},
    )
    text = repr(cfg)
    assert "r3dis" not in text
    assert "m0ngo" not in text
    assert "k4fka" not in text
