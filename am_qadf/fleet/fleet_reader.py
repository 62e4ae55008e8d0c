"""The dashboard side of the state store: one cached, ranked view of the fleet per process.

A :class:`FleetReader` keeps the newest snapshot of every machine in memory, refreshed
by one background thread that blocks on the store's change stream
(:meth:`StateStore.wait`). Sessions read the cache, so a dashboard process does one
store read per change however many sessions it serves, and nothing per message.

:func:`rank` orders machines worst first, as a fleet overview shows them: active
critical alerts, then machines whose worker stopped publishing or whose data
stopped coming while running (``stale``), then warnings, paused machines, machines
with dead letters or profile problems, running ones and idle ones.

>>> from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
>>> now = 1000.0
>>> snaps = [MachineSnapshot("ok", state="running", updated_at=now),
...          MachineSnapshot("hot", state="running", alerts_active={"critical": 1},
...                          updated_at=now),
...          MachineSnapshot("gone", state="running", updated_at=now - 60)]
>>> [(s.machine_id, s.status) for s in rank(snaps, now=now, stale_after=10)]
[('hot', 'critical'), ('gone', 'stale'), ('ok', 'running')]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .state_store import MachineSnapshot, StateStore

__all__ = ["STATUS_ORDER", "FleetReader", "MachineStatus", "rank", "silent_for"]

log = logging.getLogger(__name__)

#: Statuses from worst to best (the order of a fleet overview).
STATUS_ORDER: tuple[str, ...] = (
    "critical",
    "stale",
    "warning",
    "paused",
    "degraded",
    "running",
    "idle",
)


@dataclass(frozen=True)
class MachineStatus:
    """A machine's snapshot with the status a fleet overview shows for it."""

    snapshot: MachineSnapshot
    status: str

    @property
    def machine_id(self) -> str:
        return self.snapshot.machine_id


def silent_for(s: MachineSnapshot, now: float) -> float:
    """Seconds since anything was heard of the machine: since its worker last published,
    or, while it is running, since its newest message arrived (the longer of the two).

    >>> silent_for(MachineSnapshot("m", state="running", data_at=90.0, updated_at=99.0), 100.0)
    10.0
    """
    age = now - s.updated_at
    if s.state == "running" and s.data_at is not None:
        age = max(age, now - s.data_at)
    return age


def _status(s: MachineSnapshot, now: float, stale_after: float) -> str:
    if s.alerts_active.get("critical"):
        return "critical"
    if silent_for(s, now) > stale_after:
        return "stale"
    if s.alerts_active.get("warning"):
        return "warning"
    if s.state == "paused":
        return "paused"
    if s.dead_lettered or s.errors or s.problems:
        return "degraded"
    return "running" if s.state == "running" else "idle"


def rank(
    snapshots: Iterable[MachineSnapshot], *, now: float | None = None, stale_after: float = 6.0
) -> list[MachineStatus]:
    """Machines worst first (:data:`STATUS_ORDER`, then more critical and warning
    alerts first, then by id). A machine :func:`silent_for` more than ``stale_after``
    seconds is ``stale``: its worker stopped publishing (workers republish every 2 s),
    or a running machine's data stopped coming."""
    now = time.time() if now is None else now
    out = [MachineStatus(s, _status(s, now, stale_after)) for s in snapshots]
    order = {name: i for i, name in enumerate(STATUS_ORDER)}
    out.sort(
        key=lambda m: (
            order[m.status],
            -m.snapshot.alerts_active.get("critical", 0),
            -m.snapshot.alerts_active.get("warning", 0),
            m.machine_id,
        )
    )
    return out


class FleetReader:
    """Every machine's newest snapshot and main-signal window (:meth:`main_window`) from
    ``store``, cached and kept fresh by one background thread (:meth:`start`);
    :attr:`version` grows on each change, so a view redraws only when it moved.

    A store that cannot be read (Redis down) keeps the last state cached, :attr:`error`
    says why, and the thread reads everything again once the store answers; the
    snapshots meanwhile age into ``stale``, so a view shows the truth either way.

    >>> from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
    >>> store = InProcessStateStore()
    >>> reader = FleetReader(store).start()
    >>> v = reader.version
    >>> store.put_snapshot(MachineSnapshot("m1", state="running", updated_at=time.time()))
    >>> reader.wait_for_version(v + 1, timeout=30)
    True
    >>> [m.machine_id for m in reader.overview()]
    ['m1']
    >>> v = reader.version
    >>> store.put_windows("m1", {"temp": ([1.0, 2.0], [1500.0, 1510.0])})
    >>> reader.wait_for_version(v + 1, timeout=30)
    True
    >>> reader.main_window("m1")[1].tolist()
    [1500.0, 1510.0]
    >>> reader.stop()
    """

    def __init__(self, store: StateStore, *, stale_after: float = 6.0) -> None:
        self.store = store
        self.stale_after = float(stale_after)
        self.version = 0
        self._snapshots: dict[str, MachineSnapshot] = {}
        self._windows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the store cannot be read now (None: it can).
        self.error: str | None = None

    def start(self) -> FleetReader:
        """Read everything once, then follow changes in a background thread (a store
        that does not answer yet is retried there)."""
        cursor = self._catch_up()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(cursor,), name="amqadf-fleet-reader"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following changes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _refresh(self, changed: set[str] | None = None) -> None:
        """Read every snapshot, and the windows of the ``changed`` machines (all: None)."""
        snaps = self.store.snapshots()
        ids = snaps.keys() if changed is None else snaps.keys() & changed
        fresh = {m: self._read_window(snaps[m]) for m in ids}
        with self._cond:
            windows = {**self._windows, **fresh}
            self._windows = {m: w for m, w in windows.items() if m in snaps and w is not None}
            self._snapshots = snaps
            self.version += 1
            self._cond.notify_all()

    def _read_window(self, snap: MachineSnapshot) -> tuple[np.ndarray, np.ndarray] | None:
        windows = self.store.windows(snap.machine_id)
        if snap.signal in windows:
            return windows[snap.signal]
        return next(iter(windows.values()), None)  # a writer that names no signal

    def _failed(self, exc: Exception) -> None:
        if self.error is None:  # once per outage, not once per retry
            log.warning("the fleet state cannot be read (retrying every second): %s", exc)
        self.error = f"{type(exc).__name__}: {exc}"[:300]

    def _catch_up(self) -> str | None:
        """A change cursor from now on, then everything read: the new cursor, or None
        (and :attr:`error` set) when the store does not answer."""
        try:
            cursor = self.store.change_cursor()
            self._refresh()
        except Exception as exc:
            self._failed(exc)
            return None
        self.error = None
        return cursor

    def _run(self, cursor: str | None) -> None:
        while not self._stop.is_set():
            if cursor is None:
                cursor = self._catch_up()
                if cursor is None:
                    self._stop.wait(1.0)
                    continue
            try:
                cursor, changed = self.store.wait(cursor, timeout=1.0)
                if changed:
                    self._refresh(changed)
            except Exception as exc:  # the store is down: keep the last state, try again
                self._failed(exc)
                cursor = None
                self._stop.wait(1.0)

    def snapshots(self) -> dict[str, MachineSnapshot]:
        """The cached snapshots by machine id (a copy)."""
        with self._cond:
            return dict(self._snapshots)

    def main_window(self, machine_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The cached recent window of the machine's main signal (the snapshot's
        ``signal``): ``(epoch seconds, values)``, or None before one was published."""
        with self._cond:
            return self._windows.get(machine_id)

    def overview(self, now: float | None = None) -> list[MachineStatus]:
        """The cached machines, worst first (:func:`rank`)."""
        return rank(self.snapshots().values(), now=now, stale_after=self.stale_after)

    def wait_for_version(self, version: int, timeout: float) -> bool:
        """Wait (bounded) until :attr:`version` reaches ``version``."""
        with self._cond:
            return self._cond.wait_for(lambda: self.version >= version, timeout=timeout)
