"""Fuzz the consumer path (hypothesis): arbitrary bytes and arbitrary JSON, mixed with
plausible messages, go through the background consumer on memory://. Whatever
arrives, the consumer keeps running, every message is either stored (and delivered)
or dead-lettered with a reason, and memory stays bounded (signal buffers within
``max_signals``). :func:`run_fuzzed_stream` is shared with the integration test that
does the same on the real broker."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from am_qadf.streaming import KafkaConsumer, KafkaProducer, StreamingClient, StreamingConfig
from am_qadf.voxelization.voxel_grid import VoxelGrid

pytestmark = pytest.mark.timeout(600)

_KEYS = st.one_of(
    st.sampled_from(["x", "y", "z", "layer", "timestamp", "value", "temperature", "build_id"]),
    st.text(max_size=80),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "yesterday"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)
_PLAUSIBLE = st.fixed_dictionaries(
    {
        "timestamp": st.just("2026-06-01T00:00:00Z"),
        "x": st.floats(0, 250),
        "y": st.floats(0, 250),
        "z": st.floats(0, 10),
        "value": st.floats(0, 2000),
    },
    optional={"meta": _JSON, "layer": _JSON, "temperature": _JSON},
)
_TAGGED = st.sampled_from([{"__datetime__": "x"}, {"__float__": "nan"}, {"__dict__": 1}])


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()  # any int, as a line may send


#: One payload: raw bytes, any JSON, a plausible message (maybe with odd fields), or a
#: plausible one carrying a tag-shaped value.
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    _JSON.map(_encode),
    _PLAUSIBLE.map(_encode),
    st.builds(lambda m, t: _encode({**m, "meta": t}), _PLAUSIBLE, _TAGGED),
)


def run_fuzzed_stream(
    servers: list[str], topic: str, payloads: list[bytes], tmp: str, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Produce ``payloads`` to ``topic``, consume them with a StreamingClient (default
    processors, embedded history under ``tmp``) and check the invariants; return figures."""
    producer = KafkaProducer(servers, topic)
    for p in payloads:
        producer.produce_raw(p, b"fuzz")
    producer.flush()
    producer.close()
    config = StreamingConfig(
        kafka_bootstrap_servers=servers,
        kafka_topic=topic,
        consumer_group_id=f"fuzz-{uuid.uuid4().hex[:8]}",
        enable_redis_cache=False,
        storage_path=tmp,
        max_signals=16,
    )
    grid = VoxelGrid((0, 0, 0), (250, 250, 300), 1.0)
    client = StreamingClient(config).with_default_processors(grid)
    delivered: list[int] = []
    lock = threading.Lock()

    def callback(msgs: list[dict]) -> None:
        with lock:
            delivered.extend(m["offset"] for m in msgs)

    client.start_consumer([topic], callback)
    n = len(payloads)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            stats = client.get_stream_statistics()
            if len(delivered) + stats["dead_lettered"] >= n or stats["consumer_state"] != "running":
                break
            time.sleep(0.02)
        stats = client.get_stream_statistics()
        assert stats["consumer_state"] == "running", stats
    finally:
        client.stop_consumer()
    stats = client.get_stream_statistics()
    stored = client.storage.history.count()
    assert len(delivered) + stats["dead_lettered"] == n, (len(delivered), stats)
    assert len(set(delivered)) == len(delivered) == stored  # stored once each
    assert len(client.buffers) <= config.max_signals
    dead: list[dict] = []
    if stats["dead_lettered"]:
        dlq = KafkaConsumer(servers, topic + ".dlq", group_id=uuid.uuid4().hex)
        end = time.monotonic() + 60
        while len(dead) < stats["dead_lettered"] and time.monotonic() < end:
            dead += dlq.poll(timeout_ms=100)
        dlq.close()
    assert len(dead) == stats["dead_lettered"]
    assert all(m["headers"].get("error") for m in dead)
    # one key, one partition, a new topic: offsets 0 .. n-1, each accounted for once
    assert sorted(delivered + [int(m["headers"]["source_offset"]) for m in dead]) == list(range(n))
    reasons = Counter(m["headers"]["error"].decode()[:32] for m in dead)
    return {
        "stored": stored,
        "dead_lettered": len(dead),
        "buffers": len(client.buffers),
        "reasons": dict(reasons.most_common(5)),
    }


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(payloads=st.lists(PAYLOADS, min_size=1, max_size=60))
def test_fuzzed_stream_on_memory_broker(payloads, tmp_path_factory) -> None:
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    run_fuzzed_stream([f"memory://fuzz-{uuid.uuid4().hex}"], "line", payloads, tmp)
