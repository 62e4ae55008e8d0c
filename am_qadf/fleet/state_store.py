"""Derived state of a fleet of machines, shared by workers (writers) and dashboards (readers).

Per machine the store keeps:

* a **snapshot** (:class:`MachineSnapshot`: build, layer, progress, rates, health,
  alerts by severity, who owns it) — one hash, overwritten;
* **alerts** — a bounded stream of alert events (raised, acknowledged), newest kept;
* **SPC state** — the latest chart results, overwritten;
* **signal windows** — the recent values of each live signal, downsampled for display;
* **voxel brick deltas** — a bounded stream of changed bricks; a reader whose cursor
  fell behind what is kept is told to redraw everything, from the **voxel state**: every
  occupied voxel's display value with the delta cursor it is current at, rewritten
  every few seconds;
* a **machine view** — what one machine's dashboard shows beyond the snapshot (status
  reports, grid geometry, build layers, alert counts, SPC chart states and rule
  violations), and the **SPC series** (each chart's statistic over time, downsampled);
* a **control stream** — operator commands for the worker that owns the machine;
* for workers only: the open **alert episodes** and a **checkpoint** (the running
  state of the machine's charts, rules and alert episodes with the offsets it covers),
  from which the machine's next owner continues.

Every write also appends to one bounded *changes* stream, so a reader blocks in
:meth:`StateStore.wait` until something changed instead of polling.

Two backends behind one interface: :class:`InProcessStateStore` (the embedded
single-process default: no server) and :class:`RedisStateStore`. Both are the same
:class:`StateStore` over a handful of primitives (hashes, capped streams, a set), so
they behave identically and one test suite runs against both.

Why Redis and not Kafka compacted topics: the readers are dashboards that need the
*latest* value of a key at once (a hash read), the last N alerts or deltas (a capped
stream read), and a cheap way to block until something changes (``XREAD BLOCK``).
A compacted topic gives "latest per key" only after a reader has consumed the whole
topic into memory (every dashboard process would replay it on start), compaction is
lazy so old values linger, it cannot cap a per-machine stream by length, and a
dashboard would have to be a Kafka consumer with offsets of its own. Redis does each
of these in one command, keeps memory bounded by ``MAXLEN``, and losing it loses only
derived state that workers republish within a publish interval (history stays in
MongoDB, offsets in Kafka).

>>> store = InProcessStateStore()
>>> store.put_snapshot(MachineSnapshot("m1", layer=3, messages=1200))
>>> store.snapshot("m1").layer, store.machines()
(3, ['m1'])
>>> cursor, bricks, full = store.bricks_since("m1")
>>> store.add_bricks("m1", np.array([[0, 0, 1], [2, 0, 1]]))
>>> cursor, bricks, full = store.bricks_since("m1", cursor)
>>> bricks.tolist(), full
([[0, 0, 1], [2, 0, 1]], False)
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import orjson

__all__ = [
    "MACHINE_ID_PATTERN",
    "InProcessStateStore",
    "MachineSnapshot",
    "RedisStateStore",
    "StateStore",
    "check_machine_id",
    "downsample",
    "downsample_index",
    "open_state_store",
]

#: What a machine id (the Kafka message key) may look like: it becomes part of keys.
MACHINE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_machine_id(machine_id: Any) -> str:
    """``machine_id`` if it is a usable machine id, else ``ValueError`` saying why.

    >>> check_machine_id("eos-m290.2")
    'eos-m290.2'
    >>> check_machine_id("a b")
    Traceback (most recent call last):
    ...
    ValueError: bad machine id 'a b': use 1-64 letters, digits or _.:-, first a letter or digit
    """
    if not isinstance(machine_id, str) or not MACHINE_ID_PATTERN.match(machine_id):
        raise ValueError(
            f"bad machine id {machine_id!r}: use 1-64 letters, digits or _.:-, "
            "first a letter or digit"
        )
    return machine_id


def downsample(
    times: np.ndarray, values: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a series for display: the min and max of each of
    ``max_points // 2`` equal bins, in time order (peaks survive, unlike striding).

    >>> t = np.arange(10.0); v = np.array([0, 9, 1, 1, 1, 1, 1, 1, -5, 1.0])
    >>> downsample(t, v, 4)[1].tolist()
    [0.0, 9.0, 1.0, -5.0]
    """
    if len(values) <= max_points:
        return np.asarray(times), np.asarray(values)
    keep = downsample_index(values, max_points)
    return np.asarray(times)[keep], np.asarray(values, dtype=float)[keep]


def downsample_index(values: np.ndarray, max_points: int) -> np.ndarray:
    """Positions of the points :func:`downsample` keeps (all of them when there are
    at most ``max_points``), in order: for series whose rows carry more than a value.

    >>> downsample_index(np.array([0, 9, 1, 1, 1, 1, 1, 1, -5, 1.0]), 4).tolist()
    [0, 1, 5, 8]
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    bins = max(1, max_points // 2)
    v = np.asarray(values, dtype=float)
    # bins of k points, the first one taking the n % bins left over; each bin's min
    # and max position from one argmin/argmax over a (bins, k) view: O(n), no sort
    # (NaN-free input assumed: buffers hold numbers)
    k, extra = divmod(n, bins)
    grid = v[extra:].reshape(bins, k)
    base = extra + np.arange(bins) * k
    lo, hi = base + grid.argmin(axis=1), base + grid.argmax(axis=1)
    if extra:  # the first bin also holds the leftover points before the grid
        head = v[: extra + k]
        lo[0], hi[0] = int(head.argmin()), int(head.argmax())
    return np.unique(np.concatenate([lo, hi]))


@dataclass(frozen=True)
class MachineSnapshot:
    """What a fleet view shows for one machine, published by the worker that owns it.

    ``state`` is ``running``, ``paused`` (the operator paused analysis) or ``idle``;
    ``layers`` the build's layer count and ``progress`` 0..1 where known (a simulated
    build); ``signal`` the main signal (the profile's first live one, whose window a
    fleet tile draws); ``data_at`` when the newest message arrived (epoch seconds;
    None before the first); ``rate`` messages per second over the last
    publish interval; ``alerts_active`` active alerts by severity; ``control_cursor``
    the id of the newest operator command handled (a worker taking the machine over
    continues after it); ``last_command`` the outcome of that command.

    >>> s = MachineSnapshot("m1", layer=4, alerts_active={"critical": 1})
    >>> MachineSnapshot.from_dict(s.to_dict()) == s
    True
    """

    machine_id: str
    name: str = ""
    state: str = "idle"
    worker: str = ""
    build_id: str | None = None
    layer: int | None = None
    layers: int | None = None
    progress: float | None = None
    signal: str = ""
    newest_timestamp: str | None = None
    messages: int = 0
    rate: float = 0.0
    dead_lettered: int = 0
    held: int = 0
    errors: int = 0
    occupied_voxels: int = 0
    alerts_active: dict[str, int] = field(default_factory=dict)
    newest_alert: dict[str, Any] | None = None
    problems: tuple[str, ...] = ()
    baseline: str = ""
    control_cursor: str = "0"
    last_command: dict[str, Any] | None = None
    data_at: float | None = None
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        d = asdict(self)
        d["problems"] = list(self.problems)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineSnapshot:
        """Build from :meth:`to_dict`'s output; unknown keys (a newer writer) are ignored."""
        if not isinstance(data.get("machine_id"), str):
            raise ValueError(f"a machine snapshot needs a machine_id string, got {data!r:.200}")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        if "problems" in kw:
            kw["problems"] = tuple(kw["problems"] or ())
        return cls(**kw)


class _Backend(ABC):
    """The primitives a :class:`StateStore` needs: Redis semantics, ids ``"<int>-<int>"``."""

    @abstractmethod
    def hset(self, key: str, mapping: Mapping[str, bytes]) -> None: ...

    @abstractmethod
    def hgetall(self, key: str) -> dict[str, bytes]: ...

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        """:meth:`hgetall` of each key (one round trip where the backend can)."""
        return [self.hgetall(k) for k in keys]

    def hmget(self, key: str, names: Sequence[str]) -> list[bytes | None]:
        """The values of fields ``names`` of hash ``key`` (None where there is none)."""
        h = self.hgetall(key)
        return [h.get(n) for n in names]

    @abstractmethod
    def sadd(self, key: str, member: str) -> None: ...

    @abstractmethod
    def smembers(self, key: str) -> set[str]: ...

    @abstractmethod
    def xadd(self, key: str, fields: Mapping[str, bytes], maxlen: int) -> str: ...

    @abstractmethod
    def xrange_after(
        self, key: str, after: str, count: int
    ) -> list[tuple[str, dict[str, bytes]]]: ...

    @abstractmethod
    def xrange_from(
        self, key: str, start: str, count: int
    ) -> list[tuple[str, dict[str, bytes]]]: ...

    @abstractmethod
    def xlast(self, key: str, count: int) -> list[tuple[str, dict[str, bytes]]]: ...

    @abstractmethod
    def xread(
        self, cursors: Mapping[str, str], block_ms: int, count: int
    ) -> list[tuple[str, str, dict[str, bytes]]]: ...

    @abstractmethod
    def incr(self, key: str) -> int: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections (nothing for the in-process one)."""

    def batched(self) -> Any:
        """Context in which this thread's writes may be sent together at its end."""
        return nullcontext()


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class _MemoryBackend(_Backend):
    def __init__(self) -> None:
        self._hashes: dict[str, dict[str, bytes]] = {}
        self._sets: dict[str, set[str]] = {}
        self._streams: dict[str, deque[tuple[str, dict[str, bytes]]]] = {}
        self._counters: dict[str, int] = {}
        self._seq = 0
        self._changed = threading.Condition()

    def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        with self._changed:
            self._hashes.setdefault(key, {}).update(mapping)

    def hgetall(self, key: str) -> dict[str, bytes]:
        with self._changed:
            return dict(self._hashes.get(key, {}))

    def hmget(self, key: str, names: Sequence[str]) -> list[bytes | None]:
        with self._changed:
            h = self._hashes.get(key, {})
            return [h.get(n) for n in names]

    def sadd(self, key: str, member: str) -> None:
        with self._changed:
            self._sets.setdefault(key, set()).add(member)

    def smembers(self, key: str) -> set[str]:
        with self._changed:
            return set(self._sets.get(key, ()))

    def xadd(self, key: str, fields: Mapping[str, bytes], maxlen: int) -> str:
        with self._changed:
            self._seq += 1
            sid = f"{self._seq}-0"
            stream = self._streams.setdefault(key, deque())
            stream.append((sid, dict(fields)))
            while len(stream) > maxlen:
                stream.popleft()
            self._changed.notify_all()
            return sid

    def _after(self, key: str, after: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        k = _id_key(after)
        out = [e for e in self._streams.get(key, ()) if _id_key(e[0]) > k]
        return out[:count]

    def xrange_after(self, key: str, after: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        with self._changed:
            return self._after(key, after, count)

    def xrange_from(self, key: str, start: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        k = _id_key(start)
        with self._changed:
            return [e for e in self._streams.get(key, ()) if _id_key(e[0]) >= k][:count]

    def xlast(self, key: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        with self._changed:
            return list(self._streams.get(key, ()))[-count:] if count > 0 else []

    def xread(
        self, cursors: Mapping[str, str], block_ms: int, count: int
    ) -> list[tuple[str, str, dict[str, bytes]]]:
        def ready() -> list[tuple[str, str, dict[str, bytes]]]:
            return [
                (key, sid, f)
                for key, after in cursors.items()
                for sid, f in self._after(key, after, count)
            ]

        with self._changed:
            found = ready()
            if not found and block_ms > 0:
                self._changed.wait_for(lambda: bool(ready()), timeout=block_ms / 1000.0)
                found = ready()
            return found

    def incr(self, key: str) -> int:
        with self._changed:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def delete_prefix(self, prefix: str) -> None:
        with self._changed:
            for store in (self._hashes, self._sets, self._streams, self._counters):
                for k in [k for k in store if k.startswith(prefix)]:
                    del store[k]


class _RedisBackend(_Backend):
    def __init__(self, client: Any) -> None:
        self.r = client
        self._local = threading.local()  # this thread's pipeline while batched

    def _w(self) -> Any:
        """Where writes go: this thread's pipeline while batched, else the client."""
        return getattr(self._local, "pipe", None) or self.r

    @contextmanager
    def batched(self) -> Iterator[None]:
        if getattr(self._local, "pipe", None) is not None:  # nested: the outer one sends
            yield
            return
        pipe = self._local.pipe = self.r.pipeline(transaction=False)
        try:
            yield
        finally:
            self._local.pipe = None
        pipe.execute()  # not when the body failed: nothing of it is sent

    def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        self._w().hset(key, mapping=dict(mapping))

    def hgetall(self, key: str) -> dict[str, bytes]:
        return {k.decode(): v for k, v in self.r.hgetall(key).items()}

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        return [{k.decode(): v for k, v in h.items()} for h in pipe.execute()]

    def hmget(self, key: str, names: Sequence[str]) -> list[bytes | None]:
        return list(self.r.hmget(key, list(names))) if names else []

    def sadd(self, key: str, member: str) -> None:
        self._w().sadd(key, member)

    def smembers(self, key: str) -> set[str]:
        return {m.decode() for m in self.r.smembers(key)}

    def xadd(self, key: str, fields: Mapping[str, bytes], maxlen: int) -> str:
        # exact MAXLEN: the bound readers rely on for redraw decisions
        w = self._w()
        sid = w.xadd(key, dict(fields), maxlen=maxlen, approximate=False)
        return "" if w is not self.r else sid.decode()  # batched: not known yet

    @staticmethod
    def _entries(raw: Any) -> list[tuple[str, dict[str, bytes]]]:
        return [(sid.decode(), {k.decode(): v for k, v in f.items()}) for sid, f in raw]

    def xrange_after(self, key: str, after: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        return self._entries(self.r.xrange(key, min=f"({after}", max="+", count=count))

    def xrange_from(self, key: str, start: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        return self._entries(self.r.xrange(key, min=start, max="+", count=count))

    def xlast(self, key: str, count: int) -> list[tuple[str, dict[str, bytes]]]:
        return self._entries(self.r.xrevrange(key, count=count))[::-1] if count > 0 else []

    def xread(
        self, cursors: Mapping[str, str], block_ms: int, count: int
    ) -> list[tuple[str, str, dict[str, bytes]]]:
        if not cursors:
            return []
        raw = self.r.xread(dict(cursors), count=count, block=block_ms or None) or []
        return [(key.decode(), sid, f) for key, entries in raw for sid, f in self._entries(entries)]

    def incr(self, key: str) -> int:
        return int(self.r.incr(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = list(self.r.scan_iter(match=prefix.replace("*", r"\*") + "*", count=500))
        for i in range(0, len(keys), 500):
            self.r.delete(*keys[i : i + 500])

    def close(self) -> None:
        self.r.close()


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _first_rows(ijk: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct row of ``ijk`` ((n, 3) voxel
    indices), in the rows' sorted order, as ``np.unique(ijk, axis=0,
    return_index=True)[1]`` but on one int64 key per row (a 1-D sort, several times
    faster than sorting rows).

    >>> _first_rows(np.array([[1, 0, 2], [0, 5, 1], [1, 0, 2]], np.int32)).tolist()
    [1, 0]
    """
    if not len(ijk):
        return np.empty(0, dtype=np.int64)
    a = ijk.astype(np.int64)
    lo, span = a.min(axis=0), np.ptp(a, axis=0) + 1
    if float(np.prod(span.astype(float))) >= 2.0**62:  # cannot be one key: sort rows
        return np.unique(ijk, axis=0, return_index=True)[1]
    key = ((a[:, 0] - lo[0]) * span[1] + (a[:, 1] - lo[1])) * span[2] + (a[:, 2] - lo[2])
    return np.unique(key, return_index=True)[1]


def _snapshot(raw: Mapping[str, bytes]) -> MachineSnapshot | None:
    if not raw:
        return None
    return MachineSnapshot.from_dict({k: orjson.loads(v) for k, v in raw.items()})


class StateStore:
    """Per-machine derived state over a backend (use :class:`InProcessStateStore` or
    :class:`RedisStateStore`). ``prefix`` namespaces every key (one plant, one test).

    Streams are capped: ``max_alerts`` alert events, ``max_deltas`` brick deltas and
    ``max_commands`` commands per machine, ``max_changes`` change notices in all.
    Signal windows are cut to ``window_points`` points (:func:`downsample`).
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        prefix: str = "amqadf:fleet",
        max_alerts: int = 500,
        max_deltas: int = 256,
        max_commands: int = 100,
        max_changes: int = 1000,
        window_points: int = 400,
    ) -> None:
        for name, v in (
            ("max_alerts", max_alerts),
            ("max_deltas", max_deltas),
            ("max_commands", max_commands),
            ("max_changes", max_changes),
            ("window_points", window_points),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an int >= 2, got {v!r}")
        self._b = backend
        self.prefix = prefix
        self.max_alerts, self.max_deltas = max_alerts, max_deltas
        self.max_commands, self.max_changes = max_commands, max_changes
        self.window_points = window_points

    # -- keys ----------------------------------------------------------------------------
    def _key(self, machine_id: str, kind: str) -> str:
        return f"{self.prefix}:m:{check_machine_id(machine_id)}:{kind}"

    @property
    def _changes(self) -> str:
        return f"{self.prefix}:changes"

    def _touch(self, machine_id: str, kind: str) -> None:
        self._b.sadd(f"{self.prefix}:machines", machine_id)
        self._b.xadd(
            self._changes, {"m": machine_id.encode(), "k": kind.encode()}, self.max_changes
        )

    # -- snapshots -----------------------------------------------------------------------
    def put_snapshot(self, snapshot: MachineSnapshot) -> None:
        """Replace the machine's snapshot (one hash field per snapshot field)."""
        if not isinstance(snapshot, MachineSnapshot):
            raise TypeError(f"snapshot must be a MachineSnapshot, got {type(snapshot).__name__}")
        key = self._key(snapshot.machine_id, "snapshot")
        self._b.hset(key, {k: _dumps(v) for k, v in snapshot.to_dict().items()})
        self._touch(snapshot.machine_id, "snapshot")

    def snapshot(self, machine_id: str) -> MachineSnapshot | None:
        """The machine's newest snapshot (None if none was published)."""
        return _snapshot(self._b.hgetall(self._key(machine_id, "snapshot")))

    def machines(self) -> list[str]:
        """Ids of every machine that has state here, sorted."""
        return sorted(self._b.smembers(f"{self.prefix}:machines"))

    def snapshots(self) -> dict[str, MachineSnapshot]:
        """Every machine's snapshot by id (one round trip for all of them on Redis)."""
        ids = self.machines()
        raws = self._b.hgetall_many([self._key(m, "snapshot") for m in ids])
        out = {m: _snapshot(raw) for m, raw in zip(ids, raws, strict=True)}
        return {m: s for m, s in out.items() if s is not None}

    # -- alerts --------------------------------------------------------------------------
    def add_alerts(self, machine_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Append alert events (alert dicts with an ``event`` such as ``raised`` or
        ``acknowledged``); the oldest beyond ``max_alerts`` are dropped."""
        key = self._key(machine_id, "alerts")
        for e in events:
            self._b.xadd(key, {"a": _dumps(dict(e))}, self.max_alerts)
        if events:
            self._touch(machine_id, "alerts")

    def alerts(self, machine_id: str, count: int = 100) -> list[dict[str, Any]]:
        """The newest ``count`` alert events, oldest first."""
        return [
            orjson.loads(f["a"]) for _, f in self._b.xlast(self._key(machine_id, "alerts"), count)
        ]

    def alerts_since(
        self, machine_id: str, cursor: str | None = None
    ) -> tuple[str, list[dict[str, Any]], bool]:
        """Alert events after ``cursor`` (None: a first look): ``(new cursor, events
        oldest first, full)``. A reader that keeps the newest ``max_alerts`` events it
        was given has what :meth:`alerts` would return, reading only what is new. With
        ``full`` the events are every one kept and replace what the reader had (a first
        look, or the stream started again, e.g. an emptied Redis).

        >>> store = InProcessStateStore()
        >>> store.add_alerts("m1", [{"id": "a1", "event": "raised"}])
        >>> cursor, events, full = store.alerts_since("m1")
        >>> [e["id"] for e in events], full
        (['a1'], True)
        >>> store.add_alerts("m1", [{"id": "a2", "event": "raised"}])
        >>> cursor, events, full = store.alerts_since("m1", cursor)
        >>> [e["id"] for e in events], full, store.alerts_since("m1", cursor)[1:]
        (['a2'], False, ([], False))
        """
        key = self._key(machine_id, "alerts")
        if cursor is not None:
            last = self._b.xlast(key, 1)
            if (last[0][0] if last else "0-0") == cursor:  # nothing new: one small read
                return cursor, [], False
            # from the cursor's own entry: when it is gone, the reader missed more than
            # the stream keeps, or the stream started again; either way it starts over
            entries = self._b.xrange_from(key, cursor, self.max_alerts + 1)
            if entries and entries[0][0] == cursor:
                entries = entries[1:]
            elif cursor != "0-0":  # (a reader that saw an empty stream had nothing)
                entries = []
            if entries:
                return entries[-1][0], [orjson.loads(f["a"]) for _, f in entries], False
        entries = self._b.xlast(key, self.max_alerts)
        sid = entries[-1][0] if entries else "0-0"
        return sid, [orjson.loads(f["a"]) for _, f in entries], True

    def put_episodes(self, machine_id: str, episodes: Sequence[Mapping[str, Any]]) -> None:
        """Replace the machine's open alert episodes (what a worker taking the machine
        over needs to continue them, so an episode is not raised twice). Readers are
        not woken: this is for workers.

        >>> store = InProcessStateStore()
        >>> store.put_episodes("m1", [{"metric": "t", "rule": "r", "alert_id": "a1"}])
        >>> store.episodes("m1")[0]["alert_id"], store.episodes("m2")
        ('a1', [])
        """
        self._b.hset(self._key(machine_id, "episodes"), {"e": _dumps(list(map(dict, episodes)))})

    def episodes(self, machine_id: str) -> list[dict[str, Any]]:
        """The open alert episodes the machine's last owner published ([] if none)."""
        raw = self._b.hgetall(self._key(machine_id, "episodes")).get("e")
        return orjson.loads(raw) if raw else []

    def put_resume_state(self, machine_id: str, state: Mapping[str, Any]) -> None:
        """Replace the machine's checkpoint: what its next owner continues from (the
        owner writes it before the offsets it covers are committed). Readers are not
        woken: this is for workers.

        >>> store = InProcessStateStore()
        >>> store.put_resume_state("m1", {"offsets": [["t", 0, 42]]})
        >>> store.resume_state("m1"), store.resume_state("m2")
        ({'offsets': [['t', 0, 42]]}, None)
        """
        self._b.hset(self._key(machine_id, "resume"), {"s": _dumps(dict(state))})

    def resume_state(self, machine_id: str) -> dict[str, Any] | None:
        """The machine's newest checkpoint (None if none was written)."""
        raw = self._b.hgetall(self._key(machine_id, "resume")).get("s")
        return orjson.loads(raw) if raw else None

    # -- SPC -----------------------------------------------------------------------------
    def put_spc(self, machine_id: str, spc: Mapping[str, Any]) -> None:
        """Replace the machine's SPC state (chart results by signal)."""
        self._b.hset(self._key(machine_id, "spc"), {"spc": _dumps(dict(spc))})
        self._touch(machine_id, "spc")

    def spc(self, machine_id: str) -> dict[str, Any]:
        """The machine's SPC state ({} if none)."""
        raw = self._b.hgetall(self._key(machine_id, "spc")).get("spc")
        return orjson.loads(raw) if raw else {}

    # -- signal windows ------------------------------------------------------------------
    def put_windows(
        self, machine_id: str, windows: Mapping[str, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Replace recent windows: ``{signal: (epoch_seconds, values)}``, each cut to
        ``window_points`` points."""
        mapping = {}
        for name, (t, v) in windows.items():
            ts, vs = downsample(np.asarray(t, float), np.asarray(v, float), self.window_points)
            mapping[name] = _dumps({"t": ts, "v": vs})
        if mapping:
            self._b.hset(self._key(machine_id, "windows"), mapping)
            self._touch(machine_id, "windows")

    def windows(self, machine_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{signal: (epoch_seconds, values)}`` as published."""
        out = {}
        for name, raw in self._b.hgetall(self._key(machine_id, "windows")).items():
            d = orjson.loads(raw)
            out[name] = (np.asarray(d["t"], float), np.asarray(d["v"], float))
        return out

    # -- voxel brick deltas --------------------------------------------------------------
    def add_bricks(
        self,
        machine_id: str,
        bricks: np.ndarray,
        voxels: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Append one delta: the (n, 3) brick coordinates changed since the last one,
        and optionally ``voxels`` = ``(ijk, values)``, the occupied voxels ((m, 3)) in
        those bricks and their display-signal values, so a reader draws without the
        grid (:meth:`voxels_since`)."""
        b = np.asarray(bricks, dtype=np.int64).reshape(-1, 3)
        if not len(b):
            return
        fields = {"b": b.tobytes()}
        if voxels is not None:
            ijk = np.asarray(voxels[0], dtype=np.int32).reshape(-1, 3)
            values = np.asarray(voxels[1], dtype=np.float32).ravel()
            if len(ijk) != len(values):
                raise ValueError(f"{len(ijk)} voxels but {len(values)} values")
            fields.update(v=ijk.tobytes(), x=values.tobytes())
        seq = self._b.incr(self._key(machine_id, "bricks:n"))
        self._b.xadd(
            self._key(machine_id, "bricks"), {"n": str(seq).encode(), **fields}, self.max_deltas
        )
        self._touch(machine_id, "bricks")

    def _deltas(
        self, machine_id: str, cursor: str | None
    ) -> tuple[str, list[dict[str, bytes]], bool]:
        """Delta entries after ``cursor``: ``(new cursor, fields, full)``."""
        key = self._key(machine_id, "bricks")
        if not cursor:
            last = self._b.xlast(key, 1)
            sid, n = (last[0][0], int(last[0][1]["n"])) if last else ("0-0", 0)
            return f"{sid}/{n}", [], True
        after, _, seen = cursor.partition("/")
        entries = self._b.xrange_after(key, after, self.max_deltas + 1)
        if not entries:
            return cursor, [], False
        full = int(entries[0][1]["n"]) != int(seen) + 1
        sid, f = entries[-1]
        return f"{sid}/{int(f['n'])}", [f for _, f in entries], full

    def bricks_since(
        self, machine_id: str, cursor: str | None = None
    ) -> tuple[str, np.ndarray, bool]:
        """Bricks changed since ``cursor`` (None: a first look): ``(new cursor, bricks,
        full)``. ``full`` says the reader must redraw everything: a first look, or
        deltas it had not read were already dropped."""
        cursor, entries, full = self._deltas(machine_id, cursor)
        if not entries:
            return cursor, np.empty((0, 3), np.int64), full
        arrays = [np.frombuffer(f["b"], dtype=np.int64).reshape(-1, 3) for f in entries]
        return cursor, np.unique(np.concatenate(arrays), axis=0), full

    def voxels_since(
        self, machine_id: str, cursor: str | None = None
    ) -> tuple[str, np.ndarray, np.ndarray, bool]:
        """Voxel values the deltas since ``cursor`` carry: ``(new cursor, ijk (n, 3)
        int32, values float32, full)``; a voxel in several deltas has its newest value.
        ``full`` as in :meth:`bricks_since`."""
        cursor, entries, full = self._deltas(machine_id, cursor)
        with_voxels = [f for f in entries if "v" in f]
        if not with_voxels:
            return cursor, np.empty((0, 3), np.int32), np.empty(0, np.float32), full
        ijk = np.concatenate([np.frombuffer(f["v"], np.int32).reshape(-1, 3) for f in with_voxels])
        values = np.concatenate([np.frombuffer(f["x"], np.float32) for f in with_voxels])
        # newest first, then the first occurrence of each voxel is its newest value
        first = _first_rows(ijk[::-1])
        return cursor, ijk[::-1][first], values[::-1][first], full

    def put_voxels(self, machine_id: str, ijk: np.ndarray, values: np.ndarray) -> None:
        """Replace the machine's voxel state: every occupied voxel ``ijk`` ((n, 3)) with
        its display value, current at the newest delta (write it after that delta's
        :meth:`add_bricks`)."""
        ijk = np.asarray(ijk, dtype=np.int32).reshape(-1, 3)
        values = np.asarray(values, dtype=np.float32).ravel()
        if len(ijk) != len(values):
            raise ValueError(f"{len(ijk)} voxels but {len(values)} values")
        cursor = self._deltas(machine_id, None)[0]
        self._b.hset(
            self._key(machine_id, "voxels"),
            {"c": cursor.encode(), "v": ijk.tobytes(), "x": values.tobytes()},
        )

    def voxels(self, machine_id: str) -> tuple[str | None, np.ndarray, np.ndarray]:
        """The voxel state: ``(cursor, ijk, values)``; apply :meth:`voxels_since`
        ``cursor`` on top of it. ``cursor`` None: none was written.

        >>> store = InProcessStateStore()
        >>> store.add_bricks("m1", np.array([[0, 0, 0]]))
        >>> store.put_voxels("m1", np.array([[1, 2, 3]]), np.array([7.5]))
        >>> cursor, ijk, values = store.voxels("m1")
        >>> ijk.tolist(), values.tolist(), store.voxels_since("m1", cursor)[3]
        ([[1, 2, 3]], [7.5], False)
        """
        raw = self._b.hgetall(self._key(machine_id, "voxels"))
        if not raw:
            return None, np.empty((0, 3), np.int32), np.empty(0, np.float32)
        ijk = np.frombuffer(raw["v"], np.int32).reshape(-1, 3)
        return raw["c"].decode(), ijk, np.frombuffer(raw["x"], np.float32)

    # -- one machine's dashboard ---------------------------------------------------------
    def put_view(self, machine_id: str, view: Mapping[str, Any]) -> None:
        """Replace what the machine's dashboard shows beyond the snapshot (a JSON
        object; its parts written with :meth:`put_view_part` stay)."""
        self._b.hset(self._key(machine_id, "view"), {"": _dumps(dict(view))})
        self._touch(machine_id, "view")

    def put_view_part(self, machine_id: str, part: str, value: Any) -> None:
        """Replace one part of the machine's view that is written less often."""
        if not part:
            raise ValueError("a view part needs a name")
        self._b.hset(self._key(machine_id, "view"), {part: _dumps(value)})

    def view(self, machine_id: str, parts: Sequence[str] | None = None) -> dict[str, Any]:
        """The machine's view with its parts ({} if none); with ``parts``, only those
        (``""``: the view without its parts), so a reader does not read and decode the
        larger parts it does not show.

        >>> store = InProcessStateStore()
        >>> store.put_view("m1", {"layers": [[0, 1, 3]]})
        >>> store.put_view_part("m1", "violations", {"ewma": []})
        >>> store.put_view("m1", {"layers": [[0, 1, 4]]})
        >>> store.view("m1")
        {'layers': [[0, 1, 4]], 'violations': {'ewma': []}}
        >>> store.view("m1", parts=[""]), store.view("m1", parts=["violations", "x"])
        ({'layers': [[0, 1, 4]]}, {'violations': {'ewma': []}})
        """
        key = self._key(machine_id, "view")
        if parts is None:
            raw = self._b.hgetall(key)
        else:
            names = list(parts)
            raw = {n: v for n, v in zip(names, self._b.hmget(key, names), strict=True) if v}
        out = orjson.loads(raw.pop("")) if "" in raw else {}
        out.update({k: orjson.loads(v) for k, v in raw.items()})
        return out

    def put_spc_series(
        self, machine_id: str, series: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Replace SPC series: ``{(chart, signal): (rows, epoch_us)}``, rows ``(n, 3)``
        (statistic, build layer, point index), each cut to ``window_points`` rows
        (:func:`downsample_index` on the statistic)."""
        mapping = {}
        for (chart, signal), (rows, us) in series.items():
            rows = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
            keep = downsample_index(rows[:, 0], self.window_points)
            packed = np.asarray(us, dtype=np.int64)[keep].tobytes()
            mapping[f"{chart}\x1f{signal}"] = packed + rows[keep].astype(np.float32).tobytes()
        if mapping:
            self._b.hset(self._key(machine_id, "spcseries"), mapping)

    def spc_series(self, machine_id: str, chart: str, signal: str) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, epoch_us)`` of one published SPC series (empty if none).

        >>> store = InProcessStateStore()
        >>> store.put_spc_series("m1", {("ewma", "t"): (np.ones((5, 3)), np.arange(5))})
        >>> rows, us = store.spc_series("m1", "ewma", "t")
        >>> rows.shape, us.tolist()
        ((5, 3), [0, 1, 2, 3, 4])
        """
        raw = self._b.hgetall(self._key(machine_id, "spcseries")).get(f"{chart}\x1f{signal}")
        if not raw:
            return np.empty((0, 3)), np.empty(0, dtype=np.int64)
        n = len(raw) // 20  # 8 bytes of time and 3 x 4 bytes of row per point
        us = np.frombuffer(raw[: 8 * n], np.int64)
        return np.frombuffer(raw[8 * n :], np.float32).reshape(n, 3).astype(np.float64), us

    # -- control -------------------------------------------------------------------------
    def send_command(self, machine_id: str, command: Mapping[str, Any]) -> str:
        """Append a command for the machine's worker; returns its id. (Check who may
        first: :func:`am_qadf.fleet.commands.send_action` does.)"""
        sid = self._b.xadd(
            self._key(machine_id, "control"), {"c": _dumps(dict(command))}, self.max_commands
        )
        self._touch(machine_id, "control")
        return sid

    def read_commands(
        self, cursors: Mapping[str, str], timeout: float = 0.0, count: int = 100
    ) -> list[tuple[str, str, Any]]:
        """Commands after each machine's cursor (``{machine_id: command id}``, ``"0"``
        for all kept), waiting up to ``timeout`` s for one: ``[(machine_id, id,
        command)]``; a command that is not JSON comes back as None."""
        keys = {self._key(m, "control"): (c or "0") for m, c in cursors.items()}
        back = {self._key(m, "control"): m for m in cursors}
        out = []
        for key, sid, f in self._b.xread(keys, int(timeout * 1000), count):
            try:
                cmd = orjson.loads(f.get("c", b""))
            except orjson.JSONDecodeError:
                cmd = None
            out.append((back[key], sid, cmd))
        return out

    # -- waiting -------------------------------------------------------------------------
    def change_cursor(self) -> str:
        """A cursor for :meth:`wait` meaning "from now on"."""
        last = self._b.xlast(self._changes, 1)
        return last[0][0] if last else "0-0"

    def wait(self, cursor: str, timeout: float) -> tuple[str, set[str]]:
        """Block up to ``timeout`` s until state changed after ``cursor``; returns the new
        cursor and the ids of the machines that changed (empty on timeout)."""
        entries = self._b.xread({self._changes: cursor}, int(timeout * 1000), self.max_changes)
        if not entries:
            return cursor, set()
        return entries[-1][1], {f["m"].decode() for _, _, f in entries}

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Send the writes this thread makes inside in one round trip at the end (on
        Redis; in process they apply at once); reads inside see the store as it was.
        Ids of entries appended inside are not known (``send_command`` returns "").

        >>> store = InProcessStateStore()
        >>> with store.batched():
        ...     store.put_snapshot(MachineSnapshot("m1", layer=2))
        ...     store.put_episodes("m1", [])
        >>> store.snapshot("m1").layer
        2
        """
        with self._b.batched():
            yield

    def clear(self) -> None:
        """Delete everything under this store's prefix."""
        self._b.delete_prefix(self.prefix + ":")

    def close(self) -> None:
        """Close the backend's connections."""
        self._b.close()


class InProcessStateStore(StateStore):
    """The state store in this process's memory (the embedded default; threads only).

    >>> InProcessStateStore().machines()
    []
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(_MemoryBackend(), **options)


class RedisStateStore(StateStore):
    """The state store in Redis at ``url`` (``redis://host:port/db``), shared by every
    worker and dashboard process. ``client`` (a ``redis.Redis``) replaces the URL."""

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, client: Any = None, **options: Any
    ):
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        super().__init__(_RedisBackend(client), **options)


def open_state_store(url: str | None, **options: Any) -> StateStore:
    """The store ``url`` names: ``redis://…``/``rediss://…`` or ``memory://`` / None
    (in-process), e.g. the value of ``AMQADF_STATE``.

    >>> type(open_state_store("memory://")).__name__
    'InProcessStateStore'
    >>> open_state_store("kafka://x")
    Traceback (most recent call last):
    ...
    ValueError: AMQADF_STATE must be memory:// or redis://host:port/db, got 'kafka://x'
    """
    if not url or url.startswith("memory://"):
        return InProcessStateStore(**options)
    if url.startswith(("redis://", "rediss://")):
        return RedisStateStore(url, **options)
    raise ValueError(f"AMQADF_STATE must be memory:// or redis://host:port/db, got {url!r}")
