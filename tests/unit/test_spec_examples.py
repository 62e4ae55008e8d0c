"""Every code example of the streaming API reference, run as written (setup added only
where the example assumes an object made earlier)."""

import time
from datetime import datetime, timedelta

import numpy as np
import pytest

from am_qadf.streaming import (
    BufferManager,
    IncrementalProcessor,
    KafkaConsumer,
    KafkaProducer,
    StreamingClient,
    StreamingConfig,
    StreamingResult,
    StreamProcessor,
    StreamStorage,
)
from am_qadf.voxelization.voxel_grid import VoxelGrid


def test_config_defaults_match_spec():
    config = StreamingConfig()
    assert config.kafka_bootstrap_servers == ["localhost:9092"]
    assert config.kafka_topic == "am_qadf_monitoring"
    assert config.consumer_group_id == "am_qadf_consumers"
    assert config.enable_auto_commit is True
    assert config.auto_commit_interval_ms == 5000
    assert config.max_poll_records == 100
    assert config.session_timeout_ms == 30000
    assert config.buffer_size == 1000
    assert config.processing_batch_size == 100
    assert config.enable_redis_cache is True
    assert (config.redis_host, config.redis_port, config.redis_db) == ("localhost", 6379, 0)
    assert config.enable_mongodb_storage is True
    assert config.storage_batch_size == 1000


def test_result_defaults():
    result = StreamingResult(
        timestamp=datetime.now(),
        data_batch=np.array([1.0]),
        processed_count=1,
        processing_time_ms=1.0,
    )
    assert result.voxel_updates is None and result.quality_metrics is None
    assert result.spc_results is None
    assert result.alerts_generated == [] and result.metadata == {}


def test_client_examples(capsys):
    client = StreamingClient()
    batch = [
        {"value": 1.0, "timestamp": datetime.now()},
        {"value": 2.0, "timestamp": datetime.now()},
        {"value": 3.0, "timestamp": datetime.now()},
    ]
    result = client.process_stream_batch(batch)
    print(f"Processed {result.processed_count} messages in {result.processing_time_ms:.2f} ms")
    assert result.processed_count == 3
    assert result.data_batch.tolist() == [1.0, 2.0, 3.0]

    def my_processor(data_batch):
        values = [item.get("value", 0.0) for item in data_batch]
        return {
            "processed": True,
            "count": len(values),
            "sum": sum(values),
        }

    client.register_processor("my_processor", my_processor)
    result = client.process_stream_batch(batch)
    assert result.metadata["processors"]["my_processor"] == {
        "processed": True,
        "count": 3,
        "sum": 6.0,
    }

    stats = client.get_stream_statistics()
    print(f"Throughput: {stats['throughput_messages_per_sec']:.2f} msg/s")
    print(f"Average latency: {stats['average_latency_ms']:.2f} ms")
    assert stats["messages_processed"] == 6 and stats["batches_processed"] == 2
    assert stats["errors"] == 0 and stats["average_latency_ms"] > 0
    client.reset_statistics()
    stats = client.get_stream_statistics()
    assert stats["messages_processed"] == 0 and stats["batches_processed"] == 0
    assert "Processed 3 messages" in capsys.readouterr().out


def test_start_and_stop_consumer_example(capsys):
    servers = ["memory://spec-client"]
    client = StreamingClient(StreamingConfig.embedded(kafka_bootstrap_servers=servers))
    KafkaProducer(servers, "am_qadf_monitoring").produce({"value": 5.0, "x": 1.0})

    def process_batch(messages):
        print(f"Received {len(messages)} messages")
        for msg in messages:
            print(f"Message: {msg}")

    client.start_consumer(["am_qadf_monitoring"], process_batch)
    deadline = time.monotonic() + 10
    while client.get_stream_statistics()["messages_processed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    client.stop_consumer()
    out = capsys.readouterr().out
    assert "Received 1 messages" in out
    assert "'value': {'value': 5.0, 'x': 1.0}" in out
    assert not client.is_running


def test_consumer_and_producer_examples(capsys):
    servers = ["memory://spec-kafka"]
    producer = KafkaProducer(bootstrap_servers=servers, topic="spec-topic")
    producer.produce({"sensor_id": "sensor1", "value": 100.0}, key="sensor1")
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(servers, "spec-topic", group_id="am_qadf_consumers", auto_commit=True)
    messages = consumer.poll(timeout_ms=5000)
    for msg in messages:
        print(f"Message: {msg['value']}")
    assert len(messages) == 1
    assert set(messages[0]) >= {"topic", "partition", "offset", "timestamp", "key", "value"}
    assert messages[0]["key"] == "sensor1"
    assert messages[0]["timestamp"].tzinfo is not None
    consumer.commit()
    consumer.seek_to_beginning()
    consumer.pause()
    assert consumer.poll(timeout_ms=50) == []
    consumer.resume()
    assert [m["value"]["value"] for m in consumer.poll(timeout_ms=1000)] == [100.0]
    consumer.close()
    assert "Message: {'sensor_id': 'sensor1', 'value': 100.0}" in capsys.readouterr().out


def test_incremental_processor_examples():
    processor = IncrementalProcessor(VoxelGrid((0, 0, 0), (100, 100, 100), 1.0))
    coordinates = np.array(
        [
            [10.0, 20.0, 30.0],
            [11.0, 21.0, 31.0],
        ]
    )
    new_data = np.array([1000.0, 1050.0])

    updated_grid = processor.update_voxel_grid(new_data, coordinates)
    assert isinstance(updated_grid, VoxelGrid)
    regions = processor.get_updated_regions()
    print(f"Updated {len(regions)} voxels")
    assert sorted(regions) == [(10, 20, 30), (11, 21, 31)]
    stats = processor.get_statistics()
    print(f"Processed {stats['total_points_processed']} points")
    assert stats["total_points_processed"] == 2 and stats["updated_regions_count"] == 2
    processor.reset_updated_regions()
    assert processor.get_updated_regions() == []
    assert updated_grid.get_signal_array("value")[10, 20, 30] == 1000.0


def test_buffer_manager_examples():
    buffer = BufferManager(window_size=100, buffer_size=1000)
    for _ in range(60):
        buffer.add_data(np.array([100.0]), datetime.now(), metadata={"sensor_id": "sensor1"})
    window, timestamps, metadata = buffer.get_sliding_window(50)
    print(f"Window shape: {window.shape}")
    print(f"Time range: {timestamps[0]} to {timestamps[-1]}")
    assert window.shape == (50, 1) and len(timestamps) == 50
    assert metadata[0] == {"sensor_id": "sensor1"}

    window, timestamps, metadata = buffer.get_time_window(60.0)  # Last 60 seconds
    print(f"Found {len(window)} points in last minute")
    assert len(window) == 60

    stats = buffer.get_buffer_statistics()
    print(f"Buffer utilization: {stats['utilization_percent']:.1f}%")
    assert stats["utilization_percent"] == pytest.approx(6.0)

    all_data, timestamps, metadata = buffer.flush_buffer()
    buffer.clear()  # Clear after flushing
    assert len(all_data) == 60
    assert buffer.get_buffer_statistics()["current_size"] == 0


def test_stream_processor_examples():
    processor = StreamProcessor(StreamingConfig())

    def stage1(data):
        return [x * 2 for x in data]

    def stage2(data):
        return [x + 10 for x in data]

    pipeline = processor.create_processing_pipeline([stage1, stage2])
    result = processor.process_with_pipeline([1, 2, 3], pipeline)
    assert result == [12, 14, 16]

    processor.add_quality_checkpoint("non_empty", lambda x: len(x) > 0)
    processor.add_quality_checkpoint("all_positive", lambda x: all(v > 0 for v in x))
    results = processor.validate_all_checkpoints([1, 2, 3])
    assert results == {"non_empty": True, "all_positive": True}

    processor.enable_parallel_processing(num_workers=8)
    batches = [[1, 2], [3, 4], [5, 6]]
    results = processor.process_parallel(batches, pipeline)
    assert results == [[12, 14], [16, 18], [20, 22]]
    processor.disable_parallel_processing()

    stats = processor.get_statistics()
    print(f"Average latency: {stats['average_latency_ms']:.2f} ms")
    assert stats["checkpoints"]["non_empty"] == {"passed": 1, "failed": 0}


def test_stream_storage_examples(tmp_path):
    storage = StreamStorage(path=tmp_path / "h.sqlite3")
    assert storage.cache_recent_data("recent_batch", {"data": [1, 2, 3]}, ttl_seconds=1800)
    assert storage.get_cached_data("recent_batch") == {"data": [1, 2, 3]}
    batch = [
        {"value": 1.0, "timestamp": datetime.now()},
        {"value": 2.0, "timestamp": datetime.now()},
    ]
    inserted = storage.store_batch(batch)
    print(f"Inserted {inserted} documents")
    assert inserted == 2

    start_time = datetime.now() - timedelta(hours=1)
    end_time = datetime.now()
    history = storage.query_stream_history(start_time, end_time)
    print(f"Found {len(history)} records")
    assert [d["value"] for d in history] == [1.0, 2.0]

    storage.create_time_series_index()
    cutoff_time = datetime.now() - timedelta(days=30)
    deleted = storage.delete_old_data(cutoff_time)
    print(f"Deleted {deleted} old records")
    assert deleted == 0
    assert storage.delete_old_data(datetime.now() + timedelta(seconds=1)) == 2


def test_default_storage_constructor_works():
    storage = StreamStorage()
    assert storage.store_batch([{"value": 1.0, "timestamp": datetime.now()}]) == 1
