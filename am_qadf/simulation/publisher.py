"""Publish simulated builds to a topic at a steady rate, one build after another."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from am_qadf.streaming.kafka_producer import KafkaProducer
from am_qadf.streaming.timestamps import now_utc

from .build_simulator import BuildSimulator
from .scan_path import DEFAULT_PARTS, Part

__all__ = ["SimulationPublisher", "publish_until_done"]

log = logging.getLogger(__name__)


class SimulationPublisher:
    """Stream simulated L-PBF builds into ``topic`` at ``rate`` messages per second.

    The sensor rate of the simulation equals ``rate``, so message timestamps advance
    in step with the wall clock and start at the moment a build starts. When a build
    is complete the next one starts (seed + 1, a new build id); ``builds`` limits how
    many (None: until stopped). ``key`` is the message key, a machine id for a fleet
    (None: each build's id); ``parts`` the parts on the plate (default: the simulator's);
    ``layer_count_field`` a field in which every message carries its build's layer
    count, as a machine whose job file knows it does (None: not sent).

    >>> pub = SimulationPublisher(
    ...     ["memory://doc-pub"], "sim", rate=50_000, builds=1, n_points=2000, n_defects=0
    ... )
    >>> pub.run()  # in the calling thread; start() runs it in the background
    >>> pub.published
    2000
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        *,
        rate: float = 5000.0,
        seed: int = 7,
        batch_size: int = 250,
        builds: int | None = None,
        n_points: int | None = None,
        n_defects: int = 24,
        kafka_config: dict[str, Any] | None = None,
        key: str | None = None,
        parts: Sequence[Part] | None = None,
        layer_count_field: str | None = None,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive messages per second, got {rate!r}")
        self.producer = KafkaProducer(bootstrap_servers, topic, config=kafka_config)
        self.rate = float(rate)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.builds = builds
        self.n_points = n_points
        self.n_defects = n_defects
        #: Message key: the machine id (None: each build's id, as before fleets).
        self.key = key
        self.parts = tuple(parts) if parts is not None else DEFAULT_PARTS
        self.layer_count_field = layer_count_field
        self.published = 0
        self.build_id: str | None = None
        self.layer: int | None = None
        self._plan: tuple[str, int, int] | None = None  # (build id, layers, points)
        self._build_published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Publish until the requested builds are done or :meth:`stop` is called."""
        k = 0
        while not self._stop.is_set() and (self.builds is None or k < self.builds):
            sim = BuildSimulator(
                self.seed + k,
                n_points=self.n_points,
                n_defects=self.n_defects,
                sensor_rate_hz=self.rate,
                start_time=now_utc(),
                parts=self.parts,
                build_id=f"{self.key}-{self.seed + k}" if self.key else None,
            )
            sim.start_at(now_utc())  # the set-up above took time; stream from now
            self.build_id = sim.build_id
            layers = sim.layer_of(sim.total_points - 1) + 1 if sim.total_points else 0
            self._plan, self._build_published = (sim.build_id, layers, sim.total_points), 0
            log.info("publishing simulated build %s", sim.build_id)
            # encoded a chunk of columns at a time (no dict per message), with the
            # build's layer count last in every message when asked
            field = self.layer_count_field
            extra = {field: layers} if field is not None else None
            batches = sim.iter_encoded(self.batch_size, real_time=True, rate=self.rate, extra=extra)
            for batch, layer in batches:
                if self._stop.is_set():
                    break
                self.producer.produce_batch_raw(batch, key=self.key or sim.build_id)
                self.published += len(batch)
                self._build_published += len(batch)
                self.layer = layer
            k += 1
        self.producer.flush()

    def build_plan(self) -> dict[str, Any] | None:
        """What the build being published will be: ``build_id``, ``layers`` (its layer
        count), ``points`` and ``eta_s`` (seconds until its last point at ``rate``);
        None before the first build.

        >>> pub = SimulationPublisher(["memory://doc-plan"], "sim", rate=50_000, builds=1,
        ...                           n_points=2000, n_defects=0)
        >>> pub.build_plan() is None
        True
        >>> pub.run(); plan = pub.build_plan()
        >>> plan["points"], plan["eta_s"]
        (2000, 0.0)
        """
        plan = self._plan
        if plan is None:
            return None
        build_id, layers, points = plan
        left = max(points - self._build_published, 0)
        return {"build_id": build_id, "layers": layers, "points": points, "eta_s": left / self.rate}

    @property
    def is_alive(self) -> bool:
        """True while the background thread publishes."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Publish in a background thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="amqadf-simulator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing and wait for the thread to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def publish_until_done(
    publishers: Sequence[SimulationPublisher],
    progress: Callable[[float], str],
    every_s: float = 1.0,
) -> None:
    """Start ``publishers`` and wait until all are done or Ctrl-C, printing
    ``progress(elapsed_seconds)`` every ``every_s``; they are stopped either way.

    >>> pub = SimulationPublisher(
    ...     ["memory://doc-until"], "sim", rate=50_000, builds=1, n_points=500, n_defects=0
    ... )
    >>> import contextlib, io
    >>> out = io.StringIO()
    >>> with contextlib.redirect_stdout(out):
    ...     publish_until_done([pub], lambda s: f"published {pub.published}", every_s=0.05)
    >>> pub.published, pub.is_alive
    (500, False)
    >>> all(line.startswith("published") for line in out.getvalue().splitlines())
    True
    """
    for p in publishers:
        p.start()
    started = time.monotonic()
    try:
        while any(p.is_alive for p in publishers):
            time.sleep(every_s)
            print(progress(time.monotonic() - started), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for p in publishers:
            p.stop()
