"""A stream with 10 k malformed messages mixed into valid ones, on the real broker:
every bad message is dead-lettered with its reason, every good one is processed and
stored, memory stays bounded, nothing crashes."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from am_qadf.streaming import KafkaConsumer, MessageValidator, StreamingClient, StreamingConfig
from tests.unit.test_fuzz_consumer import PAYLOADS, run_fuzzed_stream

PLATE = {"x": (0.0, 250.0), "y": (0.0, 250.0), "z": (0.0, 300.0)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _good(i: int) -> bytes:
    t = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(milliseconds=i)
    return orjson.dumps(
        {"seq": i, "timestamp": t.isoformat(), "x": 10.0, "y": 20.0, "z": 0.04, "value": 1.0}
    )


def _bad(kind: str, i: int) -> bytes:
    base = {"seq": -i, "timestamp": "2026-06-01T00:00:00Z", "x": 10.0, "y": 20.0, "z": 0.04}
    if kind == "not_json":
        return b"\x00garbage{" + str(i).encode()
    if kind == "wrong_type":
        return orjson.dumps({**base, "x": "ten"})
    if kind == "non_finite":
        return b'{"seq": 1, "x": 1e999, "y": 1.0, "z": 1.0}'
    if kind == "outside_plate":
        return orjson.dumps({**base, "x": 9.0e5})
    if kind == "missing_fields":
        return orjson.dumps({"seq": -i, "value": 1.0})
    if kind == "huge_string":
        return orjson.dumps({**base, "note": "A" * 900_000})
    if kind == "deep_nesting":
        return b'{"a":' * 300 + b"1" + b"}" * 300
    if kind == "bad_timestamp":
        return orjson.dumps({**base, "timestamp": "yesterday-ish"})
    if kind == "not_an_object":
        return b"[1, 2, 3]"
    raise AssertionError(kind)


KINDS = [
    "not_json",
    "wrong_type",
    "non_finite",
    "outside_plate",
    "missing_fields",
    "huge_string",
    "deep_nesting",
    "bad_timestamp",
    "not_an_object",
]


def test_fuzzed_stream(kafka_bootstrap, unique_topic, tmp_path):
    n_good, n_bad = 20_000, 10_000
    rng = random.Random(99)
    plan = ["good"] * n_good + [rng.choice(KINDS) for _ in range(n_bad)]
    rng.shuffle(plan)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000, "linger.ms": 10}
    )
    good_i = bad_i = 0
    for kind in plan:
        if kind == "good":
            payload = _good(good_i)
            good_i += 1
        else:
            payload = _bad(kind, bad_i)
            bad_i += 1
        while True:
            try:
                producer.produce(unique_topic, payload, key=b"fuzz")
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0

    validator = MessageValidator(required=("timestamp", "x", "y", "z"), bounds=PLATE)
    config = StreamingConfig(
        kafka_bootstrap_servers=[kafka_bootstrap],
        consumer_group_id=f"fuzz-{uuid.uuid4().hex[:8]}",
        enable_redis_cache=False,
        storage_path=str(tmp_path),
        max_poll_records=500,
        buffer_size=5_000,
    )
    seen: list[int] = []
    client = StreamingClient(config, validator=validator)
    rss_start = _rss_mb()
    client.start_consumer([unique_topic], lambda msgs: seen.extend(m["value"]["seq"] for m in msgs))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        stats = client.get_stream_statistics()
        if len(seen) >= n_good and stats["dead_lettered"] >= n_bad:
            break
        time.sleep(0.2)
    client.stop_consumer()
    rss_growth = _rss_mb() - rss_start

    stats = client.get_stream_statistics()
    assert sorted(seen) == list(range(n_good)), "every good message is processed exactly once"
    assert stats["dead_lettered"] == n_bad
    assert client.storage.stats["documents_inserted"] == n_good
    assert rss_growth < 400, f"memory grew by {rss_growth:.0f} MB"

    dlq = KafkaConsumer(
        [kafka_bootstrap],
        unique_topic + ".dlq",
        group_id=f"d-{uuid.uuid4().hex[:8]}",
        max_poll_records=1000,
    )
    dead = []
    deadline = time.monotonic() + 120
    while len(dead) < n_bad and time.monotonic() < deadline:
        dead.extend(dlq.poll(timeout_ms=500))
    dlq.close()
    assert len(dead) == n_bad
    reasons = Counter(m["headers"]["error"].decode().split(":")[0].split(" ")[0] for m in dead)
    assert all("error" in m["headers"] and m["headers"]["error"] for m in dead)
    assert all(m["headers"]["source_topic"].decode() == unique_topic for m in dead)
    print("dead-letter reasons:", dict(reasons), f"rss growth {rss_growth:.0f} MB")


def test_one_megabyte_poison_message_is_set_aside(kafka_bootstrap, unique_topic, tmp_path):
    """A ~1 MB message, legal for a producer on default settings: its dead-letter copy
    is bounded (so it fits the producer's limit with headers), confirmed, the stream
    goes on and the offset is committed past it (a restart does not stop on it again)."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap})  # message.max.bytes default
    huge = orjson.dumps({"seq": -1, "note": ""})
    huge = huge[:-2] + b"Z" * (999_900 - len(huge)) + b'"}'  # the most such a producer sends
    for payload in (_good(0), huge, _good(1), _good(2)):
        producer.produce(unique_topic, payload, key=b"one")
    assert producer.flush(30) == 0
    group = f"mb-{uuid.uuid4().hex[:8]}"
    config = StreamingConfig(
        kafka_bootstrap_servers=[kafka_bootstrap],
        consumer_group_id=group,
        enable_redis_cache=False,
        storage_path=str(tmp_path),
        enable_auto_commit=False,
    )
    seen: list[int] = []
    client = StreamingClient(config)
    client.start_consumer([unique_topic], lambda msgs: seen.extend(m["value"]["seq"] for m in msgs))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stats = client.get_stream_statistics()
        if len(seen) >= 3 and stats["dead_lettered"] >= 1:
            break
        time.sleep(0.1)
    stats = client.get_stream_statistics()
    client.stop_consumer()
    assert sorted(seen) == [0, 1, 2] and stats["dead_lettered"] == 1
    assert stats["consumer_state"] == "running"  # it went on, never "failed"

    dlq = KafkaConsumer([kafka_bootstrap], unique_topic + ".dlq", group_id=uuid.uuid4().hex)
    dead: list[dict] = []
    deadline = time.monotonic() + 60
    while not dead and time.monotonic() < deadline:
        dead = dlq.poll(timeout_ms=500)
    dlq.close()
    (copy,) = dead
    h = copy["headers"]
    assert copy["size"] == config.dead_letter_max_bytes and h["truncated"] == b"1"
    assert int(h["source_size"]) == len(huge) and h["source_offset"] == b"1"
    assert b"exceeds the limit" in h["error"]

    # the same group again: only what came after is delivered (a sentinel shows when)
    producer.produce(unique_topic, _good(3), key=b"one")
    assert producer.flush(30) == 0
    again: list[int] = []
    second = StreamingClient(config)
    second.start_consumer([unique_topic], lambda m: again.extend(x["value"]["seq"] for x in m))
    deadline = time.monotonic() + 120
    while 3 not in again and time.monotonic() < deadline:
        time.sleep(0.1)
    second.stop_consumer()
    assert again == [3] and second.get_stream_statistics()["dead_lettered"] == 0
    print(f"1 MB poison: dead-letter copy {copy['size']} bytes of {len(huge)}")


@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.generate],  # random streams only: no shrinking toward empty ones
    suppress_health_check=list(HealthCheck),
)
@given(payloads=st.lists(PAYLOADS, min_size=40, max_size=40))
def test_fuzzed_bytes_and_json_on_kafka(payloads, kafka_bootstrap, tmp_path_factory):
    """The hypothesis fuzz of tests/unit/test_fuzz_consumer.py on the real broker:
    8 x 40 arbitrary messages."""
    topic = f"fuzz-{uuid.uuid4().hex[:10]}"
    rss, t = _rss_mb(), time.monotonic()
    figures = run_fuzzed_stream(
        [kafka_bootstrap], topic, payloads, str(tmp_path_factory.mktemp("kfuzz"))
    )
    print("kafka fuzz:", figures, f"rss +{_rss_mb() - rss:.0f} MB, {time.monotonic() - t:.0f} s")
