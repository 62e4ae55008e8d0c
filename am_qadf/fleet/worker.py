"""The fleet worker: consume a topic in a consumer group, one pipeline per machine,
publish derived state.

A :class:`FleetWorker` runs the streaming library's consume loop
(:class:`~am_qadf.streaming.consumer_loop.ConsumerLoop`: poll, dead-letter through a
:class:`~am_qadf.streaming.dead_letter_writer.DeadLetterWriter`, store history through
a :class:`~am_qadf.streaming.batch_writer.BatchWriter`, commit only what is stored)
with a handler that routes validation and processing by machine: the Kafka message
key is the machine id, and each machine gets a
:class:`~am_qadf.fleet.machine_pipeline.MachinePipeline` the first time its key is
seen, from its own profile (``profiles``) or the default.
A state thread publishes each machine's derived state to a
:class:`~am_qadf.fleet.state_store.StateStore` as soon as a batch changed it, at
most once per ``publish_interval`` seconds per machine (which bounds the store's
load whatever the message rate; each publish is one round trip), and every machine
at least every ``heartbeat`` seconds, so a reader tells a live idle machine from one
whose worker died by the snapshot's ``updated_at``. A control thread waits on the
machines' control streams and applies operator commands between two batches.

Failover. Workers of one group split the partitions; a machine's messages stay on
one partition (keyed), so a machine has one owner at a time. History documents
keep the idempotent ``_id`` ``topic:partition:offset``, so when a partition moves
to another worker and the messages after its last commit are delivered again,
history does not double. The analysis state is **resumed**: before it lets offsets
be committed, the owner writes each machine's checkpoint (every chart's running
state, the threshold rules' history, the alert episodes, the pause, and the
offsets they cover) at most every ``checkpoint_interval`` s, and a new owner
continues from it exactly, storing without charting again the re-read messages it
holds (:meth:`MachinePipeline.resume_from`). The voxel grid and signal windows
start again from the messages the new owner reads; without a usable checkpoint the
charts are rebuilt from them (SPC baseline reloaded from the baseline store, per
machine and material). Also resumed from the store: the control cursor, so no operator command is
applied twice or skipped; the published alerts, so an alert raised again from
re-delivered messages (same rule, signal, build and time) is not published twice
(and can be acknowledged under its published id); and the alert episodes (published
with the state), so an alert of the new owner that continues an episode the last
owner raised (same rule, signal, build and side, within its cooldown) is counted on
it instead of being raised again, unless it goes further out (then it is published
as that episode's escalation). A worker drops the pipelines of partitions it no
longer owns, and never publishes for them.

Group settings for fast takeover (real Kafka): ``session.timeout.ms`` 6 s (the
broker's minimum) with 1 s heartbeats, so a killed worker's partitions move within
about 6 s; offsets are committed every second (less to redo). No static membership
(``group.instance.id``): it would keep a dead worker's partitions unassigned for the
whole session timeout, which suits restarts in place but not takeover.
``cooperative-sticky`` assignment: a rebalance moves only the partitions that change
owner, so the survivor keeps consuming its own partitions (and their pipelines)
while it takes the dead worker's over, instead of giving all of them back and
re-reading its own from their last commit. A small prefetch queue, so partitions
taken over are not queued behind the survivor's own backlog, and at most 256 kB of a
partition per fetch, so they are not fetched one backlog after another.

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
from am_qadf.streaming import (
    BatchWriter,
    ConsumerLoop,
    DeadLetterWriter,
    KafkaConsumer,
    Split,
    StreamingConfig,
    StreamStorage,
)
from am_qadf.streaming.consumer_loop import make_consumer, wait_until
from am_qadf.streaming.message_columns import ColumnCache
from am_qadf.streaming.streaming_client import build_storage

from .commands import parse_command
from .machine_pipeline import MachinePipeline, profile_for
from .state_store import StateStore, check_machine_id

__all__ = ["FleetWorker", "TAKEOVER_KAFKA_CONFIG"]

log = logging.getLogger(__name__)

#: librdkafka settings a worker adds (the user's ``kafka_config`` wins): see above.
TAKEOVER_KAFKA_CONFIG: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "partition.assignment.strategy": "cooperative-sticky",
    # a small prefetch queue: partitions taken over are not queued behind seconds of
    # the survivor's own backlog
    "queued.max.messages.kbytes": 4096,
    # each fetch brings a little of every partition: the first messages of all the
    # partitions taken over come in the first fetch, not one partition's backlog
    # (1 MB by default, ~1 s of processing each) after another
    "max.partition.fetch.bytes": 262_144,
    # fetches of at least 256 kB or 25 ms instead of one per produced batch: at 8 x 5 k
    # msg/s ~28 % less broker CPU and ~20 % less client CPU for ~16 ms more latency
    # (both matter on a host where the workers share the cores with the broker)
    "fetch.min.bytes": 262144,
    "fetch.wait.max.ms": 25,
}
#: Seconds between two looks at the consumer's assignment (to drop machines moved away).
_OWNERSHIP_CHECK_S = 0.5


class _MachineRouter:
    """The worker's consume-loop handler: each message's key picks its machine's
    pipeline, which validates and processes it."""

    def __init__(self, worker: FleetWorker) -> None:
        self._worker = worker
        # per machine: (pipeline, valid messages, their values); set by split for the
        # process call that follows it in the consumer thread
        self._routed: list[tuple[MachinePipeline, list[dict[str, Any]], list[Any]]] = []

    def split(self, msgs: list[dict[str, Any]]) -> Split:
        worker = self._worker
        good: list[dict[str, Any]] = []
        values: list[Any] = []
        bad: list[dict[str, Any]] = []
        reasons: list[str] = []
        self._routed = []
        for key, part in _by_key(msgs):
            pipe, refusal = worker._pipeline_for(key)
            if pipe is None:
                bad += part
                reasons += [refusal] * len(part)
                # not the key itself: label values must not come from outside
                worker._count("dead_letters", "<refused>", len(part))
                continue
            g, v, b, r = pipe.validate(part)
            worker._count("messages_in", pipe.machine_id, len(part))
            worker._count("dead_letters", pipe.machine_id, len(b))
            self._routed.append((pipe, g, v))
            good += g
            values += v
            bad += b
            reasons += r
        return Split(good, values, bad, reasons)

    def process(
        self, good: list[dict[str, Any]], values: list[Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        worker = self._worker
        routed, self._routed = self._routed, []
        started = time.perf_counter()
        done_msgs: list[dict[str, Any]] = []
        done_values: list[Any] = []
        types: set[type] = {str}  # the machine_id each value is tagged with
        for pipe, g, v in routed:
            if not g:
                continue
            try:
                pipe.process(g, v)
            except Exception as exc:  # this machine's batch only; the others go on
                worker.loop_or_fail().set_aside(g, exc)
                worker._count("dead_letters", pipe.machine_id, len(g))
                continue
            done_msgs += g
            done_values += v
            if "assigned" not in pipe.takeover:
                worker._note_assigned(pipe)
            # known from this machine's validation (its cache): not scanned again below
            types |= pipe.client.column_cache.value_types(v)
            worker._count("messages_out", pipe.machine_id, len(g))
            worker._publish_alerts(pipe)
        columns = worker.loop_or_fail().columns
        if columns is not None:  # history's type check of the joined batch reads them
            columns.note_value_types(done_values, types)
        worker._observe_batch(time.perf_counter() - started)
        return done_msgs, done_values


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
        publish_interval: float = 0.1,
        heartbeat: float = 2.0,
        max_machines: int = 256,
        metrics: Any = None,
        checkpoint_interval: float = 1.0,
    ) -> None:
        if not publish_interval > 0:
            raise ValueError(f"publish_interval must be > 0 s, got {publish_interval!r}")
        if not checkpoint_interval >= 0:
            raise ValueError(f"checkpoint_interval must be >= 0 s, got {checkpoint_interval!r}")
        self.checkpoint_interval = float(checkpoint_interval)
        self._checkpoint_at = 0.0  # monotonic time of the latest checkpoint
        self._checkpoint_failed = False
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
        #: History (None when both cache and history are off), shared by the machines.
        self.storage: StreamStorage | None = build_storage(config)
        #: Dead letters of the topic (kept across restarts of the loop).
        self.dead_letters = DeadLetterWriter.from_config(config)
        self._router = _MachineRouter(self)
        self._loop: ConsumerLoop | None = None
        self._pipelines: dict[str, MachinePipeline] = {}
        self._lock = threading.Lock()
        self._publishing = threading.Lock()  # one publish at a time (state, control)
        self._stop = threading.Event()
        self._changed = threading.Event()  # a batch was processed
        self._lost: set[str] = set()  # machines whose partitions moved away
        self._threads: list[threading.Thread] = []

    # -- machines ------------------------------------------------------------------------
    @property
    def pipelines(self) -> dict[str, MachinePipeline]:
        """This worker's machines by id (a copy)."""
        with self._lock:
            return dict(self._pipelines)

    def _pipeline_for(self, key: str | None) -> tuple[MachinePipeline | None, str]:
        """Consumer thread: the pipeline of messages keyed ``key`` (made on first
        sight, continuing the machine's checkpoint), or None and why their messages
        are dead-lettered."""
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
        pipe = self._new_pipeline(machine_id)
        try:  # a worker taking the machine over continues where the last one was
            pipe.resume_from(self.state)
        except Exception:
            log.exception("resuming %s from its checkpoint failed; charts rebuilt", machine_id)
            pipe = self._new_pipeline(machine_id)
            try:
                pipe.resume_from(self.state, checkpoint=False)
            except Exception:
                log.exception("reading the stored state of %s failed", machine_id)
        if pipe.restored:
            log.info("machine %s: charts continue from its checkpoint", machine_id)
        if self.metrics is not None:
            pipe.monitor.alerts.add_listener(
                lambda a, m=machine_id: self.metrics.alert(m, a.severity)
            )
        with self._lock:
            self._pipelines[machine_id] = pipe
        log.info("machine %s: new pipeline (profile %s)", machine_id, pipe.profile.source)
        return pipe, ""

    def _note_assigned(self, pipe: MachinePipeline) -> None:
        """Record in ``pipe``'s takeover record when its partition came to this worker."""
        consumer = self.kafka_consumer
        times = [consumer.assigned_at(*tp) for tp in pipe.partitions] if consumer else []
        pipe.takeover["assigned"] = min((t for t in times if t is not None), default=None)

    def _new_pipeline(self, machine_id: str) -> MachinePipeline:
        profile = profile_for(machine_id, self.profiles, self.profile)
        return MachinePipeline(machine_id, profile, self.config, storage=self.storage)

    def _checkpoint(self, final: bool) -> bool:
        """Consumer thread, before finished offsets are stored for commit: every
        ``checkpoint_interval`` s (and at the end) write the checkpoint of each machine
        processed since the last one whose partition this worker still owns, then let
        the offsets go (they are at most what the checkpoints hold). A write that
        fails does not hold offsets back (held, they would pile up in memory for as
        long as the store is down); every machine's checkpoint is written again at
        the next one. A checkpoint that cannot be made is deleted, so the next owner
        rebuilds that machine's charts instead of continuing an old state."""
        now = time.monotonic()
        if not final and now - self._checkpoint_at < self.checkpoint_interval:
            return False
        self._checkpoint_at = now
        consumer = self.kafka_consumer
        try:
            assigned = set(consumer.assignment()) if consumer is not None else None
        except Exception:  # closing: the pipelines' own record of partitions is all there is
            assigned = None
        failed, force = False, self._checkpoint_failed
        with self._publishing:
            try:
                with self.state.batched():  # one round trip for every machine
                    for pipe in list(self._pipelines.values()):
                        if assigned is not None and not pipe.partitions & assigned:
                            continue  # moved away: its new owner writes it now
                        try:
                            pipe.checkpoint(self.state, force=force)
                        except Exception:
                            log.exception("no checkpoint of %s; deleted", pipe.machine_id)
                            self.state.put_resume_state(pipe.machine_id, {})
            except Exception:  # the store: write them all again next time
                log.exception("writing the checkpoints failed")
                failed = True
        self._checkpoint_failed = failed
        return True

    def _count(self, what: str, machine_id: str | None, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.count(what, machine_id or "", n)

    def _observe_batch(self, seconds: float) -> None:
        """Consumer thread, after each batch: time it, and wake the state thread."""
        self._changed.set()
        if self.metrics is not None:
            self.metrics.batch_seconds.observe(seconds)

    # -- running -------------------------------------------------------------------------
    @property
    def kafka_consumer(self) -> KafkaConsumer | None:
        """The consumer while the worker runs (None otherwise)."""
        loop = self._loop
        return loop.consumer if loop is not None else None

    def loop_or_fail(self) -> ConsumerLoop:
        """The running consume loop (RuntimeError when the worker is not started)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the worker is not running; call start() first")
        return loop

    def statistics(self) -> dict[str, Any]:
        """The consume loop's figures: ``consumer_state``, ``messages`` (processed, all
        machines), ``dead_lettered``, ``errors``, ``last_error``, ``consumer_lag``,
        ``backpressure``.

        >>> from am_qadf.fleet.state_store import InProcessStateStore
        >>> worker = FleetWorker(StreamingConfig.embedded(), InProcessStateStore())
        >>> worker.statistics()["consumer_state"]
        'stopped'
        """
        loop = self._loop
        return {
            "consumer_state": loop.state if loop is not None else "stopped",
            "messages": sum(p.messages for p in self.pipelines.values()),
            "dead_lettered": self.dead_letters.count,
            "errors": loop.errors if loop is not None else 0,
            "last_error": loop.last_error if loop is not None else None,
            "consumer_lag": loop.consumer.lag() if loop is not None else 0,
            "backpressure": loop is not None and loop.history.backpressure,
        }

    def start(self) -> FleetWorker:
        """Join the group and start consuming and publishing; returns self."""
        if self._loop is not None:
            raise RuntimeError("the worker is already running; call stop() first")
        self._stop.clear()
        cfg = self.config
        self._loop = ConsumerLoop(
            make_consumer(cfg, [cfg.kafka_topic]),
            self._router,
            BatchWriter(self.storage, history=cfg.enable_mongodb_storage),
            self.dead_letters,
            columns=ColumnCache(),
            auto_commit=cfg.enable_auto_commit,
            checkpoint=self._checkpoint,
        ).start()
        self._threads = [
            threading.Thread(target=loop, name=name, daemon=True)
            for loop, name in (
                (self._state_loop, "amqadf-fleet-state"),
                (self._control_loop, "amqadf-fleet-control"),
            )
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop consuming (processed offsets are committed) and publish a last time."""
        self._stop.set()
        self._changed.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        for pipe in self.pipelines.values():
            self._publish(pipe)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Wait (bounded) until ``condition()`` holds; returns its last value."""
        return wait_until(condition, timeout)

    def _publish(self, pipe: MachinePipeline) -> None:
        with self._publishing:
            self._published[pipe.machine_id] = time.monotonic()
            try:
                with self.state.batched():  # one round trip to the store per publish
                    pipe.publish(self.state, self.worker_id)
            except Exception:  # a state store outage must not stop consumption
                log.exception("publishing the state of %s failed", pipe.machine_id)

    def _publish_alerts(self, pipe: MachinePipeline) -> None:
        """Alerts and episodes of a batch, written before its offsets can be committed:
        were they published later, on the state loop, a worker killed in between would
        leave committed messages whose alert or episode extension no one published, and
        the new owner would raise the episode again."""
        with self._publishing:
            try:
                with self.state.batched():
                    pipe.publish_alerts(self.state)
            except Exception:  # a state store outage must not stop consumption
                log.exception("publishing the alerts of %s failed", pipe.machine_id)

    def _owned(self) -> list[MachinePipeline]:
        """Pipelines whose partitions this worker still owns; the others are dropped
        (between batches) so a partition that comes back starts from fresh state."""
        loop = self._loop
        pipes = self.pipelines
        if loop is None:
            return list(pipes.values())
        consumer = loop.consumer
        try:
            assigned = set(consumer.assignment())
        except Exception:
            return list(pipes.values())
        owned, lost = [], []
        for pipe in pipes.values():
            (owned if pipe.partitions & assigned else lost).append(pipe)
        self._lost = {p.machine_id for p in lost}
        if lost:
            loop.run_between_batches(lambda: self._drop(lost))
        return owned

    def _drop(self, lost: list[MachinePipeline]) -> None:
        consumer = self.kafka_consumer
        assigned = set(consumer.assignment()) if consumer is not None else set()
        with self._lock:
            for pipe in lost:
                if not pipe.partitions & assigned:  # not given back meanwhile
                    self._pipelines.pop(pipe.machine_id, None)
                    log.info("machine %s: partition moved away; pipeline dropped", pipe.machine_id)

    def _state_loop(self) -> None:
        """Publish each machine a batch changed, at most every ``publish_interval`` s,
        and every machine at least every ``heartbeat`` s."""
        next_check = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_check:  # the assignment only changes at rebalances
                next_check = now + _OWNERSHIP_CHECK_S
                pipes = self._owned()
                if self.metrics is not None:
                    self.metrics.observe_lag(self.kafka_consumer)
            else:  # those found moved away are not published while being dropped
                pipes = [p for p in self.pipelines.values() if p.machine_id not in self._lost]
            self._changed.clear()  # before reading the dirty flags: no batch is missed
            waiting = []  # when machines changed again since their publish may go
            for pipe in pipes:
                last = self._published.get(pipe.machine_id, 0.0)
                if last + (self.publish_interval if pipe.dirty else self.heartbeat) <= now:
                    self._publish(pipe)
                    now = time.monotonic()
                    last = now
                if pipe.dirty:
                    waiting.append(last + self.publish_interval)
            if waiting:
                self._stop.wait(max(0.0, min(waiting) - now))
            else:
                self._changed.wait(_OWNERSHIP_CHECK_S)

    def _control_loop(self) -> None:
        """Wait on the owned machines' control streams; apply commands as they come."""
        while not self._stop.is_set():
            pipes = self.pipelines
            if not pipes:
                self._stop.wait(self.publish_interval)
                continue
            cursors = {m: p.control_cursor for m, p in pipes.items()}
            try:
                commands = self.state.read_commands(cursors, timeout=_OWNERSHIP_CHECK_S)
            except Exception:
                log.exception("reading operator commands failed")
                self._stop.wait(1.0)
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
            loop = self.loop_or_fail()
            loop.run_between_batches(lambda: pipe.handle(cmd)).result(timeout=30)
        except (ValueError, KeyError, RuntimeError, TimeoutError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            outcome.update(ok=False, reason=str(reason))
            log.warning("machine %s: command %s ignored: %s", pipe.machine_id, command_id, reason)
        pipe.control_cursor = command_id
        pipe.last_command = outcome
        self._publish(pipe)
