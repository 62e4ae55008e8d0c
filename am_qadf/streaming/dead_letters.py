"""Dead-letter copies of messages the pipeline cannot take: bounded in size whatever
the original was, with the reason and where the original came from in headers."""

from __future__ import annotations

from typing import Any, NamedTuple

from .serialization import dumps

__all__ = ["DeadLetter", "bounded_copy", "HEADER_ROOM"]

#: Bytes kept for headers and key around the payload (reason <= 1,000, key <= 1,024,
#: topic names <= 249, numbers) so a copy fits the producer's maximum message size.
HEADER_ROOM = 4096
_REASON_BYTES = 1000
_KEY_BYTES = 1024


class DeadLetter(NamedTuple):
    """One dead-letter record, ready to produce."""

    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


def bounded_copy(
    msg: dict[str, Any], reason: str, suffix: str, max_bytes: int, limit: int | None = None
) -> DeadLetter:
    """The dead-letter record of polled message ``msg``: its payload cut to ``max_bytes``
    (and to ``limit`` minus :data:`HEADER_ROOM`, the producer's maximum message size,
    when given), its key to 1,024 bytes, ``reason`` to 1,000; headers ``error``,
    ``source_topic``, ``source_partition``, ``source_offset``, ``source_size`` and, when
    cut, ``truncated``.

    >>> d = bounded_copy({"topic": "t", "partition": 0, "offset": 9, "raw": b"x" * 50},
    ...                  "too big", ".dlq", max_bytes=10)
    >>> d.topic, d.value, dict(d.headers)["truncated"], dict(d.headers)["source_size"]
    ('t.dlq', b'xxxxxxxxxx', b'1', b'50')
    """
    raw = msg.get("raw")
    if raw is None:
        raw = dumps(msg.get("value"))
    budget = max_bytes if limit is None else max(0, min(max_bytes, limit - HEADER_ROOM))
    key = msg.get("key")
    if isinstance(key, str):
        key = key.encode("utf-8", "replace")
    headers = [
        ("error", reason.encode("utf-8", "replace")[:_REASON_BYTES]),
        ("source_topic", str(msg["topic"]).encode()),
        ("source_partition", str(msg["partition"]).encode()),
        ("source_offset", str(msg["offset"]).encode()),
        ("source_size", str(len(raw)).encode()),
    ]
    if len(raw) > budget:
        raw = bytes(raw[:budget])
        headers.append(("truncated", b"1"))
    return DeadLetter(str(msg["topic"]) + suffix, raw, key[:_KEY_BYTES] if key else key, headers)
