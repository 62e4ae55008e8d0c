"""The dead-letter writer: bounded copies of messages the pipeline cannot take, each
confirmed by the broker before the caller moves on (offsets move only after)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from .dead_letters import bounded_copy
from .kafka_producer import KafkaProducer
from .streaming_config import StreamingConfig

__all__ = ["DeadLetterWriter", "MINIMAL_COPY_BYTES"]

log = logging.getLogger(__name__)

#: Payload kept when even the bounded copy was refused (e.g. by a broker whose limit
#: is below the producer's).
MINIMAL_COPY_BYTES = 1024


class DeadLetterWriter:
    """Write dead letters of ``topic``'s messages to ``topic + suffix`` on
    ``bootstrap_servers`` (the producer is made on first use; thread-safe).

    >>> w = DeadLetterWriter(["memory://doc-dlw"], "line")
    >>> w.write([{"topic": "line", "partition": 0, "offset": 3, "value": {"x": "?"}}],
    ...         ["field 'x' must be a number"])
    >>> w.count, w.producer.topic
    (1, 'line.dlq')
    >>> w.close()
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        *,
        suffix: str = ".dlq",
        max_bytes: int = 64 * 1024,
        kafka_config: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        self.bootstrap_servers = list(bootstrap_servers)
        self.topic = topic
        self.suffix = suffix
        self.max_bytes = int(max_bytes)
        self.kafka_config = dict(kafka_config or {})
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._count = 0

    @classmethod
    def from_config(cls, config: StreamingConfig) -> DeadLetterWriter:
        """The writer ``config`` describes (its topic, suffix, size limit, broker).

        >>> DeadLetterWriter.from_config(StreamingConfig.embedded()).suffix
        '.dlq'
        """
        return cls(
            config.kafka_bootstrap_servers,
            config.kafka_topic,
            suffix=config.dead_letter_suffix,
            max_bytes=config.dead_letter_max_bytes,
            kafka_config=config.kafka_config,
        )

    @property
    def producer(self) -> KafkaProducer | None:
        """The producer (None until the first dead letter, and after :meth:`close`)."""
        return self._producer

    @property
    def count(self) -> int:
        """Dead letters the broker confirmed since start or :meth:`reset_count`."""
        return self._count

    def reset_count(self) -> None:
        """Zero :attr:`count`."""
        with self._lock:
            self._count = 0

    def write(self, msgs: list[dict[str, Any]], reasons: list[str]) -> None:
        """Write bounded copies of polled ``msgs`` (one reason each) and wait until the
        broker confirmed each; a copy it refused goes again with a 1 kB payload.
        Raises ``RuntimeError`` if even that is not confirmed: the caller must then
        stop without committing, so a restart delivers the messages again."""
        if len(msgs) != len(reasons):
            raise ValueError(f"{len(msgs)} messages but {len(reasons)} reasons")
        if not msgs:
            return
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    self.bootstrap_servers, self.topic + self.suffix, config=self.kafka_config
                )
            dlq = self._producer
        size = self.max_bytes
        for attempt in range(2):
            copies = [
                bounded_copy(m, r, self.suffix, size, dlq.max_message_bytes)
                for m, r in zip(msgs, reasons, strict=True)
            ]
            errors = dlq.produce_confirmed(copies)
            failed = [i for i, e in enumerate(errors) if e]
            with self._lock:
                self._count += len(msgs) - len(failed)
            if not failed:
                return
            if attempt:
                raise RuntimeError(
                    f"{len(failed)} dead-letter copies not confirmed: {errors[failed[0]]}"
                )
            log.warning(
                "%d dead-letter copies refused (%s); sending 1 kB copies",
                len(failed),
                errors[failed[0]],
            )
            msgs = [msgs[i] for i in failed]
            reasons = [f"{reasons[i]} (dead-letter copy refused: {errors[i]})" for i in failed]
            size = MINIMAL_COPY_BYTES

    def close(self) -> None:
        """Close the producer (a later :meth:`write` makes a new one); the count stays."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
