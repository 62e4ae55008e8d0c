"""Consume JSON messages from Kafka (confluent-kafka) or the in-process broker.

Both backends give the same semantics: consumer groups, committed offsets, pause and
resume of the assigned partitions, seek to the beginning before or after assignment,
and offsets stored only for messages the caller says are processed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime
from functools import lru_cache
from operator import itemgetter, methodcaller
from typing import Any

import numpy as np
import orjson

from .kafka_producer import normalize_servers
from .memory_broker import Record, get_broker, is_memory_address
from .timestamps import from_epoch_us

__all__ = ["KafkaConsumer", "decode_record"]

log = logging.getLogger(__name__)

_RESETS = ("earliest", "latest")


@lru_cache(maxsize=4096)
def _record_time(timestamp_ms: int) -> datetime:
    # producers batch, so thousands of records share one millisecond timestamp
    return from_epoch_us(timestamp_ms * 1000)


def decode_record(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: Any = None,
    keep_raw: bool = False,
) -> dict[str, Any]:
    """Build the message dict ``poll`` returns; undecodable values carry ``error`` and ``raw``.

    >>> decode_record("t", 0, 5, 0, b"k", b'{"v": 1}')["value"]
    {'v': 1}
    >>> decode_record("t", 0, 6, 0, None, b"not json")["error"][:12]
    'invalid JSON'
    """
    decoded, error = None, None
    if value is None:
        error = "empty message value"
    else:
        try:
            decoded = orjson.loads(value)
        except Exception as exc:  # orjson.JSONDecodeError is a ValueError
            error = f"invalid JSON: {exc}"
    msg: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": _record_time(int(timestamp_ms)),
        "key": key.decode("utf-8", "replace") if key is not None else None,
        "value": decoded,
        "size": len(value) if value is not None else 0,
    }
    if headers:
        msg["headers"] = {k: v for k, v in headers}
    if keep_raw or error:
        msg["raw"] = value if value is not None else b""
    if error:
        msg["error"] = error
    return msg


_TOPIC, _PARTITION, _OFFSET = itemgetter("topic"), itemgetter("partition"), itemgetter("offset")
_TOPIC_PARTITION = itemgetter("topic", "partition")
_ERROR = methodcaller("error")


def _next_offsets(messages: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """``{(topic, partition): highest offset + 1}`` over ``messages``.

    >>> _next_offsets([{"topic": "t", "partition": 0, "offset": o} for o in (4, 9, 7)])
    {('t', 0): 10}
    """
    offsets = list(map(_OFFSET, messages))
    topics, partitions = set(map(_TOPIC, messages)), set(map(_PARTITION, messages))
    if len(topics) == len(partitions) == 1:  # no tuple per message
        return {(topics.pop(), partitions.pop()): max(offsets) + 1}
    tps = list(map(_TOPIC_PARTITION, messages))
    index = {tp: i for i, tp in enumerate(dict.fromkeys(tps))}
    highest = np.full(len(index), -1, dtype=np.int64)
    np.maximum.at(highest, list(map(index.__getitem__, tps)), offsets)
    return {tp: int(o) + 1 for tp, o in zip(index, highest, strict=True)}


class _MemoryBackend:
    """Group member on the in-process broker."""

    def __init__(self, servers: list[str], topics: list[str], group: str, reset: str) -> None:
        self.broker = get_broker(servers)
        self.topics, self.group, self.reset = topics, group, reset
        self.member = f"{group}-{uuid.uuid4().hex[:8]}"
        self.positions: dict[tuple[str, int], int] = {}
        self.generation = -1
        self.paused = False
        self.seek_pending = False
        self._start = 0
        self.broker.join(group, self.member, topics)

    def _refresh(self) -> None:
        gen, assigned = self.broker.assignment(self.group, self.member)
        if gen == self.generation:
            return
        self.generation = gen
        new: dict[tuple[str, int], int] = {}
        for tp in assigned:
            earliest, end = self.broker.offsets(*tp)
            committed = self.broker.committed(self.group, *tp)
            if self.seek_pending:
                new[tp] = earliest
            elif tp in self.positions:
                new[tp] = self.positions[tp]
            elif committed is not None:
                new[tp] = max(committed, earliest)
            else:
                new[tp] = earliest if self.reset == "earliest" else end
        if assigned:
            self.seek_pending = False
        self.positions = new

    def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._refresh()
            out: list[Record] = []
            if not self.paused and self.positions:
                # start at a different partition each call so none is starved
                tps = list(self.positions.items())
                self._start = (self._start + 1) % len(tps)
                for tp, pos in tps[self._start :] + tps[: self._start]:
                    if len(out) >= max_records:
                        break
                    recs = self.broker.fetch(tp[0], tp[1], pos, max_records - len(out))
                    if recs:
                        out.extend(recs)
                        self.positions[tp] = recs[-1].offset + 1
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            self.broker.wait_for_data(min(remaining, 0.1))

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.broker.commit(self.group, offsets)

    def seek_to_beginning(self) -> None:
        self._refresh()
        if not self.positions:
            self.seek_pending = True
        for tp in self.positions:
            self.positions[tp] = self.broker.offsets(*tp)[0]

    def assignment(self) -> list[tuple[str, int]]:
        self._refresh()
        return sorted(self.positions)

    def lag(self) -> dict[tuple[str, int], int]:
        return {tp: self.broker.offsets(*tp)[1] - pos for tp, pos in self.positions.items()}

    def close(self) -> None:
        self.broker.leave(self.group, self.member)


class _ConfluentBackend:
    """Group member on a real Kafka cluster through librdkafka."""

    def __init__(
        self,
        servers: list[str],
        topics: list[str],
        group: str,
        reset: str,
        auto_commit: bool,
        auto_commit_interval_ms: int,
        session_timeout_ms: int,
        extra: dict[str, Any],
    ) -> None:
        from confluent_kafka import Consumer

        conf: dict[str, Any] = {
            "bootstrap.servers": ",".join(servers),
            "group.id": group,
            "enable.auto.commit": auto_commit,
            "auto.commit.interval.ms": auto_commit_interval_ms,
            # Offsets are stored only for processed messages (at-least-once).
            "enable.auto.offset.store": False,
            "auto.offset.reset": reset,
            "session.timeout.ms": session_timeout_ms,
            "enable.partition.eof": False,
        }
        conf.update(extra)
        # cooperative (incremental) rebalancing: a rebalance moves only the partitions
        # that change owner; the callbacks then add or remove just those
        self.cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        self.paused = False
        self.seek_pending = False
        self._assigned: list[Any] = []
        # (topic, partition) -> epoch seconds of its latest assignment to this member
        self.assigned_at: dict[tuple[str, int], float] = {}
        self.consumer = Consumer(conf)
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        now = time.time()
        self.assigned_at.update({(tp.topic, tp.partition): now for tp in partitions})
        if self.seek_pending:
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
            self.seek_pending = False
        if self.cooperative:  # only the partitions added; the others keep their position
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self._assigned = list(consumer.assignment())
        if self.paused and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if self.cooperative:
            consumer.incremental_unassign(partitions)
            self._assigned = list(consumer.assignment())
        else:
            self._assigned = []

    def fetch(self, max_records: int, timeout_s: float) -> list[Any]:
        from confluent_kafka import KafkaException

        msgs = self.consumer.consume(num_messages=max_records, timeout=timeout_s)
        if not any(map(_ERROR, msgs)):  # the usual case: no Python call per message
            return msgs
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.fatal():
                raise KafkaException(err)
            else:
                log.warning("Kafka consumer: %s", err)
        return good

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if tps:
            self.consumer.commit(offsets=tps, asynchronous=False)

    def store(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        # Only partitions still assigned: one revoked since its messages were polled
        # (a cooperative rebalance takes single partitions away) belongs to another
        # member now, which re-reads it from the last commit; librdkafka refuses to
        # store it (_STATE). The callbacks run inside poll, in this same thread, so
        # the assignment cannot change between the check and the store.
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in assigned]
        if not tps:
            return
        try:
            self.consumer.store_offsets(offsets=tps)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                raise
            log.info("offsets of revoked partitions not stored: %s", exc)

    def seek_to_beginning(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        assigned = self.consumer.assignment()
        if not assigned:
            self.seek_pending = True
            return
        for tp in assigned:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))

    def pause(self) -> None:
        self.paused = True
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(assigned)

    def resume(self) -> None:
        self.paused = False
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.resume(assigned)

    def assignment(self) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in self.consumer.assignment())

    def lag(self) -> dict[tuple[str, int], int]:
        out = {}
        assigned = self.consumer.assignment()
        for tp in self.consumer.position(assigned) if assigned else []:
            _low, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
            if tp.offset >= 0 and high >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return out

    def close(self) -> None:
        self.consumer.close()


class KafkaConsumer:
    """Consume JSON messages from ``topic`` as part of consumer group ``group_id``.

    ``memory://`` addresses use the in-process broker; anything else is a Kafka cluster.
    A group with no committed offset starts at the earliest message (``auto_offset_reset``).
    By default every polled message counts as processed for ``commit()``; pass
    ``store_on_poll=False`` and call :meth:`store_offsets` for at-least-once delivery.
    ``keep_raw=True`` keeps each message's original bytes under ``raw``.

    >>> from am_qadf.streaming import KafkaProducer
    >>> KafkaProducer(["memory://doc-consumer"], "demo").produce({"value": 1.0})
    >>> consumer = KafkaConsumer(["memory://doc-consumer"], "demo", group_id="doc")
    >>> [m["value"] for m in consumer.poll(timeout_ms=100)]
    [{'value': 1.0}]
    >>> consumer.commit(); consumer.close()
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str | list[str],
        group_id: str = "am_qadf_consumers",
        auto_commit: bool = True,
        *,
        max_poll_records: int = 100,
        auto_offset_reset: str = "earliest",
        auto_commit_interval_ms: int = 5000,
        session_timeout_ms: int = 30000,
        store_on_poll: bool = True,
        keep_raw: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = normalize_servers(bootstrap_servers)
        topics = [topic] if isinstance(topic, str) else list(topic)
        if not topics or any(not isinstance(t, str) or not t for t in topics):
            raise ValueError(f"topic must be a non-empty string or list of them, got {topic!r}")
        if not isinstance(group_id, str) or not group_id:
            raise ValueError(f"group_id must be a non-empty string, got {group_id!r}")
        if auto_offset_reset not in _RESETS:
            raise ValueError(
                f"auto_offset_reset must be one of {_RESETS}, got {auto_offset_reset!r}"
            )
        if int(max_poll_records) < 1:
            raise ValueError(f"max_poll_records must be >= 1, got {max_poll_records}")
        self.topics = topics
        self.topic = topics[0]
        self.group_id = group_id
        self.auto_commit = bool(auto_commit)
        self.max_poll_records = int(max_poll_records)
        self.auto_commit_interval_ms = int(auto_commit_interval_ms)
        self.store_on_poll = store_on_poll
        self.keep_raw = keep_raw
        self._lock = threading.RLock()
        self._stored: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self._closed = False
        if is_memory_address(self.bootstrap_servers):
            self._backend: Any = _MemoryBackend(
                self.bootstrap_servers, topics, group_id, auto_offset_reset
            )
        else:
            self._backend = _ConfluentBackend(
                self.bootstrap_servers,
                topics,
                group_id,
                auto_offset_reset,
                self.auto_commit,
                self.auto_commit_interval_ms,
                int(session_timeout_ms),
                dict(config or {}),
            )

    @property
    def is_memory(self) -> bool:
        """True when this consumer reads the in-process broker."""
        return isinstance(self._backend, _MemoryBackend)

    @property
    def paused(self) -> bool:
        """True while consumption is paused."""
        return self._backend.paused

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("consumer is closed")

    def poll(self, timeout_ms: int = 1000) -> list[dict[str, Any]]:
        """Return up to ``max_poll_records`` messages, waiting at most ``timeout_ms``.

        Each message is a dict with ``topic, partition, offset, timestamp, key, value``
        (and ``size``, the encoded size in bytes); one whose value is not JSON also has
        ``error`` and ``raw``.
        """
        if timeout_ms < 0:
            raise ValueError(f"timeout_ms must be >= 0, got {timeout_ms}")
        with self._lock:
            self._check_open()
            records = self._backend.fetch(self.max_poll_records, timeout_ms / 1000.0)
            if self.is_memory:
                msgs = [
                    decode_record(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.timestamp_ms,
                        r.key,
                        r.value,
                        r.headers,
                        self.keep_raw,
                    )
                    for r in records
                ]
            else:
                msgs = [
                    decode_record(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.timestamp()[1],
                        m.key(),
                        m.value(),
                        m.headers(),
                        self.keep_raw,
                    )
                    for m in records
                ]
            if self.store_on_poll and msgs:
                self.store_offsets(msgs)
            self._maybe_auto_commit()
            return msgs

    def store_offsets(self, messages: list[dict[str, Any]]) -> None:
        """Mark ``messages`` as processed; the next commit covers them."""
        latest = _next_offsets(messages)
        if not latest:
            return
        with self._lock:
            for tp, off in latest.items():
                if off > self._stored.get(tp, -1):
                    self._stored[tp] = off
            if not self.is_memory:
                self._backend.store(latest)

    def _maybe_auto_commit(self) -> None:
        # librdkafka commits stored offsets itself; the memory backend needs the timer.
        due = (time.monotonic() - self._last_commit) * 1000 >= self.auto_commit_interval_ms
        if self.is_memory and self.auto_commit and due:
            self.commit()

    def commit(self) -> None:
        """Commit the offsets of processed messages (synchronously)."""
        with self._lock:
            self._check_open()
            # Only partitions this member still owns: after a rebalance another member
            # commits the rest, and an old offset here would move its progress back.
            owned = set(self._backend.assignment())
            self._stored = {tp: o for tp, o in self._stored.items() if tp in owned}
            if self._stored:
                self._backend.commit(dict(self._stored))
            self._last_commit = time.monotonic()

    def consume(self, timeout_ms: int = 1000) -> list[dict[str, Any]]:
        """The published AM-QADF's name for :meth:`poll`: the same messages, the same
        wait.

        >>> from am_qadf.streaming import KafkaProducer
        >>> KafkaProducer(["memory://doc-consume"], "demo").produce({"value": 2.0})
        >>> consumer = KafkaConsumer(["memory://doc-consume"], "demo", group_id="doc")
        >>> [m["value"] for m in consumer.consume(100)]
        [{'value': 2.0}]
        >>> consumer.commit_offset(); consumer.close()
        """
        return self.poll(timeout_ms)

    def commit_offset(self) -> None:
        """The published AM-QADF's name for :meth:`commit` (see :meth:`consume`)."""
        self.commit()

    def seek_to_beginning(self) -> None:
        """Replay every assigned partition from its earliest offset (also before assignment)."""
        with self._lock:
            self._check_open()
            self._backend.seek_to_beginning()

    def pause(self) -> None:
        """Stop delivering messages; polling goes on so the group keeps its partitions."""
        with self._lock:
            self._check_open()
            if self.is_memory:
                self._backend.paused = True
            else:
                self._backend.pause()

    def resume(self) -> None:
        """Deliver messages again after :meth:`pause`."""
        with self._lock:
            self._check_open()
            if self.is_memory:
                self._backend.paused = False
            else:
                self._backend.resume()

    def assignment(self) -> list[tuple[str, int]]:
        """``(topic, partition)`` pairs currently assigned to this consumer."""
        with self._lock:
            self._check_open()
            return self._backend.assignment()

    def assigned_at(self, topic: str, partition: int) -> float | None:
        """When (epoch seconds) ``(topic, partition)`` was last assigned to this member,
        None if never or unknown (the in-process broker does not tell).

        >>> KafkaConsumer(["memory://doc-at"], "demo", group_id="g").assigned_at("demo", 0)
        """
        return getattr(self._backend, "assigned_at", {}).get((topic, partition))

    def lag(self) -> int:
        """Messages in the assigned partitions not yet delivered to this consumer."""
        return int(sum(self.lag_by_partition().values()))

    def lag_by_partition(self) -> dict[tuple[str, int], int]:
        """:meth:`lag` per assigned ``(topic, partition)`` ({} when closed or unknown).

        >>> KafkaConsumer(["memory://doc-lag"], "demo", group_id="g").lag_by_partition()
        {}
        """
        with self._lock:
            if self._closed:
                return {}
            try:
                return {tp: int(n) for tp, n in self._backend.lag().items()}
            except Exception:  # lag is informational; a broker hiccup must not break callers
                return {}

    def close(self) -> None:
        """Commit processed offsets (when auto-commit is on), leave the group, release."""
        with self._lock:
            if self._closed:
                return
            try:
                if self.auto_commit and self.is_memory:
                    self.commit()
            finally:
                self._closed = True
                self._backend.close()
