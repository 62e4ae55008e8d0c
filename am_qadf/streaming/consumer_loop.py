"""The consume loop: poll, split, dead-letter, process, store, deliver, commit.

One consumer thread polls, has a :class:`BatchHandler` split each batch into valid
and invalid messages and process the valid ones, dead-letters the invalid ones
(:class:`~am_qadf.streaming.dead_letter_writer.DeadLetterWriter`, confirmed before
anything else happens) and prepares history documents
(:class:`~am_qadf.streaming.batch_writer.BatchWriter`). A writer thread behind it
stores them, delivers the batch to the callback and reports it finished to the
:class:`~am_qadf.streaming.offset_tracker.OffsetTracker`; the consumer thread then
commits those offsets between two polls. So offsets move only after a batch is
stored and its dead letters are confirmed (at-least-once delivery; history stays
exactly-once through its idempotent ids). If a dead letter cannot be written the
loop stops uncommitted (state ``"failed"``): a restart delivers the batch again.

:class:`~am_qadf.streaming.StreamingClient` runs one with its processors as the
handler; a fleet worker runs one whose handler routes each message to its machine.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from .batch_writer import BatchWriter
from .dead_letter_writer import DeadLetterWriter
from .kafka_consumer import KafkaConsumer
from .message_columns import ColumnCache
from .message_validation import Split
from .offset_tracker import OffsetTracker
from .stream_storage import PreparedBatch
from .streaming_config import StreamingConfig

__all__ = ["BatchHandler", "ConsumerLoop", "Split", "make_consumer", "run_action", "wait_until"]

log = logging.getLogger(__name__)

#: Batches processed but not yet stored and delivered; bounds the writer's queue.
IN_FLIGHT = 4
CALLBACK_ATTEMPTS = 3


class BatchHandler(Protocol):
    """What a :class:`ConsumerLoop` asks of its user, in the consumer thread."""

    def split(self, msgs: list[dict[str, Any]]) -> Split:
        """Valid and invalid messages of a polled batch (and why the invalid are)."""
        ...

    def process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """Process the valid messages; return the messages (and values) to store and
        deliver. Raise to have the whole batch dead-lettered; a handler that sets part
        of it aside itself (:meth:`ConsumerLoop.set_aside`) returns the rest."""
        ...


class _Batch(NamedTuple):
    msgs: list[dict[str, Any]]  # every polled message: their offsets are stored together
    good: list[dict[str, Any]]  # the processed ones, to deliver
    docs: PreparedBatch | None  # their documents, ready to store (None: nothing to store)


def make_consumer(config: StreamingConfig, topics: list[str]) -> KafkaConsumer:
    """The consumer a loop polls: ``config``'s group and settings, offsets stored
    only when a batch is finished, raw payloads kept for dead letters.

    >>> make_consumer(StreamingConfig.embedded(), ["line"]).is_memory
    True
    """
    return KafkaConsumer(
        config.kafka_bootstrap_servers,
        list(topics),
        group_id=config.consumer_group_id,
        auto_commit=config.enable_auto_commit,
        max_poll_records=config.max_poll_records,
        auto_offset_reset=config.auto_offset_reset,
        auto_commit_interval_ms=config.auto_commit_interval_ms,
        session_timeout_ms=config.session_timeout_ms,
        store_on_poll=False,
        keep_raw=True,
        config=config.kafka_config,
    )


class ConsumerLoop:
    """Consume with ``consumer`` in two background threads (see the module).

    ``callback(messages)`` (optional) gets each finished batch; after three failures
    the batch is dead-lettered. ``on_error(reason, n)`` hears every counted error
    (by default they are only counted in :attr:`errors`). ``checkpoint(final)``
    (optional) runs in the consumer thread before finished offsets are stored for
    commit, and says whether they may be now: a user that saves, with the offsets
    it covers, state built from the messages (which covers at least those offsets)
    lets the next owner of the partitions continue from it; ``final`` at the end.

    >>> from am_qadf.streaming import KafkaProducer
    >>> cfg = StreamingConfig.embedded(kafka_bootstrap_servers=["memory://doc-loop"],
    ...                                enable_mongodb_storage=False)
    >>> KafkaProducer(cfg.kafka_bootstrap_servers, "line").produce({"x": 1.0})
    >>> class Keep:
    ...     def split(self, msgs):
    ...         return Split(msgs, [m["value"] for m in msgs], [], [])
    ...     def process(self, good, values):
    ...         return good, values
    >>> got = []
    >>> loop = ConsumerLoop(make_consumer(cfg, ["line"]), Keep(), BatchWriter(None),
    ...                     DeadLetterWriter.from_config(cfg), callback=got.extend)
    >>> loop.start().wait_until(lambda: len(got) == 1)
    True
    >>> loop.stop(); [m["value"] for m in got], loop.state
    ([{'x': 1.0}], 'stopped')
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        handler: BatchHandler,
        history: BatchWriter,
        dead_letters: DeadLetterWriter,
        *,
        callback: Callable[[list[dict[str, Any]]], Any] | None = None,
        columns: ColumnCache | None = None,
        auto_commit: bool = True,
        on_error: Callable[[str, int], None] | None = None,
        checkpoint: Callable[[bool], bool] | None = None,
    ) -> None:
        self.consumer = consumer
        self.checkpoint = checkpoint
        self.handler = handler
        self.history = history
        self.dead_letters = dead_letters
        self.offsets = OffsetTracker()
        self.callback = callback
        self.columns = columns
        self.auto_commit = auto_commit
        self._on_error = on_error
        #: Errors counted (poll, batch, storage and callback failures).
        self.errors = 0
        self.last_error: str | None = None
        #: ``"stopped"``, ``"running"``, ``"paused"`` or ``"failed"``.
        self.state = "stopped"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._flight = threading.Condition()
        self._in_flight = 0  # polled batches not yet delivered
        self._control: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while the consumer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ConsumerLoop:
        """Start the threads; returns self. A loop runs once (:meth:`stop` closes its
        consumer): make a new one to consume again."""
        if self._thread is not None or self.state != "stopped":
            raise RuntimeError("a loop starts once; make a new ConsumerLoop to consume again")
        self._stop.clear()
        self.state = "running"
        self._thread = threading.Thread(target=self._run, name="amqadf-consumer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the threads (what is finished is committed), run what was queued with
        :meth:`run_between_batches`, close the consumer and the dead-letter producer."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)
        self._run_control()
        self.state = "stopped"
        self.consumer.close()
        self.dead_letters.close()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Wait (bounded) until ``condition()`` holds; returns its last value."""
        return wait_until(condition, timeout)

    def pause(self, timeout_s: float = 5.0) -> None:
        """Pause consumption (the consumer stays in its group) and wait until batches
        polled before now are delivered (not from the loop's own threads)."""
        self.consumer.pause()
        self.state = "paused"
        self._wait_delivered(timeout_s)

    def resume(self) -> None:
        """Resume consumption after :meth:`pause`."""
        self.consumer.resume()
        self.state = "running"

    def _wait_delivered(self, timeout_s: float) -> None:
        if threading.current_thread() in (self._thread, self._writer):
            return
        deadline = time.monotonic() + timeout_s
        try:  # a barrier: the batch the consumer thread was polling is counted after it
            self.run_between_batches(lambda: None).result(timeout=timeout_s)
        except TimeoutError:
            return
        with self._flight:
            left = max(0.0, deadline - time.monotonic())
            self._flight.wait_for(lambda: self._in_flight == 0, timeout=left)

    def run_between_batches(self, action: Callable[[], Any]) -> Future:
        """Run ``action`` in the consumer thread between two batches (now, when the
        loop does not run or from that thread); the future holds its result."""
        future: Future = Future()
        if not self.is_running or threading.current_thread() is self._thread:
            run_action(action, future)
        else:
            self._control.put((action, future))
        return future

    def _run_control(self) -> None:
        while True:
            try:
                action, future = self._control.get_nowait()
            except queue.Empty:
                return
            run_action(action, future)

    # -- errors and dead letters ---------------------------------------------------------
    def record_error(self, reason: str, n: int = 1) -> None:
        """Count ``n`` errors, the newest being ``reason``."""
        with self._lock:
            self.errors += n
            self.last_error = reason
        if self._on_error is not None:
            self._on_error(reason, n)

    def set_aside(self, msgs: list[dict[str, Any]], exc: Exception | str) -> None:
        """Count ``msgs`` failed and dead-letter them (confirmed): nothing may be skipped
        silently, later offsets would commit past them. Raises if the dead letters
        are not confirmed (the loop then stops uncommitted)."""
        error = exc if isinstance(exc, str) else f"batch failed: {type(exc).__name__}: {exc}"
        self.record_error(error)
        log.exception("batch handling failed; dead-lettering %d messages", len(msgs))
        self.dead_letters.write(msgs, [error] * len(msgs))

    # -- threads -------------------------------------------------------------------------
    def _fail(self) -> None:
        log.exception("dead-lettering failed; stopping the consumer uncommitted")
        self.state = "failed"
        self._stop.set()  # the writer too, should it wait for a full spool

    def _run(self) -> None:
        writes: queue.Queue[_Batch | None] = queue.Queue(maxsize=IN_FLIGHT)
        writer = self._writer = threading.Thread(
            target=self._write_loop, args=(writes,), name="amqadf-storage", daemon=True
        )
        writer.start()
        try:
            self._consume_loop(writes, writer)
        finally:
            while writer.is_alive():  # the writer finishes what it has, then stops
                try:
                    writes.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            writer.join()
            self._commit(final=True)  # batches before any failure are done
            with self._flight:
                self._in_flight = 0
                self._flight.notify_all()

    def _resumable(self) -> bool:
        """The consumer may resume after back-pressure (not when the user paused it)."""
        return self.state == "running"

    def _commit(self, final: bool = False) -> None:
        if self.checkpoint is not None and self.offsets.pending and not self.checkpoint(final):
            return  # no checkpoint covers them yet: they wait
        self.offsets.commit(self.consumer, auto_commit=self.auto_commit)

    def _consume_loop(self, writes: queue.Queue, writer: threading.Thread) -> None:
        while not self._stop.is_set() and writer.is_alive():
            self._run_control()
            self._commit()
            try:
                msgs = self.consumer.poll(timeout_ms=100)
            except Exception as exc:
                self.record_error(f"poll failed: {exc}")
                log.exception("consumer poll failed")
                self._stop.wait(1.0)
                continue
            if not msgs:
                continue
            with self._flight:
                self._in_flight += 1
            try:
                split = self.handler.split(msgs)
                if split.bad:
                    self.dead_letters.write(split.bad, split.reasons)
                good, docs = self._process(split.good, split.values)
            except Exception:
                self._fail()  # cannot set them aside: a restart retries them
                return
            batch = _Batch(msgs, good, docs)
            while True:
                try:
                    writes.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    if not writer.is_alive():
                        return

    def _process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[list[dict[str, Any]], PreparedBatch | None]:
        """Process the valid messages and prepare their documents here, in the thread
        that holds the interpreter anyway (the writer then mostly waits for the
        backend); what failed is dead-lettered (raises only if that fails)."""
        if not good:
            return [], None
        try:
            done, done_values = self.handler.process(good, values)
        except Exception as exc:
            self.set_aside(good, exc)
            return [], None
        if not done:
            return [], None
        try:
            return done, self.history.prepare(done, done_values, self.columns)
        except Exception as exc:
            self.set_aside(done, exc)
            return [], None

    def _write_loop(self, writes: queue.Queue) -> None:
        """Store each batch, deliver it, then report its offsets finished (held while
        documents wait in the spool)."""
        while True:
            try:
                batch = writes.get(timeout=0.1)
            except queue.Empty:
                if self.offsets.held and self.history.flush_spool():
                    self.offsets.release_held()
                continue
            if batch is None:
                return
            try:
                if not self.history.store(batch.docs, self._stop, self.consumer, self._resumable):
                    return  # stopped while the spool was full: offsets stay uncommitted
                good = self._set_aside_rejected(batch)
                if good:
                    for m in good:
                        m.pop("raw", None)  # kept only for dead-lettering
                    self._deliver(good)
                    self.history.cache_latest(good[-1])
            except Exception as exc:
                try:
                    self.set_aside(batch.good, exc)
                except Exception:
                    self._fail()
                    return
            self.offsets.finished(batch.msgs, spooled=self.history.spooled > 0)
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def _set_aside_rejected(self, batch: _Batch) -> list[dict[str, Any]]:
        """Dead-letter the messages whose documents storage refused one by one (the
        others of the batch are stored); return the rest."""
        rejected = (batch.docs.rejected if batch.docs is not None else None) or []
        if not rejected:
            return batch.good
        self.record_error(f"storage refused a document: {rejected[0][1]}", len(rejected))
        self.dead_letters.write(
            [batch.good[i] for i, _ in rejected], [f"storage refused: {r}" for _, r in rejected]
        )
        out = set(map(itemgetter(0), rejected))
        return [m for i, m in enumerate(batch.good) if i not in out]

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        """Call the callback; after repeated failure dead-letter the batch."""
        if self.callback is None:
            return
        error = ""
        for attempt in range(CALLBACK_ATTEMPTS):
            try:
                self.callback(messages)
                return
            except Exception as exc:
                error = f"callback failed: {type(exc).__name__}: {exc}"
                log.exception("callback failed (attempt %d)", attempt + 1)
        self.record_error(error)
        self.dead_letters.write(messages, [error] * len(messages))


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Wait (at most ``timeout`` seconds) until ``condition()`` holds; returns its last
    value.

    >>> wait_until(lambda: True)
    True
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def run_action(action: Callable[[], Any], future: Future) -> None:
    """Run ``action`` and put its result (or exception) in ``future``.

    >>> f = Future(); run_action(lambda: 6 * 7, f); f.result()
    42
    """
    try:
        future.set_result(action())
    except Exception as exc:
        future.set_exception(exc)
