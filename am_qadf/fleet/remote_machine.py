"""One machine of a fleet as a dashboard sees it: a
:class:`~am_qadf.machine_view.MachineSource` read from the state store.

A :class:`RemoteMachine` reads what the worker that owns the machine publishes
(:meth:`~am_qadf.fleet.machine_pipeline.MachinePipeline.publish`): snapshot, machine
view, signal windows, alerts, SPC state and series, voxel state and deltas. It never
sees a message. Operator actions go to the worker through the machine's control
stream (:func:`~am_qadf.fleet.commands.send_action`, with the same
:class:`~am_qadf.access_policy.AccessPolicy` role check the single-process dashboard
makes); replaying, test defects and deleting history are not offered for a fleet
machine. Its stored history is queried (only its own messages: ``machine_id``) when a
``history`` store is given, e.g. the MongoDB the workers write to.

Voxels are mirrored once per :class:`RemoteMachine` into a voxel grid (the display
signal's values; the voxel state first, then the deltas after it), and its alert events
are kept as read (only the new ones are read again), so every session of a dashboard
process shares one mirror, one change log, one alert list and the store reads of the
last :data:`READ_TTL_S`; :meth:`with_policy` gives a session its own access policy over
the same shared state.

>>> from am_qadf.access_policy import AccessPolicy
>>> from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
>>> store = InProcessStateStore()
>>> store.put_snapshot(MachineSnapshot("m2", name="EOS 2", state="running", layer=5))
>>> m2 = RemoteMachine(store, "m2", policy=AccessPolicy(operators={"ada"}))
>>> snap = m2.monitor_snapshot()
>>> snap.name, snap.current_layer, snap.state
('EOS 2', 5, 'running')
>>> m2.pause(by="bob")
Traceback (most recent call last):
...
PermissionError: user 'bob' (viewer) may not pause; ask an operator
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

import numpy as np

from am_qadf.access_policy import AccessPolicy
from am_qadf.live_monitor import feed_state
from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import (
    AlertCounts,
    ChartState,
    GridInfo,
    MonitorSnapshot,
    SignalWindow,
    Violation,
    alert_from_dict,
    chart_state,
    chart_states,
    violations,
)
from am_qadf.monitoring.alerts import Alert
from am_qadf.streaming import StreamStorage
from am_qadf.streaming.brick_changes import BrickChangeLog
from am_qadf.voxelization.voxel_grid import VoxelGrid

from .commands import send_action
from .machine_pipeline import profile_for
from .state_store import MachineSnapshot, StateStore, check_machine_id

__all__ = ["REMOTE_ACTIONS", "RemoteMachine"]

#: Operator actions a fleet machine's worker takes (see :data:`FLEET_ACTIONS`), by
#: their access-policy names.
REMOTE_ACTIONS: frozenset[str] = frozenset(
    {"pause", "resume", "acknowledge", "clear_alert", "relearn_baseline"}
)
#: Seconds a read of the store is reused (every session's tick asks).
READ_TTL_S = 0.2


class _Mirror:
    """The machine's voxels (display signal) and their change log, shared by sessions."""

    def __init__(self, grid: GridInfo) -> None:
        self.grid = VoxelGrid(grid.bbox_min, grid.bbox_max, grid.resolution, aggregation="last")
        self.changes = BrickChangeLog(self.grid.brick_dims)
        self.cursor: str | None = None
        self.generation: int | None = None
        self.synced_at = 0.0
        self.lock = threading.Lock()


class _AlertWindow:
    """The newest alert events read (as many as the store keeps), each with its parsed
    alert (None: malformed), the change cursor after them, and the alerts shown."""

    def __init__(self, size: int) -> None:
        self.events: deque[tuple[str | None, Alert | None]] = deque(maxlen=size)
        self.cursor: str | None = None
        self.shown: list[Alert] = []
        self.lock = threading.Lock()


class _Shared:
    """What every session's copy of one :class:`RemoteMachine` shares."""

    def __init__(self, max_alerts: int) -> None:
        self.cache: dict[str, tuple[float, Any]] = {}
        self.cache_lock = threading.Lock()
        self.mirror: _Mirror | None = None
        self.mirror_lock = threading.Lock()
        self.alerts = _AlertWindow(max_alerts)


def _parsed(event: dict[str, Any]) -> Alert | None:
    try:
        return alert_from_dict(event)
    except (ValueError, TypeError):
        return None  # a malformed event is not shown


class RemoteMachine:
    """Machine ``machine_id`` of the fleet in ``store``, for one machine's dashboard.

    ``profile`` is the machine's (default: the simulator's under this id, as a worker
    without a profile of its own uses); ``policy`` says who may act (checked here, on
    the server, before a command is sent); ``stale_after`` seconds without a publish
    make the feed "stale"; ``history`` (a :class:`StreamStorage` the workers write to)
    answers history queries. ``KeyError`` if the store has no state of the machine.
    """

    def __init__(
        self,
        store: StateStore,
        machine_id: str,
        *,
        profile: MachineProfile | None = None,
        policy: AccessPolicy | None = None,
        stale_after: float = 6.0,
        history: StreamStorage | None = None,
    ) -> None:
        self.store = store
        self.machine_id = check_machine_id(machine_id)
        if machine_id not in store.machines():
            raise KeyError(f"no machine {machine_id!r} in the state store")
        self.profile = profile_for(machine_id, default=profile)
        self.policy = policy or AccessPolicy()
        self.stale_after = float(stale_after)
        self.history = history
        self._shared = _Shared(store.max_alerts)

    def with_policy(self, policy: AccessPolicy) -> RemoteMachine:
        """The same machine (same reads, voxel mirror and alerts) with another access
        policy: one per browser session.

        >>> from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
        >>> store = InProcessStateStore()
        >>> store.put_snapshot(MachineSnapshot("m1"))
        >>> m1 = RemoteMachine(store, "m1")
        >>> m1.with_policy(AccessPolicy())._shared is m1._shared
        True
        """
        other = copy.copy(self)
        other.policy = policy
        return other

    # -- reading the store (cached briefly: every session's tick asks) -------------------
    def _read(self, what: str, read: Any) -> Any:
        now = time.monotonic()
        shared = self._shared
        with shared.cache_lock:
            hit = shared.cache.get(what)
            if hit is not None and now - hit[0] < READ_TTL_S:
                return hit[1]
        value = read()
        with shared.cache_lock:
            shared.cache[what] = (now, value)
        return value

    def _snapshot(self) -> MachineSnapshot:
        snap = self._read("snapshot", lambda: self.store.snapshot(self.machine_id))
        return snap or MachineSnapshot(self.machine_id)

    def _view(self) -> dict[str, Any]:
        """The machine's view without its parts: what every tick needs (a few kB)."""
        return self._read("view", lambda: self.store.view(self.machine_id, parts=("",)))

    def _view_part(self, part: str) -> Any:
        """One part of the machine's view (the SPC chart states and rule violations are
        ~100 kB each: read only by the views that show them)."""

        def read() -> Any:
            got = self.store.view(self.machine_id, parts=(part,))
            return got[part] if part in got else self._view().get(part)  # an older worker

        return self._read(f"view:{part}", read)

    def _windows(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self._read("windows", lambda: self.store.windows(self.machine_id))

    def _alerts(self) -> list[Alert]:
        """Every kept alert in its newest published state, oldest raised first (only
        the events published since the last read are read and parsed)."""

        def read() -> list[Alert]:
            window = self._shared.alerts
            with window.lock:
                cursor, events, full = self.store.alerts_since(self.machine_id, window.cursor)
                window.cursor = cursor
                if full:
                    window.events.clear()
                # every event takes its place in the window, as in the store's stream;
                # one without an id is not shown
                window.events.extend(
                    (e["id"], _parsed(e)) if isinstance(e.get("id"), str) else (None, None)
                    for e in events
                )
                if events or full:
                    newest = dict(window.events)  # each id's newest event
                    newest.pop(None, None)
                    alerts = [a for a in newest.values() if a is not None]
                    window.shown = sorted(alerts, key=lambda a: a.raised_at)
                return window.shown

        return self._read("alerts", read)

    # -- MachineSource: what is offered ----------------------------------------------------
    @property
    def actions(self) -> frozenset[str]:
        """Pause, resume, acknowledge, clear and re-learn: what a worker takes."""
        return REMOTE_ACTIONS

    @property
    def simulated(self) -> bool:
        """False: test defects go only into a dashboard's own simulated build."""
        return False

    @property
    def has_history(self) -> bool:
        """True when a history store was given."""
        return self.history is not None

    # -- status and signals --------------------------------------------------------------
    def monitor_snapshot(self) -> MonitorSnapshot:
        """The worker's figures of the machine: its snapshot, with the status reports of
        its view (feed "stale" when the worker stopped publishing)."""
        s = self._snapshot()
        view = self._view()
        base = dict(view.get("snapshot") or {})
        now = time.time()
        since_publish = max(0.0, now - s.updated_at) if s.updated_at else None
        age = base.get("data_age_s")
        if since_publish is not None:
            age = since_publish + (float(age) if age is not None else 0.0)
        state = s.state
        if since_publish is None or since_publish > self.stale_after:
            feed = "stale"  # its worker stopped publishing
        else:
            feed = feed_state(state, age, self.stale_after)
        stats = {**(base.get("stats") or {}), "dead_lettered": s.dead_lettered}
        return MonitorSnapshot.from_dict(
            {
                **base,
                "machine_id": s.machine_id,
                "name": s.name or self.profile.machine.title,
                "state": state,
                "feed": feed,
                "data_age_s": age,
                "stale_after_s": self.stale_after,
                "messages_new": s.messages,
                "current_layer": s.layer,
                "build_id": s.build_id,
                "newest_timestamp": s.newest_timestamp,
                "occupied_voxels": s.occupied_voxels,
                "alerts_active": sum(s.alerts_active.values()),
                "stats": stats,
                # the machine's messages are consumed by its worker, not here
                "health": {
                    "broker": "kafka",
                    "bootstrap_servers": [f"worker {s.worker or '?'}"],
                    "consumer_state": "stopped"
                    if feed == "stale"
                    else ("paused" if state == "paused" else "running"),
                },
                "topic": "",
            }
        )

    def signal_newest(self, name: str) -> float | None:
        """Epoch seconds of ``name``'s newest published value (None before any)."""
        t = self._windows().get(name, (np.empty(0), None))[0]
        return float(t[-1]) if len(t) else None

    def signal_window(self, name: str, seconds: float) -> SignalWindow:
        """``name``'s published window over the last ``seconds`` (downsampled)."""
        t, v = self._windows().get(name, (np.empty(0), np.empty(0)))
        if not len(t):
            return SignalWindow.empty(name)
        keep = t >= t[-1] - seconds
        return SignalWindow(name, np.rint(t[keep] * 1e6).astype(np.int64), v[keep])

    def buffered_seconds(self) -> float:
        """Seconds the worker's signal buffers hold."""
        return float(self._view().get("buffered_seconds") or 0.0)

    # -- voxels and layers -----------------------------------------------------------------
    def grid_info(self) -> GridInfo:
        """The worker's voxel grid (from the machine's view; before its first publish,
        the profile's plate at its voxel size)."""
        g = self._view().get("grid")
        if g:
            return GridInfo(
                tuple(g["bbox_min"]), tuple(g["bbox_max"]), float(g["resolution"]), tuple(g["dims"])
            )
        lo, hi = self.profile.plate_bounds
        grid = VoxelGrid(lo, hi, self.profile.machine.voxel_mm)
        return GridInfo(tuple(lo), tuple(hi), float(grid.resolution), tuple(grid.dims))

    def voxel_signals(self) -> list[str]:
        """The display signal (the profile's first): the one the worker publishes."""
        return list(self.profile.signal_names[:1])

    def _sync_voxels(self) -> _Mirror:
        """Bring the mirror up to the store (at most every :data:`READ_TTL_S`)."""
        shared = self._shared
        with shared.mirror_lock:
            if shared.mirror is None:
                shared.mirror = _Mirror(self.grid_info())
            mirror = shared.mirror
        with mirror.lock:
            if time.monotonic() - mirror.synced_at < READ_TTL_S:
                return mirror
            mirror.synced_at = time.monotonic()
            generation = self._view().get("voxel_generation")
            if mirror.cursor is None or generation != mirror.generation:
                self._reload(mirror, generation)
            cursor, ijk, values, full = self.store.voxels_since(self.machine_id, mirror.cursor)
            if full:  # deltas were dropped before we read them
                self._reload(mirror, generation)
                cursor, ijk, values, _ = self.store.voxels_since(self.machine_id, mirror.cursor)
            mirror.cursor = cursor
            self._apply(mirror, ijk, values)
        return mirror

    def _reload(self, mirror: _Mirror, generation: int | None) -> None:
        cursor, ijk, values = self.store.voxels(self.machine_id)
        mirror.grid.clear()
        mirror.changes.reset()
        mirror.generation = generation
        # no voxel state yet: the deltas still kept are all there is
        mirror.cursor = cursor if cursor is not None else "0-0/0"
        self._apply(mirror, ijk, values)

    def _apply(self, mirror: _Mirror, ijk: np.ndarray, values: np.ndarray) -> None:
        if not len(ijk) or not self.profile.signal_names:
            return
        signal = self.profile.signal_names[0]
        mirror.grid.add_points(mirror.grid.voxel_centers(ijk), {signal: values.astype(float)})
        mirror.changes.mark(np.unique(mirror.grid.brick_of(ijk), axis=0))

    def take_updated_bricks(self, viewer: str) -> tuple[np.ndarray, bool]:
        """Bricks changed since ``viewer`` last asked, and whether it must redraw all."""
        return self._sync_voxels().changes.take(viewer)

    def occupied(self, signal: str) -> tuple[np.ndarray, np.ndarray]:
        """Every mirrored voxel with ``signal``'s value (only the display signal has any)."""
        try:
            return self._sync_voxels().grid.get_occupied(signal)
        except KeyError:
            return np.empty((0, 3), dtype=np.int64), np.empty(0)

    def voxel_values(self, signal: str, ijk: np.ndarray) -> np.ndarray:
        """``signal``'s values in voxels ``ijk``; NaN where there is none."""
        ijk = np.asarray(ijk, dtype=np.int64).reshape(-1, 3)
        try:
            return self._sync_voxels().grid.get_values(signal, ijk, default=np.nan)
        except KeyError:
            return np.full(len(ijk), np.nan)

    def forget_viewer(self, viewer: str) -> None:
        """Forget a viewer's change cursor (its session ended)."""
        if self._shared.mirror is not None:
            self._shared.mirror.changes.forget(viewer)

    def _layers(self) -> np.ndarray:
        rows = np.asarray(self._view().get("layers") or [], dtype=np.int64)
        return rows.reshape(-1, 3)

    def build_layers(self, k: int) -> tuple[int, int] | None:
        """The lowest and highest build layer the worker saw in voxel layer ``k``."""
        rows = self._layers()
        hit = rows[rows[:, 0] == k]
        return (int(hit[0, 1]), int(hit[0, 2])) if len(hit) else None

    def voxel_layer(self, build_layer: int) -> int | None:
        """The voxel layer that holds ``build_layer`` (None when not seen yet)."""
        rows = self._layers()
        hit = rows[(rows[:, 1] <= build_layer) & (rows[:, 2] >= build_layer)]
        return int(hit[0, 0]) if len(hit) else None

    # -- alerts ------------------------------------------------------------------------------
    def alert_counts(self) -> AlertCounts:
        """The worker's alert figures."""
        return AlertCounts.from_dict(self._view().get("alert_counts") or {})

    def alert_list(self, limit: int | None = None, *, state: str | None = None) -> list[Alert]:
        """Published alerts in their newest state, oldest first (the newest ``limit``)."""
        rows = [a for a in self._alerts() if state is None or a.state == state]
        if limit is not None:
            rows = rows[-limit:] if limit > 0 else []
        return rows

    def active_alerts(
        self, *, severity: str | None = None, include_acknowledged: bool = True
    ) -> list[Alert]:
        """Published alerts not cleared yet, oldest first."""
        states = ("active", "acknowledged") if include_acknowledged else ("active",)
        return [
            a
            for a in self._alerts()
            if a.state in states and (severity is None or a.severity == severity)
        ]

    # -- SPC ---------------------------------------------------------------------------------
    def spc_state(self, chart: str | None = None) -> dict[str, Any]:
        """Latest SPC results per signal: of each signal's own chart (None) or of the
        ``chart`` kind, as :meth:`LiveMonitor.spc_state`."""
        main = self._read("spc", lambda: self.store.spc(self.machine_id))
        if chart is None:
            return main
        return chart_state(main, (self._view_part("spc_charts") or {}).get(chart) or {}, chart)

    def chart_states(self, chart: str | None = None) -> dict[str, ChartState]:
        """:meth:`spc_state` typed: ``{signal: ChartState}``."""
        return chart_states(self.spc_state(chart))

    def spc_kinds(self, signal: str) -> list[str]:
        """The chart kinds run on ``signal``, its own first."""
        return list((self._view().get("spc_kinds") or {}).get(signal) or [])

    def spc_series(
        self, chart: str, signal: str, seconds: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, epoch_us)`` of ``chart``'s published statistic for ``signal`` over
        the last ``seconds`` of it (None: all published), oldest first."""
        rows, us = self.store.spc_series(self.machine_id, chart, signal)
        if seconds is not None and len(us):
            keep = us >= us[-1] - int(seconds * 1e6)
            rows, us = rows[keep], us[keep]
        return rows, us

    def spc_violations(self, chart: str, signal: str | None = None) -> list[dict[str, Any]]:
        """The newest published rule violations of ``chart``, oldest first."""
        marks = (self._view_part("violations") or {}).get(chart) or []
        return [m for m in marks if signal is None or m.get("signal") == signal]

    def rule_violations(self, chart: str, signal: str | None = None) -> list[Violation]:
        """:meth:`spc_violations` typed."""
        return violations(self.spc_violations(chart, signal))

    def baseline_info(self) -> dict[str, Any]:
        """Where the machine's SPC baseline comes from (as the worker reports it)."""
        return dict((self._view().get("snapshot") or {}).get("baseline") or {})

    # -- history -----------------------------------------------------------------------------
    def history_disk(self) -> dict[str, Any]:
        """No file size or retention of its own: the workers' store keeps the history."""
        return {}

    def query_history(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, Any] | None = None,
        limit: int = 50_000,
    ) -> list[dict[str, Any]]:
        """This machine's stored messages between ``start`` and ``end`` matching
        ``filters`` (oldest first, at most ``limit``); ``RuntimeError`` without a
        history store."""
        if self.history is None:
            raise RuntimeError("no history store is configured for this dashboard")
        mine = {**(filters or {}), "machine_id": self.machine_id}
        return self.history.query_stream_history(start, end, mine, limit=limit)

    # -- operator actions ----------------------------------------------------------------------
    def _send(self, by: str | None, action: str, alert_id: str | None = None) -> str:
        return send_action(self.store, self.policy, by, self.machine_id, action, alert_id=alert_id)

    def pause(self, *, by: str | None = None) -> None:
        """Ask the worker to pause the machine's analysis (its messages are still stored)."""
        self._send(by, "pause")

    def resume(self, *, by: str | None = None) -> None:
        """Ask the worker to resume the machine's analysis."""
        self._send(by, "resume")

    def acknowledge(self, alert_id: str, by: str | None = None) -> dict[str, Any]:
        """Ask the worker to acknowledge ``alert_id``; returns the command sent."""
        return {"id": alert_id, "command": self._send(by, "acknowledge", alert_id)}

    def clear_alert(self, alert_id: str, *, by: str | None = None) -> dict[str, Any]:
        """Ask the worker to clear ``alert_id``; returns the command sent."""
        return {"id": alert_id, "command": self._send(by, "clear_alert", alert_id)}

    def relearn_baseline(self, by: str | None = None, timeout: float = 30.0) -> None:
        """Ask the worker to learn the SPC baseline again from the coming points."""
        self._send(by, "relearn_baseline")

    def _not_offered(self, what: str) -> RuntimeError:
        return RuntimeError(f"{what} is not offered for fleet machine {self.machine_id!r}")

    def seek_to_beginning(self, timeout: float = 30.0, *, by: str | None = None) -> None:
        """Not offered: workers replay nothing on request (``RuntimeError``)."""
        raise self._not_offered("replaying from the start")

    def inject_test_defect(
        self, n_points: int = 60, temperature: float = 2650.0, *, by: str | None = None
    ) -> int:
        """Not offered (``RuntimeError``)."""
        raise self._not_offered("injecting a test defect")

    def delete_history(self, keep_hours: float, *, by: str | None = None) -> int:
        """Not offered (``RuntimeError``)."""
        raise self._not_offered("deleting history")
