"""Prometheus metrics of a fleet worker, served at ``/metrics``.

Counters per machine (messages in, messages out, dead letters), alerts by machine
and severity, the batch latency histogram and the consumer lag per partition. Each
worker has its own registry, so several workers in one process (tests, the
embedded default) do not mix their figures.

>>> m = WorkerMetrics()
>>> m.count("messages_in", "m1", 250)
>>> m.alert("m1", "critical")
>>> text = m.text()
>>> 'amqadf_messages_in_total{machine="m1"} 250.0' in text
True
>>> 'amqadf_alerts_total{machine="m1",severity="critical"} 1.0' in text
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerMetrics"]

#: Batch latency buckets (seconds): a batch takes from under a millisecond to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    """The metrics of one worker in their own registry (``prometheus_client``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self._counters = {
            "messages_in": Counter(
                "amqadf_messages_in", "Messages polled, by machine", ["machine"], registry=r
            ),
            "messages_out": Counter(
                "amqadf_messages_out",
                "Messages processed and handed to storage, by machine",
                ["machine"],
                registry=r,
            ),
            "dead_letters": Counter(
                "amqadf_dead_letters", "Messages dead-lettered, by machine", ["machine"], registry=r
            ),
        }
        self.alerts = Counter(
            "amqadf_alerts",
            "Alerts raised, by machine and severity",
            ["machine", "severity"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "amqadf_batch_seconds",
            "Processing time of one polled batch",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.lag = Gauge(
            "amqadf_consumer_lag",
            "Messages not yet consumed, by partition",
            ["topic", "partition"],
            registry=r,
        )
        self._lag_seen: set[tuple[str, str]] = set()
        self._before_scrape: list[Callable[[], None]] = []

    def count(self, what: str, machine: str, n: int) -> None:
        """Add ``n`` to counter ``what`` (messages_in, messages_out, dead_letters)."""
        self._counters[what].labels(machine=machine).inc(n)

    def alert(self, machine: str, severity: str) -> None:
        """Count one alert raised for ``machine``."""
        self.alerts.labels(machine=machine, severity=severity).inc()

    def observe_lag(self, consumer: Any) -> None:
        """Set the lag gauge from ``consumer`` (a KafkaConsumer or None); partitions no
        longer assigned are removed."""
        lags = consumer.lag_by_partition() if consumer is not None else {}
        now = {(t, str(p)): n for (t, p), n in lags.items()}
        for gone in self._lag_seen - set(now):
            self.lag.remove(*gone)
        for (t, p), n in now.items():
            self.lag.labels(topic=t, partition=p).set(n)
        self._lag_seen = set(now)

    def watch(self, client: Any, alerts: Any, machine: str) -> None:
        """Count what a single-process pipeline does, with the worker's metric names:
        ``client`` (a :class:`~am_qadf.streaming.StreamingClient` whose background
        consumer feeds it) for messages in and out, dead letters and batch latency,
        ``alerts`` (its alert manager) for alerts, all under ``machine``. Lag is read
        from ``client.kafka_consumer`` when :meth:`observe_lag` is called.

        >>> from am_qadf.streaming import StreamingClient, StreamingConfig
        >>> from am_qadf.monitoring.alerts import AlertManager
        >>> client = StreamingClient(StreamingConfig.embedded())
        >>> m = WorkerMetrics()
        >>> m.watch(client, AlertManager(), "m1")
        >>> batch = [{"value": 1.0}] * 3
        >>> client.notify_listeners(batch, client.process_stream_batch(batch))
        >>> 'amqadf_messages_out_total{machine="m1"} 3.0' in m.text()
        True
        """
        lock = threading.Lock()
        seen = [client.dead_letters.count]

        def sync_dead_letters() -> None:
            # dead letters of batches with no valid message reach no listener: they are
            # counted from the client's total when scraped (and after each batch)
            with lock:
                now = client.dead_letters.count
                new = now - seen[0] if now >= seen[0] else now  # the client was reset
                seen[0] = now
            self.count("dead_letters", machine, new)
            self.count("messages_in", machine, new)

        def on_batch(_batch: Any, result: Any) -> None:
            self.count("messages_out", machine, result.processed_count)
            self.count("messages_in", machine, result.processed_count)
            self.batch_seconds.observe(result.processing_time_ms / 1e3)
            sync_dead_letters()

        client.add_result_listener(on_batch)
        alerts.add_listener(lambda a: self.alert(machine, a.severity))
        self._before_scrape.append(sync_dead_letters)

    def text(self) -> str:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        for sync in self._before_scrape:
            sync()
        return generate_latest(self.registry).decode()

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``addr:port`` in a background thread; returns the
        server (``shutdown()`` stops it). Port 0 picks a free port
        (``server.server_port``)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
