"""An in-process Kafka-like broker, selected by the bootstrap server ``memory://[name]``.

It keeps Kafka's semantics that the pipeline relies on: topics with partitions and
offsets, consumer groups with committed offsets and partition assignment, seek, pause.
Values are stored as bytes so encoding and decoding behave exactly as with Kafka.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from .serialization import compact

__all__ = ["MemoryBroker", "Record", "get_broker", "is_memory_address", "DEFAULT_PARTITIONS"]

DEFAULT_PARTITIONS = 3
#: Records kept per partition before the oldest are dropped; ``AMQADF_MEMORY_RETENTION``
#: overrides it.
DEFAULT_RETENTION = int(os.environ.get("AMQADF_MEMORY_RETENTION", 1_000_000))
#: Bytes (values, keys, headers plus a per-record overhead) kept per topic, all its
#: partitions together (Kafka's ``retention.bytes`` is per partition; here each
#: simulated build is keyed to its own partition, and a per-partition budget let the
#: broker's memory grow by a step with each new build). The broker holds at most about
#: 1.25 x 96 MiB per topic, whatever the rate; the partition written to keeps the most.
#: ``AMQADF_MEMORY_RETENTION_BYTES`` overrides it.
DEFAULT_RETENTION_BYTES = int(os.environ.get("AMQADF_MEMORY_RETENTION_BYTES", 96 * 2**20))
#: Python object overhead of one stored record (Record, bytes and int objects), measured.
RECORD_OVERHEAD = 160

_brokers: dict[str, MemoryBroker] = {}
_brokers_lock = threading.Lock()


def is_memory_address(bootstrap_servers: list[str] | str) -> bool:
    """True when the bootstrap servers select the in-process broker.

    >>> is_memory_address(["memory://"]), is_memory_address("localhost:9092")
    (True, False)
    """
    servers = [bootstrap_servers] if isinstance(bootstrap_servers, str) else bootstrap_servers
    return any(str(s).startswith("memory://") for s in servers)


def get_broker(bootstrap_servers: list[str] | str = "memory://") -> MemoryBroker:
    """Return the process-wide broker named by a ``memory://name`` address.

    >>> get_broker("memory://doc") is get_broker(["memory://doc"])
    True
    """
    servers = [bootstrap_servers] if isinstance(bootstrap_servers, str) else bootstrap_servers
    address = next(s for s in servers if str(s).startswith("memory://"))
    name = str(address)[len("memory://") :].strip("/")
    with _brokers_lock:
        if name not in _brokers:
            _brokers[name] = MemoryBroker(name)
        return _brokers[name]


class Record(NamedTuple):
    """One stored message (as :meth:`MemoryBroker.fetch` returns it)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class _Partition:
    base_offset: int = 0
    # (timestamp_ms, key, value, headers) per offset from base_offset on. Plain tuples
    # of atoms, which the garbage collector stops tracking once it has seen them: with
    # objects here (a slotted Record, even a named tuple) every full collection walked
    # the million records, 0.3-0.4 s with the whole process stopped, every few seconds
    # at 10 k msg/s.
    records: list[tuple[int, bytes | None, bytes | None, tuple]] = field(default_factory=list)
    nbytes: int = 0  # estimated memory held by ``records``

    @property
    def end_offset(self) -> int:
        return self.base_offset + len(self.records)


@dataclass
class _Group:
    members: dict[str, set[str]] = field(default_factory=dict)  # member id -> topics
    generation: int = 0


def _first_ts(part: _Partition) -> int:
    return part.records[0][0]


def _record_bytes(entry: tuple[int, bytes | None, bytes | None, tuple]) -> int:
    _, key, value, headers = entry
    return RECORD_OVERHEAD + len(value or b"") + len(key or b"") + _headers_bytes(headers)


def _headers_bytes(headers: tuple[tuple[str, bytes], ...]) -> int:
    return sum(len(k) + len(v) for k, v in headers)


class MemoryBroker:
    """Topics, partitions, offsets and consumer groups held in this process.

    >>> b = MemoryBroker("doc")
    >>> b.produce("t", b"1", key=b"k")[1]
    0
    >>> b.fetch("t", b.partition_for("t", b"k"), 0, 10)[0].value
    b'1'
    """

    def __init__(
        self,
        name: str = "",
        partitions: int = DEFAULT_PARTITIONS,
        retention: int = DEFAULT_RETENTION,
        retention_bytes: int = DEFAULT_RETENTION_BYTES,
    ) -> None:
        if retention < 1 or retention_bytes < 1:
            raise ValueError(
                f"retention and retention_bytes must be >= 1, got {retention}, {retention_bytes}"
            )
        self.name = name
        self.default_partitions = partitions
        self.retention = retention
        self.retention_bytes = retention_bytes
        self._topics: dict[str, list[_Partition]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin: dict[str, int] = {}
        self._cond = threading.Condition()

    # -- topics -------------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` if it does not exist (topics are also auto-created on use)."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        n = self.default_partitions if partitions is None else int(partitions)
        if n < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        with self._cond:
            if topic not in self._topics:
                self._topics[topic] = [_Partition() for _ in range(n)]
                for group in self._groups.values():
                    if any(topic in t for t in group.members.values()):
                        group.generation += 1

    def topics(self) -> list[str]:
        """Names of existing topics."""
        with self._cond:
            return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        """Number of partitions of ``topic`` (created on first use)."""
        self.create_topic(topic)
        with self._cond:
            return len(self._topics[topic])

    def partition_for(self, topic: str, key: bytes | None) -> int:
        """Partition a message goes to: by key hash, else round robin."""
        n = self.partitions(topic)
        if key is not None:
            return zlib.crc32(key) % n
        with self._cond:
            p = self._round_robin.get(topic, 0)
            self._round_robin[topic] = (p + 1) % n
            return p

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[int, int]:
        """Append one message; return ``(partition, offset)``."""
        return self.produce_many(topic, [value], key, headers, partition, timestamp_ms)

    def produce_many(
        self,
        topic: str,
        values: list[bytes | None],
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[int, int]:
        """Append messages that share a key, headers and timestamp, in one step; return
        ``(partition, offset of the first)``. Like Kafka's sticky partitioner, messages
        without a key all go to one partition (chosen round robin per call).

        >>> b = MemoryBroker(partitions=1)
        >>> b.produce_many("t", [b"1", b"2"], key=b"k")
        (0, 0)
        >>> b.offsets("t", 0)
        (0, 2)
        """
        self.create_topic(topic)
        p = self.partition_for(topic, key) if partition is None else int(partition)
        ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        hdrs = tuple((k, compact(v)) for k, v in headers or ())
        key = None if key is None else compact(key)
        with self._cond:
            parts = self._topics[topic]
            if not 0 <= p < len(parts):
                raise ValueError(f"partition {p} does not exist in topic {topic!r}")
            part = parts[p]
            first = part.end_offset
            data = [None if v is None else compact(v) for v in values]
            n = len(data)
            part.records.extend(
                zip(repeat(ts, n), repeat(key, n), data, repeat(hdrs, n), strict=True)
            )
            per_record = RECORD_OVERHEAD + len(key or b"") + _headers_bytes(hdrs)
            part.nbytes += n * per_record + sum(len(d) for d in data if d)
            if len(part.records) > self.retention * 5 // 4:
                self._trim(part, self.retention_bytes)
            if sum(q.nbytes for q in parts) > self.retention_bytes * 5 // 4:
                self._trim_topic(parts, part)
            self._cond.notify_all()
            return p, first

    def _trim(self, part: _Partition, max_bytes: int) -> None:
        """Drop the oldest records of ``part`` down to the count retention and
        ``max_bytes``; the 1/4 slack in :meth:`produce` makes this run once per many
        messages, not on every one."""
        sizes = np.fromiter((_record_bytes(r) for r in part.records), np.int64, len(part.records))
        kept = np.cumsum(sizes[::-1])[::-1]  # bytes of each record and everything newer
        drop = max(len(part.records) - self.retention, int(np.count_nonzero(kept > max_bytes)))
        drop = min(drop, len(part.records) - 1)  # always keep the newest record
        del part.records[:drop]
        part.base_offset += drop
        part.nbytes = int(sizes[drop:].sum())

    def _trim_topic(self, parts: list[_Partition], current: _Partition) -> None:
        """Bring a topic back to ``retention_bytes``: the other partitions give up their
        oldest records first (oldest first record first), then ``current``."""
        excess = sum(p.nbytes for p in parts) - self.retention_bytes
        others = sorted((p for p in parts if p is not current and p.records), key=_first_ts)
        for part in [*others, current]:
            if excess <= 0:
                break
            before = part.nbytes
            self._trim(part, max(before - excess, 0))
            excess -= before - part.nbytes

    def fetch(self, topic: str, partition: int, offset: int, max_records: int) -> list[Record]:
        """Records of one partition from ``offset`` on (at most ``max_records``)."""
        with self._cond:
            part = self._topics[topic][partition]
            first = max(offset, part.base_offset)  # read under the lock: a trim moves it
            start = first - part.base_offset
            entries = part.records[start : start + max_records]
        return [Record(topic, partition, first + i, *e) for i, e in enumerate(entries)]

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """``(earliest, end)`` offsets of a partition (end = next offset to be written)."""
        self.create_topic(topic)
        with self._cond:
            part = self._topics[topic][partition]
            return part.base_offset, part.end_offset

    def wait_for_data(self, timeout_s: float) -> None:
        """Block until something is produced or ``timeout_s`` passes."""
        with self._cond:
            self._cond.wait(timeout=max(0.0, timeout_s))

    # -- groups -------------------------------------------------------------------------
    def join(self, group: str, member: str, topics: list[str]) -> None:
        """Add a member to a group; the group rebalances."""
        for t in topics:
            self.create_topic(t)
        with self._cond:
            g = self._groups.setdefault(group, _Group())
            g.members[member] = set(topics)
            g.generation += 1

    def leave(self, group: str, member: str) -> None:
        """Remove a member; its partitions go to the others."""
        with self._cond:
            g = self._groups.get(group)
            if g and g.members.pop(member, None) is not None:
                g.generation += 1

    def assignment(self, group: str, member: str) -> tuple[int, list[tuple[str, int]]]:
        """``(generation, [(topic, partition), ...])`` assigned to ``member``.

        Partitions of each topic are dealt round robin over the sorted members that
        subscribe to it, so the assignment is deterministic.
        """
        with self._cond:
            g = self._groups[group]
            mine: list[tuple[str, int]] = []
            for topic in sorted(g.members.get(member, ())):
                subs = sorted(m for m, ts in g.members.items() if topic in ts)
                idx = subs.index(member)
                n = len(self._topics[topic])
                mine.extend((topic, p) for p in range(idx, n, len(subs)))
            return g.generation, mine

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        """Store committed offsets (next offset to read) for a group."""
        with self._cond:
            for (topic, p), off in offsets.items():
                self._committed[(group, topic, p)] = int(off)

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        """Committed offset of a group on a partition, or None."""
        with self._cond:
            return self._committed.get((group, topic, partition))

    def describe(self) -> dict[str, Any]:
        """Topic sizes and groups, for health views and tests."""
        with self._cond:
            return {
                "topics": {
                    t: [(p.base_offset, p.end_offset) for p in parts]
                    for t, parts in self._topics.items()
                },
                "groups": {name: sorted(g.members) for name, g in self._groups.items()},
            }
