"""The dashboard's metrics registry: timed state-store reads, sessions per page, and the
embedded pipeline counted under the worker's names (dead letters included, even of
batches with no valid message)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
from am_qadf.monitoring.alerts import AlertManager
from am_qadf.streaming import StreamingClient, StreamingConfig, get_broker
from am_qadf.streaming.consumer_loop import wait_until
from dashboard.metrics import DashboardMetrics, timed_store
from dashboard.metrics_plugin import page_sessions

pytestmark = pytest.mark.timeout(60)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_only_reads_are_counted_and_a_failing_read_is_timed_too() -> None:
    m = DashboardMetrics()
    store = timed_store(InProcessStateStore(), m)
    store.put_snapshot(MachineSnapshot("m1", state="running"))  # a write: not counted
    assert store.snapshot("m1").machine_id == "m1"
    store.snapshots()
    with pytest.raises(ValueError):
        store.alerts("not a valid id!")
    s = _samples(m.text())
    assert s[("amqadf_dashboard_state_reads_total", (("op", "snapshot"),))] == 1
    assert s[("amqadf_dashboard_state_reads_total", (("op", "snapshots"),))] == 1
    assert s[("amqadf_dashboard_state_reads_total", (("op", "alerts"),))] == 1
    assert not any(("op", "put_snapshot") in labels for _, labels in s)
    assert s[("amqadf_dashboard_state_read_seconds_count", (("op", "snapshot"),))] == 1


def test_sessions_follow_the_pages_served() -> None:
    class Server:
        app_paths = {"/app", "/fleet"}

        def get_sessions(self, path: str) -> list[Any]:
            return [object()] * (3 if path == "/fleet" else 1)

    m = DashboardMetrics()
    m.set_sessions(page_sessions(Server()))
    s = _samples(m.text())
    assert s[("amqadf_dashboard_sessions", (("page", "fleet"),))] == 3
    m.set_sessions({"app": 0})
    s = _samples(m.text())
    assert ("amqadf_dashboard_sessions", (("page", "fleet"),)) not in s


def test_embedded_pipeline_counts_messages_and_dead_letters_like_a_worker() -> None:
    servers = [f"memory://dash-metrics-{uuid.uuid4().hex}"]
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=servers, enable_mongodb_storage=False, kafka_topic="line"
    )
    broker = get_broker(servers)
    client = StreamingClient(cfg)
    m = DashboardMetrics()
    m.watch_pipeline(client, AlertManager(), "m1")
    assert m.watch_pipeline(client, AlertManager(), "other") is m.pipeline  # once
    got: list[dict[str, Any]] = []
    # a batch of bad messages only (no listener call), then good ones
    for payload in [b"not json"] * 2:
        broker.produce("line", payload, partition=0)
    client.start_consumer(["line"], got.extend)
    try:
        assert client.kafka_consumer is not None

        def dead_counted() -> bool:
            s = _samples(m.text())
            return s.get(("amqadf_dead_letters_total", (("machine", "m1"),))) == 2

        assert wait_until(dead_counted, timeout=30)
        for i in range(5):
            broker.produce("line", orjson.dumps({"value": float(i)}), partition=0)
        assert wait_until(lambda: len(got) == 5, timeout=30)
        s = _samples(m.text())
    finally:
        client.stop_consumer()
    assert s[("amqadf_messages_out_total", (("machine", "m1"),))] == 5
    assert s[("amqadf_messages_in_total", (("machine", "m1"),))] == 7
    assert s[("amqadf_batch_seconds_count", ())] >= 1
    assert ("amqadf_consumer_lag", (("partition", "0"), ("topic", "line"))) in s
