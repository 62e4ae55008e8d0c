"""Prometheus metrics of a dashboard server, served at ``/metrics`` by
:mod:`dashboard.metrics_plugin` (``panel serve ... --plugins dashboard.metrics_plugin``).

One registry per process (:data:`METRICS`), read by the plugin's handler:

* ``amqadf_dashboard_sessions{page}``: open browser sessions per page (``app``,
  ``fleet``), counted from the server when scraped;
* ``amqadf_dashboard_state_reads_total{op}`` and the histogram
  ``amqadf_dashboard_state_read_seconds{op}``: state-store reads of this process (a
  store wrapped with :func:`timed_store`);
* ``amqadf_dashboard_refresh_seconds{page}``: how long one page refresh took;
* ``amqadf_dashboard_machines_shown{page}``: machines the page shows.

In the embedded default the process also runs the pipeline; its counters then come
with the worker's names (:class:`~am_qadf.fleet.worker_metrics.WorkerMetrics`:
``amqadf_messages_in_total`` …), so one Grafana dashboard serves both set-ups.

>>> m = DashboardMetrics()
>>> m.observe_refresh("app", 0.04)
>>> m.set_machines_shown("fleet", 4)
>>> 'amqadf_dashboard_machines_shown{page="fleet"} 4.0' in m.text()
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from am_qadf.fleet.worker_metrics import LATENCY_BUCKETS, WorkerMetrics

__all__ = ["METRICS", "READ_OPERATIONS", "DashboardMetrics", "metric_names", "timed_store"]

#: State-store methods that read (timed by :func:`timed_store`).
READ_OPERATIONS = frozenset(
    {
        "snapshot",
        "snapshots",
        "machines",
        "alerts",
        "spc",
        "windows",
        "bricks_since",
        "voxels_since",
    }
)
#: Refresh buckets (seconds): a page refresh takes milliseconds to a second or two.
REFRESH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class DashboardMetrics:
    """The metrics of one dashboard process in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge(
            "amqadf_dashboard_sessions", "Open browser sessions, by page", ["page"], registry=r
        )
        self.state_reads = Counter(
            "amqadf_dashboard_state_reads", "State-store reads, by operation", ["op"], registry=r
        )
        self.state_read_seconds = Histogram(
            "amqadf_dashboard_state_read_seconds",
            "Duration of one state-store read, by operation",
            ["op"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.refresh_seconds = Histogram(
            "amqadf_dashboard_refresh_seconds",
            "Duration of one page refresh (snapshot read and views updated), by page",
            ["page"],
            registry=r,
            buckets=REFRESH_BUCKETS,
        )
        self.machines_shown = Gauge(
            "amqadf_dashboard_machines_shown",
            "Machines the page shows, by page",
            ["page"],
            registry=r,
        )
        #: The embedded pipeline's counters (None while no pipeline runs in-process).
        self.pipeline: WorkerMetrics | None = None
        self._pipeline_client: Any = None
        self._pages: set[str] = set()

    def observe_refresh(self, page: str, seconds: float) -> None:
        """One refresh of ``page`` took ``seconds``."""
        self.refresh_seconds.labels(page=page).observe(seconds)

    def set_machines_shown(self, page: str, n: int) -> None:
        """``page`` shows ``n`` machines."""
        self.machines_shown.labels(page=page).set(n)

    def observe_read(self, op: str, seconds: float) -> None:
        """One state-store read ``op`` took ``seconds``."""
        self.state_reads.labels(op=op).inc()
        self.state_read_seconds.labels(op=op).observe(seconds)

    def set_sessions(self, counts: dict[str, int]) -> None:
        """Open sessions per page now (pages no longer served are dropped)."""
        for page in self._pages - set(counts):
            self.sessions.remove(page)
        for page, n in counts.items():
            self.sessions.labels(page=page).set(n)
        self._pages = set(counts)

    def watch_pipeline(self, client: Any, alerts: Any, machine: str) -> WorkerMetrics:
        """Count the in-process pipeline (``client``, its ``alerts`` manager) as a worker
        counts its machines (once per process: a second call returns the first)."""
        if self.pipeline is None:
            metrics = WorkerMetrics()
            metrics.watch(client, alerts, machine)
            self.pipeline, self._pipeline_client = metrics, client
        return self.pipeline

    def text(self) -> str:
        """Everything in Prometheus' text format (the pipeline's after the dashboard's)."""
        out = generate_latest(self.registry).decode()
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.observe_lag(self._pipeline_client.kafka_consumer)
            out += pipeline.text()
        return out


class _TimedStore:
    """A state store whose reads are counted and timed; everything else passes through."""

    def __init__(self, store: Any, metrics: DashboardMetrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in READ_OPERATIONS or not callable(attr):
            return attr
        return _timed(attr, name, self._metrics.observe_read)


def _timed(fn: Callable[..., Any], op: str, observe: Callable[[str, float], None]) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            observe(op, time.perf_counter() - t0)

    return call


def timed_store(store: Any, metrics: DashboardMetrics | None = None) -> Any:
    """``store`` (a :class:`~am_qadf.fleet.state_store.StateStore`) with its reads
    counted and timed in ``metrics`` (default :data:`METRICS`).

    >>> from am_qadf.fleet.state_store import InProcessStateStore
    >>> m = DashboardMetrics()
    >>> store = timed_store(InProcessStateStore(), m)
    >>> store.machines()
    []
    >>> 'amqadf_dashboard_state_reads_total{op="machines"} 1.0' in m.text()
    True
    """
    return _TimedStore(store, METRICS if metrics is None else metrics)


def metric_names(registries: Iterable[CollectorRegistry]) -> set[str]:
    """Every sample name the ``registries`` export (``_total``, ``_bucket`` … included).

    >>> "amqadf_dashboard_state_reads_total" in metric_names([DashboardMetrics().registry])
    True
    """
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            names.update(s.name for s in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


#: This process's metrics.
METRICS = DashboardMetrics()
