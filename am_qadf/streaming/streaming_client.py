"""The streaming client: consume, validate, process, buffer, store, commit.

One background thread owns the consumer. For each polled batch it dead-letters
messages that cannot be decoded or validated, runs the registered processors,
feeds the per-signal buffers, stores the batch, calls the user's callback, and only
then marks the offsets processed (at-least-once delivery).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from numbers import Real
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from am_qadf.machine_profile import MachineProfile

from .buffer_manager import BufferManager
from .dead_letters import bounded_copy
from .history_store import STORABLE_TYPES
from .kafka_consumer import KafkaConsumer
from .kafka_producer import KafkaProducer
from .latency_stats import LatencyStats
from .message_columns import MAX_COLUMNS, ColumnCache
from .message_validation import MessageValidator
from .profile_mapping import ProfileMapper
from .stream_storage import PreparedBatch, SpoolFullError, StreamStorage
from .streaming_config import StreamingConfig
from .streaming_result import StreamingResult
from .timestamps import epoch_us_array, now_utc

__all__ = ["StreamingClient", "StreamingConfig", "StreamingResult", "RESULT_FIELDS"]

log = logging.getLogger(__name__)

#: Processors whose results have their own field in :class:`StreamingResult`.
RESULT_FIELDS = {
    "voxel_processor": "voxel_updates",
    "quality_processor": "quality_metrics",
    "spc_processor": "spc_results",
    "alert_processor": "alerts_generated",
}
#: Message fields that are never buffered as signals.
_NOT_SIGNALS = frozenset({"timestamp", "_id", "topic", "partition", "offset"})
_CALLBACK_ATTEMPTS = 3
#: Batches processed but not yet stored and delivered; bounds the writer's queue.
_IN_FLIGHT = 4
#: Names of refused signals remembered, so each is counted once (while they fit).
_REFUSED_NAMES = 10_000
#: Payload kept when even the bounded dead-letter copy was refused (e.g. by a broker
#: whose limit is below the producer's).
_MINIMAL_COPY = 1024


class _Batch(NamedTuple):
    msgs: list[dict[str, Any]]  # every polled message: their offsets are stored together
    good: list[dict[str, Any]]  # the valid ones, to deliver
    docs: PreparedBatch | None  # their documents, ready to store (None: nothing to store)


def _build_storage(config: StreamingConfig) -> StreamStorage | None:
    """Storage described by ``config`` (None when both cache and history are off)."""
    if not (config.enable_redis_cache or config.enable_mongodb_storage):
        return None
    redis_address: dict[str, Any] = {}
    if config.enable_redis_cache:
        redis_address = {
            "redis_host": config.redis_host,
            "redis_port": config.redis_port,
            "redis_db": config.redis_db,
            "redis_username": config.redis_username,
            "redis_password": config.redis_password,
            "redis_ssl": config.redis_ssl,
        }
    mongo = config.mongodb_uri if config.enable_mongodb_storage else None
    path = None
    if config.storage_path:
        from pathlib import Path

        path = Path(config.storage_path) / "history.sqlite3"
    return StreamStorage(
        None,
        mongo,
        path=path,
        spool_limit=config.spool_limit,
        batch_size=config.storage_batch_size,
        **redis_address,
        max_rows=config.query_max_rows,
        query_timeout_s=config.query_timeout_s,
    )


class StreamingClient:
    """Run the streaming pipeline: processors, buffers, storage and a background consumer.

    >>> client = StreamingClient(StreamingConfig.embedded())
    >>> client.register_processor("count", lambda batch: {"n": len(batch)})
    >>> result = client.process_stream_batch([{"value": 1.0}, {"value": 2.0}])
    >>> result.processed_count, result.metadata["processors"]["count"]
    (2, {'n': 2})
    """

    def __init__(
        self,
        config: StreamingConfig | None = None,
        *,
        storage: StreamStorage | None = None,
        validator: MessageValidator | None = None,
        profile: MachineProfile | None = None,
    ) -> None:
        if config is not None and not isinstance(config, StreamingConfig):
            raise TypeError(f"config must be a StreamingConfig, got {type(config).__name__}")
        if profile is not None and not isinstance(profile, MachineProfile):
            raise TypeError(f"profile must be a MachineProfile, got {type(profile).__name__}")
        self.config = config or StreamingConfig()
        #: The machine profile: how messages map onto signals (default: the simulator's).
        self.profile = profile or MachineProfile.default()
        self.mapper = ProfileMapper(self.profile)
        self.validator = validator or MessageValidator.from_config(
            self.config,
            numeric_fields=("value", *self.profile.numeric_fields),
            # epoch numbers in "timestamp" are the profile's to convert, in its unit
            convert_timestamp=self.profile.fields.time != "timestamp"
            or self.profile.fields.time_unit == "iso",
        )
        self._storage = storage
        self._processors: dict[str, Callable[[list[dict[str, Any]]], Any]] = {}
        #: Columns of the batch being processed; give it to processors to share it.
        self.column_cache = ColumnCache()
        self._buffers: dict[str, BufferManager] = {}
        self._refused: set[str] = set()  # numeric fields not buffered: max_signals reached
        self._signals_refused = 0
        self._lock = threading.RLock()
        self._latency = LatencyStats()
        self._errors = 0
        self._dead_lettered = 0
        self._last_error: str | None = None
        self._consumer: KafkaConsumer | None = None
        self._dlq: KafkaProducer | None = None
        self._thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        self._backpressure = False
        self._consumer_state = "stopped"
        self._listeners: list[Callable[[list[dict[str, Any]], StreamingResult], None]] = []
        self._done: deque[list[dict[str, Any]]] = deque()  # stored + delivered, offsets due
        self._flight = threading.Condition()
        self._in_flight = 0  # polled batches not yet delivered
        self._control: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()

    # -- processors ---------------------------------------------------------------------
    def register_processor(self, name: str, processor: Callable) -> None:
        """Register ``processor(data_batch) -> dict`` under ``name`` (replaces that name)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not callable(processor):
            raise TypeError(f"processor must be callable, got {type(processor).__name__}")
        with self._lock:
            self._processors[name] = processor

    def with_default_processors(self, grid: Any) -> StreamingClient:
        """Register the built-in processors on ``grid`` (a ``VoxelGrid``) and return self:
        ``voxel_processor``, ``quality_processor``, ``spc_processor`` and
        ``alert_processor``, sharing this client's column cache.

        >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
        >>> grid = VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)
        >>> client = StreamingClient(StreamingConfig.embedded()).with_default_processors(grid)
        >>> sorted(client.processors)
        ['alert_processor', 'quality_processor', 'spc_processor', 'voxel_processor']
        """
        from am_qadf.monitoring.processors import default_processors

        from .incremental_processor import IncrementalProcessor
        from .voxel_processor import VoxelProcessor

        voxels = VoxelProcessor(
            IncrementalProcessor(grid), self.profile.signal_names, column_cache=self.column_cache
        )
        self.register_processor("voxel_processor", voxels)
        procs = default_processors(profile=self.profile, column_cache=self.column_cache)
        for name, proc in procs.items():
            self.register_processor(name, proc)
        return self

    def unregister_processor(self, name: str) -> None:
        """Remove the processor registered under ``name``."""
        with self._lock:
            if self._processors.pop(name, None) is None:
                raise KeyError(f"no processor named {name!r}; have {sorted(self._processors)}")

    def add_result_listener(
        self, listener: Callable[[list[dict[str, Any]], StreamingResult], None]
    ) -> None:
        """Call ``listener(batch, result)`` after each batch the background consumer
        processed (in the consumer thread: keep it short, never touch UI objects)."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        with self._lock:
            self._listeners.append(listener)

    def run_between_batches(self, action: Callable[[], Any]) -> Future:
        """Run ``action`` in the consumer thread between two batches (now, when no
        consumer runs); the returned future holds its result.

        Use it for changes that must not interleave with a batch, e.g. clearing
        state together with a seek.
        """
        future: Future = Future()
        if not self.is_running or threading.current_thread() is self._thread:
            _run_action(action, future)
        else:
            self._control.put((action, future))
        return future

    def _run_control(self) -> None:
        while True:
            try:
                action, future = self._control.get_nowait()
            except queue.Empty:
                return
            _run_action(action, future)

    @property
    def kafka_consumer(self) -> KafkaConsumer | None:
        """The consumer :meth:`start_consumer` made (None when no consumer runs).

        >>> print(StreamingClient(StreamingConfig.embedded()).kafka_consumer)
        None
        """
        return self._consumer

    @property
    def kafka_producer(self) -> KafkaProducer | None:
        """The producer this client publishes with: dead letters go to
        ``<topic><dead_letter_suffix>`` (None until the first one).

        >>> print(StreamingClient(StreamingConfig.embedded()).kafka_producer)
        None
        """
        return self._dlq

    @property
    def processors(self) -> dict[str, Callable]:
        """Registered processors by name (a copy)."""
        with self._lock:
            return dict(self._processors)

    # -- buffers and storage --------------------------------------------------------------
    @property
    def buffers(self) -> dict[str, BufferManager]:
        """One :class:`BufferManager` per numeric signal seen so far (a copy of the mapping)."""
        with self._lock:
            return dict(self._buffers)

    def get_buffer(self, signal: str) -> BufferManager:
        """The buffer of ``signal`` (KeyError naming the known signals if none)."""
        with self._lock:
            try:
                return self._buffers[signal]
            except KeyError:
                raise KeyError(
                    f"no buffer for signal {signal!r}; have {sorted(self._buffers)}"
                ) from None

    @property
    def storage(self) -> StreamStorage | None:
        """The storage this client writes to, built from the config on first use."""
        storage = self._storage  # set once: no lock (the consumer thread may hold it)
        if storage is not None:
            return storage
        with self._lock:
            if self._storage is None:
                self._storage = _build_storage(self.config)
            return self._storage

    def _feed_buffers(self, batch: list[dict[str, Any]]) -> None:
        cache = self.column_cache
        names = cache.field_names(batch) - _NOT_SIGNALS
        known = names & self._buffers.keys()
        fresh = names - known - self._refused
        if len(fresh) > MAX_COLUMNS:  # many new names at once: no column per name
            numeric = _numeric_names(cache.messages(batch), fresh)
        else:
            cols = cache.columns(batch, sorted(fresh))
            numeric = [n for n in sorted(fresh) if not np.isnan(cols[n]).all()]
        room = max(0, self.config.max_signals - len(self._buffers))
        # a buffer each while there is room; beyond it counted, never kept
        self._refuse_signals(numeric[room:])
        columns = cache.columns(batch, sorted(known) + numeric[:room])
        signals = {k: c for k, c in columns.items() if not np.isnan(c).all()}
        if not signals:
            return
        now = now_utc()
        stamps = epoch_us_array(
            [t if (t := m.get("timestamp")) is not None else now for m in batch]
        ).astype("datetime64[us]")
        for name, values in signals.items():
            buf = self._buffers.get(name)
            if buf is None:
                buf = self._buffers[name] = BufferManager(
                    window_size=self.config.processing_batch_size,
                    buffer_size=self.config.buffer_size,
                )
            buf.add_batch(values, stamps)

    def _refuse_signals(self, names: list[str]) -> None:
        """Count numeric fields refused a buffer (``max_signals`` reached), each once
        while their names fit in the remembered set."""
        if names and not self._signals_refused:
            log.warning(
                "max_signals (%d) reached: new numeric fields such as %r get no buffer "
                "(counted in signals_refused)",
                self.config.max_signals,
                names[0][:64],
            )
        self._signals_refused += len(names)
        room = _REFUSED_NAMES - len(self._refused)
        self._refused.update(names[:room])

    # -- batch processing ---------------------------------------------------------------
    def process_stream_batch(self, data_batch: list[dict[str, Any]]) -> StreamingResult:
        """Run ``data_batch`` through every registered processor and the signal buffers.

        A processor that raises is counted once in ``errors`` and the others still run.
        ``metadata["processor_count"]`` is how many processors the batch went through.
        """
        if not isinstance(data_batch, list | tuple):
            raise TypeError(f"data_batch must be a list of dicts, got {type(data_batch).__name__}")
        if not set(map(type, data_batch)) <= {dict}:  # else find the first non-dict
            for i, item in enumerate(data_batch):
                if not isinstance(item, dict):
                    raise TypeError(f"data_batch[{i}] must be a dict, got {type(item).__name__}")
        # the caller's list itself when it is one: the columns validation built are
        # found by its identity
        batch = data_batch if type(data_batch) is list else list(data_batch)
        start = time.perf_counter()
        self.mapper.map_batch(batch, self.column_cache)  # in place; nothing for the simulator
        result = StreamingResult(
            timestamp=now_utc(),
            data_batch=self.column_cache.columns(batch, ["value"])["value"],
            processed_count=len(batch),
            processing_time_ms=0.0,
        )
        errors: dict[str, str] = {}
        others: dict[str, Any] = {}
        with self._lock:
            processors = list(self._processors.items())
        for name, proc in processors:
            try:
                out = proc(batch)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                log.exception("processor %r failed", name)
                continue
            target = RESULT_FIELDS.get(name)
            if target == "alerts_generated":
                ids = out.get("alert_ids", []) if isinstance(out, dict) else out
                result.alerts_generated = [str(i) for i in (ids or [])]
                others[name] = out
            elif target is not None:
                setattr(result, target, out)
            else:
                others[name] = out
        if batch:
            with self._lock:
                self._feed_buffers(batch)
        elapsed = (time.perf_counter() - start) * 1000.0
        result.processing_time_ms = elapsed
        result.metadata["processors"] = others
        result.metadata["processor_count"] = len(processors)
        if errors:
            result.metadata["errors"] = errors
        with self._lock:
            self._latency.add(elapsed, len(batch))
            self._errors += len(errors)
            if errors:
                self._last_error = next(iter(errors.values()))
        return result

    # -- statistics ---------------------------------------------------------------------
    def get_stream_statistics(self) -> dict[str, Any]:
        """Counters since start or reset: ``messages_processed``, ``batches_processed``,
        ``average_latency_ms`` (mean batch time), ``throughput_messages_per_sec``
        (messages / wall time), ``errors``, ``total_processing_time_ms`` (sum of batch
        times), plus dead-letter, lag and state figures, and ``signals_buffered`` /
        ``signals_refused``: numeric fields with a buffer, and new ones refused a buffer
        because ``config.max_signals`` was reached (each counted once).

        >>> client = StreamingClient(StreamingConfig.embedded(max_signals=1))
        >>> _ = client.process_stream_batch([{"a": 1.0, "b": 2.0}])
        >>> s = client.get_stream_statistics()
        >>> s["signals_buffered"], s["signals_refused"]
        (1, 1)
        """
        with self._lock:
            s = self._latency.summary()
            consumer = self._consumer
            stats = {
                "messages_processed": s["items_processed"],
                "batches_processed": s["calls"],
                "average_latency_ms": s["average_latency_ms"],
                "total_processing_time_ms": self._latency.total_ms,
                "max_latency_ms": s["max_latency_ms"],
                "last_latency_ms": s["last_latency_ms"],
                "throughput_messages_per_sec": s["items_processed"] / s["elapsed_seconds"],
                "errors": self._errors,
                "dead_lettered": self._dead_lettered,
                "signals_buffered": len(self._buffers),
                "signals_refused": self._signals_refused,
                "max_signals": self.config.max_signals,
                "last_error": self._last_error,
                "consumer_state": self._consumer_state,
                "backpressure": self._backpressure,
            }
        stats["consumer_lag"] = consumer.lag() if consumer is not None else 0
        return stats

    def profile_statistics(self) -> dict[str, Any]:
        """How well the machine profile fits the stream: fields missing in recent
        messages, points outside the plate, fields the profile does not name
        (see :meth:`ProfileMapper.statistics`)."""
        return self.mapper.statistics()

    def reset_statistics(self) -> None:
        """Zero every counter and restart the throughput clock."""
        with self._lock:
            self._latency.reset()
            self._errors = 0
            self._dead_lettered = 0
            self._signals_refused = 0
            self._last_error = None

    def health(self) -> dict[str, Any]:
        """Connection state of the broker and storage, for health views."""
        storage = self._storage
        return {
            "broker": "memory"
            if self._consumer is not None and self._consumer.is_memory
            else "kafka",
            "bootstrap_servers": list(self.config.kafka_bootstrap_servers),
            "consumer_state": self._consumer_state,
            "storage": storage.health() if storage is not None else None,
        }

    # -- background consumer -------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while the background consumer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start_consumer(self, topics: list[str], callback: Callable) -> None:
        """Consume ``topics`` in a background thread; ``callback(messages)`` gets each
        batch of message dicts (``topic, partition, offset, timestamp, key, value``)
        after it was processed and stored."""
        if isinstance(topics, str) or not isinstance(topics, list | tuple) or not topics:
            raise ValueError(f"topics must be a non-empty list of topic names, got {topics!r}")
        if any(not isinstance(t, str) or not t for t in topics):
            raise ValueError(f"topics must be non-empty strings, got {topics!r}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._lock:
            if self.is_running:
                raise RuntimeError("consumer already running; call stop_consumer() first")
            cfg = self.config
            self._consumer = KafkaConsumer(
                cfg.kafka_bootstrap_servers,
                list(topics),
                group_id=cfg.consumer_group_id,
                auto_commit=cfg.enable_auto_commit,
                max_poll_records=cfg.max_poll_records,
                auto_offset_reset=cfg.auto_offset_reset,
                auto_commit_interval_ms=cfg.auto_commit_interval_ms,
                session_timeout_ms=cfg.session_timeout_ms,
                store_on_poll=False,
                keep_raw=True,
                config=cfg.kafka_config,
            )
            self._stop.clear()
            self._consumer_state = "running"
            self._thread = threading.Thread(
                target=self._run,
                args=(self._consumer, callback),
                name="amqadf-consumer",
                daemon=True,
            )
            self._thread.start()

    def stop_consumer(self) -> None:
        """Stop the background thread, commit processed offsets and close the consumer."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self._run_control()  # anything queued after the last batch still runs
        with self._lock:
            consumer, self._consumer, self._thread = self._consumer, None, None
            dlq, self._dlq = self._dlq, None
            self._consumer_state = "stopped"
        if consumer is not None:
            consumer.close()
        if dlq is not None:
            dlq.close()

    def pause(self) -> None:
        """Pause consumption (the consumer stays in its group)."""
        if self._consumer is None:
            raise RuntimeError("no consumer running; call start_consumer() first")
        self._consumer.pause()
        self._consumer_state = "paused"
        self._wait_delivered(timeout_s=5.0)

    def _wait_delivered(self, timeout_s: float) -> None:
        """Wait until batches polled before now are stored and delivered, so nothing
        reaches the callback after :meth:`pause` returns (not from the client's own
        threads, where it would wait for itself)."""
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

    def resume(self) -> None:
        """Resume consumption after :meth:`pause`."""
        if self._consumer is None:
            raise RuntimeError("no consumer running; call start_consumer() first")
        self._consumer.resume()
        self._consumer_state = "running"

    def seek_to_beginning(self) -> None:
        """Replay the subscribed topics from their earliest offsets."""
        if self._consumer is None:
            raise RuntimeError("no consumer running; call start_consumer() first")
        self._consumer.seek_to_beginning()

    def _dead_letter(self, msgs: list[dict[str, Any]], reasons: list[str]) -> None:
        """Write bounded copies of ``msgs`` to the dead-letter topic and wait until the
        broker confirmed each; a copy it refused goes again with a 1 kB payload. Raises
        ``RuntimeError`` if even that is not confirmed (the caller then stops without
        committing, so nothing is lost)."""
        if not msgs:
            return
        cfg = self.config
        with self._lock:  # the consumer and the writer thread both dead-letter
            if self._dlq is None:
                self._dlq = KafkaProducer(
                    cfg.kafka_bootstrap_servers,
                    cfg.kafka_topic + cfg.dead_letter_suffix,
                    config=cfg.kafka_config,
                )
            dlq, suffix = self._dlq, cfg.dead_letter_suffix
        size = cfg.dead_letter_max_bytes
        for attempt in range(2):
            copies = [
                bounded_copy(m, r, suffix, size, dlq.max_message_bytes)
                for m, r in zip(msgs, reasons, strict=True)
            ]
            errors = dlq.produce_confirmed(copies)
            failed = [i for i, e in enumerate(errors) if e]
            delivered = len(msgs) - len(failed)
            with self._lock:
                self._dead_lettered += delivered
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
            size = _MINIMAL_COPY

    def _store(self, consumer: KafkaConsumer, docs: PreparedBatch | None) -> bool:
        """Store docs, pausing the consumer while the spool is full; False if stopped
        while the spool was full."""
        storage = self.storage
        if storage is None or docs is None:
            return True
        while True:
            try:
                storage.store_prepared(docs)
                break
            except SpoolFullError:
                if self._stop.is_set():
                    return False
                if not self._backpressure:
                    log.warning("history spool full: pausing consumption until storage is back")
                    consumer.pause()
                    self._backpressure = True
                self._stop.wait(0.5)
        if self._backpressure and storage.spooled < storage.spool_limit // 2:
            self._backpressure = False
            if self._consumer_state == "running":
                consumer.resume()
        return True

    def _run(self, consumer: KafkaConsumer, callback: Callable) -> None:
        """Consumer thread: poll, validate, process; storage and delivery run behind it
        in the writer thread, and offsets are stored here once the writer is done."""
        writes: queue.Queue[_Batch | None] = queue.Queue(maxsize=_IN_FLIGHT)
        writer = self._writer = threading.Thread(
            target=self._write_loop,
            args=(consumer, callback, writes),
            name="amqadf-storage",
            daemon=True,
        )
        writer.start()
        try:
            self._consume_loop(consumer, writes, writer)
        finally:
            while writer.is_alive():  # the writer finishes what it has, then stops
                try:
                    writes.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            writer.join()
            self._store_done_offsets(consumer)  # batches before any failure are done
            with self._flight:
                self._in_flight = 0
                self._flight.notify_all()

    def _consume_loop(
        self, consumer: KafkaConsumer, writes: queue.Queue, writer: threading.Thread
    ) -> None:
        while not self._stop.is_set() and writer.is_alive():
            self._run_control()
            self._store_done_offsets(consumer)
            try:
                msgs = consumer.poll(timeout_ms=100)
            except Exception as exc:
                with self._lock:
                    self._errors += 1
                    self._last_error = f"poll failed: {exc}"
                log.exception("consumer poll failed")
                self._stop.wait(1.0)
                continue
            if not msgs:
                continue
            with self._flight:
                self._in_flight += 1
            good, values, bad, reasons = self._validate(msgs)
            try:
                if bad:
                    self._dead_letter(bad, reasons)
                ok, docs = self._process(good, values)
            except Exception:
                # cannot set them aside: stop uncommitted so a restart retries them
                log.exception("dead-lettering failed; stopping the consumer uncommitted")
                self._consumer_state = "failed"
                self._stop.set()  # the writer too, should it wait for a full spool
                return
            batch = _Batch(msgs, good if ok else [], docs)
            while True:
                try:
                    writes.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    if not writer.is_alive():
                        return

    def _validate(
        self, msgs: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]], list[str]]:
        """Split polled messages into the valid ones (and their values) and the invalid
        ones (and why). The whole batch is checked at once; its values list is kept when
        all are valid, so processing finds the columns validation built."""
        values = [m["value"] for m in msgs]
        sizes = [m.get("size", 0) for m in msgs]
        try:
            checked = self.validator.check_batch(values, sizes, columns=self.column_cache)
        except Exception:  # a validator bug must not stop the stream: check one by one
            log.exception("batch validation failed; validating message by message")
            checked = list(map(self.validator.check, values, sizes))
        if not any(checked):  # decode errors fail the check too
            return msgs, values, [], []
        good, bad, reasons = [], [], []
        for m, reason in zip(msgs, checked, strict=True):
            if reason:
                bad.append(m)
                reasons.append(m.get("error") or reason)
            else:
                good.append(m)
        return good, [m["value"] for m in good], bad, reasons

    def _process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[bool, PreparedBatch | None]:
        """Run processors and listeners on the valid messages and prepare their documents
        for storage here, in the thread that holds the interpreter anyway (the writer
        then mostly waits for the backend). ``(False, None)`` if the batch failed and
        was dead-lettered instead."""
        if not good:
            return False, None
        try:
            result = self.process_stream_batch(values)
            self._notify(values, result)
            return True, self._prepare_docs(good, values)
        except Exception as exc:
            self._batch_failed(good, exc)
            return False, None

    def _prepare_docs(self, good: list[dict[str, Any]], values: list[Any]) -> PreparedBatch | None:
        """History documents of processed messages (None: history is off), with the
        idempotent ``_id`` ``topic:partition:offset``: a batch delivered again, say after
        its partition moved to another consumer, is not stored twice."""
        storage = self.storage
        if storage is None or not self.config.enable_mongodb_storage:
            return None
        ids = [f"{m['topic']}:{m['partition']}:{m['offset']}" for m in good]
        # JSON scalars (known from validation) with timestamps now datetimes: no scan
        plain = self.column_cache.value_types(values) <= STORABLE_TYPES
        return storage.prepare_batch(values, ids, check_types=not plain, isolate=True)

    def _batch_failed(self, good: list[dict[str, Any]], exc: Exception) -> None:
        # Nothing may be skipped silently: later offsets would commit past this batch.
        # Dead-letter it; if even that fails the caller stops without committing, so a
        # restart delivers it again.
        error = f"batch failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._errors += 1
            self._last_error = error
        log.exception("batch handling failed; dead-lettering it")
        self._dead_letter(good, [error] * len(good))

    def _write_loop(self, consumer: KafkaConsumer, callback: Callable, writes: queue.Queue) -> None:
        """Writer thread: store each batch, then deliver it to the callback, then hand its
        offsets back to the consumer thread (held while documents wait in the spool)."""
        held: list[dict[str, Any]] = []
        while True:
            try:
                batch = writes.get(timeout=0.1)
            except queue.Empty:
                storage = self._storage
                if held and storage is not None and storage.flush_spool():
                    self._done.append(held)
                    held = []
                continue
            if batch is None:
                return
            try:
                if not self._store(consumer, batch.docs):
                    return  # stopped while the spool was full: offsets stay uncommitted
                good = self._set_aside_rejected(batch)
                if good:
                    for m in good:
                        m.pop("raw", None)  # kept only for dead-lettering
                    self._deliver(callback, good)
                    self._cache_latest(good[-1])
            except Exception as exc:
                try:
                    self._batch_failed(batch.good, exc)
                except Exception:
                    log.exception("dead-lettering failed; stopping the consumer uncommitted")
                    self._consumer_state = "failed"
                    self._stop.set()
                    return
            held.extend(batch.msgs)
            storage = self._storage
            if storage is None or storage.spooled == 0:
                self._done.append(held)
                held = []
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def _set_aside_rejected(self, batch: _Batch) -> list[dict[str, Any]]:
        """Dead-letter the messages whose documents storage refused one by one (the
        others of the batch are stored); return the rest of the valid messages."""
        rejected = (batch.docs.rejected if batch.docs is not None else None) or []
        if not rejected:
            return batch.good
        with self._lock:
            self._errors += len(rejected)
            self._last_error = f"storage refused a document: {rejected[0][1]}"
        self._dead_letter(
            [batch.good[i] for i, _ in rejected], [f"storage refused: {r}" for _, r in rejected]
        )
        out = set(map(itemgetter(0), rejected))
        return [m for i, m in enumerate(batch.good) if i not in out]

    def _cache_latest(self, m: dict[str, Any]) -> None:
        storage = self._storage
        if storage is not None:
            storage.cache_recent_data(
                f"latest:{m['topic']}", {"message": m["value"], "offset": m["offset"]}
            )

    def _store_done_offsets(self, consumer: KafkaConsumer) -> None:
        done: list[dict[str, Any]] = []
        while self._done:
            done.extend(self._done.popleft())
        if done:
            consumer.store_offsets(done)
            if not self.config.enable_auto_commit:
                consumer.commit()

    def _notify(self, batch: list[dict[str, Any]], result: StreamingResult) -> None:
        for listener in list(self._listeners):
            try:
                listener(batch, result)
            except Exception as exc:
                with self._lock:
                    self._errors += 1
                    self._last_error = f"result listener failed: {exc}"
                log.exception("result listener failed")

    def _deliver(self, callback: Callable, messages: list[dict[str, Any]]) -> None:
        """Call the user's callback; after repeated failure dead-letter the batch."""
        error = ""
        for attempt in range(_CALLBACK_ATTEMPTS):
            try:
                callback(messages)
                break
            except Exception as exc:
                error = f"callback failed: {type(exc).__name__}: {exc}"
                log.exception("callback failed (attempt %d)", attempt + 1)
        else:
            with self._lock:
                self._errors += 1
                self._last_error = error
            self._dead_letter(messages, [error] * len(messages))


def _numeric_names(messages: Sequence[dict[str, Any]], candidates: set[str]) -> list[str]:
    """The ``candidates`` with a number (not a bool) in some message, sorted; one pass
    over the messages, no column per name."""
    found: set[str] = set()
    for m in messages:
        for k in m.keys() & candidates:
            v = m[k]
            if type(v) in (int, float) or (isinstance(v, Real) and not isinstance(v, bool)):
                found.add(k)
    return sorted(found)


def _run_action(action: Callable[[], Any], future: Future) -> None:
    try:
        future.set_result(action())
    except Exception as exc:
        future.set_exception(exc)
