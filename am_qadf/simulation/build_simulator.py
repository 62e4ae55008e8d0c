"""Deterministic simulated L-PBF build with injected, ground-truthed defects.

Layer by layer, every part gets contour then meander hatch vectors (hatch
rotating 67° per layer); the melt-pool sensor samples at ``sensor_rate_hz``
along them. All signals of a layer are generated at once with numpy from a
random stream seeded by ``(seed, layer)``, so the output does not depend on
how it is chunked or batched, and the same seed always gives the same build,
timestamps included (point ``i`` is at ``start_time + i / sensor_rate_hz``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from am_qadf.simulation.defects import (
    DEFECT_TYPES,
    DROPOUT_KINDS,
    DefectEvent,
    apply_commanded,
    apply_measured,
    heat_factor,
    plan_defects,
)
from am_qadf.simulation.pacing import Pacer
from am_qadf.simulation.process_model import ProcessModel
from am_qadf.simulation.scan_path import (
    DEFAULT_PARTS,
    LayerVectors,
    Part,
    ScanStrategy,
    expand_points,
    layer_vectors,
)
from am_qadf.streaming.serialization import dumps

__all__ = ["MESSAGE_FIELDS", "SIGNALS", "BuildSimulator"]

MESSAGE_FIELDS: tuple[str, ...] = (
    "timestamp", "build_id", "layer", "x", "y", "z",
    "power", "scan_speed", "temperature", "melt_pool_area", "intensity", "value",
)  # fmt: skip
"""Keys of every simulated message, in order."""

SIGNALS: tuple[str, ...] = ("temperature", "melt_pool_area", "power", "scan_speed", "intensity")
"""The process signals a message carries (``value`` repeats ``temperature``)."""

#: Decimals each simulated reading is given, as its sensor would: pyrometer to 0.1 K,
#: melt-pool area to 1 µm², power, speed and photodiode to 0.1 of their unit. Full
#: float noise added ~90 bytes of digits no sensor resolves to every stored message
#: (``bench/bench_history_bytes.py``). Positions are the scan path's, as commanded.
SENSOR_DECIMALS: dict[str, int] = {
    "temperature": 1,
    "melt_pool_area": 6,
    "power": 1,
    "scan_speed": 1,
    "intensity": 1,
}

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
_NUMERIC = (
    "x",
    "y",
    "z",
    "power",
    "scan_speed",
    "temperature",
    "melt_pool_area",
    "intensity",
    "value",
)


@lru_cache(maxsize=64)
def _message_template(build_id: bytes, extra: bytes) -> bytes:
    """``%``-template of one encoded message (:meth:`BuildSimulator._encoded`): JSON
    of build ``build_id`` with the encoded fields ``extra`` last; it takes the
    timestamp's seconds and fraction, the layer and the numbers."""
    numbers = ",".join(f'"{k}":%s' for k in ("layer", *_NUMERIC)).encode()
    build, extra = build_id.replace(b"%", b"%%"), extra.replace(b"%", b"%%")
    return b'{"timestamp":"%s%sZ","build_id":' + build + b"," + numbers + extra + b"}"


class BuildSimulator:
    """A seeded, simulated build: messages, numpy columns and ground truth.

    ``n_points`` bounds the stream (None: the whole build, millions of points);
    ``n_defects`` events of ``defect_types`` are spread over it after
    ``warmup_points`` defect-free points (room for an SPC baseline).

    >>> sim = BuildSimulator(seed=1, n_points=50_000, n_defects=5, warmup_points=5_000)
    >>> batch = next(sim.iter_batches(batch_size=3))
    >>> sorted(batch[0]) == sorted(MESSAGE_FIELDS), batch[1]["timestamp"] - batch[0]["timestamp"]
    (True, datetime.timedelta(microseconds=50))
    >>> [e.kind for e in sim.ground_truth][:2] == [e.kind for e in BuildSimulator(
    ...     seed=1, n_points=50_000, n_defects=5, warmup_points=5_000).ground_truth][:2]
    True
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        n_points: int | None = 1_000_000,
        n_defects: int = 24,
        defect_types: Sequence[str] = DEFECT_TYPES,
        sensor_rate_hz: float = 20_000.0,
        layer_thickness: float = 0.04,
        hatch_spacing: float = 0.1,
        parts: Sequence[Part] = DEFAULT_PARTS,
        strategy: ScanStrategy | None = None,
        model: ProcessModel | None = None,
        build_id: str | None = None,
        start_time: datetime = DEFAULT_START,
        warmup_points: int = 20_000,
        defect_gap: int = 3_000,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if n_points is not None and (
            isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1
        ):
            raise ValueError(f"n_points must be a positive int or None, got {n_points!r}")
        if isinstance(n_defects, bool) or not isinstance(n_defects, int) or n_defects < 0:
            raise ValueError(f"n_defects must be an int >= 0, got {n_defects!r}")
        if not isinstance(start_time, datetime):
            raise TypeError(f"start_time must be a datetime, got {type(start_time).__name__}")
        if not parts:
            raise ValueError("parts must not be empty")
        self.seed = int(seed)
        self.strategy = strategy or ScanStrategy(
            layer_thickness=layer_thickness,
            hatch_spacing=hatch_spacing,
            sensor_rate_hz=sensor_rate_hz,
        )
        self.model = model or ProcessModel()
        self.parts = tuple(parts)
        self.sensor_rate_hz = float(self.strategy.sensor_rate_hz)
        self.build_id = build_id if build_id is not None else f"sim-{self.seed}"
        self.start_time = start_time if start_time.tzinfo else start_time.replace(tzinfo=UTC)
        self.n_layers = math.ceil(
            max(p.height for p in self.parts) / self.strategy.layer_thickness - 1e-9
        )
        self._vectors = lru_cache(maxsize=64)(self._make_vectors)
        # Offsets of every layer, computed lazily up to what the stream needs.
        self._offsets: list[int] = [0]
        if n_points is None:
            self._extend_offsets(self.n_layers)
            self.total_points = self._offsets[-1]
        else:
            self._extend_to_point(n_points)
            self.total_points = min(n_points, self._offsets[-1])
        first = min(int(warmup_points), self.total_points)
        last = max(first, self.total_points - 1_000)
        events = plan_defects(
            np.random.default_rng([self.seed, 1]),
            n_defects,
            first,
            last,
            tuple(defect_types),
            defect_gap,
        )
        self._events = [self._locate(e) for e in events]
        self._hot = self._hot_zones()

    # geometry and time
    def _make_vectors(self, layer: int) -> LayerVectors:
        return layer_vectors(self.parts, layer, self.strategy)

    def _extend_offsets(self, n_layers: int) -> None:
        while len(self._offsets) - 1 < min(n_layers, self.n_layers):
            layer = len(self._offsets) - 1
            self._offsets.append(self._offsets[-1] + self._vectors(layer).n_points)

    def _extend_to_point(self, n: int) -> None:
        while self._offsets[-1] < n and len(self._offsets) - 1 < self.n_layers:
            self._extend_offsets(len(self._offsets))

    def layer_of(self, index: int) -> int:
        """Layer of simulator point ``index``."""
        if not 0 <= index < self.total_points:
            raise IndexError(f"point index {index} outside 0..{self.total_points - 1}")
        return int(np.searchsorted(self._offsets, index, side="right") - 1)

    def position_of(self, index: int) -> tuple[float, float, float, int]:
        """(x, y, z, layer) of simulator point ``index``."""
        layer = self.layer_of(index)
        lv = self._vectors(layer)
        k = index - self._offsets[layer]
        p = expand_points(lv, k, k + 1)
        return float(p["x"][0]), float(p["y"][0]), lv.z, layer

    def time_of(self, index: int) -> datetime:
        """Timestamp of simulator point ``index`` (``start_time + index / sensor_rate_hz``)."""
        return self.start_time + timedelta(microseconds=round(index * 1e6 / self.sensor_rate_hz))

    def index_of(self, t: datetime) -> int:
        """Nearest simulator point index of timestamp ``t`` (inverse of :meth:`time_of`)."""
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        return round((t - self.start_time).total_seconds() * self.sensor_rate_hz)

    # ground truth
    def _locate(self, ev: DefectEvent) -> DefectEvent:
        x, y, z, layer = self.position_of(ev.start_index)
        return ev.located(
            layer=layer,
            x=x,
            y=y,
            z=z,
            start_time=self.time_of(ev.start_index),
            end_time=self.time_of(ev.end_index),
        )

    def _overhang_layer(self, part: Part) -> int | None:
        """First layer in which ``part`` overhangs, if any."""
        t = self.strategy.layer_thickness
        return next(
            (L for L in range(self.n_layers) if part.has_overhang_at(round((L + 1) * t, 9))), None
        )

    def _hot_zones(self) -> list[DefectEvent]:
        out: list[DefectEvent] = []
        m = self.model
        if m.overhang_boost <= 0:
            return out
        for pi, part in enumerate(self.parts):
            if part.overhang <= 0:
                continue
            first = self._overhang_layer(part)
            if first is None:
                continue
            L = first
            # Zones last while the extra heat is at least a tenth of its first-layer value.
            while (
                len(self._offsets) - 1 > L
                and m.overhang_factor(L - first) >= 0.1 * m.overhang_boost
            ):
                base = self._offsets[L]
                if base >= self.total_points:
                    break
                lv = self._vectors(L)
                pts = expand_points(lv)
                hot = np.flatnonzero((pts["part"] == pi) & (pts["x"] > part.overhang_edge))
                if hot.size and base + int(hot[0]) < self.total_points:
                    s, e = base + int(hot[0]), min(base + int(hot[-1]) + 1, self.total_points)
                    sig = ("temperature", "melt_pool_area", "intensity", "value")
                    f = m.overhang_factor(L - first)
                    ev = DefectEvent(
                        len(out), "overhang_heat", s, e, sig, f, part.name, injected=False
                    )
                    out.append(self._locate(ev))
                L += 1
        return out

    def start_at(self, start_time: datetime) -> None:
        """Move the build in time so that point 0 is at ``start_time`` (ground truth too).

        A publisher calls it just before streaming, so the set-up time of a large build
        does not leave every timestamp behind the wall clock.

        >>> sim = BuildSimulator(1, n_points=30_000, n_defects=0)
        >>> sim.start_at(datetime(2026, 1, 1, tzinfo=UTC))
        >>> sim.time_of(10_000) - sim.start_time == timedelta(seconds=10_000 / sim.sensor_rate_hz)
        True
        """
        if not isinstance(start_time, datetime):
            raise TypeError(f"start_time must be a datetime, got {type(start_time).__name__}")
        start = start_time if start_time.tzinfo else start_time.replace(tzinfo=UTC)
        shift = start - self.start_time
        self.start_time = start

        def moved(ev: DefectEvent) -> DefectEvent:
            if ev.start_time is None or ev.end_time is None:
                return ev
            return ev.located(start_time=ev.start_time + shift, end_time=ev.end_time + shift)

        self._events = [moved(ev) for ev in self._events]
        self._hot = [moved(ev) for ev in self._hot]

    @property
    def ground_truth(self) -> list[DefectEvent]:
        """The injected defects, in stream order."""
        return list(self._events)

    @property
    def hot_zones(self) -> list[DefectEvent]:
        """Expected (not injected) hot zones: overhang strips in the first layers over powder."""
        return list(self._hot)

    # generation
    def _layer_arrays(self, layer: int) -> dict[str, np.ndarray]:
        """Every signal of one whole layer (before dropping messages)."""
        lv = self._vectors(layer)
        n = lv.n_points
        base = self._offsets[layer]
        pts = expand_points(lv)
        rng = np.random.default_rng([self.seed, 2, layer])
        m = self.model
        power, speed = pts["power"].copy(), pts["speed"].copy()
        apply_commanded(self._events, base, base + n, power, speed)
        heat = np.ones(n)
        for pi, part in enumerate(self.parts):
            if part.has_overhang_at(lv.z):
                first = self._overhang_layer(part)
                assert first is not None
                over = (pts["part"] == pi) & (pts["x"] > part.overhang_edge)
                heat[over] *= 1.0 + m.overhang_factor(layer - first)
        draws = np.random.default_rng([self.seed, 4, layer]).normal(size=1 + len(self.parts))
        heat *= m.level_offset(draws[0], draws[1:])[pts["part"]]
        heat_factor(self._events, base, base + n, heat)
        sig = m.respond(power, speed, pts["path_j"].astype(np.float64), heat, rng)
        sig["power"] = power + rng.normal(0.0, m.power_noise, n)
        sig["scan_speed"] = speed + rng.normal(0.0, m.speed_noise, n)
        drop = apply_measured(self._events, base, base + n, sig, self.seed, m)
        for name, decimals in SENSOR_DECIMALS.items():
            if name in sig:
                sig[name] = np.round(sig[name], decimals)
        sig["value"] = sig["temperature"].copy()
        idx = np.arange(base, base + n, dtype=np.int64)
        step_us = 1e6 / self.sensor_rate_hz
        start_us = (self.start_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        out = {
            "index": idx,
            "timestamp_us": start_us + np.rint(idx * step_us).astype(np.int64),
            "layer": np.full(n, layer, dtype=np.int64),
            "x": pts["x"],
            "y": pts["y"],
            "z": np.full(n, lv.z),
            **sig,
            "_drop": drop,
        }
        return out

    def iter_arrays(
        self, chunk_size: int | None = None, n_points: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield numpy columns chunk by chunk (a layer per chunk by default).

        Keys: ``index`` (simulator point index), ``timestamp`` (float epoch
        seconds), ``layer`` and :data:`MESSAGE_FIELDS` except ``build_id``.
        Dropped messages are absent (see ``index``); blanked values are NaN.

        >>> sim = BuildSimulator(seed=0, n_points=2_000, n_defects=0)
        >>> sum(c["x"].size for c in sim.iter_arrays(chunk_size=500))
        2000
        """
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        end = self.total_points if n_points is None else min(int(n_points), self.total_points)
        layer = 0
        while layer < len(self._offsets) - 1 and self._offsets[layer] < end:
            arr = self._layer_arrays(layer)
            n = min(arr["index"].size, end - self._offsets[layer])
            step = chunk_size or n
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                keep = ~arr["_drop"][lo:hi]
                chunk = {k: v[lo:hi][keep] for k, v in arr.items() if k != "_drop"}
                chunk["timestamp"] = chunk.pop("timestamp_us") / 1e6
                yield chunk
            layer += 1

    def columns(self, n_points: int | None = None) -> dict[str, np.ndarray]:
        """All columns of the first ``n_points`` points (default: the whole stream) at once."""
        chunks = list(self.iter_arrays(n_points=n_points))
        if not chunks:
            return {}
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def _messages(self, c: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        # fromtimestamp rounds to the microsecond, which recovers the exact integer-µs stamps.
        stamps = [datetime.fromtimestamp(t, UTC) for t in c["timestamp"].tolist()]
        b = self.build_id
        cols = [c[k].tolist() for k in _NUMERIC]
        rows = zip(stamps, c["layer"].tolist(), *cols, strict=True)
        msgs = [
            {
                "timestamp": t,
                "build_id": b,
                "layer": lay,
                "x": x,
                "y": y,
                "z": z,
                "power": p,
                "scan_speed": v,
                "temperature": te,
                "melt_pool_area": a,
                "intensity": i,
                "value": va,
            }
            for t, lay, x, y, z, p, v, te, a, i, va in rows
        ]
        idx = c["index"]
        lo, hi = (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)
        for ev in self._events:
            if (
                ev.kind not in DROPOUT_KINDS
                or ev.mode not in ("none", "missing")
                or not ev.overlaps(lo, hi)
            ):
                continue
            a, e = np.searchsorted(idx, [ev.start_index, ev.end_index])
            for m in msgs[a:e]:
                for f in ("temperature", "melt_pool_area", "intensity", "value"):
                    if ev.mode == "none":
                        m[f] = None
                    else:
                        del m[f]
        return msgs

    def _encoded(self, c: dict[str, np.ndarray], extra: bytes = b"") -> list[bytes]:
        """The messages of chunk ``c`` as the JSON bytes
        :func:`~am_qadf.streaming.serialization.dumps` writes for each of
        :meth:`_messages` (with the encoded fields ``extra`` last), built a column at a
        time instead of a dict at a time; a chunk a dropout reaches, whose messages
        lose or blank fields, goes through the dicts."""
        idx = c["index"]
        if not idx.size:
            return []
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if any(e.kind in DROPOUT_KINDS and e.overlaps(lo, hi) for e in self._events):
            encoded = list(map(dumps, self._messages(c)))
            return [m[:-1] + extra + b"}" for m in encoded] if extra else encoded
        # whole microseconds (as fromtimestamp rounds); dumps writes a datetime as
        # "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", the fraction only when it is not zero
        seconds, micros = np.divmod(np.rint(c["timestamp"] * 1e6).astype(np.int64), 1_000_000)
        distinct, which = np.unique(seconds, return_inverse=True)  # a few per chunk
        heads = np.datetime_as_string(distinct.astype("datetime64[s]"), unit="s")
        heads = heads.astype("S").tolist()
        stamps = [heads[i] for i in which.tolist()]
        fractions = [b".%06d" % f if f else b"" for f in micros.tolist()]
        # each column as the numbers dumps writes for it, one call per column
        cols = [dumps(c[k].tolist())[1:-1].split(b",") for k in ("layer", *_NUMERIC)]
        template = _message_template(dumps(self.build_id), extra)
        return list(map(template.__mod__, zip(stamps, fractions, *cols, strict=True)))

    def iter_encoded(
        self,
        batch_size: int = 1000,
        real_time: bool = False,
        rate: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Iterator[tuple[list[bytes], int]]:
        """:meth:`iter_batches` with every message JSON-encoded already: the bytes
        :func:`~am_qadf.streaming.serialization.dumps` writes for its dict (with the
        fields of ``extra`` added last, the same in every message), encoded a chunk of
        columns at a time, for a publisher that sends them as they are. Yields
        ``(messages, layer of the last one)`` per batch.

        >>> sim = BuildSimulator(seed=1, n_points=2_000, n_defects=0)
        >>> msgs, layer = next(sim.iter_encoded(batch_size=500, extra={"shift": 2}))
        >>> len(msgs), layer, msgs[1][:43], msgs[1][-11:]
        (500, 0, b'{"timestamp":"2024-01-01T00:00:00.000050Z",', b',"shift":2}')
        """
        if extra and not set(extra).isdisjoint(MESSAGE_FIELDS):
            taken = sorted(set(extra) & set(MESSAGE_FIELDS))
            raise ValueError(f"extra fields must not be message fields, got {taken}")
        tail = dumps(extra)[1:-1] if extra else b""
        tail = b"," + tail if tail else b""
        for batch, last in self._paced(
            batch_size, real_time, rate, lambda c: self._encoded(c, tail)
        ):
            yield batch, self.layer_of(last)

    def iter_batches(
        self, batch_size: int = 1000, real_time: bool = False, rate: float | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield lists of message dicts (see :data:`MESSAGE_FIELDS`).

        ``real_time=True`` paces batches at ``rate`` messages per second
        (default: the sensor rate), from the simulated timestamps, so dropped
        messages leave a real gap; otherwise batches come as fast as possible.
        """
        for batch, _ in self._paced(batch_size, real_time, rate, self._messages):
            yield batch

    def _paced(
        self,
        batch_size: int,
        real_time: bool,
        rate: float | None,
        convert: Callable[[dict[str, np.ndarray]], list[Any]],
    ) -> Iterator[tuple[list[Any], int]]:
        """Batches of the items ``convert`` makes of each chunk, each batch with the
        index of its last message, paced as :meth:`iter_batches` says."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        r = self.sensor_rate_hz if rate is None else float(rate)
        if not r > 0:
            raise ValueError(f"rate must be positive messages per second, got {rate!r}")
        pacer = Pacer(1.0 if real_time else 0.0)
        # Stream time 0 is now, before the first layer is generated: message timestamps
        # then keep step with the wall clock instead of trailing it by the set-up time.
        pacer.wait(0.0)
        pending: list[Any] = []
        pending_idx: list[int] = []
        for chunk in self.iter_arrays():
            pending.extend(convert(chunk))
            pending_idx.extend(chunk["index"].tolist())
            while len(pending) >= batch_size:
                last = pending_idx[batch_size - 1]
                pacer.wait(last / r)
                yield pending[:batch_size], last
                del pending[:batch_size], pending_idx[:batch_size]
        if pending:
            pacer.wait(pending_idx[-1] / r)
            yield pending, pending_idx[-1]

    def __repr__(self) -> str:
        return (
            f"BuildSimulator(seed={self.seed}, total_points={self.total_points}, "
            f"n_defects={len(self._events)}, build_id={self.build_id!r})"
        )
