"""The fleet worker: consume a topic in a consumer group, one pipeline per machine,
publish derived state.

A :class:`FleetWorker` runs :class:`~am_qadf.streaming.StreamingClient`'s consumer
loop unchanged (poll, dead-letter, store history, commit only what is stored) with
validation and processing routed by machine: the Kafka message key is the machine
id, and each machine gets a :class:`~am_qadf.fleet.machine_pipeline.MachinePipeline`
the first time its key is seen, from its own profile (``profiles``) or the default.
A state thread publishes each machine's derived state to a
:class:`~am_qadf.fleet.state_store.StateStore` every ``publish_interval`` seconds
(machines that changed, and every machine at least every ``heartbeat`` seconds, so
a reader tells a live idle machine from one whose worker died by the snapshot's
``updated_at``) and applies operator commands from the machines' control streams
between two batches.

Failover. Workers of one group split the partitions; a machine's messages stay on
one partition (keyed), so a machine has one owner at a time. History documents
keep the idempotent ``_id`` ``topic:partition:offset``, so when a partition moves
to another worker and the messages after its last commit are delivered again,
history does not double. Machine state is **rebuilt**, not resumed: the new owner
starts a fresh pipeline (voxel grid, charts and alerts from the first message it
receives; the SPC baseline reloaded from the baseline store, per machine and
material). Resumed from the store: the control cursor, so no operator command is
applied twice or skipped, and the published alerts, so an alert raised again from
re-delivered messages (same rule, signal, build and time) is not published twice
(and can be acknowledged under its published id). A worker drops the pipelines of
partitions it no longer owns, and never publishes for them.

Group settings for fast takeover (real Kafka): ``session.timeout.ms`` 6 s (the
broker's minimum) with 1 s heartbeats, so a killed worker's partitions move within
about 6 s; offsets are committed every second (less to redo). No static membership
(``group.instance.id``): it would keep a dead worker's partitions unassigned for the
whole session timeout, which suits restarts in place but not takeover. Eager
assignment (librdkafka's default): the consumer assigns in its rebalance callbacks,
which ``cooperative-sticky`` would need done incrementally.

>>> from am_qadf.fleet.state_store import InProcessStateStore
>>> from am_qadf.streaming import KafkaProducer, StreamingConfig
>>> cfg = StreamingConfig.embedded(kafka_bootstrap_servers=["memory://doc-fleet"],
...                                enable_mongodb_storage=False)
>>> prod = KafkaProducer(["memory://doc-fleet"], cfg.kafka_topic)
>>> for m in ("m1", "m2"):
...     _ = prod.produce_batch([{"value": 1.0, "layer": 1}] * 10, key=m)
>>> store = InProcessStateStore()
>>> worker = FleetWorker(cfg, store, publish_interval=0.05).start()
>>> worker.wait_until(lambda: sum(s.messages for s in store.snapshots().values()) == 20)
True
>>> worker.stop(); store.machines()
['m1', 'm2']
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import StreamingClient, StreamingConfig
from am_qadf.streaming.stream_storage import PreparedBatch

from .commands import parse_command
from .machine_pipeline import MachinePipeline, profile_for
from .state_store import StateStore, check_machine_id

__all__ = ["FleetWorker", "TAKEOVER_KAFKA_CONFIG"]

log = logging.getLogger(__name__)

#: librdkafka settings a worker adds (the user's ``kafka_config`` wins): see above.
TAKEOVER_KAFKA_CONFIG: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
}


class _RoutingClient(StreamingClient):
    """StreamingClient whose validation and processing go to the machine's pipeline;
    everything else (poll, dead letters, storage, offsets) is the client's own."""

    def __init__(self, worker: FleetWorker, config: StreamingConfig) -> None:
        super().__init__(config)
        self._worker = worker
        # per machine: (pipeline, valid messages, their values); set by _validate for
        # the _process call that follows it in the consumer thread
        self._routed: list[tuple[MachinePipeline, list[dict[str, Any]], list[Any]]] = []

    def _validate(
        self, msgs: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]], list[str]]:
        good: list[dict[str, Any]] = []
        values: list[Any] = []
        bad: list[dict[str, Any]] = []
        reasons: list[str] = []
        self._routed = []
        for key, part in _by_key(msgs):
            pipe, refusal = self._worker._pipeline_for(key)
            if pipe is None:
                bad += part
                reasons += [refusal] * len(part)
                # not the key itself: label values must not come from outside
                self._worker._count("dead_letters", "<refused>", len(part))
                continue
            g, v, b, r = pipe.validate(part)
            self._worker._count("messages_in", pipe.machine_id, len(part))
            self._worker._count("dead_letters", pipe.machine_id, len(b))
            self._routed.append((pipe, g, v))
            good += g
            values += v
            bad += b
            reasons += r
        return good, values, bad, reasons

    def _process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[bool, PreparedBatch | None]:
        routed, self._routed = self._routed, []
        started = time.perf_counter()
        done_msgs: list[dict[str, Any]] = []
        done_values: list[Any] = []
        for pipe, g, v in routed:
            if not g:
                continue
            try:
                pipe.process(g, v)
            except Exception as exc:  # this machine's batch only; the others go on
                self._batch_failed(g, exc)
                self._worker._count("dead_letters", pipe.machine_id, len(g))
                continue
            done_msgs += g
            done_values += v
            self._worker._count("messages_out", pipe.machine_id, len(g))
        self._worker._observe_batch(time.perf_counter() - started)
        if not done_msgs:
            return False, None
        try:
            return True, self._prepare_docs(done_msgs, done_values)
        except Exception as exc:
            self._batch_failed(done_msgs, exc)
            return False, None


def _by_key(msgs: list[dict[str, Any]]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Messages grouped by key, each group in arrival order (numpy, no per-message loop);
    no key and an empty key are both None."""
    keys = np.array(list(map(itemgetter("key"), msgs)), dtype=object)
    if len(keys) and (keys == keys[0]).all():
        return [(keys[0] or None, msgs)]
    keys[np.equal(keys, None)] = ""
    names, inverse = np.unique(keys.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(1, len(names)))
    out = []
    for name, idx in zip(names, np.split(order, bounds), strict=True):
        part = [msgs[idx[0]]] if len(idx) == 1 else list(itemgetter(*idx)(msgs))
        out.append((str(name) or None, part))
    return out


class FleetWorker:
    """Consume ``config.kafka_topic`` in group ``config.consumer_group_id`` and publish
    each machine's state to ``state``.

    ``profile`` is the default machine profile (messages of a machine without its own
    profile in ``profiles``, a mapping of machine id to profile, and messages without
    a key, which belong to ``profile``'s machine). At most ``max_machines`` machines
    per worker: messages of more are dead-lettered, as are messages whose key is not
    a valid machine id. ``metrics`` (a :class:`~am_qadf.fleet.worker_metrics.WorkerMetrics`)
    counts messages, dead letters, alerts and batch latency.
    """

    def __init__(
        self,
        config: StreamingConfig,
        state: StateStore,
        *,
        profile: MachineProfile | None = None,
        profiles: Mapping[str, MachineProfile] | None = None,
        worker_id: str | None = None,
        publish_interval: float = 0.25,
        heartbeat: float = 2.0,
        max_machines: int = 256,
        metrics: Any = None,
    ) -> None:
        if not publish_interval > 0:
            raise ValueError(f"publish_interval must be > 0 s, got {publish_interval!r}")
        self.profile = profile or MachineProfile.default()
        self.profiles = dict(profiles or {})
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.state = state
        self.publish_interval = float(publish_interval)
        self.heartbeat = max(float(heartbeat), self.publish_interval)
        self._published: dict[str, float] = {}  # machine id -> monotonic time
        self.max_machines = int(max_machines)
        self.metrics = metrics
        if not config.kafka_bootstrap_servers[0].startswith("memory://"):
            config = dataclasses.replace(
                config, kafka_config={**TAKEOVER_KAFKA_CONFIG, **config.kafka_config}
            )
        self.config = config
        self.client = _RoutingClient(self, config)
        self._pipelines: dict[str, MachinePipeline] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- machines ------------------------------------------------------------------------
    @property
    def pipelines(self) -> dict[str, MachinePipeline]:
        """This worker's machines by id (a copy)."""
        with self._lock:
            return dict(self._pipelines)

    def _pipeline_for(self, key: str | None) -> tuple[MachinePipeline | None, str]:
        """Consumer thread: the pipeline of messages keyed ``key`` (made on first
        sight), or None and why their messages are dead-lettered."""
        machine_id = self.profile.machine.id if key is None else key
        pipe = self._pipelines.get(machine_id)
        if pipe is not None:
            return pipe, ""
        try:
            check_machine_id(machine_id)
        except ValueError as exc:
            return None, f"message key is not a machine id: {exc}"
        if len(self._pipelines) >= self.max_machines:
            return None, f"this worker already serves {self.max_machines} machines"
        pipe = MachinePipeline(
            machine_id,
            profile_for(machine_id, self.profiles, self.profile),
            self.config,
            storage=self.client.storage,
        )
        try:  # a worker taking the machine over continues where the last one was
            pipe.resume_from(self.state)
        except Exception:
            log.exception("reading the stored state of %s failed", machine_id)
        if self.metrics is not None:
            pipe.monitor.alerts.add_listener(
                lambda a, m=machine_id: self.metrics.alert(m, a.severity)
            )
        with self._lock:
            self._pipelines[machine_id] = pipe
        log.info("machine %s: new pipeline (profile %s)", machine_id, pipe.profile.source)
        return pipe, ""

    def _count(self, what: str, machine_id: str | None, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.count(what, machine_id or "", n)

    def _observe_batch(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.batch_seconds.observe(seconds)

    # -- running -------------------------------------------------------------------------
    def start(self) -> FleetWorker:
        """Join the group and start consuming and publishing; returns self."""
        self._stop.clear()
        self.client.start_consumer([self.config.kafka_topic], lambda _msgs: None)
        self._thread = threading.Thread(target=self._state_loop, name="amqadf-fleet-state")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop consuming (processed offsets are committed) and publish a last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.client.stop_consumer()
        for pipe in self.pipelines.values():
            self._publish(pipe)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Wait (bounded) until ``condition()`` holds; returns its last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    def _publish(self, pipe: MachinePipeline) -> None:
        self._published[pipe.machine_id] = time.monotonic()
        try:
            pipe.publish(self.state, self.worker_id)
        except Exception:  # a state store outage must not stop consumption
            log.exception("publishing the state of %s failed", pipe.machine_id)

    def _owned(self) -> list[MachinePipeline]:
        """Pipelines whose partitions this worker still owns; the others are dropped
        (between batches) so a partition that comes back starts from fresh state."""
        consumer = self.client.kafka_consumer
        pipes = self.pipelines
        if consumer is None:
            return list(pipes.values())
        try:
            assigned = set(consumer.assignment())
        except Exception:
            return list(pipes.values())
        owned, lost = [], []
        for pipe in pipes.values():
            (owned if pipe.partitions & assigned else lost).append(pipe)
        if lost:
            self.client.run_between_batches(lambda: self._drop(lost))
        return owned

    def _drop(self, lost: list[MachinePipeline]) -> None:
        consumer = self.client.kafka_consumer
        assigned = set(consumer.assignment()) if consumer is not None else set()
        with self._lock:
            for pipe in lost:
                if not pipe.partitions & assigned:  # not given back meanwhile
                    self._pipelines.pop(pipe.machine_id, None)
                    log.info("machine %s: partition moved away; pipeline dropped", pipe.machine_id)

    def _state_loop(self) -> None:
        while not self._stop.is_set():
            owned = self._owned()
            stale = time.monotonic() - self.heartbeat
            for pipe in owned:
                if pipe.dirty or self._published.get(pipe.machine_id, 0.0) < stale:
                    self._publish(pipe)
            if self.metrics is not None:
                self.metrics.observe_lag(self.client.kafka_consumer)
            if not owned:
                self._stop.wait(self.publish_interval)
                continue
            cursors = {p.machine_id: p.control_cursor for p in owned}
            try:
                commands = self.state.read_commands(cursors, timeout=self.publish_interval)
            except Exception:
                log.exception("reading operator commands failed")
                self._stop.wait(self.publish_interval)
                continue
            for machine_id, command_id, raw in commands:
                self._apply(self._pipelines.get(machine_id), command_id, raw)

    def _apply(self, pipe: MachinePipeline | None, command_id: str, raw: Any) -> None:
        """Parse and apply one command in the consumer thread; record the outcome."""
        if pipe is None:
            return
        outcome: dict[str, Any] = {"id": command_id, "ok": True, "reason": ""}
        try:
            cmd = parse_command(raw)
            outcome.update(action=cmd.action, by=cmd.by)
            self.client.run_between_batches(lambda: pipe.handle(cmd)).result(timeout=30)
        except (ValueError, KeyError, RuntimeError, TimeoutError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            outcome.update(ok=False, reason=str(reason))
            log.warning("machine %s: command %s ignored: %s", pipe.machine_id, command_id, reason)
        pipe.control_cursor = command_id
        pipe.last_command = outcome
        self._publish(pipe)
