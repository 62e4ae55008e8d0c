"""The embedded history's disk use is bounded (#13 item 7): oldest messages deleted
first beyond a size limit, the file stops growing, retention and limit configurable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from am_qadf.live_monitor import (
    DEFAULT_HISTORY_MAX_BYTES,
    DEFAULT_RETENTION_S,
    LiveMonitor,
    MonitorConfig,
)
from am_qadf.streaming import StreamingConfig, StreamStorage
from am_qadf.streaming.history_store import SqliteHistory, prepare_documents

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _docs(start: int, n: int) -> list[dict]:
    return [
        {"timestamp": T0 + timedelta(milliseconds=i), "layer": i, "note": "x" * 300}
        for i in range(start, start + n)
    ]


def test_trim_deletes_the_oldest_documents_first(tmp_path):
    h = SqliteHistory(tmp_path / "h.sqlite3")
    h.insert(prepare_documents(_docs(0, 3000)))
    deleted = h.trim_to(400_000, chunk=250)
    assert deleted > 0 and h.used_bytes() <= 400_000
    kept = h.query(T0, T0 + timedelta(hours=1), {})
    assert len(kept) == 3000 - deleted
    assert [d["layer"] for d in kept] == list(range(deleted, 3000))  # the newest stay


def test_history_file_stops_growing_under_its_size_limit(tmp_path):
    storage = StreamStorage(path=tmp_path / "history.sqlite3")
    limit = 1_000_000
    sizes = []
    for r in range(30):  # ~12 MB written in all, 12x the limit
        storage.store_batch(_docs(r * 1000, 1000))
        storage.trim_history(int(0.9 * limit))
        sizes.append((tmp_path / "history.sqlite3").stat().st_size)
    # the file holds at most the limit plus one round of inserts, and stops growing
    assert max(sizes) <= 1.6 * limit, sizes
    assert sizes[-1] == sizes[15], sizes
    # with the write-ahead log (checkpointed every ~4 MB, then reused): bounded too
    assert storage.history_disk_bytes() <= 1.6 * limit + 8 * 2**20
    left = storage.query_stream_history(T0, T0 + timedelta(hours=1))
    assert left[-1]["layer"] == 29_999 and len(left) < 5000


def test_trim_is_only_for_the_embedded_file():
    storage = StreamStorage(path=":memory:")
    with pytest.raises(ValueError, match="max_bytes"):
        storage.trim_history(-1)


def test_retention_and_size_limit_defaults_and_environment():
    cfg = MonitorConfig.from_env({})
    assert cfg.history_retention_s == DEFAULT_RETENTION_S == 24 * 3600.0
    assert cfg.history_max_bytes == DEFAULT_HISTORY_MAX_BYTES
    assert MonitorConfig.from_env({"AMQADF_HISTORY_MAX_MB": "none"}).history_max_bytes is None
    assert MonitorConfig.from_env({"AMQADF_HISTORY_MAX_MB": "1.5"}).history_max_bytes == int(
        1.5 * 2**20
    )
    for bad in ("-3", "lots", "inf"):
        with pytest.raises(ValueError, match="AMQADF_HISTORY_MAX_MB"):
            MonitorConfig.from_env({"AMQADF_HISTORY_MAX_MB": bad})


def test_monitor_trims_its_history_to_the_limit_and_reports_it(tmp_path):
    servers = [f"memory://disk-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False, history_max_bytes=500_000))
    mon.storage.store_batch(_docs(0, 4000))
    assert mon.history_disk()["bytes"] > 500_000
    assert mon.trim_history() > 0
    assert mon.storage.history.used_bytes() <= 450_000
    disk = mon.snapshot()["history_disk"]
    assert disk["max_bytes"] == 500_000 and disk["retention_s"] == DEFAULT_RETENTION_S


def test_simulated_readings_carry_their_sensor_resolution():
    """Float noise in the last digits cost ~70 bytes per stored message (bench)."""
    from am_qadf.simulation.build_simulator import SENSOR_DECIMALS, BuildSimulator

    (batch,) = BuildSimulator(seed=3, n_points=500, n_defects=0).iter_batches(500)
    for name, decimals in SENSOR_DECIMALS.items():
        values = [m[name] for m in batch if m.get(name) == m.get(name)]  # NaN: blanked
        assert values and all(round(v, decimals) == v for v in values), name
    assert SENSOR_DECIMALS["temperature"] == 1 and SENSOR_DECIMALS["power"] == 1


def test_running_monitor_keeps_its_history_file_within_the_limit(tmp_path):
    import time

    servers = [f"memory://disk-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False, history_max_bytes=500_000))
    mon.SIZE_CHECK_S = 0.05  # instead of every 10 s
    mon.storage.store_batch(_docs(0, 4000))
    mon.start()
    try:
        for _ in range(1200):  # bounded wait for the background check
            if mon.storage.history.used_bytes() <= 450_000:
                break
            time.sleep(0.05)
        assert mon.storage.history.used_bytes() <= 450_000
    finally:
        mon.stop()
