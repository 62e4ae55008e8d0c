"""The embedded monitor as one machine of a fleet: its derived state in a state store.

In the one-process demo a :class:`~am_qadf.live_monitor.LiveMonitor` consumes the
stream itself; there is no worker. A :class:`MonitorPublisher` writes what a worker
would publish for the monitor's machine (snapshot, new alert events, SPC state and
the main signal's window) to a :class:`~am_qadf.fleet.state_store.StateStore` every
``interval`` seconds from a background thread, so a fleet page reading that store
shows the embedded machine as one tile, through the same interface as a plant's.

>>> from am_qadf.live_monitor import LiveMonitor, MonitorConfig
>>> from am_qadf.streaming import StreamingConfig
>>> from am_qadf.fleet.state_store import InProcessStateStore
>>> mon = LiveMonitor(MonitorConfig(streaming=StreamingConfig.embedded(), simulate=False))
>>> store = InProcessStateStore()
>>> MonitorPublisher(mon, store).publish()
>>> snap = store.snapshot(mon.profile.machine.id)
>>> snap.state, snap.worker, snap.messages
('idle', 'embedded', 0)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from am_qadf.live_monitor import LiveMonitor
from am_qadf.monitoring.alerts import Alert

from .machine_pipeline import monitor_fields, signal_windows
from .state_store import MachineSnapshot, StateStore, check_machine_id

__all__ = ["MonitorPublisher"]

log = logging.getLogger(__name__)


class MonitorPublisher:
    """Publish ``monitor``'s machine to ``store`` every ``interval`` seconds
    (:meth:`start`), or once (:meth:`publish`). ``worker`` is the owner the snapshot
    names. The machine id is the profile's (it must be a valid machine id)."""

    def __init__(
        self,
        monitor: LiveMonitor,
        store: StateStore,
        *,
        interval: float = 1.0,
        worker: str = "embedded",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 s, got {interval!r}")
        self.monitor = monitor
        self.store = store
        self.interval = float(interval)
        self.worker = worker
        self.machine_id = check_machine_id(monitor.profile.machine.id)
        self._lock = threading.Lock()
        self._events: deque[dict[str, Any]] = deque(maxlen=1000)
        self._newest_alert: dict[str, Any] | None = None
        self._rate_mark: tuple[float, int] | None = None
        self._rate = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        monitor.alerts.add_listener(self._on_alert)

    def _on_alert(self, alert: Alert) -> None:
        event = {**alert.to_dict(), "event": "raised"}
        with self._lock:
            self._events.append(event)
            self._newest_alert = event

    def snapshot(self) -> MachineSnapshot:
        """The monitor's machine now, as a :class:`MachineSnapshot`."""
        s = self.monitor.monitor_snapshot()
        messages = int(s.messages_new)
        now = time.monotonic()
        with self._lock:
            mark = self._rate_mark
            if mark is None:
                self._rate_mark = (now, messages)
            elif now - mark[0] >= 0.5:
                self._rate = max(0.0, (messages - mark[1]) / (now - mark[0]))
                self._rate_mark = (now, messages)
            rate, newest = self._rate, self._newest_alert
        state = "paused" if s.state == "paused" else ("running" if messages else "idle")
        age = s.data_age_s
        data_at = None if s.feed == "waiting" or age is None else time.time() - age
        return MachineSnapshot(
            machine_id=self.machine_id,
            state=state,
            worker=self.worker,
            messages=messages,
            rate=round(rate, 1),
            dead_lettered=s.stats.dead_lettered,
            newest_alert=newest,
            data_at=data_at,
            updated_at=time.time(),
            **monitor_fields(self.monitor, s),
        )

    def publish(self) -> None:
        """Write the snapshot, new alert events, SPC state and the main signal's window
        once."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        if events:
            self.store.add_alerts(self.machine_id, events)
        spc = self.monitor.spc_state()
        if spc:
            self.store.put_spc(self.machine_id, spc)
        snap = self.snapshot()
        # the main signal only: what a fleet tile draws (this process's own page reads
        # the monitor itself), and a quarter of the cost of every signal's window
        windows = signal_windows(self.monitor, names=(snap.signal,))
        if snap.signal in windows:
            self.store.put_windows(self.machine_id, {snap.signal: windows[snap.signal]})
        self.store.put_snapshot(snap)

    def start(self) -> MonitorPublisher:
        """Publish every ``interval`` seconds in a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="amqadf-monitor-publisher")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                self.publish()
            except Exception:  # a store hiccup: the next round writes everything again
                log.exception("publishing %s's state failed", self.machine_id)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop publishing (the last state stays in the store)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
