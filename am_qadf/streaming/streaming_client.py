"""The streaming client: consume, validate, process, buffer, store, commit.

:class:`StreamingClient` is the spec's facade over small collaborators, each usable
on its own (a fleet worker uses them without the client):
:class:`~am_qadf.streaming.processor_registry.ProcessorRegistry` (processors by
name), :class:`~am_qadf.streaming.consumer_loop.ConsumerLoop` (the background
threads), :class:`~am_qadf.streaming.dead_letter_writer.DeadLetterWriter`,
:class:`~am_qadf.streaming.batch_writer.BatchWriter` (history, idempotent ids) and
:class:`~am_qadf.streaming.offset_tracker.OffsetTracker` (offsets move only after a
batch is stored and its dead letters are confirmed: at-least-once delivery).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from numbers import Real
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile

from .batch_writer import BatchWriter
from .buffer_manager import BufferManager
from .consumer_loop import ConsumerLoop, make_consumer, run_action
from .dead_letter_writer import DeadLetterWriter
from .kafka_consumer import KafkaConsumer
from .kafka_producer import KafkaProducer
from .latency_stats import LatencyStats
from .message_columns import MAX_COLUMNS, ColumnCache
from .message_validation import MessageValidator, Split
from .processor_registry import RESULT_FIELDS, ProcessorRegistry
from .profile_mapping import ProfileMapper
from .stream_storage import StreamStorage
from .streaming_config import StreamingConfig
from .streaming_result import StreamingResult
from .timestamps import epoch_us_array, now_utc

__all__ = [
    "StreamingClient",
    "StreamingConfig",
    "StreamingResult",
    "RESULT_FIELDS",
    "build_storage",
]

log = logging.getLogger(__name__)

#: Message fields that are never buffered as signals.
_NOT_SIGNALS = frozenset({"timestamp", "_id", "topic", "partition", "offset"})
#: Names of refused signals remembered, so each is counted once (while they fit).
_REFUSED_NAMES = 10_000


def build_storage(config: StreamingConfig) -> StreamStorage | None:
    """Storage described by ``config`` (None when both cache and history are off).

    >>> print(build_storage(StreamingConfig.embedded(enable_mongodb_storage=False)))
    None
    """
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
        #: The processors by name (:meth:`register_processor` adds to it).
        self.registry = ProcessorRegistry()
        #: Columns of the batch being processed; give it to processors to share it.
        self.column_cache = ColumnCache()
        self._buffers: dict[str, BufferManager] = {}
        self._refused: set[str] = set()  # numeric fields not buffered: max_signals reached
        self._signals_refused = 0
        self._lock = threading.RLock()
        self._latency = LatencyStats()
        self._errors = 0
        self._last_error: str | None = None
        #: Dead letters of this client's topic (kept across consumer restarts).
        self.dead_letters = DeadLetterWriter.from_config(self.config)
        self._loop: ConsumerLoop | None = None
        self._listeners: list[Callable[[list[dict[str, Any]], StreamingResult], None]] = []

    # -- processors ---------------------------------------------------------------------
    def register_processor(self, name: str, processor: Callable) -> None:
        """Register ``processor(data_batch) -> dict`` under ``name`` (replaces that name)."""
        self.registry.register(name, processor)

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
        self.registry.unregister(name)

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
        loop = self._loop
        if loop is None:
            future: Future = Future()
            run_action(action, future)
            return future
        return loop.run_between_batches(action)

    @property
    def kafka_consumer(self) -> KafkaConsumer | None:
        """The consumer :meth:`start_consumer` made (None when no consumer runs).

        >>> print(StreamingClient(StreamingConfig.embedded()).kafka_consumer)
        None
        """
        loop = self._loop
        return loop.consumer if loop is not None else None

    @property
    def kafka_producer(self) -> KafkaProducer | None:
        """The producer this client publishes with: dead letters go to
        ``<topic><dead_letter_suffix>`` (None until the first one).

        >>> print(StreamingClient(StreamingConfig.embedded()).kafka_producer)
        None
        """
        return self.dead_letters.producer

    @property
    def processors(self) -> dict[str, Callable]:
        """Registered processors by name (a copy)."""
        return self.registry.snapshot()

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
                self._storage = build_storage(self.config)
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
        errors = self.registry.run(batch, result)
        if batch:
            with self._lock:
                self._feed_buffers(batch)
        elapsed = (time.perf_counter() - start) * 1000.0
        result.processing_time_ms = elapsed
        if errors:
            result.metadata["errors"] = errors
        with self._lock:
            self._latency.add(elapsed, len(batch))
        if errors:
            self._record_error(next(iter(errors.values())), len(errors))
        return result

    def _record_error(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._errors += n
            self._last_error = reason

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
        loop = self._loop
        history = loop.history if loop is not None else None
        with self._lock:
            s = self._latency.summary()
            stats = {
                "messages_processed": s["items_processed"],
                "batches_processed": s["calls"],
                "average_latency_ms": s["average_latency_ms"],
                "total_processing_time_ms": self._latency.total_ms,
                "max_latency_ms": s["max_latency_ms"],
                "last_latency_ms": s["last_latency_ms"],
                "throughput_messages_per_sec": s["items_processed"] / s["elapsed_seconds"],
                "errors": self._errors,
                "dead_lettered": self.dead_letters.count,
                "signals_buffered": len(self._buffers),
                "signals_refused": self._signals_refused,
                "max_signals": self.config.max_signals,
                "last_error": self._last_error,
                "consumer_state": self._consumer_state,
                "backpressure": history is not None and history.backpressure,
            }
        stats["consumer_lag"] = loop.consumer.lag() if loop is not None else 0
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
            self._signals_refused = 0
            self._last_error = None
        self.dead_letters.reset_count()

    def health(self) -> dict[str, Any]:
        """Connection state of the broker and storage, for health views."""
        storage = self._storage
        consumer = self.kafka_consumer
        return {
            "broker": "memory" if consumer is not None and consumer.is_memory else "kafka",
            "bootstrap_servers": list(self.config.kafka_bootstrap_servers),
            "consumer_state": self._consumer_state,
            "storage": storage.health() if storage is not None else None,
        }

    # -- background consumer -------------------------------------------------------------
    @property
    def _consumer_state(self) -> str:
        loop = self._loop
        return loop.state if loop is not None else "stopped"

    @property
    def is_running(self) -> bool:
        """True while the background consumer thread runs."""
        loop = self._loop
        return loop is not None and loop.is_running

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
        history = BatchWriter(self.storage, history=self.config.enable_mongodb_storage)
        with self._lock:
            self._loop = ConsumerLoop(
                make_consumer(self.config, list(topics)),
                _ClientHandler(self),
                history,
                self.dead_letters,
                callback=callback,
                columns=self.column_cache,
                auto_commit=self.config.enable_auto_commit,
                on_error=self._record_error,
            ).start()

    def stop_consumer(self) -> None:
        """Stop the background thread, commit processed offsets and close the consumer."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()

    def pause(self) -> None:
        """Pause consumption (the consumer stays in its group)."""
        self._running_loop().pause()

    def resume(self) -> None:
        """Resume consumption after :meth:`pause`."""
        self._running_loop().resume()

    def seek_to_beginning(self) -> None:
        """Replay the subscribed topics from their earliest offsets."""
        self._running_loop().consumer.seek_to_beginning()

    def _running_loop(self) -> ConsumerLoop:
        loop = self._loop
        if loop is None:
            raise RuntimeError("no consumer running; call start_consumer() first")
        return loop

    def notify_listeners(self, batch: list[dict[str, Any]], result: StreamingResult) -> None:
        """Call the result listeners with a processed ``batch`` and its ``result``, as
        the background consumer does after each batch (a listener that raises is
        counted in ``errors``; the others still run).

        >>> client = StreamingClient(StreamingConfig.embedded())
        >>> client.add_result_listener(lambda batch, result: print(result.processed_count))
        >>> batch = [{"value": 1.0}]
        >>> client.notify_listeners(batch, client.process_stream_batch(batch))
        1
        """
        for listener in list(self._listeners):
            try:
                listener(batch, result)
            except Exception as exc:
                self._record_error(f"result listener failed: {exc}")
                log.exception("result listener failed")


class _ClientHandler:
    """The client's processing as a consume loop's handler: its validator, then its
    processors, buffers and result listeners."""

    def __init__(self, client: StreamingClient) -> None:
        self.client = client

    def split(self, msgs: list[dict[str, Any]]) -> Split:
        return self.client.validator.split(msgs, self.client.column_cache)

    def process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        result = self.client.process_stream_batch(values)
        self.client.notify_listeners(values, result)
        return good, values


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
