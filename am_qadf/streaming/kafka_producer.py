"""Publish JSON messages to a Kafka topic (confluent-kafka) or the in-process broker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .memory_broker import get_broker, is_memory_address
from .serialization import dumps

__all__ = ["KafkaProducer", "normalize_servers"]

log = logging.getLogger(__name__)


def normalize_servers(bootstrap_servers: list[str] | str) -> list[str]:
    """Validate bootstrap servers and return them as a list.

    >>> normalize_servers("a:1,b:2")
    ['a:1', 'b:2']
    """
    if isinstance(bootstrap_servers, str):
        servers = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
    elif isinstance(bootstrap_servers, list | tuple):
        servers = [str(s).strip() for s in bootstrap_servers]
    else:
        raise TypeError(
            "bootstrap_servers must be a list of 'host:port' strings, "
            f"got {type(bootstrap_servers).__name__}"
        )
    if not servers or any(not s for s in servers):
        raise ValueError(f"bootstrap_servers must not be empty, got {bootstrap_servers!r}")
    return servers


def _encode_value(value: Any, name: str) -> bytes:
    """JSON bytes of one message value, which must be a dict (``name`` says which)."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    return dumps(value)


def _encode_key(key: str | bytes | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise TypeError(f"key must be str, bytes or None, got {type(key).__name__}")


class KafkaProducer:
    """Produce dict messages (JSON-encoded) to ``topic``.

    ``memory://`` addresses use the in-process broker; anything else is a Kafka cluster.
    Extra librdkafka settings (SASL/SSL, acks, ...) go in ``config``.
    ``delivered`` and ``failed`` count delivery reports; ``last_error`` is the newest
    delivery error, or None. After a fatal error (the idempotent producer can lose its
    sequence with a restarted broker) the messages it held fail, and the next message
    goes through a new producer; ``restarts`` counts those.

    >>> producer = KafkaProducer(["memory://doc-producer"], "demo")
    >>> producer.produce({"sensor_id": "sensor1", "value": 100.0}, key="sensor1")
    >>> producer.flush()
    >>> producer.close()
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        *,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = normalize_servers(bootstrap_servers)
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        self.topic = topic
        self._lock = threading.Lock()
        self._closed = False
        self.delivered = 0
        self.failed = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._fatal: str | None = None
        if is_memory_address(self.bootstrap_servers):
            self._broker = get_broker(self.bootstrap_servers)
            self._producer = None
        else:
            from confluent_kafka import Producer

            self._broker = None
            self._conf = {
                "bootstrap.servers": ",".join(self.bootstrap_servers),
                "linger.ms": 5,
                "enable.idempotence": True,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                "error_cb": self._on_error,
                **(config or {}),
            }
            self._producer = Producer(self._conf)

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = str(err)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.last_error is None:
            log.error("Kafka delivery failed: %s", err)
        self.last_error = str(err)
        if err.fatal() or err.name() == "_FATAL":
            self._fatal = str(err)

    def _restart_if_fatal(self) -> None:
        # librdkafka's answer to a fatal error is a new producer instance
        if self._fatal is not None:
            from confluent_kafka import Producer

            log.warning("Kafka producer failed fatally (%s); starting a new one", self._fatal)
            self._producer, self._fatal = Producer(self._conf), None
            self.restarts += 1

    def produce_raw(
        self,
        value: bytes | None,
        key: str | bytes | None = None,
        *,
        topic: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce already-encoded bytes (used for dead-letter messages and replays)."""
        if self._closed:
            raise RuntimeError("producer is closed")
        topic = topic or self.topic
        k = _encode_key(key)
        if self._producer is None:
            self._broker.produce(topic, value, key=k, headers=headers)
            self.delivered += 1
            return
        self._produce_one(topic, value, k, headers, self._on_delivery)
        self._producer.poll(0)

    def _produce_one(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Any,
    ) -> None:
        self._restart_if_fatal()
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:  # local queue full: let librdkafka send, then retry
                self._producer.poll(0.05)

    @property
    def max_message_bytes(self) -> int | None:
        """The largest message this producer sends (librdkafka's ``message.max.bytes``);
        None for the in-process broker, which has no limit."""
        if self._producer is None:
            return None
        return int(self._conf.get("message.max.bytes", 1_000_000))

    def produce_confirmed(
        self,
        records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]],
        timeout: float = 30.0,
    ) -> list[str | None]:
        """Produce ``(topic, value, key, headers)`` records and wait for their delivery
        reports: one entry per record, None when the broker confirmed it, else why not
        (refused at once, refused by the broker, or unconfirmed after ``timeout`` s).

        >>> p = KafkaProducer(["memory://doc-confirmed"], "demo")
        >>> p.produce_confirmed([("demo.dlq", b"{}", None, [("error", b"bad")])])
        [None]
        """
        if self._closed:
            raise RuntimeError("producer is closed")
        errors: list[str | None] = [None] * len(records)
        if self._producer is None:
            for i, (topic, value, key, headers) in enumerate(records):
                try:
                    self._broker.produce(topic, value, key=key, headers=headers)
                    self.delivered += 1
                except Exception as exc:
                    errors[i] = f"{type(exc).__name__}: {exc}"
            return errors
        from confluent_kafka import KafkaException

        reported = [False] * len(records)

        def report(i: int) -> Any:
            def on_delivery(err: Any, msg: Any) -> None:
                reported[i] = True
                if err is not None:
                    errors[i] = str(err)
                self._on_delivery(err, msg)

            return on_delivery

        for i, (topic, value, key, headers) in enumerate(records):
            try:
                self._produce_one(topic, value, key, headers, report(i))
            except (KafkaException, ValueError, TypeError) as exc:  # e.g. too large
                reported[i] = True
                errors[i] = f"refused by the producer: {exc}"
        self._producer.flush(timeout)
        for i, done in enumerate(reported):
            if not done:
                errors[i] = f"delivery not confirmed within {timeout} s"
        return errors

    def produce(self, value: dict[str, Any], key: str | None = None, **kwargs: Any) -> None:
        """Produce one message; ``value`` is JSON-encoded (numpy values and datetimes too).

        Keyword ``topic=`` sends to another topic, ``headers=`` adds headers.
        """
        self.produce_raw(_encode_value(value, "value"), key, **kwargs)

    def produce_batch(self, values: Iterable[dict[str, Any]], key: str | None = None) -> int:
        """Produce many messages with the same key; return how many were queued.

        Every value is encoded before any is sent, so a bad one sends nothing.
        """
        if self._closed:
            raise RuntimeError("producer is closed")
        encoded = [_encode_value(v, f"values[{i}]") for i, v in enumerate(values)]
        return self.produce_batch_raw(encoded, key)

    def produce_batch_raw(self, values: Sequence[bytes], key: str | bytes | None = None) -> int:
        """Produce already-encoded message values with the same key (a source that
        encodes a whole batch at once); return how many were queued. The key is
        encoded once and delivery reports are served once per batch.

        >>> p = KafkaProducer(["memory://doc-batch-raw"], "demo")
        >>> p.produce_batch_raw([b'{"v":1}', b'{"v":2}'], key="m1")
        2
        """
        if self._closed:
            raise RuntimeError("producer is closed")
        if not all(type(v) is bytes for v in values):
            raise TypeError("values must be bytes (encoded messages)")
        k = _encode_key(key)
        if self._producer is None:  # in-process broker: one step for the whole batch
            self._broker.produce_many(self.topic, list(values), key=k)
            self.delivered += len(values)
            return len(values)
        self._restart_if_fatal()
        produce, topic, report = self._producer.produce, self.topic, self._on_delivery
        for raw in values:
            try:
                produce(topic, raw, k, on_delivery=report)
            except BufferError:  # local queue full: let librdkafka send, then retry
                self._producer.poll(0.05)
                self._produce_one(topic, raw, k, None, report)
        self._producer.poll(0)
        return len(values)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is delivered (or ``timeout`` seconds pass)."""
        if self._producer is not None:
            remaining = self._producer.flush(timeout)
            if remaining:
                raise TimeoutError(f"{remaining} messages still undelivered after {timeout} s")

    def close(self) -> None:
        """Flush and release the producer."""
        if not self._closed:
            try:
                self.flush()
            finally:
                self._closed = True
                self._producer = None
