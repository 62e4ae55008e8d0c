"""One live monitoring pipeline, ready for a dashboard or a notebook.

A :class:`LiveMonitor` wires a :class:`~am_qadf.streaming.StreamingClient` with the
built-in processors (voxel, quality, SPC, alerts) to a voxel grid of the build plate,
and, in the embedded default, a simulated build published to the in-process broker.

>>> from am_qadf.live_monitor import LiveMonitor, MonitorConfig
>>> mon = LiveMonitor(MonitorConfig(simulate=False))
>>> mon.snapshot()["state"]
'stopped'
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import (
    ALL_ACTIONS,
    AlertCounts,
    ChartState,
    GridInfo,
    MonitorSnapshot,
    SignalWindow,
    Violation,
    chart_state,
    chart_states,
    violations,
)
from am_qadf.monitoring.alerts import Alert
from am_qadf.monitoring.resume_state import Resumable, decode, encode
from am_qadf.streaming import KafkaProducer, StreamingClient, StreamingConfig, StreamStorage
from am_qadf.streaming.baseline_store import BaselineStore
from am_qadf.streaming.brick_changes import BrickChangeLog
from am_qadf.streaming.buffer_manager import BufferManager
from am_qadf.streaming.streaming_result import StreamingResult
from am_qadf.streaming.timestamps import now_utc, to_epoch_us, to_utc
from am_qadf.voxelization.voxel_grid import VoxelGrid

__all__ = [
    "DEFAULT_HISTORY_MAX_BYTES",
    "DEFAULT_RETENTION_S",
    "KEEP_HOURS_RANGE",
    "MAX_DEFECT_POINTS",
    "LiveMonitor",
    "MonitorConfig",
    "check_keep_hours",
    "feed_state",
]

log = logging.getLogger(__name__)

_NO_LAYER = np.iinfo(np.int64).max
#: Chart kinds the monitor runs beside each signal's own by default (the SPC tab's).
DEFAULT_EXTRA_CHARTS = ("imr", "xbar_r")
_SPC_PREFIX = "spc_chart_"  # processors of the charts run beside the EWMA one
#: Points of each chart's statistic kept per signal and batch (the newest), and in all:
#: at 20 batches a second, 25 minutes.
SPC_POINTS_PER_BATCH = 2
SPC_SERIES_POINTS = 60_000
#: Rule violations kept per chart.
SPC_MARKS = 2_000

#: Least and most hours of history an operator may keep when deleting older data: less
#: than an hour is the retention setting's job (``history_retention_s``), not a button's.
KEEP_HOURS_RANGE = (1.0, 24.0 * 366 * 100)

#: Most samples one test defect may publish.
MAX_DEFECT_POINTS = 10_000


def check_keep_hours(hours: Any) -> float:
    """``hours`` of history to keep as a float, or ``ValueError`` saying what is wrong
    (not a number, not finite, outside :data:`KEEP_HOURS_RANGE`).

    >>> check_keep_hours(24)
    24.0
    >>> check_keep_hours(1e-9)
    Traceback (most recent call last):
    ...
    ValueError: keep hours must be between 1 and 878,400 hours, got 1e-09
    """
    if isinstance(hours, bool) or not isinstance(hours, int | float | np.integer | np.floating):
        raise ValueError(f"keep hours must be a number, got {type(hours).__name__}")
    value = float(hours)
    lo, hi = KEEP_HOURS_RANGE
    if not np.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"keep hours must be between {lo:,g} and {hi:,.0f} hours, got {hours!r}")
    return value


#: How long the embedded history keeps messages by default (24 h, what the History
#: tab's "Keep the last" offers), and the size it may grow to first: the simulated
#: demo writes about 1.5 MB/s (5,000 messages/s at ~300 bytes each, see
#: ``bench/bench_history_bytes.py``), so the size limit is what usually applies.
DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_HISTORY_MAX_BYTES = 1024 * 2**20


def _max_bytes(text: str | None) -> int | None:
    """``AMQADF_HISTORY_MAX_MB`` in bytes (unset: the default; 0 or none: no limit)."""
    if text is None or not text.strip():
        return DEFAULT_HISTORY_MAX_BYTES
    if text.strip().lower() in ("0", "none"):
        return None
    try:
        mib = float(text)
    except ValueError:
        raise ValueError(f"AMQADF_HISTORY_MAX_MB must be a number of MiB, got {text!r}") from None
    if not np.isfinite(mib) or mib <= 0:
        raise ValueError(f"AMQADF_HISTORY_MAX_MB must be a positive number of MiB, got {text!r}")
    return int(mib * 2**20)


@dataclass
class MonitorConfig:
    """What to monitor and how.

    ``streaming`` says where messages come from and where they are stored (default:
    everything embedded). ``simulate`` publishes a simulated build at ``rate``
    messages per second into the topic. ``profile`` says how the machine's messages map
    onto signals, their units, limits and SPC (None: the simulator's). The voxel grid
    covers ``bbox_min``..``bbox_max`` (mm) at ``resolution`` mm (None: the profile's
    plate and voxel size).
    """

    streaming: StreamingConfig = field(
        default_factory=lambda: StreamingConfig.embedded(max_poll_records=1000)
    )
    simulate: bool = True
    rate: float = 5000.0
    seed: int = 7
    publish_batch: int = 250
    profile: MachineProfile | None = None
    bbox_min: tuple[float, float, float] | None = None
    bbox_max: tuple[float, float, float] | None = None
    resolution: float | None = None
    #: Seconds of history kept in the embedded history file (None: keep everything;
    #: a MongoDB deployment keeps its own retention policy).
    history_retention_s: float | None = DEFAULT_RETENTION_S
    #: Most bytes the embedded history file may hold: beyond it the oldest messages are
    #: deleted first (checked every few seconds; None: no size limit).
    history_max_bytes: int | None = DEFAULT_HISTORY_MAX_BYTES
    #: Seconds without a new message after which the feed counts as stale ("No data
    #: for N s"), measured from when the newest batch ARRIVED, not from its timestamps
    #: (a replayed build is as live as a new one).
    stale_after_s: float = 5.0
    #: At most this many stored messages are replayed from the history when "replay
    #: from start" finds the build's beginning gone from the broker (its retention).
    replay_history_max: int = 2_000_000
    #: Control charts run beside each charted signal's own (the profile's, which raises
    #: the SPC alerts), for the SPC tab: any of ``"ewma"``, ``"imr"``, ``"xbar_r"``,
    #: ``"xbar_s"``, ``"cusum"``. Each costs: with I-MR and X̄-R beside the simulator's
    #: EWMA the pipeline's throughput is 0.6-0.7x, with all five 0.45-0.65x
    #: (``bench/bench_spc_charts.py``).
    spc_charts: tuple[str, ...] = DEFAULT_EXTRA_CHARTS

    def __post_init__(self) -> None:
        if not np.isfinite(self.stale_after_s) or self.stale_after_s <= 0:
            raise ValueError(
                f"stale_after_s must be a positive number of seconds, got {self.stale_after_s}"
            )
        if not np.isfinite(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a positive number of messages/s, got {self.rate}")
        from am_qadf.monitoring.control_charts import CHART_KINDS

        self.spc_charts = tuple(self.spc_charts)
        if any(k not in CHART_KINDS for k in self.spc_charts):
            raise ValueError(
                f"spc_charts must be kinds of {sorted(CHART_KINDS)}, got {self.spc_charts!r}"
            )
        if self.publish_batch < 1:
            raise ValueError(f"publish_batch must be >= 1, got {self.publish_batch}")
        if self.profile is not None and not isinstance(self.profile, MachineProfile):
            raise TypeError(f"profile must be a MachineProfile, got {type(self.profile).__name__}")
        if self.history_max_bytes is not None and not self.history_max_bytes > 0:
            raise ValueError(
                f"history_max_bytes must be a positive number of bytes or None, "
                f"got {self.history_max_bytes!r}"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MonitorConfig:
        """Read ``AMQADF_*`` variables (see :meth:`StreamingConfig.from_env`) plus
        ``AMQADF_SIMULATE`` (1/0; default 1 on the in-process broker, else 0),
        ``AMQADF_RATE``, ``AMQADF_SEED``, ``AMQADF_PROFILE`` (a machine profile TOML;
        a bad one fails here, naming file, key and reason), ``AMQADF_HISTORY_RETENTION_S``
        and ``AMQADF_HISTORY_MAX_MB`` (size limit of the embedded history file in MiB;
        ``0`` or ``none``: no limit), ``AMQADF_STALE_AFTER_S`` and ``AMQADF_SPC_CHARTS``
        (comma-separated chart kinds run beside the profile's).

        >>> MonitorConfig.from_env({"AMQADF_RATE": "2000"}).rate
        2000.0
        >>> MonitorConfig.from_env({"AMQADF_HISTORY_MAX_MB": "256"}).history_max_bytes
        268435456
        """
        env = dict(os.environ) if env is None else env
        streaming = StreamingConfig.from_env(
            base=StreamingConfig.embedded(max_poll_records=1000), env=env
        )
        embedded = streaming.kafka_bootstrap_servers[0].startswith("memory://")
        simulate = env.get("AMQADF_SIMULATE", "1" if embedded else "0") not in ("0", "false", "no")
        retention = env.get("AMQADF_HISTORY_RETENTION_S")
        return cls(
            streaming=streaming,
            simulate=simulate,
            history_retention_s=(
                float(retention)
                if retention
                else (DEFAULT_RETENTION_S if streaming.mongodb_uri is None else None)
            ),
            history_max_bytes=_max_bytes(env.get("AMQADF_HISTORY_MAX_MB")),
            rate=float(env.get("AMQADF_RATE", 5000.0)),
            seed=int(env.get("AMQADF_SEED", 7)),
            profile=MachineProfile.from_env(env),
            stale_after_s=float(env.get("AMQADF_STALE_AFTER_S", 5.0)),
            spc_charts=tuple(
                k.strip()
                for k in env.get("AMQADF_SPC_CHARTS", ",".join(DEFAULT_EXTRA_CHARTS)).split(",")
                if k.strip()
            ),
        )


def _resumable(processor: Any) -> bool:
    """A processor whose running state moves with the machine (charts, rules, alerts)."""
    return isinstance(processor, Resumable)


def feed_state(state: str, data_age_s: float | None, stale_after_s: float) -> str:
    """``"live"``, ``"stale"`` (consuming, but no message for more than
    ``stale_after_s``), ``"waiting"`` (consuming, no message yet: ``data_age_s`` None),
    or the consumer ``state`` itself when it is not running (paused, stopped, failed).

    >>> feed_state("running", 1.0, 5.0), feed_state("running", 9.0, 5.0)
    ('live', 'stale')
    >>> feed_state("running", None, 5.0), feed_state("paused", 9.0, 5.0)
    ('waiting', 'paused')
    """
    if state != "running":
        return state
    if data_age_s is None:
        return "waiting"
    return "live" if data_age_s <= stale_after_s else "stale"


class LiveMonitor:
    """A running pipeline: source, client, processors, grid, alerts, storage.

    Everything here is safe to call from a UI thread while the consumer thread works.
    ``profile`` (a :class:`MachineProfile` or a TOML path) overrides ``config.profile``.
    ``storage`` is used instead of one built from ``config.streaming`` (a fleet worker's
    machines share the worker's history and baseline store).
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        profile: MachineProfile | str | os.PathLike[str] | None = None,
        storage: StreamStorage | None = None,
    ) -> None:
        self.config = config or MonitorConfig()
        cfg = self.config
        #: The machine profile: signals, labels, units, limits, SPC, plate.
        self.profile = (
            MachineProfile.resolve(profile)
            if profile is not None
            else cfg.profile or MachineProfile.default()
        )
        lo, hi = self.profile.plate_bounds
        self.grid = VoxelGrid(
            cfg.bbox_min or lo,
            cfg.bbox_max or hi,
            cfg.resolution or self.profile.machine.voxel_mm,
            aggregation="mean",
        )
        self.changes = BrickChangeLog(self.grid.brick_dims)
        self.client = StreamingClient(cfg.streaming, profile=self.profile, storage=storage)
        self._lock = threading.Lock()
        self._publisher: Any = None
        self._stopping = threading.Event()
        self._retention_thread: threading.Thread | None = None
        self._seek_lock = threading.Lock()  # one replay at a time, whoever asks
        self._last: dict[str, Any] = {"layer": None, "build_id": None, "timestamp": None}
        # (build id, layer count) from the newest message carrying the profile's
        # ``fields.layer_count`` (a real machine's job file knows it)
        self._layer_count: tuple[Any, int] | None = None
        self._spc: dict[str, Any] = {}
        #: How many times the stream was replayed from the start (views reset on change).
        self.replays = 0
        # lowest layer delivered since the latest replay began (None: no replay yet);
        # kept here, in the consumer thread, so it does not depend on when a UI looks
        self._replay_layer: int | None = None
        self._baseline_store: BaselineStore | None = None
        self._baseline: dict[str, Any] = {}
        #: the clock data age is measured on (seconds; a test may drive its own)
        self.clock: Callable[[], float] = time.monotonic
        self._arrived: float | None = None  # self.clock() when the newest batch came
        self._started: float | None = None  # ... and when consuming started
        #: Build starts seen (a replay starts its builds again): a build id not seen
        #: since start or the latest replay clears grid, SPC and live buffers, and
        #: views reset when this changes.
        self.builds = 0
        self._build_ids: set[str] = set()
        # (messages processed when the latest replay began, of which first deliveries)
        self._replay_mark: tuple[int, int] | None = None
        self._replayed_before = 0  # re-deliveries counted by earlier replays
        self._backfill = False  # the next batch is the first one after a replay
        #: Messages of the latest replay that came from the history store (the broker
        #: no longer had them).
        self.replayed_from_history = 0
        # lowest and highest build layer seen in each voxel layer (z slab)
        self._layer_lo = np.full(int(self.grid.dims[2]), _NO_LAYER, dtype=np.int64)
        self._layer_hi = np.full(int(self.grid.dims[2]), -1, dtype=np.int64)
        # runs before the other processors, so a new build's first batch already
        # lands in a cleared grid
        self.client.register_processor("build_watch", self._watch_build)
        self._install_processors()
        self.client.add_result_listener(self._on_result)

    # -- wiring -------------------------------------------------------------------------
    def _install_processors(self, alerts: Any = None) -> None:
        from am_qadf.monitoring.processors import SPCProcessor

        procs = self.client.with_default_processors(self.grid).processors
        main = procs.get("spc_processor")
        for name in [n for n in procs if n.startswith(_SPC_PREFIX)]:
            self.client.unregister_processor(name)  # those of the previous build
        for kind in self.config.spc_charts if main is not None else ():
            self.client.register_processor(
                _SPC_PREFIX + kind,
                SPCProcessor(
                    main.signals,
                    chart=kind,
                    baseline_points=main.baseline_points,
                    rules=[1],  # run rules flag plain noise at tens of kHz
                    column_cache=self.client.column_cache,
                ),
            )
        with self._lock:
            self._spc_series: dict[tuple[str, str], BufferManager] = {}
            self._spc_marks: dict[str, deque] = {}
            self._spc_kinds: dict[str, dict[str, Any]] = {}
        self.incremental = procs["voxel_processor"].incremental
        if alerts is not None:  # keep the alert history (a new build, not a replay)
            procs["alert_processor"].alert_manager = alerts
        self.alerts = procs["alert_processor"].alert_manager
        self.spc = procs.get("spc_processor")  # None when the profile charts no signal
        self._apply_stored_baseline()

    # -- SPC baselines per machine and recipe -------------------------------------------
    @property
    def baseline_store(self) -> BaselineStore:
        """Where golden SPC baselines are kept (beside the history; memory without one)."""
        if self._baseline_store is None:
            storage = self.storage
            self._baseline_store = BaselineStore(storage.history if storage else None)
        return self._baseline_store

    def _apply_stored_baseline(self) -> None:
        """Fix the SPC limits from the baseline stored for this machine and material, if
        any; otherwise they are learned from this build (and then saved)."""
        m = self.profile.machine
        info: dict[str, Any] = {"machine_id": m.id, "material": m.material}
        if self.spc is None:
            self._baseline = {**info, "origin": "none"}
            return
        try:
            rec = self.baseline_store.load(m.id, m.material)
        except Exception:  # storage down: learn from this build instead
            log.exception("loading the stored SPC baseline failed")
            rec = None
        charts = self.spc.charts
        usable = {
            s: d
            for s, d in ((rec or {}).get("baselines") or {}).items()
            if s in charts and isinstance(d, dict) and d.get("kind") == charts[s].kind
        }
        if usable:
            self.spc.load_baselines(usable)
            self._baseline = {
                **info,
                "origin": "stored",
                "build_id": rec.get("build_id"),
                "learned_at": rec.get("learned_at"),
                "learned_by": rec.get("learned_by"),
                "signals": sorted(usable),
            }
        else:
            self._baseline = {**info, "origin": "learning"}

    def _save_learned_baseline(self) -> None:
        """Consumer thread: once every chart learned its baseline from this build, keep
        it as the golden baseline of this machine and material."""
        spc = self.spc
        if spc is None or self._baseline.get("origin") not in ("learning", "relearning"):
            return
        if not all(c.is_ready for c in spc.charts.values()):
            return
        m = self.profile.machine
        by = self._baseline.get("requested_by")
        try:
            rec = self.baseline_store.save(
                m.id, m.material, spc.baselines(), build_id=self._last["build_id"], learned_by=by
            )
        except Exception:
            log.exception("saving the learned SPC baseline failed")
            self._baseline = {**self._baseline, "origin": "learned", "saved": False}
            return
        self._baseline = {
            "machine_id": m.id,
            "material": m.material,
            "origin": "learned",
            "saved": True,
            "build_id": rec["build_id"],
            "learned_at": rec["learned_at"],
            "learned_by": by,
            "signals": sorted(rec["baselines"]),
        }

    def relearn_baseline(self, by: str | None = None, timeout: float = 30.0) -> None:
        """Forget the SPC limits and learn them again from the coming points; the new
        baseline replaces the stored one of this machine and material once learned.
        (The caller checks who may: a dashboard asks its access policy first.)"""
        spc = self.spc
        if spc is None:
            raise RuntimeError("the machine profile charts no signal: there is no baseline")

        def relearn() -> None:
            for name in list(spc.charts):
                spc.charts[name] = spc._new_chart(name if isinstance(name, str) else name[0])
            with self._lock:
                self._spc = {}
            m = self.profile.machine
            self._baseline = {
                "machine_id": m.id,
                "material": m.material,
                "origin": "relearning",
                "requested_by": by,
            }

        self.client.run_between_batches(relearn).result(timeout=timeout)

    def baseline_info(self) -> dict[str, Any]:
        """Where the SPC baseline comes from: ``origin`` is ``stored`` (loaded for this
        machine and material), ``learning``/``relearning`` (from this build),
        ``learned`` (from this build, and saved) or ``none``; with ``machine_id``,
        ``material``, ``build_id``, ``learned_at``, ``learned_by`` where known."""
        return dict(self._baseline)

    def _clear_views_state(self) -> None:
        """Empty grid, change log and signal buffers (consumer thread, between batches)."""
        self._layer_lo.fill(_NO_LAYER)
        self._layer_hi.fill(-1)
        self.grid.clear()
        self.incremental.reset_updated_regions()
        self.changes.reset()
        for buf in self.client.buffers.values():
            buf.clear()

    def _watch_build(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Processor run first on every batch: the first message of a build id not seen
        since start (or the latest replay) begins a new build. Looks at the batch's
        last message only (a build's messages come in order)."""
        build = batch[-1].get("build_id") if batch else None
        if self._backfill and batch:
            self._backfill = False
            self._replay_history_before(batch[0])
        if build is None or build in self._build_ids:
            return {}
        if self._build_ids:  # not the first build: the previous one's state goes
            self._clear_views_state()
            self._install_processors(alerts=self.alerts)
            with self._lock:
                self._spc = {}
                self._last = {"layer": None, "build_id": build, "timestamp": None}
        self._build_ids.add(build)
        self.builds += 1
        return {"new_build": build}

    def _replay_history_before(self, first: dict[str, Any], chunk: int = 5_000) -> None:
        """After a replay: feed the stored messages of ``first``'s build older than
        ``first`` (those the broker's retention dropped) through the pipeline before it,
        so the replay starts at the build's first layer (consumer thread)."""
        storage, build = self.storage, first.get("build_id")
        if storage is None or build is None or not self.config.streaming.enable_mongodb_storage:
            return
        try:
            end = to_utc(first.get("timestamp")) - timedelta(microseconds=1)
        except (TypeError, ValueError):
            return
        start, done = end - timedelta(days=365), 0
        self._build_ids.add(build)  # the messages replayed here begin the build
        self.builds += 1
        while done < self.config.replay_history_max:
            try:
                docs = storage.query_stream_history(
                    start,
                    end,
                    {"build_id": build},
                    limit=min(chunk, self.config.replay_history_max - done),
                )
            except Exception:
                log.exception("replaying build %s from the history failed", build)
                break
            if not docs:
                break
            if done == 0 and isinstance(layer := docs[0].get("layer"), int | float):
                with self._lock:
                    self._replay_layer = int(layer)
            result = self.client.process_stream_batch(docs)
            self._record_layers(docs)
            if result.voxel_updates:
                self.changes.mark(result.voxel_updates["bricks"])
            done += len(docs)
            start = to_utc(docs[-1]["timestamp"]) + timedelta(microseconds=1)
            # data is arriving (from the history): not a dead feed; and a pause between
            # chunks lets the dashboard's threads run while a long build replays
            self._arrived = self.clock()
            time.sleep(0.002)
        self.replayed_from_history = done
        if done:
            log.info("replayed %d messages of build %s from the history", done, build)

    def _record_spc(self, batch: list[dict[str, Any]], result: StreamingResult) -> None:
        """Keep each chart's statistic over time (the newest points of every batch,
        placed back in time from the batch's newest message) and its rule violations
        (consumer thread)."""
        main = result.spc_results or {}
        # each signal's own chart (the profile's) keys its series by its kind; a chart
        # run beside it of the same kind is left out
        own = {sig: str(st.get("chart")) for sig, st in (main.get("signals") or {}).items()}
        charts: list[tuple[str | None, dict[str, Any]]] = [(None, main)] if main else []
        for name, out in (result.metadata.get("processors") or {}).items():
            if name.startswith(_SPC_PREFIX) and isinstance(out, dict):
                charts.append((name[len(_SPC_PREFIX) :], out))
        if not charts:
            return
        try:
            t_last = to_epoch_us(batch[-1]["timestamp"])
            step = (t_last - to_epoch_us(batch[0]["timestamp"])) / max(len(batch) - 1, 1)
        except (KeyError, TypeError, ValueError):
            return
        layer = batch[-1].get("layer")
        layer = float(layer) if isinstance(layer, int | float) else np.nan
        with self._lock:
            for extra, out in charts:
                if extra is not None:
                    self._spc_kinds[extra] = out
                for v in out.get("violations") or ():
                    kind = extra or own.get(v.get("signal"))
                    if kind is not None and (extra is None or own.get(v.get("signal")) != kind):
                        self._spc_marks.setdefault(kind, deque(maxlen=SPC_MARKS)).append(v)
                for signal, st in (out.get("signals") or {}).items():
                    kind = extra or own[signal]
                    if extra is not None and own.get(signal) == extra:
                        continue
                    latest = st.get("latest") or {}
                    idx = np.asarray(latest.get("index") or (), dtype=np.int64)
                    if idx.size == 0:
                        continue
                    val = np.array([np.nan if v is None else v for v in latest["value"]], float)
                    us = t_last - np.rint((idx[-1] - idx) * step).astype(np.int64)
                    keep = slice(None, None, -max(1, idx.size // SPC_POINTS_PER_BATCH))
                    idx, val, us = idx[keep][::-1], val[keep][::-1], us[keep][::-1]
                    rows = np.column_stack([val, np.full(idx.size, layer), idx.astype(float)])
                    buf = self._spc_series.get((kind, signal))
                    if buf is None:
                        buf = self._spc_series[(kind, signal)] = BufferManager(
                            buffer_size=SPC_SERIES_POINTS
                        )
                    buf.add_batch(rows, us.astype("datetime64[us]"))

    def spc_kinds(self, signal: str) -> list[str]:
        """The control chart kinds run on ``signal``: its own (the profile's, which
        raises the SPC alerts) first, then those run beside it (``spc_charts``)."""
        spc = self.spc
        if spc is None or signal not in spc.signals:
            return []
        own = spc.charts[signal].kind if signal in spc.charts else None
        kinds = [own] if own else []
        return kinds + [k for k in self.config.spc_charts if k not in kinds]

    def spc_series(
        self, chart: str, signal: str, seconds: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, epoch_us)`` of ``chart``'s statistic for ``signal`` over the last
        ``seconds`` (None: all kept, up to ``SPC_SERIES_POINTS``), oldest first; each row
        is ``(statistic, build layer, point index)``."""
        with self._lock:
            buf = self._spc_series.get((chart, signal))
        if buf is None:
            return np.empty((0, 3)), np.empty(0, dtype=np.int64)
        if seconds is None:  # all kept: longer than any series, still in int64 microseconds
            seconds = 1e12
        return buf.get_time_window_arrays(seconds)

    def spc_violations(self, chart: str, signal: str | None = None) -> list[dict[str, Any]]:
        """The latest rule violations of ``chart`` (at most ``SPC_MARKS``), oldest first:
        dicts with ``signal, rule, time, layer, value, index``."""
        with self._lock:
            marks = list(self._spc_marks.get(chart, ()))
        return [m for m in marks if signal is None or m.get("signal") == signal]

    def _record_layers(self, batch: list[dict[str, Any]]) -> None:
        """Note which build layers each voxel layer holds (consumer thread)."""
        cols = self.client.column_cache.columns(batch, ["z", "layer"])
        z, layer = cols["z"], cols["layer"]
        ok = np.isfinite(z) & np.isfinite(layer)
        if not ok.any():
            return
        k = np.floor((z[ok] - self.grid.bbox_min[2]) / self.grid.resolution).astype(np.int64)
        inside = (k >= 0) & (k < self._layer_lo.size)
        k, lay = k[inside], layer[ok][inside].astype(np.int64)
        np.minimum.at(self._layer_lo, k, lay)
        np.maximum.at(self._layer_hi, k, lay)

    def rule_violations(self, chart: str, signal: str | None = None) -> list[Violation]:
        """:meth:`spc_violations` typed.

        >>> LiveMonitor(MonitorConfig(simulate=False)).rule_violations("ewma")
        []
        """
        return violations(self.spc_violations(chart, signal))

    def _record_layer_count(self, batch: list[dict[str, Any]]) -> None:
        """Note the build's layer count from the newest message of ``batch`` that
        carries a whole positive one, with that message's build (consumer thread)."""
        cache = self.client.column_cache
        if "layer_count" not in cache.field_names(batch):
            return
        col = cache.columns(batch, ["layer_count"])["layer_count"]
        with np.errstate(invalid="ignore"):
            ok = np.flatnonzero((col >= 1) & (col == np.floor(col)) & (col < 2**31))
        if ok.size:
            i = int(ok[-1])
            with self._lock:
                self._layer_count = (batch[i].get("build_id"), int(col[i]))

    def build_layers(self, k: int) -> tuple[int, int] | None:
        """The lowest and highest build layer seen in voxel layer ``k`` (the z slab
        ``k * resolution`` above the plate), None when none was.

        >>> mon = LiveMonitor(MonitorConfig(simulate=False))
        >>> mon.build_layers(0) is None
        True
        """
        if not 0 <= k < self._layer_lo.size or self._layer_hi[k] < 0:
            return None
        return int(self._layer_lo[k]), int(self._layer_hi[k])

    def voxel_layer(self, build_layer: int) -> int | None:
        """The voxel layer that holds ``build_layer`` (None when not seen yet)."""
        hit = np.flatnonzero((self._layer_lo <= build_layer) & (self._layer_hi >= build_layer))
        return int(hit[0]) if hit.size else None

    def _on_result(self, batch: list[dict[str, Any]], result: StreamingResult) -> None:
        if result.voxel_updates:
            self.changes.mark(result.voxel_updates["bricks"])
        self._record_spc(batch, result)
        self._record_layers(batch)
        if self.profile.fields.layer_count is not None:
            self._record_layer_count(batch)
        last = batch[-1]
        self._arrived = self.clock()
        with self._lock:
            self._last = {
                "layer": last.get("layer", self._last["layer"]),
                "build_id": last.get("build_id", self._last["build_id"]),
                "timestamp": last.get("timestamp", self._last["timestamp"]),
            }
            if result.spc_results:
                self._spc = result.spc_results
            layer = self._last["layer"]
            if self.replays and isinstance(layer, int | float):
                seen = int(layer)
                if self._replay_layer is None or seen < self._replay_layer:
                    self._replay_layer = seen
        if result.spc_results and self._baseline.get("origin") in ("learning", "relearning"):
            self._save_learned_baseline()

    @property
    def storage(self):  # noqa: ANN201 - StreamStorage | None
        """The client's :class:`~am_qadf.streaming.StreamStorage`."""
        return self.client.storage

    # -- control ------------------------------------------------------------------------
    def start(self) -> None:
        """Start consuming (and publishing the simulated build, if configured)."""
        topic = self.config.streaming.kafka_topic
        _ = self.storage  # built now, so health shows it before the first message
        if not self.client.is_running:
            self._started = self.clock()
            self.client.start_consumer([topic], lambda _msgs: None)
        if self.config.simulate and self._publisher is None:
            from am_qadf.simulation.publisher import SimulationPublisher

            self._publisher = SimulationPublisher(
                self.config.streaming.kafka_bootstrap_servers,
                topic,
                rate=self.config.rate,
                seed=self.config.seed,
                batch_size=self.config.publish_batch,
                kafka_config=self.config.streaming.kafka_config,
            )
            self._publisher.start()
        cfg = self.config
        bounded = cfg.history_retention_s or cfg.history_max_bytes
        if bounded and self._retention_thread is None:
            self._stopping.clear()
            self._retention_thread = threading.Thread(
                target=self._expire_history, name="amqadf-retention", daemon=True
            )
            self._retention_thread.start()

    def _expire_history(self) -> None:
        """Off the consumer thread: delete history older than the retention once a
        minute, and keep the embedded history file within its size limit (checked every
        ``SIZE_CHECK_S`` seconds)."""
        ticks = 0
        while not self._stopping.wait(self.SIZE_CHECK_S):
            ticks += 1
            storage = self.storage
            if storage is None:
                return
            try:
                self.trim_history()
                if self.config.history_retention_s and ticks * self.SIZE_CHECK_S >= 60.0:
                    ticks = 0
                    cutoff = now_utc() - timedelta(seconds=self.config.history_retention_s)
                    if deleted := storage.delete_old_data(cutoff):
                        log.info("expired %d history records older than %s", deleted, cutoff)
            except Exception:
                log.exception("expiring old history failed")

    #: Seconds between two checks of the history file's size.
    SIZE_CHECK_S = 10.0

    def trim_history(self) -> int:
        """Delete the oldest stored messages while the embedded history file is above
        ``history_max_bytes`` (down to 90 % of it, so the next trim is not due at once);
        return how many went (0: within its limit, no limit, or MongoDB).

        >>> import tempfile
        >>> from am_qadf.streaming import StreamingConfig
        >>> cfg = StreamingConfig.embedded(storage_path=tempfile.mkdtemp())
        >>> mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False))
        >>> mon.trim_history()  # far below its 1 GiB
        0
        """
        storage, limit = self.storage, self.config.history_max_bytes
        if storage is None or not limit:
            return 0
        size = storage.history_disk_bytes()
        if size is None or size <= limit:
            return 0
        deleted = storage.trim_history(int(0.9 * limit))
        if deleted:
            log.info("history file at %d bytes: deleted its %d oldest records", size, deleted)
        return deleted

    def history_disk(self) -> dict[str, Any]:
        """The embedded history file's bytes on disk, its size limit and its time
        retention (seconds), for views that state them; bytes None for MongoDB.

        >>> import tempfile
        >>> from am_qadf.streaming import StreamingConfig
        >>> cfg = StreamingConfig.embedded(storage_path=tempfile.mkdtemp())
        >>> disk = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False)).history_disk()
        >>> disk["max_bytes"] == 2**30, disk["retention_s"]
        (True, 86400.0)
        """
        storage = self.storage
        return {
            "bytes": None if storage is None else storage.history_disk_bytes(),
            "max_bytes": self.config.history_max_bytes,
            "retention_s": self.config.history_retention_s,
        }

    def stop(self) -> None:
        """Stop publishing and consuming (offsets of processed messages are committed)."""
        self._stopping.set()
        if self._retention_thread is not None:
            self._retention_thread.join(timeout=10)
            self._retention_thread = None
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        self.client.stop_consumer()

    def pause(self, *, by: str | None = None) -> None:
        """Pause consumption (the source keeps producing; nothing is lost). ``by``
        (who asked) is for the :class:`~am_qadf.machine_view.MachineSource` interface:
        the caller checked who may."""
        self.client.pause()

    def resume(self, *, by: str | None = None) -> None:
        """Resume consumption."""
        self.client.resume()

    def seek_to_beginning(self, timeout: float = 30.0, *, by: str | None = None) -> None:
        """Replay from the first message with clean state: grid, SPC, alerts and
        buffers are reset between two batches, then the consumer seeks.

        Raises ``RuntimeError`` while another replay is still starting (two operators
        pressing the button at once start one replay, not two).
        """
        if not self._seek_lock.acquire(blocking=False):
            raise RuntimeError("a replay is already starting; wait for it to begin")
        try:
            self._seek(timeout)
        finally:
            self._seek_lock.release()

    def _seek(self, timeout: float) -> None:

        def reset_and_seek() -> None:
            self._clear_views_state()
            self.alerts.reset()
            self._install_processors()
            self._build_ids.clear()
            processed = int(self.client.get_stream_statistics()["messages_processed"])
            with self._lock:
                self._spc = {}
                self._last = {"layer": None, "build_id": None, "timestamp": None}
                self.replays += 1
                self._replay_layer = None
                self._replayed_before = self._replayed(processed)
                self._replay_mark = (processed, processed - self._replayed_before)
                self._backfill = True
                self.replayed_from_history = 0
            self.client.seek_to_beginning()

        self.client.run_between_batches(reset_and_seek).result(timeout=timeout)

    def inject_test_defect(
        self, n_points: int = 60, temperature: float = 2650.0, *, by: str | None = None
    ) -> int:
        """Publish ``n_points`` overheating samples (a hot spot at the laser's current
        position) into the simulated build, as a machine would; returns how many.

        The alert processor turns them into a critical ``threshold_high`` alert: a check
        of the whole path for demonstrations. Refused with ``RuntimeError`` unless this
        monitor publishes a simulated build and the newest data is from it (fake samples
        must never be stored under a real build's id), and with ``ValueError`` for an
        ``n_points`` outside 1..:data:`MAX_DEFECT_POINTS` or a temperature that is not
        a finite number.
        """
        if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer):
            raise ValueError(f"n_points must be an integer, got {type(n_points).__name__}")
        if not 1 <= n_points <= MAX_DEFECT_POINTS:
            raise ValueError(f"n_points must be between 1 and {MAX_DEFECT_POINTS}, got {n_points}")
        if isinstance(temperature, bool) or not (
            isinstance(temperature, int | float | np.number) and np.isfinite(temperature)
        ):
            raise ValueError(f"temperature must be a finite number, got {temperature!r}")
        publisher = self._publisher
        if not self.config.simulate or publisher is None:
            raise RuntimeError(
                "test defects go only into a simulated build, and this line is not simulated"
            )
        with self._lock:
            build = self._last["build_id"]
        if build is None or build != publisher.build_id:
            raise RuntimeError(
                f"the newest data is from build {build!r}, not the simulated build "
                f"{publisher.build_id!r}: no test defect is put into it"
            )
        from am_qadf.simulation.defects import TEST_DEFECT_CONTEXT, hot_spot_messages

        latest: dict[str, float] = {}
        newest = None
        for name in TEST_DEFECT_CONTEXT:
            try:
                values, times, _ = self.client.get_buffer(name).get_sliding_window(1)
            except KeyError:
                continue
            if len(values):
                latest[name] = float(np.ravel(values)[-1])
                newest = times[-1] if newest is None else max(newest, times[-1])
        if newest is None:
            raise RuntimeError("no data has arrived yet: there is no position to put a defect at")
        msgs = hot_spot_messages(latest, newest, build, n_points, float(temperature))
        cfg = self.config.streaming
        producer = KafkaProducer(
            cfg.kafka_bootstrap_servers, cfg.kafka_topic, config=cfg.kafka_config
        )
        try:
            producer.produce_batch(msgs, key=str(build))
            producer.flush()
        finally:
            producer.close()
        return n_points

    def delete_history(self, keep_hours: float, *, by: str | None = None) -> int:
        """Delete stored history older than the newest ``keep_hours`` hours; returns how
        many records went. ``keep_hours`` is checked first (:func:`check_keep_hours`):
        a tiny, infinite or NaN value is refused, never taken as "delete everything"."""
        hours = check_keep_hours(keep_hours)
        storage = self.storage
        if storage is None:
            raise RuntimeError("history storage is disabled in this configuration")
        return storage.delete_old_data(now_utc() - timedelta(hours=hours))

    def acknowledge(self, alert_id: str, by: str | None = None) -> dict[str, Any]:
        """Acknowledge an alert by id; returns it as a dict."""
        return self.alerts.acknowledge(alert_id, by=by).to_dict()

    def clear_alert(self, alert_id: str, *, by: str | None = None) -> dict[str, Any]:
        """Clear an alert by id (it leaves the active list; its episode ends, so the
        next occurrence raises a new alert); returns it as a dict, ``KeyError`` if
        unknown."""
        cleared = self.alerts.clear(alert_id)
        return (cleared[0] if cleared else self.alerts.get(alert_id)).to_dict()

    # -- reading ------------------------------------------------------------------------
    def take_updated_bricks(self, viewer: str) -> tuple[np.ndarray, bool]:
        """Bricks ((n, 3) brick coordinates) changed since ``viewer`` last asked, and
        whether the viewer must redraw everything (first call or after a replay)."""
        return self.changes.take(viewer)

    def take_updated_voxels(self, viewer: str) -> tuple[np.ndarray, bool]:
        """Occupied voxels ((n, 3) indices) inside the bricks changed since ``viewer``
        last asked, and the redraw-everything flag of :meth:`take_updated_bricks`."""
        bricks, full = self.take_updated_bricks(viewer)
        if full:
            return self.grid.occupied_indices(), True
        return self.grid.occupied_indices(bricks=bricks), False

    def forget_viewer(self, viewer: str) -> None:
        """Forget a viewer's change cursor (call when its session ends)."""
        self.changes.forget(viewer)

    def spc_state(self, chart: str | None = None) -> dict[str, Any]:
        """Latest SPC results per signal (center line, limits, violations): of each
        signal's own chart (None), or of the ``chart`` kind (see :meth:`spc_kinds`)."""
        with self._lock:
            main = dict(self._spc)
            extra = dict(self._spc_kinds.get(chart, {})) if chart is not None else {}
        return main if chart is None else chart_state(main, extra, chart)

    def chart_states(self, chart: str | None = None) -> dict[str, ChartState]:
        """:meth:`spc_state` typed: ``{signal: ChartState}``.

        >>> LiveMonitor(MonitorConfig(simulate=False)).chart_states()
        {}
        """
        return chart_states(self.spc_state(chart))

    def export_state(self) -> dict[str, Any]:
        """The analysis state another monitor continues from exactly (consumer thread,
        between batches): builds seen, the baseline's origin, the newest layer/build,
        and every stateful processor's state (SPC charts, rules and alert episodes;
        see :meth:`import_state`). Voxels and signal windows are not part of it."""
        procs = self.client.processors
        with self._lock:
            last = encode(self._last)
        return {
            "builds": self.builds,
            "build_ids": encode(self._build_ids),
            "baseline": encode(self._baseline),
            "last": last,
            "processors": {n: p.export_state() for n, p in procs.items() if _resumable(p)},
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`export_state` of a monitor of the same profile (consumer
        thread, before its first batch): its charts, rules and alert episodes go on
        as if the stream had never moved. ``ValueError`` naming what does not fit;
        the monitor may then be partly restored, so the caller makes a new one.

        >>> cfg = MonitorConfig(simulate=False)
        >>> a, b = LiveMonitor(cfg), LiveMonitor(cfg)
        >>> _ = a.client.process_stream_batch([{"temperature": 1900.0, "layer": 1}] * 50)
        >>> b.import_state(a.export_state())
        >>> b.client.processors["spc_processor"].points_seen
        50
        """
        procs = self.client.processors
        try:
            saved, builds = state["processors"], int(state["builds"])
            build_ids, baseline, last = (
                decode(state[k]) for k in ("build_ids", "baseline", "last")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"monitor state: {exc}") from None
        own = sorted(n for n, p in procs.items() if _resumable(p))
        if not isinstance(saved, dict) or sorted(saved) != own:
            got = sorted(saved) if isinstance(saved, dict) else saved
            raise ValueError(f"monitor state: processors {got!r}, this monitor's {own!r}")
        if not (isinstance(build_ids, set) and isinstance(baseline, dict)):
            raise ValueError("monitor state: build_ids must be a set and baseline a dict")
        for name in own:
            procs[name].import_state(saved[name])
        self.builds, self._build_ids, self._baseline = builds, build_ids, baseline
        with self._lock:
            self._last = {**self._last, **(last if isinstance(last, dict) else {})}

    def _replayed(self, processed: int) -> int:
        """Messages among ``processed`` that were delivered again by replays: after a
        replay, as many as had been delivered once before it (hold ``_lock``)."""
        if self._replay_mark is None:
            return 0
        at_seek, unique = self._replay_mark
        return self._replayed_before + min(max(0, processed - at_seek), unique)

    def _build_plan(self, build_id: str | None) -> dict[str, Any] | None:
        """The simulated build's plan, else the layer count the messages of ``build_id``
        carry (``fields.layer_count``), when it is the build shown."""
        publisher = self._publisher
        plan = publisher.build_plan() if publisher is not None else None
        if plan is not None and plan["build_id"] == build_id:
            return plan
        with self._lock:
            counted = self._layer_count
        if counted is not None and counted[0] == build_id:
            return {"build_id": build_id, "layers": counted[1]}
        return None

    def snapshot(self) -> dict[str, Any]:
        """Figures for status and health views, cheap enough for every UI tick.

        Besides the statistics: ``feed`` (see :func:`feed_state`), ``data_age_s``
        (seconds since the newest batch arrived; before any, since consuming started),
        ``messages_new`` and ``messages_replayed`` (first deliveries and re-deliveries
        by "replay from start"), ``builds`` (builds begun: views reset when it changes),
        the ``topic``, ``points_outside_grid`` (points of this build the voxel grid
        dropped) with ``grid_box`` (its lower and upper corner, mm) and ``build_plan``
        (``layers`` and ETA of a simulated build, or ``layers`` from the messages'
        ``fields.layer_count``; else None)."""
        stats = self.client.get_stream_statistics()
        now = self.clock()
        arrived = self._arrived
        since = arrived if arrived is not None else self._started
        age = None if since is None else max(0.0, now - since)
        processed = int(stats["messages_processed"])
        with self._lock:
            last = dict(self._last)
            replay_layer = self._replay_layer
            replayed = self._replayed(processed)
        publisher = self._publisher
        return {
            "state": stats["consumer_state"],
            "feed": feed_state(
                str(stats["consumer_state"]),
                None if arrived is None else age,
                self.config.stale_after_s,
            ),
            "data_age_s": age,
            "stale_after_s": self.config.stale_after_s,
            "messages_new": processed - replayed,
            "messages_replayed": replayed,
            "builds": self.builds,
            "topic": self.config.streaming.kafka_topic,
            "stats": stats,
            "health": self.client.health(),
            "current_layer": last["layer"],
            "build_id": last["build_id"],
            "newest_timestamp": last["timestamp"],
            "occupied_voxels": self.grid.occupied_count,
            # points the voxel grid could not place (outside its box, or no coordinates)
            "points_outside_grid": int(self.incremental.get_statistics()["points_dropped"]),
            "grid_box": (
                [float(v) for v in self.grid.bbox_min],
                [float(v) for v in self.grid.bbox_max],
            ),
            "grid_bytes": self.grid.memory_bytes,
            "alerts_active": self.alerts.statistics()["active"],
            "published": publisher.published if publisher is not None else None,
            # simulated messages the broker never took (it was down too long)
            "publish_failed": publisher.producer.failed if publisher is not None else None,
            # the shown build's layer count (and ETA when simulated), where known
            "build_plan": self._build_plan(last["build_id"]),
            "replays": self.replays,
            "replay_from_layer": replay_layer,
            "replayed_from_history": self.replayed_from_history,
            # whether the profile fits the stream (missing fields, points off the plate)
            "profile": self.client.profile_statistics(),
            "baseline": self.baseline_info(),
            "history_disk": self.history_disk(),
        }

    # -- the MachineSource interface (am_qadf.machine_view) ------------------------------
    @property
    def machine_id(self) -> str:
        """The monitored machine's id (its profile's)."""
        return self.profile.machine.id

    @property
    def actions(self) -> frozenset[str]:
        """Operator actions offered: all, but test defects only on a simulated line
        and deleting history only with a history store."""
        out = set(ALL_ACTIONS)
        if not self.simulated:
            out.discard("inject_defect")
        if not self.has_history:
            out.discard("delete_old_data")
        return frozenset(out)

    @property
    def simulated(self) -> bool:
        """True when this monitor publishes a simulated build."""
        return bool(self.config.simulate)

    @property
    def has_history(self) -> bool:
        """True when messages are stored (history can be queried)."""
        return self.storage is not None

    def monitor_snapshot(self) -> MonitorSnapshot:
        """:meth:`snapshot` as a typed :class:`MonitorSnapshot` (with the machine's id,
        name and the laser's newest height ``newest_z``).

        >>> mon = LiveMonitor(MonitorConfig(simulate=False))
        >>> snap = mon.monitor_snapshot()
        >>> snap.state, snap.machine_id == mon.profile.machine.id, snap.newest_z
        ('stopped', True, None)
        """
        z = self._newest_value("z")
        return MonitorSnapshot.from_dict(
            {
                **self.snapshot(),
                "machine_id": self.machine_id,
                "name": self.profile.machine.title,
                "newest_z": z,
            }
        )

    def signal_newest(self, name: str) -> float | None:
        """Epoch seconds of ``name``'s newest value (None before any)."""
        try:
            newest = self.client.get_buffer(name).get_buffer_statistics()["newest_timestamp"]
        except KeyError:
            return None
        return None if newest is None else newest.timestamp()

    def _newest_value(self, name: str) -> float | None:
        try:
            values = self.client.get_buffer(name).get_window(1)
        except KeyError:
            return None
        v = np.ravel(values)
        return float(v[-1]) if v.size and np.isfinite(v[-1]) else None

    def signal_window(self, name: str, seconds: float) -> SignalWindow:
        """``name``'s values over the last ``seconds``, oldest first; empty before any.

        >>> len(LiveMonitor(MonitorConfig(simulate=False)).signal_window("power", 5.0))
        0
        """
        try:
            buf = self.client.get_buffer(name)
        except KeyError:
            return SignalWindow.empty(name)
        values, us = buf.get_time_window_arrays(seconds)
        values = np.asarray(values, dtype=float)
        if values.ndim > 1:
            values = values.reshape(len(us), -1)[:, 0]
        return SignalWindow(name, np.asarray(us, dtype=np.int64), values)

    def buffered_seconds(self) -> float:
        """Seconds of data in the shortest non-empty signal buffer (0 before any)."""
        spans = [
            st["age_span_seconds"]
            for b in self.client.buffers.values()
            if (st := b.get_buffer_statistics())["current_size"]
        ]
        return float(min(spans)) if spans else 0.0

    def grid_info(self) -> GridInfo:
        """Where the voxel grid lies (corners, voxel size, voxels per axis)."""
        g = self.grid
        return GridInfo(
            tuple(float(v) for v in g.bbox_min),
            tuple(float(v) for v in g.bbox_max),
            float(g.resolution),
            tuple(int(d) for d in g.dims),
        )

    def voxel_signals(self) -> list[str]:
        """Signals voxels may be coloured by: the profile's, then any other the grid holds."""
        return list(dict.fromkeys([*self.profile.signal_names, *self.grid.available_signals]))

    def occupied(self, signal: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ijk, values)`` of every voxel holding a value of ``signal`` (empty before
        the signal arrived)."""
        try:
            return self.grid.get_occupied(signal)
        except KeyError:
            return np.empty((0, 3), dtype=np.int64), np.empty(0)

    def voxel_values(self, signal: str, ijk: np.ndarray) -> np.ndarray:
        """``signal``'s values in voxels ``ijk`` ((n, 3)); NaN where there is none."""
        ijk = np.asarray(ijk, dtype=np.int64).reshape(-1, 3)
        if not len(ijk):
            return np.empty(0)
        try:
            return self.grid.get_values(signal, ijk, default=np.nan)
        except KeyError:
            return np.full(len(ijk), np.nan)

    def alert_counts(self) -> AlertCounts:
        """Alert figures now (:class:`AlertCounts`)."""
        return AlertCounts.of(self.alerts)

    def alert_list(self, limit: int | None = None, *, state: str | None = None) -> list[Alert]:
        """Kept alerts, oldest first (the newest ``limit``; only ``state`` ones)."""
        return self.alerts.history(limit=limit, state=state)

    def active_alerts(
        self, *, severity: str | None = None, include_acknowledged: bool = True
    ) -> list[Alert]:
        """Alerts not cleared yet, oldest first."""
        return self.alerts.active_alerts(
            severity=severity, include_acknowledged=include_acknowledged
        )

    def query_history(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, Any] | None = None,
        limit: int = 50_000,
    ) -> list[dict[str, Any]]:
        """Stored messages between ``start`` and ``end`` matching ``filters`` (oldest
        first, at most ``limit``); the list's ``truncated``/``reason`` say when it was
        cut (see :meth:`StreamStorage.query_stream_history`)."""
        storage = self.storage
        if storage is None:
            raise RuntimeError("history storage is disabled in this configuration")
        return storage.query_stream_history(start, end, filters, limit=limit)
