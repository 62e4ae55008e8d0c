"""One machine's pipeline inside a fleet worker, and the state it publishes.

A :class:`MachinePipeline` is a :class:`~am_qadf.live_monitor.LiveMonitor` without a
consumer of its own (the worker's consumer feeds it the machine's messages): the
same profile-driven validation, mapping, voxel grid, SPC charts, alerts and SPC
baseline handling as the single-process monitor, so there is one implementation of
each. It keeps the machine's counters and turns its state into what the
:class:`~am_qadf.fleet.state_store.StateStore` holds.

>>> from am_qadf.streaming import StreamingConfig
>>> p = MachinePipeline("m7", profile_for("m7"), StreamingConfig.embedded())
>>> p.profile.machine.id, p.snapshot("w1").state
('m7', 'idle')
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Collection, Mapping
from itertools import repeat
from operator import itemgetter, setitem
from typing import Any

import numpy as np

from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import MonitorSnapshot
from am_qadf.monitoring.alerts import Alert
from am_qadf.streaming import StreamingConfig, StreamStorage
from am_qadf.streaming.streaming_result import StreamingResult
from am_qadf.streaming.timestamps import to_epoch_us

from .commands import Command
from .state_store import MachineSnapshot, StateStore

__all__ = ["MachinePipeline", "monitor_fields", "profile_for", "signal_windows"]

log = logging.getLogger(__name__)

#: Seconds of each live signal published as its recent window.
WINDOW_SECONDS = 10.0
#: Most voxels one brick delta carries values for (bounds one state-store entry).
MAX_DELTA_VOXELS = 200_000
#: Seconds between two writes of the heavier dashboard state (voxel state, SPC series,
#: rule violations): the snapshot, alerts, windows and deltas go every publish.
SLOW_STATE_S = 2.0
#: Most voxels the voxel state holds (16 bytes each: 32 MiB); beyond, a dashboard that
#: opens later draws what the deltas it reads bring.
MAX_STATE_VOXELS = 2_000_000
#: Newest rule violations published per chart.
MAX_VIOLATIONS = 200
_VIEWER = "fleet-state"


def profile_for(
    machine_id: str,
    profiles: Mapping[str, MachineProfile] | None = None,
    default: MachineProfile | None = None,
) -> MachineProfile:
    """The profile of ``machine_id``: its own from ``profiles`` (by machine id), else
    ``default`` (the simulator's) under this machine's id, so that baselines and
    history stay per machine.

    >>> profile_for("m2").machine.id
    'm2'
    """
    if profiles and machine_id in profiles:
        return profiles[machine_id]
    base = default or MachineProfile.default()
    if base.machine.id == machine_id:
        return base
    machine = dataclasses.replace(base.machine, id=machine_id, name="")
    return dataclasses.replace(base, machine=machine)


def monitor_fields(monitor: LiveMonitor, status: MonitorSnapshot | None = None) -> dict[str, Any]:
    """The :class:`MachineSnapshot` fields a monitor knows by itself: name, main signal,
    build, layer (and layer count and progress when the source plans the build),
    newest timestamp, errors, voxels, active alerts by severity, profile problems and
    the SPC baseline's origin, from the monitor's ``status`` (its
    :meth:`~LiveMonitor.monitor_snapshot`, taken here when not given). Who owns the
    machine, counts and times are the caller's.

    >>> from am_qadf.streaming import StreamingConfig
    >>> mon = LiveMonitor(MonitorConfig(streaming=StreamingConfig.embedded(), simulate=False))
    >>> f = monitor_fields(mon)
    >>> f["layer"], f["alerts_active"], f["signal"] == mon.profile.live_signals[0]
    (None, {}, True)
    """
    s = status or monitor.monitor_snapshot()
    by_severity: dict[str, int] = {}
    for a in monitor.alerts.active_alerts():
        by_severity[a.severity] = by_severity.get(a.severity, 0) + 1
    layer = s.current_layer
    layer = int(layer) if isinstance(layer, int | float) and np.isfinite(layer) else None
    layers = (s.build_plan or {}).get("layers")
    layers = int(layers) if isinstance(layers, int) and layers > 0 else None
    stamp = s.newest_timestamp
    live = monitor.profile.live_signals
    return {
        "name": monitor.profile.machine.title,
        "signal": live[0] if live else "",
        "build_id": None if s.build_id is None else str(s.build_id),
        "layer": layer,
        "layers": layers,
        "progress": None if layers is None or layer is None else min(1.0, (layer + 1) / layers),
        "newest_timestamp": stamp.isoformat() if hasattr(stamp, "isoformat") else stamp,
        "errors": s.stats.errors,
        "occupied_voxels": int(s.occupied_voxels),
        "alerts_active": by_severity,
        "problems": tuple(s.profile.get("problems", ())),
        "baseline": str(s.baseline.get("origin", "")),
    }


def signal_windows(
    monitor: LiveMonitor, seconds: float = WINDOW_SECONDS, names: Collection[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The last ``seconds`` of each of the monitor's live signals (those in ``names``
    if given): ``{signal: (epoch seconds, values)}`` (signals without data left out).

    >>> from am_qadf.streaming import StreamingConfig
    >>> mon = LiveMonitor(MonitorConfig(streaming=StreamingConfig.embedded(), simulate=False))
    >>> signal_windows(mon)
    {}
    """
    out = {}
    for spec in monitor.profile.signals:
        if not spec.live or (names is not None and spec.name not in names):
            continue
        try:
            data, us = monitor.client.get_buffer(spec.name).get_time_window_arrays(seconds)
        except KeyError:
            continue
        if len(data) and np.ndim(data) == 1:
            out[spec.name] = (us / 1e6, data)
    return out


class MachinePipeline:
    """The pipeline of ``machine_id`` (``profile``), storing into the worker's
    ``storage``. Processing runs in the worker's consumer thread; :meth:`publish`
    may run in another thread (everything it reads is thread-safe)."""

    def __init__(
        self,
        machine_id: str,
        profile: MachineProfile,
        streaming: StreamingConfig,
        storage: StreamStorage | None = None,
    ) -> None:
        self.machine_id = machine_id
        cfg = MonitorConfig(streaming=streaming, simulate=False, history_retention_s=None)
        self.monitor = LiveMonitor(cfg, profile=profile, storage=storage)
        self.profile = self.monitor.profile
        self.client = self.monitor.client
        #: (topic, partition) pairs this machine's messages came from.
        self.partitions: set[tuple[str, int]] = set()
        #: Next offset of each partition after the messages processed so far.
        self.offsets: dict[tuple[str, int], int] = {}
        #: Whether the charts continue a previous owner's (:meth:`resume_from`).
        self.restored = False
        # messages below these offsets are in the restored state already: stored only
        self._skip_below: dict[tuple[str, int], int] = {}
        self._since_checkpoint = False
        #: How this owner took the machine on (epoch seconds): ``created``, ``restored``
        #: (charts continued from a checkpoint), ``restore_ms``, ``stored_only`` (re-read
        #: messages the checkpoint held), ``first_batch`` and ``first_publish``.
        self.takeover: dict[str, Any] = {"created": time.time(), "restored": False}
        self.paused = False
        self.messages = 0
        self.dead_lettered = 0
        self.held = 0
        self.control_cursor = "0"
        self.last_command: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._alert_events: deque[dict[str, Any]] = deque(maxlen=1000)
        self._newest_alert: dict[str, Any] | None = None
        # alerts a previous owner already published, by what identifies the event
        # (rule, signal, build, time); an alert raised again from re-delivered
        # messages keeps the published id (new id -> published id)
        self._published_keys: dict[tuple[Any, ...], str] = {}
        self._aliases: dict[str, str] = {}
        # alert episodes the previous owner left open, by (metric, rule)
        self._resumed: dict[tuple[str, str], dict[str, Any]] = {}
        # (points the alert processor had seen, data time in epoch s) at the first and
        # the newest batch: the machine's data time per point
        self._clock: tuple[tuple[int, float], tuple[int, float]] | None = None
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self._slow_at = 0.0  # monotonic time of the latest heavy write
        self._bricks_since_slow = True  # voxels changed since the voxel state was written
        #: Voxel redraws (a new build or a replay cleared the grid): readers reload.
        self.voxel_generation = 0
        self._voxels_seen = False
        self._data_at: float | None = None
        self.dirty = True
        self.monitor.alerts.add_listener(self._on_alert)

    # -- consumer thread ---------------------------------------------------------------
    def validate(
        self, msgs: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]], list[str]]:
        """Split polled messages by this machine's validator (the client's own check)."""
        good, values, bad, reasons = self.client.validator.split(msgs, self.client.column_cache)
        with self._lock:
            self.dead_lettered += len(bad)
        return good, values, bad, reasons

    def process(self, msgs: list[dict[str, Any]], values: list[Any]) -> StreamingResult | None:
        """Run the machine's processors on ``values`` (None while paused: the messages
        are then only stored) and tag them with the machine id for history. Messages
        the restored state holds already (:meth:`resume_from`) are only stored."""
        # the newest offset of each partition (C-level: later messages overwrite)
        newest = dict(zip(map(_PARTITION, msgs), map(_OFFSET, msgs), strict=True))
        self.partitions.update(newest)
        todo = self._not_in_state(msgs, values) if self._skip_below else values
        before = self._points_seen()
        result = None
        if self.paused or len(todo) < len(values):  # mapped: history looks the same
            done = values if self.paused else values[: len(values) - len(todo)]
            self.client.mapper.map_batch(done, self.client.column_cache)
        if self.paused:
            with self._lock:
                self.held += len(values)
        elif todo:
            result = self.client.process_stream_batch(todo)
            # the monitor's listener: layer, SPC, bricks
            self.client.notify_listeners(todo, result)
        # tag every document for history (C-level map: no per-point Python loop)
        deque(map(setitem, values, repeat("machine_id"), repeat(self.machine_id)), maxlen=0)
        if todo and not self.paused:
            self._mark_clock(before, todo[0].get("timestamp"), todo[-1].get("timestamp"))
        with self._lock:
            self.messages += len(values)
            self._data_at = time.time()
            self.dirty = True
        self.offsets.update({tp: off + 1 for tp, off in newest.items()})
        self._since_checkpoint = True
        if "first_batch" not in self.takeover:
            self.takeover["first_batch"] = time.time()
        return result

    def _not_in_state(self, msgs: list[dict[str, Any]], values: list[Any]) -> list[Any]:
        """The values of ``msgs`` after those the restored state holds (a machine's
        messages come from one partition, in order: those held are a prefix)."""
        limit = self._skip_below
        off = np.fromiter(map(_OFFSET, msgs), np.int64, len(msgs))
        parts = list(map(_PARTITION, msgs))
        below = off < np.fromiter((limit.get(tp, -1) for tp in parts), np.int64, len(msgs))
        for tp in set(parts):  # a partition past its limit needs no look any more
            if tp in limit and off[len(parts) - 1 - parts[::-1].index(tp)] + 1 >= limit[tp]:
                del limit[tp]
        held = int(np.count_nonzero(below))
        self.takeover["stored_only"] = self.takeover.get("stored_only", 0) + held
        return values[held:] if held else values

    def checkpoint(self, store: StateStore, *, force: bool = False) -> bool:
        """Write the state a new owner continues from exactly (the monitor's charts,
        rules and alert episodes, the pause, and the next offset of each partition
        after the messages it holds) when messages were processed since the last one
        (or ``force``); the worker calls it in the consumer thread before it lets
        offsets be committed. True when written."""
        if not (self._since_checkpoint or force):
            return False
        state = {
            "offsets": [[t, p, o] for (t, p), o in self.offsets.items()],
            "paused": self.paused,
            "monitor": self.monitor.export_state(),
        }
        self.publish_alerts(store)  # the alerts its episodes refer to go first
        store.put_resume_state(self.machine_id, state)
        self._since_checkpoint = False
        return True

    def _points_seen(self) -> int:
        proc = self.client.processors.get("alert_processor")
        return int(getattr(proc, "points_seen", 0))

    def _mark_clock(self, before: int, first: Any, last: Any) -> None:
        """Note the points seen and the data time after a batch (and before the first)."""
        try:
            start = (before, to_epoch_us(first) / 1e6)
            mark = (self._points_seen(), to_epoch_us(last) / 1e6)
        except (TypeError, ValueError):  # no usable timestamp: keep the last marks
            return
        self._clock = (self._clock[0] if self._clock else start, mark)

    def resume_from(self, store: StateStore, checkpoint: bool = True) -> None:
        """Take over what a previous owner left in ``store``: the control cursor (no
        command applied twice or skipped), the published alerts (none published twice
        when re-delivered messages raise them again) and, with ``checkpoint``, the
        charts, rules, alert episodes and pause of the machine's last
        :meth:`checkpoint` (:attr:`restored`): they continue as if there had been no
        failover, the re-read messages it holds being only stored. (Owners write a
        machine's checkpoint before they commit offsets past any of its messages, so
        it holds every message of the machine before the committed offsets.) Without
        a checkpoint the charts are rebuilt from the messages and the published alert
        episodes are continued instead. ``ValueError`` when the checkpoint does not
        fit this pipeline (it may then be partly restored: make a new one)."""
        stored = store.snapshot(self.machine_id)
        if stored is not None:
            self.control_cursor = stored.control_cursor
            self.last_command = stored.last_command
        for event in store.alerts(self.machine_id, count=store.max_alerts):
            if event.get("event") == "raised" and isinstance(event.get("id"), str):
                self._published_keys[_alert_key(event)] = event["id"]
        if checkpoint and self._restore(store.resume_state(self.machine_id)):
            return
        for ep in store.episodes(self.machine_id):
            if isinstance(ep, dict) and isinstance(ep.get("id"), str):
                key = (ep.get("metric"), ep.get("group") or ep.get("rule"))
                known = self._resumed.get(key)  # rules of one episode: the longest
                if known is None or float(ep.get("until") or 0) > float(known.get("until") or 0):
                    self._resumed[key] = ep

    def _restore(self, state: Mapping[str, Any] | None) -> bool:
        """Continue from checkpoint ``state`` (False when there is none)."""
        if not state:
            return False
        try:
            offsets = {(str(t), int(p)): int(o) for t, p, o in state["offsets"]}
            monitor, paused = state["monitor"], bool(state["paused"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint of {self.machine_id}: {exc}") from None
        t0 = time.perf_counter()
        self.monitor.import_state(monitor)
        self.paused, self.restored = paused, True
        self.takeover.update(restored=True, restore_ms=(time.perf_counter() - t0) * 1e3)
        self.offsets, self._skip_below = dict(offsets), dict(offsets)
        return True

    def _episode_key(self, alert: Alert) -> tuple[str, str]:
        """(signal, episode group) of ``alert``: rules of a group share episodes."""
        group = self.monitor.alerts.episode_group
        return alert.metric, group(alert.rule) if group is not None else alert.rule

    def open_episodes(self) -> list[dict[str, Any]]:
        """Each (signal, rule)'s part in its newest alert episode, for the store
        (:meth:`StateStore.put_episodes`): published alert id, build, level, direction,
        data time of the episode's alert and ``until``, the data time (epoch s) its
        cooldown runs (or ran) to (a cooldown in points at the machine's data time per
        point)."""
        clock = self._clock
        if clock is None:
            return []
        (p0, t0), (p1, t1) = clock
        per_point = (t1 - t0) / (p1 - p0) if p1 > p0 else None
        out = []
        for e in self.monitor.alerts.open_episodes():
            ends = []
            if e["cooldown_seconds"] is not None and e["last_time"] is not None:
                ends.append(e["last_time"].timestamp() + e["cooldown_seconds"])
            pts, li = e["cooldown_points"], e["last_index"]
            if pts is not None and li is not None and per_point is not None:
                ends.append(t1 + (li + pts - p1) * per_point)
            # one whose cooldown is over stays listed: a new owner re-reads the messages
            # after the last commit, which can reach back into it
            if not ends:
                continue
            with self._lock:
                published = self._aliases.get(e["alert_id"], e["alert_id"])
            alert = self.monitor.alerts.get(e["alert_id"])
            # the cooldown in data seconds: how long before its alert a new owner's
            # rebuilt chart may cross and still be this episode (:meth:`_continues_resumed`)
            span = [e["cooldown_seconds"] or 0.0]
            if pts is not None and per_point is not None:
                span.append(pts * per_point)
            out.append(
                {
                    "metric": e["metric"],
                    "rule": e["rule"],
                    "group": e["group"],
                    "id": published,
                    "build_id": e["build_id"],
                    "level": e["level"],
                    "direction": e["direction"],
                    "time": alert.time.timestamp() if alert.time is not None else None,
                    "until": max(ends),
                    "cooldown_s": max(span),
                }
            )
        return out

    def _continues_resumed(self, alert: Alert) -> tuple[dict[str, Any], bool] | None:
        """The previous owner's open episode ``alert`` belongs to (same metric, episode
        group and build and side, from one cooldown before its alert until its cooldown
        ran out), and whether ``alert`` went further out than that episode had (an
        escalation). The new owner's charts are rebuilt from the messages after the last
        commit, so they can cross a little earlier than the old owner's did: within one
        cooldown of the episode's start, as a statistic joins an open episode."""
        ep = self._resumed.get(self._episode_key(alert))
        if ep is None or alert.time is None or ep.get("build_id") != alert.build_id:
            return None
        t = alert.time.timestamp()
        start = float(ep.get("time") or t) - float(ep.get("cooldown_s") or 0.0)
        if not start <= t <= float(ep.get("until") or 0.0):
            return None
        own = next(
            (
                e
                for e in self.monitor.alerts.open_episodes()
                if e["alert_id"] == alert.id and e["rule"] == alert.rule
            ),
            {"direction": 0, "level": 0},
        )
        d0, d = int(ep.get("direction") or 0), int(own["direction"])
        if d0 and d and d0 != d:  # the other side of the center: a new episode
            return None
        return ep, int(own["level"]) > int(ep.get("level") or 0)

    def handle(self, command: Command) -> None:
        """Apply an operator command (consumer thread, between batches); ``ValueError``
        or ``KeyError`` says why it could not be applied."""
        if command.action == "pause":
            self.paused = True
        elif command.action == "resume":
            self.paused = False
        elif command.action in ("acknowledge", "clear_alert"):
            asked = command.alert_id or ""
            own = next((n for n, p in self._aliases.items() if p == asked), asked)
            if command.action == "acknowledge":
                alert, event = self.monitor.acknowledge(own, by=command.by), "acknowledged"
            else:
                alert, event = self.monitor.clear_alert(own, by=command.by), "cleared"
            with self._lock:
                self._alert_events.append({**alert, "id": asked, "event": event})
        elif command.action == "relearn_baseline":
            self.monitor.relearn_baseline(by=command.by)
        with self._lock:
            self.dirty = True

    def _on_alert(self, alert: Alert) -> None:
        event = {**alert.to_dict(), "event": "raised"}
        published = self._published_keys.get(_alert_key(event))
        resumed = self._continues_resumed(alert) if published is None else None
        if resumed is not None:  # our first alert in an episode taken over
            ep, further = resumed
            del self._resumed[self._episode_key(alert)]
            if further:  # beyond the level the episode had reached: an escalation of it
                event["details"] = {**event["details"], "escalates": ep["id"]}
            else:  # the same episode: not raised again
                published = ep["id"]
        with self._lock:
            if published is not None:  # raised again after a takeover: same alert
                self._aliases[alert.id] = published
                return
            escalates = event["details"].get("escalates")
            if escalates in self._aliases:
                event["details"] = {**event["details"], "escalates": self._aliases[escalates]}
            self._alert_events.append(event)
            self._newest_alert = event

    # -- publishing --------------------------------------------------------------------
    def snapshot(self, worker: str, status: MonitorSnapshot | None = None) -> MachineSnapshot:
        """The machine's figures now, as published by ``worker`` (from the monitor's
        ``status`` when the caller has it already)."""
        s = status or self.monitor.monitor_snapshot()
        now = time.monotonic()
        with self._lock:
            t0, n0 = self._rate_mark
            if now - t0 >= 0.5:
                self._rate = (self.messages - n0) / (now - t0)
                self._rate_mark = (now, self.messages)
            counts = (self.messages, self.dead_lettered, self.held, self._rate)
            newest = self._newest_alert
            data_at = self._data_at
        return MachineSnapshot(
            machine_id=self.machine_id,
            state="paused" if self.paused else ("running" if counts[0] else "idle"),
            worker=worker,
            messages=counts[0],
            rate=round(counts[3], 1),
            dead_lettered=counts[1],
            held=counts[2],
            newest_alert=newest,
            control_cursor=self.control_cursor,
            last_command=self.last_command,
            data_at=data_at,
            updated_at=time.time(),
            **monitor_fields(self.monitor, s),
        )

    def windows(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The last :data:`WINDOW_SECONDS` of each live signal: (epoch seconds, values)."""
        return signal_windows(self.monitor)

    def _voxels(self, bricks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Occupied voxels in ``bricks`` with their display-signal (the profile's first
        signal) values; None when there are more than :data:`MAX_DELTA_VOXELS` (a
        reader then redraws those bricks from the history) or no value yet."""
        if not self.profile.signal_names:
            return None
        try:
            ijk, values = self.monitor.grid.get_occupied(self.profile.signal_names[0], bricks)
        except (KeyError, ValueError):  # no point of that signal yet
            return None
        return (ijk, values) if len(ijk) <= MAX_DELTA_VOXELS else None

    def view(self, status: MonitorSnapshot | None = None) -> dict[str, Any]:
        """What one machine's dashboard shows beyond the snapshot (JSON-ready, a few kB):
        the monitor's status figures, grid geometry, build layers seen per voxel layer,
        alert counts, SPC chart kinds and the voxel generation (readers reload voxels
        when it moves). The states of the charts run beside each signal's own are a
        part of their own (:meth:`spc_charts`)."""
        mon = self.monitor
        status = status or mon.monitor_snapshot()
        # shallow: its reports are serialized as they are, not copied first
        snap = status.to_dict()
        snap.pop("health", None)  # the pipeline's own client consumes nothing
        stamp = snap.get("newest_timestamp")
        snap["newest_timestamp"] = stamp.isoformat() if hasattr(stamp, "isoformat") else stamp
        layers = [
            (k, *seen) for k in range(mon.grid_info().dims[2]) if (seen := mon.build_layers(k))
        ]
        spc = mon.spc
        signals = list(spc.signals) if spc is not None else []
        return {
            "snapshot": snap,
            "published_at": time.time(),
            "grid": dataclasses.asdict(mon.grid_info()),
            "layers": layers,
            "alert_counts": dataclasses.asdict(mon.alert_counts()),
            "buffered_seconds": mon.buffered_seconds(),
            "spc_kinds": {s: mon.spc_kinds(s) for s in signals if isinstance(s, str)},
            "voxel_generation": self.voxel_generation,
            "takeover": self.takeover,
        }

    def spc_charts(self) -> dict[str, Any]:
        """The states of the charts run beside each signal's own, by chart kind (the
        view's ``spc_charts`` part: ~100 kB, read only by a dashboard's SPC view)."""
        mon = self.monitor
        return {k: mon.spc_state(k) for k in mon.config.spc_charts}

    def _publish_slow(self, store: StateStore) -> None:
        """The heavier state, every :data:`SLOW_STATE_S`: SPC series and violations of
        every chart, and the voxel state (when voxels changed since)."""
        mon = self.monitor
        kinds = {(k, s) for s, ks in self.view_kinds().items() for k in ks}
        series = {(k, s): mon.spc_series(k, s) for k, s in sorted(kinds)}
        store.put_spc_series(self.machine_id, {key: v for key, v in series.items() if len(v[1])})
        violations = {k: mon.spc_violations(k)[-MAX_VIOLATIONS:] for k in {k for k, _ in kinds}}
        store.put_view_part(self.machine_id, "violations", violations)
        if self._bricks_since_slow and self.profile.signal_names:
            ijk, values = mon.occupied(self.profile.signal_names[0])
            if len(ijk) <= MAX_STATE_VOXELS:
                store.put_voxels(self.machine_id, ijk, values)
                self._bricks_since_slow = False

    def view_kinds(self) -> dict[str, list[str]]:
        """The chart kinds run on each charted signal (:meth:`LiveMonitor.spc_kinds`)."""
        spc = self.monitor.spc
        names = [s for s in (spc.signals if spc is not None else []) if isinstance(s, str)]
        return {s: self.monitor.spc_kinds(s) for s in names}

    def publish_alerts(self, store: StateStore) -> None:
        """Write the alert events raised since the last write and the open alert
        episodes: the part of the state a new owner resumes from, so the worker writes
        it before a batch's offsets may be committed (:meth:`publish` writes the rest)."""
        with self._lock:
            events = list(self._alert_events)
            self._alert_events.clear()
        if events:
            store.add_alerts(self.machine_id, events)
        # after the alerts they refer to: a new owner never aliases an unpublished alert
        store.put_episodes(self.machine_id, self.open_episodes())

    def publish(self, store: StateStore, worker: str) -> None:
        """Write the machine's derived state to ``store``: new alert events and open
        episodes (:meth:`publish_alerts`), snapshot, SPC state, signal windows, the
        bricks changed since the last publish and the machine's view; every
        :data:`SLOW_STATE_S` also SPC series, rule violations and the voxel state."""
        with self._lock:
            self.dirty = False
        self.publish_alerts(store)
        bricks, full = self.monitor.take_updated_bricks(_VIEWER)
        if full and self._voxels_seen:  # the grid was cleared (new build or replay)
            self.voxel_generation += 1
            self._slow_at = 0.0
            self._bricks_since_slow = True
        self._voxels_seen = True
        if len(bricks):
            store.add_bricks(self.machine_id, bricks, self._voxels(bricks))
            self._bricks_since_slow = True
        spc = self.monitor.spc_state()
        if spc:
            store.put_spc(self.machine_id, spc)
        windows = self.windows()
        if windows:
            store.put_windows(self.machine_id, windows)
        now = time.monotonic()
        if now - self._slow_at >= SLOW_STATE_S:
            self._slow_at = now
            self._publish_slow(store)
        status = self.monitor.monitor_snapshot()  # one for both
        if "first_batch" in self.takeover:  # published with what it processed
            self.takeover.setdefault("first_publish", time.time())
        store.put_view_part(self.machine_id, "spc_charts", self.spc_charts())
        store.put_view(self.machine_id, self.view(status))
        store.put_snapshot(self.snapshot(worker, status))


_PARTITION, _OFFSET = itemgetter("topic", "partition"), itemgetter("offset")


def _alert_key(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two raised alert events the same alert, whoever raised them."""
    return (event.get("rule"), event.get("metric"), event.get("build_id"), event.get("time"))
