"""The batch writer: processed messages into history, exactly once.

Documents carry the idempotent ``_id`` ``topic:partition:offset``, so a batch
delivered again (after a restart, or after its partition moved to another consumer)
is not stored twice. While history is unreachable and the spool is full, the writer
pauses the consumer and waits, instead of dropping documents.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .history_store import STORABLE_TYPES
from .message_columns import ColumnCache
from .stream_storage import PreparedBatch, SpoolFullError, StreamStorage

__all__ = ["BatchWriter", "history_id"]

log = logging.getLogger(__name__)


class Pausable(Protocol):
    """What the writer pauses while the spool is full: a KafkaConsumer."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


def history_id(msg: dict[str, Any]) -> str:
    """The idempotent history ``_id`` of polled message ``msg``.

    >>> history_id({"topic": "line", "partition": 2, "offset": 41})
    'line:2:41'
    """
    return f"{msg['topic']}:{msg['partition']}:{msg['offset']}"


class BatchWriter:
    """Prepare and store processed batches in ``storage``'s history (nothing to do when
    ``storage`` is None or ``history`` is off).

    >>> import tempfile
    >>> from datetime import UTC, datetime
    >>> storage = StreamStorage(path=tempfile.mkdtemp() + "/history.sqlite3")
    >>> writer = BatchWriter(storage)
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> polled = [{"topic": "t", "partition": 0, "offset": i} for i in (7, 8)]
    >>> docs = writer.prepare(polled, [{"value": 1.0, "timestamp": t}] * 2)
    >>> writer.store(docs, threading.Event()), writer.store(docs, threading.Event())
    (True, True)
    >>> len(storage.query_stream_history(t, t))  # stored twice, kept once
    2
    """

    def __init__(self, storage: StreamStorage | None, *, history: bool = True) -> None:
        self.storage = storage
        self.history = bool(history)
        self._backpressure = False

    @property
    def backpressure(self) -> bool:
        """True while the consumer is paused because the spool is full."""
        return self._backpressure

    @property
    def spooled(self) -> int:
        """Documents waiting in the spool for history to come back."""
        return self.storage.spooled if self.storage is not None else 0

    def flush_spool(self) -> bool:
        """Try to write the spool; True when it is empty afterwards."""
        return self.storage is None or self.storage.flush_spool()

    def prepare(
        self,
        msgs: list[dict[str, Any]],
        values: list[Any],
        columns: ColumnCache | None = None,
    ) -> PreparedBatch | None:
        """The history documents of processed ``values`` (from polled ``msgs``, same
        order) with their idempotent ids; None when history is off. A document that
        cannot be stored is listed in ``rejected`` and the others are kept. ``columns``
        (the cache that validated ``values``) spares a type scan."""
        storage = self.storage
        if storage is None or not self.history:
            return None
        ids = list(map(history_id, msgs))
        # JSON scalars (known from validation) with timestamps now datetimes: no scan
        plain = columns is not None and columns.value_types(values) <= STORABLE_TYPES
        return storage.prepare_batch(values, ids, check_types=not plain, isolate=True)

    def store(
        self,
        docs: PreparedBatch | None,
        stop: threading.Event,
        consumer: Pausable | None = None,
        may_resume: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Store ``docs``; while the spool is full, pause ``consumer`` and retry every
        0.5 s (resumed once the spool is half empty, if ``may_resume()``: not when the
        user paused it meanwhile). False if ``stop`` was set while the spool was full
        (nothing stored: the offsets must stay uncommitted)."""
        storage = self.storage
        if storage is None or docs is None:
            return True
        while True:
            try:
                storage.store_prepared(docs)
                break
            except SpoolFullError:
                if stop.is_set():
                    return False
                if not self._backpressure:
                    log.warning("history spool full: pausing consumption until storage is back")
                    if consumer is not None:
                        consumer.pause()
                    self._backpressure = True
                stop.wait(0.5)
        if self._backpressure and storage.spooled < storage.spool_limit // 2:
            self._backpressure = False
            if consumer is not None and may_resume():
                consumer.resume()
        return True

    def cache_latest(self, msg: dict[str, Any]) -> None:
        """Keep ``msg`` as its topic's latest message in the cache (Redis), if any."""
        storage = self.storage
        if storage is not None:
            storage.cache_recent_data(
                f"latest:{msg['topic']}", {"message": msg["value"], "offset": msg["offset"]}
            )
