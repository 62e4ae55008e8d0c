"""The StreamingClient's collaborators used on their own, as the fleet worker uses them:
the consume loop with a handler of its own, the dead-letter writer, the offset tracker
and the history batch writer."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from am_qadf.streaming import KafkaConsumer, StreamingConfig, get_broker
from am_qadf.streaming.batch_writer import BatchWriter
from am_qadf.streaming.consumer_loop import ConsumerLoop, Split, make_consumer
from am_qadf.streaming.dead_letter_writer import DeadLetterWriter
from am_qadf.streaming.offset_tracker import OffsetTracker
from am_qadf.streaming.streaming_client import build_storage

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _cfg(tmp_path: Any) -> StreamingConfig:
    return StreamingConfig.embedded(
        storage_path=str(tmp_path),
        kafka_bootstrap_servers=[f"memory://collab-{uuid.uuid4().hex}"],
        kafka_topic="line",
        consumer_group_id="grp",
    )


def _send(cfg: StreamingConfig, n: int) -> None:
    broker = get_broker(cfg.kafka_bootstrap_servers)
    for i in range(n):
        t = (T0 + timedelta(milliseconds=i)).isoformat()
        broker.produce("line", orjson.dumps({"i": i, "value": 1.0, "timestamp": t}), partition=0)


def _drain(cfg: StreamingConfig, topic: str, expected: int) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(cfg.kafka_bootstrap_servers, topic, group_id=uuid.uuid4().hex)
    out: list[dict[str, Any]] = []
    for _ in range(50):
        out += consumer.poll(timeout_ms=20)
        if len(out) >= expected:
            break
    consumer.close()
    return out


class _TwoMachines:
    """A handler like the worker's: messages i < 2 belong to a machine whose processing
    fails (set aside by the handler); message 4 cannot be stored (an object value)."""

    def __init__(self) -> None:
        self.loop: ConsumerLoop | None = None

    def split(self, msgs: list[dict[str, Any]]) -> Split:
        return Split(msgs, [m["value"] for m in msgs], [], [])

    def process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        assert self.loop is not None
        failing = [m for m, v in zip(good, values, strict=True) if v["i"] < 2]
        if failing:
            self.loop.set_aside(failing, "machine A failed")
        kept = [(m, v) for m, v in zip(good, values, strict=True) if v["i"] >= 2]
        for _, v in kept:
            if v["i"] == 4:
                v["bad"] = object()
        return [m for m, _ in kept], [v for _, v in kept]


def test_loop_sets_aside_exactly_what_failed_and_commits_the_rest(tmp_path: Any) -> None:
    cfg = _cfg(tmp_path)
    _send(cfg, 6)
    handler = _TwoMachines()
    storage = build_storage(cfg)
    got: list[dict[str, Any]] = []
    loop = ConsumerLoop(
        make_consumer(cfg, ["line"]),
        handler,
        BatchWriter(storage),
        DeadLetterWriter.from_config(cfg),
        callback=got.extend,
        auto_commit=False,
    )
    handler.loop = loop
    loop.start()
    try:
        assert loop.wait_until(lambda: len(got) == 3 and loop.dead_letters.count == 3)
        broker = get_broker(cfg.kafka_bootstrap_servers)
        assert loop.wait_until(lambda: broker.committed("grp", "line", 0) == 6)
    finally:
        loop.stop()
    assert sorted(m["value"]["i"] for m in got) == [2, 3, 5]
    dead = {
        int(d["headers"]["source_offset"]): d["headers"]["error"]
        for d in _drain(cfg, "line.dlq", 3)
    }
    assert sorted(dead) == [0, 1, 4]  # the refused document's own message, none other
    assert dead[0] == b"machine A failed"
    assert dead[4].startswith(b"storage refused")
    stored = storage.query_stream_history(*WIDE)
    assert sorted(d["i"] for d in stored) == [2, 3, 5]
    assert loop.errors == 2 and loop.state == "stopped"
    with pytest.raises(RuntimeError, match="starts once"):
        loop.start()  # its consumer is closed


def test_unconfirmed_dead_letters_stop_the_loop_uncommitted(tmp_path: Any, monkeypatch) -> None:
    cfg = _cfg(tmp_path)
    _send(cfg, 3)
    writer = DeadLetterWriter.from_config(cfg)

    def refuse(msgs: list[dict[str, Any]], reasons: list[str]) -> None:
        raise RuntimeError("dead-letter copies not confirmed")

    monkeypatch.setattr(writer, "write", refuse)

    class AllBad:
        def split(self, msgs: list[dict[str, Any]]) -> Split:
            return Split([], [], msgs, ["bad"] * len(msgs))

        def process(self, good: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
            return good, values

    loop = ConsumerLoop(make_consumer(cfg, ["line"]), AllBad(), BatchWriter(None), writer)
    loop.start()
    assert loop.wait_until(lambda: loop.state == "failed")
    loop.stop()
    assert get_broker(cfg.kafka_bootstrap_servers).committed("grp", "line", 0) in (None, 0)


def test_dead_letter_writer_retries_small_then_raises_and_counts_only_confirmed(
    monkeypatch,
) -> None:
    from am_qadf.streaming import kafka_producer

    sizes: list[int] = []

    def refuse(self: Any, records: list[Any], timeout: float = 30.0) -> list[str]:
        sizes.extend(len(r.value) for r in records)
        return ["not confirmed"] * len(records)

    monkeypatch.setattr(kafka_producer.KafkaProducer, "produce_confirmed", refuse)
    writer = DeadLetterWriter([f"memory://dlw-{uuid.uuid4().hex}"], "line")
    msg = {"topic": "line", "partition": 0, "offset": 1, "raw": b"x" * 5000}
    with pytest.raises(RuntimeError, match="not confirmed"):
        writer.write([msg], ["too odd"])
    assert sizes == [5000, 1024] and writer.count == 0
    with pytest.raises(ValueError, match="1 messages but 2 reasons"):
        writer.write([msg], ["a", "b"])
    writer.close()


def test_offset_tracker_holds_offsets_while_documents_are_spooled() -> None:
    stored: list[list[int]] = []

    class Consumer:
        def store_offsets(self, msgs: list[dict[str, Any]]) -> None:
            stored.append([m["offset"] for m in msgs])

        def commit(self) -> None:
            stored.append([-1])

    tracker = OffsetTracker()
    tracker.finished([{"offset": 0}], spooled=True)
    tracker.finished([{"offset": 1}], spooled=True)
    assert tracker.commit(Consumer(), auto_commit=True) == 0 and tracker.held == 2
    tracker.release_held()
    assert tracker.commit(Consumer(), auto_commit=True) == 2
    assert stored == [[0, 1]]  # auto-commit: stored, no explicit commit
    tracker.finished([{"offset": 2}], spooled=False)
    tracker.commit(Consumer(), auto_commit=False)
    assert stored[-2:] == [[2], [-1]]


def test_batch_writer_waits_on_a_full_spool_and_gives_up_only_when_stopped(tmp_path: Any) -> None:
    from am_qadf.streaming import SpoolFullError

    class FullStorage:
        spooled = 10
        spool_limit = 10

        def store_prepared(self, docs: Any) -> int:
            raise SpoolFullError("spool full")

    paused: list[str] = []

    class Consumer:
        def pause(self) -> None:
            paused.append("pause")

        def resume(self) -> None:
            paused.append("resume")

    writer = BatchWriter(FullStorage())  # type: ignore[arg-type]
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert writer.store(object(), stop, Consumer()) is False  # type: ignore[arg-type]
    assert paused == ["pause"] and writer.backpressure


def test_offsets_wait_for_a_checkpoint_and_the_last_one_comes_at_stop(tmp_path: Any) -> None:
    """A loop with ``checkpoint`` stores offsets only when it says so (a fleet worker
    saves its machines' state first), and asks once more, ``final``, when it stops."""
    cfg = _cfg(tmp_path)
    _send(cfg, 4)
    allow = threading.Event()
    asked: list[bool] = []

    def checkpoint(final: bool) -> bool:
        asked.append(final)
        return final or allow.is_set()

    class Keep:
        def split(self, msgs: list[dict[str, Any]]) -> Split:
            return Split(msgs, [m["value"] for m in msgs], [], [])

        def process(self, good: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
            return good, values

    got: list[dict[str, Any]] = []
    loop = ConsumerLoop(
        make_consumer(cfg, ["line"]), Keep(), BatchWriter(None),
        DeadLetterWriter.from_config(cfg), callback=got.extend, auto_commit=False,
        checkpoint=checkpoint,
    )  # fmt: skip
    broker = get_broker(cfg.kafka_bootstrap_servers)
    loop.start()
    try:
        assert loop.wait_until(lambda: len(got) == 4 and len(asked) >= 3)
        assert broker.committed("grp", "line", 0) is None  # no checkpoint, no commit
        allow.set()
        assert loop.wait_until(lambda: broker.committed("grp", "line", 0) == 4)
        _send(cfg, 2)
        allow.clear()
        assert loop.wait_until(lambda: len(got) == 6)
    finally:
        loop.stop()
    assert asked[-1] is True and broker.committed("grp", "line", 0) == 6
