"""The in-process broker (``memory://``) and the Kafka consumer/producer on top of it.

Brokers are process-global, so every test uses its own ``memory://<uuid>`` address.
"""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from am_qadf.streaming import KafkaConsumer, KafkaProducer, MemoryBroker, get_broker
from am_qadf.streaming.kafka_consumer import decode_record
from am_qadf.streaming.memory_broker import DEFAULT_PARTITIONS, is_memory_address

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def addr() -> str:
    return f"memory://unit-{uuid.uuid4().hex}"


@pytest.fixture
def broker(addr: str) -> MemoryBroker:
    return get_broker(addr)


def consume_all(consumer: KafkaConsumer, expected: int, max_empty: int = 3) -> list[dict]:
    """Poll until ``expected`` messages arrived or ``max_empty`` polls came back empty."""
    out: list[dict] = []
    empty = 0
    while len(out) < expected and empty < max_empty:
        got = consumer.poll(timeout_ms=50)
        if got:
            out.extend(got)
        else:
            empty += 1
    return out


def seqs(messages: list[dict]) -> list[int]:
    return [m["value"]["seq"] for m in messages]


def produce_seq(addr: str, topic: str, n: int, start: int = 0, key=None) -> None:
    producer = KafkaProducer([addr], topic)
    for i in range(start, start + n):
        producer.produce({"seq": i}, key=key)
    producer.close()


# -- addresses and brokers ------------------------------------------------------------------
def test_memory_address_detection_and_broker_identity(addr: str) -> None:
    assert is_memory_address([addr]) is True
    assert is_memory_address(addr) is True
    assert is_memory_address(["localhost:9092", addr]) is True
    assert is_memory_address(["localhost:9092"]) is False
    assert get_broker(addr) is get_broker([addr])
    assert get_broker(addr + "/") is get_broker(addr)
    other = f"memory://unit-{uuid.uuid4().hex}"
    assert get_broker(other) is not get_broker(addr)


def test_topics_are_auto_created_with_default_partitions(broker: MemoryBroker) -> None:
    assert broker.topics() == []
    assert broker.partitions("auto") == DEFAULT_PARTITIONS
    broker.create_topic("two", 2)
    broker.create_topic("two", 5)  # existing topic keeps its partitions
    assert broker.partitions("two") == 2
    assert broker.topics() == ["auto", "two"]
    assert broker.offsets("two", 1) == (0, 0)


def test_create_topic_validates_arguments(broker: MemoryBroker) -> None:
    with pytest.raises(ValueError, match="topic"):
        broker.create_topic("")
    with pytest.raises(ValueError, match="partitions"):
        broker.create_topic("t", 0)
    broker.create_topic("t", 2)
    with pytest.raises(ValueError, match="partition 2"):
        broker.produce("t", b"{}", partition=2)


def test_produce_with_explicit_partition_auto_creates_topic(broker: MemoryBroker) -> None:
    assert broker.produce("fresh", b"{}", partition=0) == (0, 0)


# -- partitions, keys and offsets -------------------------------------------------------
def test_same_key_same_partition_and_order_kept(addr: str, broker: MemoryBroker) -> None:
    producer = KafkaProducer([addr], "keyed")
    keys = [f"machine-{k}" for k in range(5)]
    for i in range(40):
        producer.produce({"seq": i, "key": keys[i % 5]}, key=keys[i % 5])
    consumer = KafkaConsumer([addr], "keyed", group_id="g")
    msgs = consume_all(consumer, 40)
    assert sorted(seqs(msgs)) == list(range(40))
    for key in keys:
        mine = [m for m in msgs if m["key"] == key]
        assert len(mine) == 8
        expected_partition = zlib.crc32(key.encode()) % DEFAULT_PARTITIONS
        assert {m["partition"] for m in mine} == {expected_partition}
        assert broker.partition_for("keyed", key.encode()) == expected_partition
        assert seqs(mine) == sorted(seqs(mine))  # produce order kept within a key
        assert [m["value"]["key"] for m in mine] == [key] * 8


def test_offsets_are_contiguous_per_partition(addr: str, broker: MemoryBroker) -> None:
    broker.create_topic("t", 3)
    returned = [broker.produce("t", b'{"seq": %d}' % i) for i in range(9)]
    # no key: round robin over the partitions
    assert [p for p, _ in returned] == [0, 1, 2] * 3
    assert [o for _, o in returned] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [broker.offsets("t", p) for p in range(3)] == [(0, 3)] * 3
    consumer = KafkaConsumer([addr], "t", group_id="g")
    msgs = consume_all(consumer, 9)
    for p in range(3):
        assert [m["offset"] for m in msgs if m["partition"] == p] == [0, 1, 2]


def test_poll_message_shape(addr: str) -> None:
    producer = KafkaProducer([addr], "shape")
    producer.produce({"value": 1.5, "layer": 3}, key="k1")
    msg = consume_all(KafkaConsumer([addr], "shape", group_id="g"), 1)[0]
    assert set(msg) >= {"topic", "partition", "offset", "timestamp", "key", "value"}
    assert msg["topic"] == "shape"
    assert msg["key"] == "k1"
    assert msg["offset"] == 0
    assert msg["value"] == {"value": 1.5, "layer": 3}
    assert isinstance(msg["timestamp"], datetime) and msg["timestamp"].tzinfo is not None
    assert msg["timestamp"].utcoffset().total_seconds() == 0
    assert "error" not in msg


def test_producer_encodes_numpy_and_datetimes(addr: str) -> None:
    producer = KafkaProducer([addr], "enc")
    producer.produce(
        {"v": np.float32(1.5), "arr": np.arange(3), "t": datetime(2026, 1, 2, 3, 4, 5)}
    )
    producer.produce({"t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})
    msgs = consume_all(KafkaConsumer([addr], "enc", group_id="g"), 2)
    values = sorted((m["value"] for m in msgs), key=len, reverse=True)
    assert values[0] == {"v": 1.5, "arr": [0, 1, 2], "t": "2026-01-02T03:04:05Z"}
    assert values[1] == {"t": "2026-01-02T03:04:05Z"}


def test_produce_batch_and_topic_override(addr: str, broker: MemoryBroker) -> None:
    producer = KafkaProducer([addr], "main")
    assert producer.produce_batch([{"seq": i} for i in range(4)], key="same") == 4
    producer.produce({"seq": 99}, topic="side", headers=[("h", b"1")])
    assert producer.delivered == 5
    assert sum(broker.offsets("main", p)[1] for p in range(broker.partitions("main"))) == 4
    side = consume_all(KafkaConsumer([addr], "side", group_id="g"), 1)
    assert seqs(side) == [99]
    assert side[0]["headers"] == {"h": b"1"}


def test_produce_batch_is_all_or_nothing_and_in_order(addr: str, broker: MemoryBroker) -> None:
    producer = KafkaProducer([addr], "batch")
    with pytest.raises(TypeError, match=r"values\[1\]"):
        producer.produce_batch([{"seq": 0}, ["not", "a", "dict"], {"seq": 2}], key="k")
    assert producer.delivered == 0
    assert all(broker.offsets("batch", p) == (0, 0) for p in range(broker.partitions("batch")))
    producer.produce_batch([{"seq": i} for i in range(5)], key="k")
    msgs = consume_all(KafkaConsumer([addr], "batch", group_id="g"), 5)
    assert [m["value"]["seq"] for m in msgs] == list(range(5))  # one partition, in order
    assert len({m["partition"] for m in msgs}) == 1


# -- consumer groups ------------------------------------------------------------------------
def test_two_consumers_in_a_group_split_partitions_exactly_once(addr: str) -> None:
    get_broker(addr).create_topic("split", 4)
    produce_seq(addr, "split", 60)
    c1 = KafkaConsumer([addr], "split", group_id="grp", max_poll_records=7)
    c2 = KafkaConsumer([addr], "split", group_id="grp", max_poll_records=7)
    a1, a2 = c1.assignment(), c2.assignment()
    assert a1 and a2
    assert set(a1).isdisjoint(a2)
    assert sorted(a1 + a2) == [("split", p) for p in range(4)]
    got1, got2 = [], []
    empty = 0
    while len(got1) + len(got2) < 60 and empty < 6:
        m1, m2 = c1.poll(timeout_ms=20), c2.poll(timeout_ms=20)
        got1 += m1
        got2 += m2
        empty = 0 if (m1 or m2) else empty + 1
    assert sorted(seqs(got1) + seqs(got2)) == list(range(60))  # every message, exactly once
    assert {(m["topic"], m["partition"]) for m in got1} <= set(a1)
    assert {(m["topic"], m["partition"]) for m in got2} <= set(a2)
    assert c1.poll(timeout_ms=20) == [] and c2.poll(timeout_ms=20) == []


def test_a_consumer_leaving_hands_its_partitions_over(addr: str) -> None:
    c1 = KafkaConsumer([addr], "t", group_id="grp")
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    assert len(c1.assignment()) + len(c2.assignment()) == DEFAULT_PARTITIONS
    c1.close()
    assert c2.assignment() == [("t", p) for p in range(DEFAULT_PARTITIONS)]
    assert get_broker(addr).describe()["groups"]["grp"] == [c2._backend.member]


def test_groups_are_independent(addr: str) -> None:
    produce_seq(addr, "t", 10)
    a = consume_all(KafkaConsumer([addr], "t", group_id="a"), 10)
    b = consume_all(KafkaConsumer([addr], "t", group_id="b"), 10)
    assert sorted(seqs(a)) == sorted(seqs(b)) == list(range(10))


def test_resume_after_commit_reads_nothing_twice(addr: str) -> None:
    produce_seq(addr, "t", 10)
    c1 = KafkaConsumer([addr], "t", group_id="grp")
    first = consume_all(c1, 10)
    assert sorted(seqs(first)) == list(range(10))
    c1.commit()
    c1.close()
    produce_seq(addr, "t", 5, start=10)
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    second = consume_all(c2, 5)
    assert sorted(seqs(second)) == list(range(10, 15))
    assert c2.poll(timeout_ms=20) == []


def test_partial_commit_resumes_exactly_after_committed_offsets(addr: str) -> None:
    get_broker(addr).create_topic("t", 2)
    produce_seq(addr, "t", 20)
    c1 = KafkaConsumer([addr], "t", group_id="grp", max_poll_records=6)
    first = c1.poll(timeout_ms=100)
    assert len(first) == 6
    c1.commit()
    c1.close()
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    rest = consume_all(c2, 14)
    assert len(rest) == 14
    assert set(seqs(first)).isdisjoint(seqs(rest))
    assert sorted(seqs(first) + seqs(rest)) == list(range(20))


def test_unstored_messages_are_redelivered_after_restart(addr: str) -> None:
    produce_seq(addr, "t", 12)
    c1 = KafkaConsumer([addr], "t", group_id="grp", store_on_poll=False)
    assert sorted(seqs(consume_all(c1, 12))) == list(range(12))
    c1.commit()  # nothing stored: nothing committed
    c1.close()
    assert all(get_broker(addr).committed("grp", "t", p) is None for p in range(3))
    c2 = KafkaConsumer([addr], "t", group_id="grp", store_on_poll=False)
    again = consume_all(c2, 12)
    assert sorted(seqs(again)) == list(range(12))  # at-least-once: all of them again


def test_stored_prefix_is_committed_and_the_rest_redelivered(addr: str) -> None:
    produce_seq(addr, "t", 12)
    c1 = KafkaConsumer([addr], "t", group_id="grp", store_on_poll=False)
    msgs = consume_all(c1, 12)
    c1.store_offsets(msgs[:5])
    c1.close()  # auto_commit: close commits the stored offsets
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    rest = consume_all(c2, 7)
    assert sorted(seqs(rest)) == sorted(seqs(msgs[5:]))


def test_no_auto_commit_close_commits_nothing(addr: str) -> None:
    produce_seq(addr, "t", 6)
    c1 = KafkaConsumer([addr], "t", group_id="grp", auto_commit=False)
    assert len(consume_all(c1, 6)) == 6
    c1.close()
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    assert sorted(seqs(consume_all(c2, 6))) == list(range(6))


def test_auto_commit_interval_commits_on_poll(addr: str, broker: MemoryBroker) -> None:
    broker.create_topic("t", 1)
    produce_seq(addr, "t", 4)
    consumer = KafkaConsumer([addr], "t", group_id="grp", auto_commit_interval_ms=0)
    assert len(consume_all(consumer, 4)) == 4
    consumer.poll(timeout_ms=10)  # the timer is due on every poll
    assert broker.committed("grp", "t", 0) == 4


def test_latest_skips_old_messages(addr: str) -> None:
    produce_seq(addr, "t", 5)
    consumer = KafkaConsumer([addr], "t", group_id="grp", auto_offset_reset="latest")
    assert consumer.poll(timeout_ms=30) == []
    produce_seq(addr, "t", 3, start=5)
    assert sorted(seqs(consume_all(consumer, 3))) == [5, 6, 7]


def test_earliest_is_the_default_for_new_groups(addr: str) -> None:
    produce_seq(addr, "t", 5)
    consumer = KafkaConsumer([addr], "t", group_id="fresh")
    assert sorted(seqs(consume_all(consumer, 5))) == list(range(5))


def test_committed_offset_wins_over_latest(addr: str) -> None:
    get_broker(addr).create_topic("t", 1)
    produce_seq(addr, "t", 6)
    c1 = KafkaConsumer([addr], "t", group_id="grp", max_poll_records=2)
    assert seqs(c1.poll(timeout_ms=50)) == [0, 1]
    c1.close()
    c2 = KafkaConsumer([addr], "t", group_id="grp", auto_offset_reset="latest")
    assert seqs(consume_all(c2, 4)) == [2, 3, 4, 5]


def test_seek_to_beginning_before_first_poll(addr: str) -> None:
    produce_seq(addr, "t", 8)
    c1 = KafkaConsumer([addr], "t", group_id="grp")
    consume_all(c1, 8)
    c1.close()  # commits everything
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    c2.seek_to_beginning()
    assert sorted(seqs(consume_all(c2, 8))) == list(range(8))


def test_seek_to_beginning_after_polling(addr: str) -> None:
    produce_seq(addr, "t", 8)
    consumer = KafkaConsumer([addr], "t", group_id="grp")
    assert sorted(seqs(consume_all(consumer, 8))) == list(range(8))
    assert consumer.poll(timeout_ms=20) == []
    consumer.seek_to_beginning()
    assert sorted(seqs(consume_all(consumer, 8))) == list(range(8))


def test_seek_pending_when_nothing_is_assigned_yet(addr: str) -> None:
    get_broker(addr).create_topic("t", 1)
    produce_seq(addr, "t", 3)
    c1 = KafkaConsumer([addr], "t", group_id="grp")
    consume_all(c1, 3)
    c1.commit()
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    # exactly one of the two owns the single partition
    idle, owner = (c2, c1) if c1.assignment() else (c1, c2)
    assert idle.assignment() == []
    idle.seek_to_beginning()  # remembered until a partition is assigned
    owner.close()
    assert sorted(seqs(consume_all(idle, 3))) == [0, 1, 2]


def test_pause_returns_nothing_and_resume_delivers(addr: str) -> None:
    produce_seq(addr, "t", 5)
    consumer = KafkaConsumer([addr], "t", group_id="grp")
    consumer.pause()
    assert consumer.paused is True
    assert consumer.poll(timeout_ms=30) == []
    assert consumer.poll(timeout_ms=30) == []
    assert consumer.lag() == 5  # still waiting
    consumer.resume()
    assert consumer.paused is False
    assert sorted(seqs(consume_all(consumer, 5))) == list(range(5))
    assert consumer.lag() == 0


def test_lag_counts_undelivered_messages(addr: str) -> None:
    get_broker(addr).create_topic("t", 1)
    produce_seq(addr, "t", 10)
    consumer = KafkaConsumer([addr], "t", group_id="grp", max_poll_records=3)
    assert len(consumer.poll(timeout_ms=50)) == 3
    assert consumer.lag() == 7
    consume_all(consumer, 7)
    assert consumer.lag() == 0
    produce_seq(addr, "t", 2, start=10)
    assert consumer.lag() == 2
    consumer.close()
    assert consumer.lag() == 0


def test_retention_trims_and_offsets_stay_monotonic(addr: str, broker: MemoryBroker) -> None:
    broker.retention = 4
    broker.create_topic("t", 1)
    consumer = KafkaConsumer([addr], "t", group_id="grp", max_poll_records=2)
    produced = [broker.produce("t", b'{"seq": %d}' % i)[1] for i in range(3)]
    assert seqs(consumer.poll(timeout_ms=50)) == [0, 1]
    produced += [broker.produce("t", b'{"seq": %d}' % i)[1] for i in range(3, 12)]
    assert produced == list(range(12))  # offsets never reused or reset by trimming
    base, end = broker.offsets("t", 0)
    assert end == 12
    assert base > 2  # the consumer's position (2) was trimmed away
    assert end - base <= broker.retention * 5 // 4
    rest = consume_all(consumer, end - base)
    offsets = [m["offset"] for m in rest]
    assert offsets == list(range(base, end))  # resumes at the earliest kept offset
    assert seqs(rest) == offsets
    assert broker.produce("t", b"{}")[1] == 12


def test_byte_retention_bounds_memory_and_keeps_the_newest(broker: MemoryBroker) -> None:
    from am_qadf.streaming.memory_broker import RECORD_OVERHEAD

    per_record = RECORD_OVERHEAD + 100 + 1
    broker.retention_bytes = 10 * per_record
    broker.create_topic("t", 1)
    values = [bytes([65 + i % 26]) * 100 for i in range(200)]
    for v in values:
        broker.produce("t", v, key=b"k")
        part = broker._topics["t"][0]
        assert part.nbytes <= broker.retention_bytes * 5 // 4
        assert part.nbytes == len(part.records) * per_record  # accounting stays exact
    base, end = broker.offsets("t", 0)
    assert end == 200 and 10 <= end - base <= 12
    assert [r.value for r in broker.fetch("t", 0, 0, 1000)] == values[base:end]


def test_byte_retention_is_per_topic_and_older_partitions_give_way(
    broker: MemoryBroker,
) -> None:
    # each simulated build is keyed to its own partition: when a new build starts, the
    # topic's memory must not grow by another partition's worth
    from am_qadf.streaming.memory_broker import RECORD_OVERHEAD

    per_record = RECORD_OVERHEAD + 100
    broker.retention_bytes = 20 * per_record
    broker.create_topic("t", 3)
    for i in range(40):  # build 1 fills partition 0
        broker.produce("t", b"a" * 100, partition=0, timestamp_ms=i)
    for i in range(15):  # build 2 starts on partition 1
        broker.produce("t", b"b" * 100, partition=1, timestamp_ms=100 + i)
        parts = broker._topics["t"]
        assert sum(p.nbytes for p in parts) <= broker.retention_bytes * 5 // 4
    base0, end0 = broker.offsets("t", 0)
    base1, end1 = broker.offsets("t", 1)
    assert (base1, end1) == (0, 15)  # the partition written to keeps everything...
    assert end0 == 40 and end0 - base0 <= 25 - 15  # ...the older one gave way
    for i in range(30):  # build 2 goes on: build 1 is reduced to its newest record
        broker.produce("t", b"b" * 100, partition=1, timestamp_ms=200 + i)
    assert broker.offsets("t", 0) == (39, 40)
    assert sum(p.nbytes for p in broker._topics["t"]) <= broker.retention_bytes * 5 // 4


def test_one_record_above_the_byte_retention_is_still_kept(broker: MemoryBroker) -> None:
    broker.retention_bytes = 50
    broker.create_topic("t", 1)
    for i in range(3):
        broker.produce("t", b"x" * 1000 + b"%d" % i)
    assert [r.value[-1:] for r in broker.fetch("t", 0, 0, 10)] == [b"2"]


def test_stored_messages_cost_about_their_length(broker: MemoryBroker) -> None:
    """orjson's bytes keep a ~4 kB allocation; the broker must store a compact copy."""
    import tracemalloc

    from am_qadf.streaming.serialization import dumps

    broker.create_topic("t", 1)
    n = 2000
    tracemalloc.start(8)
    try:
        for i in range(n):  # encoded here, so the encoder's allocation is traced too
            broker.produce("t", dumps({"seq": i, "temperature": 1900.5 + i}), partition=0)
        # only what this test allocated (other tests may have left threads running)
        mine = tracemalloc.Filter(True, __file__, all_frames=True)
        held = sum(
            st.size
            for st in tracemalloc.take_snapshot().filter_traces([mine]).statistics("filename")
        )
        per_record = held / n
    finally:
        tracemalloc.stop()
    stored = [r.value for r in broker.fetch("t", 0, 0, 5000)]
    assert stored == [dumps({"seq": i, "temperature": 1900.5 + i}) for i in range(n)]
    assert per_record < 400, f"{per_record:.0f} bytes held per 40-byte message"


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retention"):
        MemoryBroker("bad", retention_bytes=0)


def test_fetch_below_base_offset_starts_at_base(broker: MemoryBroker) -> None:
    broker.retention = 2
    broker.create_topic("t", 1)
    for i in range(10):
        broker.produce("t", b"%d" % i)
    base, end = broker.offsets("t", 0)
    recs = broker.fetch("t", 0, 0, 100)
    assert [r.offset for r in recs] == list(range(base, end))
    assert [r.value for r in recs] == [b"%d" % i for i in range(base, end)]


def test_undecodable_values_give_error_and_raw(addr: str) -> None:
    producer = KafkaProducer([addr], "t")
    producer.produce_raw(b"not json {", key="a")
    producer.produce_raw(None, key="a")
    producer.produce_raw(b"[1, 2]", key="a")
    producer.produce({"ok": True}, key="a")
    msgs = sorted(
        consume_all(KafkaConsumer([addr], "t", group_id="g"), 4), key=lambda m: m["offset"]
    )
    assert [m["offset"] for m in msgs] == [0, 1, 2, 3]
    bad, empty, array, good = msgs
    assert bad["error"].startswith("invalid JSON") and bad["raw"] == b"not json {"
    assert bad["value"] is None
    assert empty["error"] == "empty message value" and empty["raw"] == b""
    assert array["value"] == [1, 2] and "error" not in array  # JSON, though not an object
    assert good["value"] == {"ok": True} and "error" not in good


def test_store_offsets_takes_the_highest_offset_per_partition() -> None:
    consumer = KafkaConsumer(["memory://offsets-any-order"], "t", group_id="g", auto_commit=False)
    msgs = [
        {"topic": t, "partition": p, "offset": o}
        for t, p, o in [("t", 1, 4), ("t", 0, 9), ("t", 1, 2), ("u", 0, 5), ("t", 0, 3)]
    ]
    consumer.store_offsets(msgs)
    assert consumer._stored == {("t", 0): 10, ("t", 1): 5, ("u", 0): 6}
    consumer.store_offsets([{"topic": "t", "partition": 0, "offset": 1}])  # never moves back
    consumer.store_offsets([])
    assert consumer._stored[("t", 0)] == 10
    consumer.close()


class _FakeError:
    def __init__(self, fatal: bool) -> None:
        self._fatal = fatal

    def fatal(self) -> bool:
        return self._fatal


class _FakeMessage:
    def __init__(self, value: bytes, error: _FakeError | None = None) -> None:
        self.value, self._error = value, error

    def error(self) -> _FakeError | None:
        return self._error


def test_confluent_fetch_drops_errors_and_raises_fatal_ones(caplog) -> None:
    from confluent_kafka import KafkaException

    from am_qadf.streaming.kafka_consumer import _ConfluentBackend

    backend = object.__new__(_ConfluentBackend)  # no broker: a fake librdkafka consumer
    batches: list[list[_FakeMessage]] = []
    backend.consumer = SimpleNamespace(consume=lambda num_messages, timeout: batches.pop(0))
    good = [_FakeMessage(b"1"), _FakeMessage(b"2")]
    batches.append(good)
    assert backend.fetch(10, 0.1) == good
    batches.append([good[0], _FakeMessage(b"", _FakeError(False)), good[1]])
    assert backend.fetch(10, 0.1) == good
    assert "Kafka consumer:" in caplog.text
    batches.append([good[0], _FakeMessage(b"", _FakeError(True))])
    with pytest.raises(KafkaException):
        backend.fetch(10, 0.1)


def test_decode_record_converts_timestamp_ms_to_utc() -> None:
    msg = decode_record("t", 2, 9, 1_767_225_600_123, None, b'{"a": 1}', [("x", b"y")])
    assert msg["timestamp"] == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert (msg["partition"], msg["offset"], msg["key"]) == (2, 9, None)
    assert msg["headers"] == {"x": b"y"}
    assert msg["value"] == {"a": 1}


# -- argument checking ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"bootstrap_servers": 42}, TypeError, "bootstrap_servers"),
        ({"bootstrap_servers": []}, ValueError, "bootstrap_servers"),
        ({"bootstrap_servers": ["memory://x", ""]}, ValueError, "bootstrap_servers"),
        ({"topic": ""}, ValueError, "topic"),
        ({"topic": []}, ValueError, "topic"),
        ({"topic": ["ok", 3]}, ValueError, "topic"),
        ({"group_id": ""}, ValueError, "group_id"),
        ({"group_id": None}, ValueError, "group_id"),
        ({"auto_offset_reset": "middle"}, ValueError, "auto_offset_reset"),
        ({"max_poll_records": 0}, ValueError, "max_poll_records"),
    ],
)
def test_consumer_rejects_bad_arguments(addr: str, kwargs, exc, name) -> None:
    args = {"bootstrap_servers": [addr], "topic": "t", "group_id": "g"} | kwargs
    with pytest.raises(exc, match=name):
        KafkaConsumer(**args)
    assert get_broker(addr).describe()["groups"] == {}  # nothing joined


def test_consumer_poll_and_closed_state(addr: str) -> None:
    consumer = KafkaConsumer([addr], "t", group_id="g")
    with pytest.raises(ValueError, match="timeout_ms"):
        consumer.poll(timeout_ms=-1)
    consumer.close()
    consumer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        consumer.poll(timeout_ms=0)
    with pytest.raises(RuntimeError, match="closed"):
        consumer.commit()
    assert get_broker(addr).describe()["groups"]["g"] == []


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"bootstrap_servers": None}, TypeError, "bootstrap_servers"),
        ({"bootstrap_servers": ""}, ValueError, "bootstrap_servers"),
        ({"topic": ""}, ValueError, "topic"),
        ({"topic": 5}, ValueError, "topic"),
    ],
)
def test_producer_rejects_bad_arguments(addr: str, kwargs, exc, name) -> None:
    args = {"bootstrap_servers": [addr], "topic": "t"} | kwargs
    with pytest.raises(exc, match=name):
        KafkaProducer(**args)


@pytest.mark.parametrize("value", [[1, 2], "text", b'{"a": 1}', None, 3.0])
def test_producer_refuses_non_dict_values(addr: str, broker: MemoryBroker, value) -> None:
    producer = KafkaProducer([addr], "t")
    with pytest.raises(TypeError, match="value must be a dict"):
        producer.produce(value)
    assert producer.delivered == 0
    assert all(broker.offsets("t", p) == (0, 0) for p in range(broker.partitions("t")))


def test_producer_rejects_bad_key_and_use_after_close(addr: str) -> None:
    producer = KafkaProducer([addr], "t")
    with pytest.raises(TypeError, match="key"):
        producer.produce({"a": 1}, key=12)
    producer.close()
    with pytest.raises(RuntimeError, match="closed"):
        producer.produce({"a": 1})


# -- bugs -----------------------------------------------------------------------------------
def test_commit_after_rebalance_does_not_rewind_other_members(addr: str) -> None:
    broker = get_broker(addr)
    broker.create_topic("t", 2)
    produce_seq(addr, "t", 8)
    c1 = KafkaConsumer([addr], "t", group_id="grp")
    assert len(consume_all(c1, 8)) == 8  # stored offsets for both partitions
    c2 = KafkaConsumer([addr], "t", group_id="grp")
    (taken,) = c2.assignment()
    for i in range(3):
        broker.produce("t", b'{"seq": %d}' % (100 + i), partition=taken[1])
    consume_all(c2, 10)
    c2.commit()
    end = broker.offsets(*taken)[1]
    assert broker.committed("grp", *taken) == end
    c1.poll(timeout_ms=10)  # c1 learns about the rebalance
    c1.commit()
    assert broker.committed("grp", *taken) == end


def test_busy_partition_does_not_starve_others(addr: str) -> None:
    broker = get_broker(addr)
    broker.create_topic("t", 2)
    for _ in range(5):
        broker.produce("t", b"{}", partition=1)
    consumer = KafkaConsumer([addr], "t", group_id="grp", max_poll_records=5)
    seen = set()
    for _ in range(5):
        for _ in range(5):
            broker.produce("t", b"{}", partition=0)
        seen |= {m["partition"] for m in consumer.poll(timeout_ms=20)}
    assert seen == {0, 1}


def test_stored_records_add_nothing_to_garbage_collections():
    # a million retained records must not make every full collection walk them
    import gc

    broker = MemoryBroker("gc-walk", partitions=1)
    broker.produce("t", b"warm-up")
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(10):
        broker.produce_many("t", [b'{"v": 1}'] * 1000, key=b"k", headers=[("h", b"v")])
    gc.collect()
    gc.collect()  # a record seen before its headers tuple is let go on the next pass
    assert len(gc.get_objects()) - before < 100
    assert broker.fetch("t", 0, 1, 1)[0].value == b'{"v": 1}'


class _FakeKafkaError:
    def __init__(self, fatal: bool) -> None:
        self._fatal = fatal

    def fatal(self) -> bool:
        return self._fatal

    def name(self) -> str:
        return "_FATAL" if self._fatal else "_MSG_TIMED_OUT"

    def __str__(self) -> str:
        return "Local: Fatal error" if self._fatal else "Local: Message timed out"


class _FakeLibrdkafkaProducer:
    """Stands in for confluent_kafka.Producer: the first instance fails fatally."""

    made: list[_FakeLibrdkafkaProducer] = []

    def __init__(self, conf: dict) -> None:
        self.conf = conf
        self.sent: list[bytes] = []
        _FakeLibrdkafkaProducer.made.append(self)

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None) -> None:
        self.sent.append(value)
        broken = self is _FakeLibrdkafkaProducer.made[0]
        on_delivery(_FakeKafkaError(fatal=True) if broken else None, None)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_producer_starts_anew_after_a_fatal_error(monkeypatch) -> None:
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _FakeLibrdkafkaProducer)
    monkeypatch.setattr(_FakeLibrdkafkaProducer, "made", [])
    producer = KafkaProducer(["127.0.0.1:9"], "t", config={"acks": "all"})
    producer.produce({"seq": 1})  # the first producer fails it fatally
    assert (producer.failed, producer.delivered, producer.restarts) == (1, 0, 0)
    assert producer.last_error == "Local: Fatal error"
    producer.produce({"seq": 2})  # goes through a new producer, same settings
    producer.produce({"seq": 3})
    first, second = _FakeLibrdkafkaProducer.made
    assert (producer.failed, producer.delivered, producer.restarts) == (1, 2, 1)
    assert second.conf == first.conf and second.conf["acks"] == "all"
    assert [orjson.loads(v)["seq"] for v in second.sent] == [2, 3]
    # a fatal error reported through the error callback also starts a new producer
    second.conf["error_cb"](_FakeKafkaError(fatal=True))
    second.conf["error_cb"](_FakeKafkaError(fatal=False))
    producer.produce({"seq": 4})
    assert producer.restarts == 2 and len(_FakeLibrdkafkaProducer.made) == 3
