"""Which polled messages are done, so their offsets may be committed.

A batch is done once it is processed, stored (or set aside as dead letters) and
delivered. Offsets of batches whose history documents still wait in the storage
spool are held until the spool is written: a commit never runs ahead of history.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Protocol

__all__ = ["OffsetTracker", "OffsetSink"]


class OffsetSink(Protocol):
    """What offsets are committed to: a :class:`~am_qadf.streaming.KafkaConsumer`."""

    def store_offsets(self, messages: list[dict[str, Any]]) -> None: ...

    def commit(self) -> None: ...


class OffsetTracker:
    """Offsets of finished batches, handed from the thread that finishes them to the
    thread that commits them.

    >>> class Consumer:  # stands in for a KafkaConsumer
    ...     def store_offsets(self, msgs): print("stored", [m["offset"] for m in msgs])
    ...     def commit(self): print("committed")
    >>> t = OffsetTracker()
    >>> t.finished([{"offset": 1}], spooled=True)  # its documents wait in the spool
    >>> t.commit(Consumer(), auto_commit=False)
    0
    >>> t.finished([{"offset": 2}], spooled=False)  # history caught up: both are done
    >>> t.commit(Consumer(), auto_commit=False)
    stored [1, 2]
    committed
    2
    """

    def __init__(self) -> None:
        self._done: deque[list[dict[str, Any]]] = deque()  # appended and popped atomically
        self._held: list[dict[str, Any]] = []
        self._held_lock = threading.Lock()

    @property
    def held(self) -> int:
        """Messages finished but held while their documents wait in the spool."""
        return len(self._held)

    @property
    def pending(self) -> bool:
        """Whether finished offsets wait to be stored (:meth:`commit`)."""
        return bool(self._done)

    def finished(self, msgs: list[dict[str, Any]], *, spooled: bool) -> None:
        """``msgs`` went through the pipeline; ``spooled``: documents (theirs or
        earlier ones) still wait in the storage spool, so hold the offsets."""
        with self._held_lock:
            self._held.extend(msgs)
            if not spooled:
                self._done.append(self._held)
                self._held = []

    def release_held(self) -> None:
        """The spool was written: the held offsets are done."""
        with self._held_lock:
            if self._held:
                self._done.append(self._held)
                self._held = []

    def commit(self, consumer: OffsetSink, *, auto_commit: bool) -> int:
        """Store the done offsets in ``consumer`` (and commit them unless the consumer
        auto-commits stored offsets); returns how many messages they covered."""
        done: list[dict[str, Any]] = []
        while self._done:
            done.extend(self._done.popleft())
        if done:
            consumer.store_offsets(done)
            if not auto_commit:
                consumer.commit()
        return len(done)
