"""StreamProcessor: pipelines, checkpoints, statistics and parallel batches."""

from __future__ import annotations

import random
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from am_qadf.streaming import StreamingConfig, StreamProcessor, latency_stats, stream_processor

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def processor():
    proc = StreamProcessor(StreamingConfig())
    yield proc
    proc.disable_parallel_processing()


def double(data):
    return [x * 2 for x in data]


def add_ten(data):
    return [x + 10 for x in data]


def test_requires_a_streaming_config() -> None:
    with pytest.raises(TypeError, match="config"):
        StreamProcessor({"kafka_topic": "x"})


def test_spec_example_pipeline(processor) -> None:
    pipeline = processor.create_processing_pipeline([double, add_ten])
    assert processor.process_with_pipeline([1, 2, 3], pipeline) == [12, 14, 16]
    assert pipeline([0]) == [10]  # the pipeline is a plain callable too
    assert pipeline.stages == (double, add_ten)


def test_pipelines_from_the_same_list_stay_independent(processor) -> None:
    stages = [double]
    first = processor.create_processing_pipeline(stages)
    stages.append(add_ten)
    second = processor.create_processing_pipeline(stages)
    stages[0] = lambda data: [x - 1 for x in data]
    stages.clear()
    assert processor.process_with_pipeline([1, 2], first) == [2, 4]
    assert processor.process_with_pipeline([1, 2], second) == [12, 14]


def test_tuple_of_stages_accepted(processor) -> None:
    pipeline = processor.create_processing_pipeline((add_ten, double))
    assert processor.process_with_pipeline([1], pipeline) == [22]


@pytest.mark.parametrize(
    ("stages", "exc", "match"),
    [
        ([], ValueError, "at least one"),
        ((), ValueError, "at least one"),
        (double, TypeError, "stages must be a list"),
        (None, TypeError, "stages must be a list"),
        ([double, 3], TypeError, r"stages\[1\]"),
        (["upper"], TypeError, r"stages\[0\]"),
    ],
)
def test_bad_stages_raise(processor, stages, exc, match) -> None:
    with pytest.raises(exc, match=match):
        processor.create_processing_pipeline(stages)


def test_non_callable_pipeline_rejected(processor) -> None:
    with pytest.raises(TypeError, match="pipeline"):
        processor.process_with_pipeline([1], "not a pipeline")
    assert processor.get_statistics()["calls"] == 0


# -- statistics ------------------------------------------------------------------------------
def test_latency_min_avg_max_and_throughput(processor, monkeypatch) -> None:
    perf = iter([0.0, 0.002, 1.0, 1.004, 2.0, 2.009])
    monkeypatch.setattr(stream_processor, "time", SimpleNamespace(perf_counter=lambda: next(perf)))
    clock = {"now": 1000.0}
    monkeypatch.setattr(latency_stats, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    processor._latency.reset()  # restart its clock under the fake time
    pipeline = processor.create_processing_pipeline([double])
    for batch in ([1, 2], [3], [4, 5, 6, 7]):
        processor.process_with_pipeline(batch, pipeline)
    clock["now"] = 1002.0
    stats = processor.get_statistics()
    assert stats["calls"] == 3
    assert stats["items_processed"] == 7
    assert stats["min_latency_ms"] == pytest.approx(2.0)
    assert stats["average_latency_ms"] == pytest.approx(5.0)
    assert stats["max_latency_ms"] == pytest.approx(9.0)
    assert stats["last_latency_ms"] == pytest.approx(9.0)
    assert stats["throughput_per_sec"] == pytest.approx(3.5)
    assert stats["errors"] == 0


def test_statistics_before_any_call(processor) -> None:
    stats = processor.get_statistics()
    assert stats["calls"] == 0 and stats["items_processed"] == 0
    assert stats["average_latency_ms"] == 0.0 and stats["min_latency_ms"] == 0.0
    assert stats["max_latency_ms"] == 0.0 and stats["throughput_per_sec"] == 0.0
    assert stats["checkpoints"] == {} and stats["errors"] == 0
    assert stats["parallel_enabled"] is False and stats["num_workers"] == 0


def test_non_sized_data_counts_as_one_item(processor) -> None:
    pipeline = processor.create_processing_pipeline([lambda x: x + 1])
    assert processor.process_with_pipeline(41, pipeline) == 42
    assert processor.get_statistics()["items_processed"] == 1


def test_raising_pipeline_counts_an_error_and_propagates(processor) -> None:
    def boom(data):
        raise ZeroDivisionError("stage 2 failed")

    pipeline = processor.create_processing_pipeline([double, boom])
    with pytest.raises(ZeroDivisionError, match="stage 2"):
        processor.process_with_pipeline([1], pipeline)
    with pytest.raises(ZeroDivisionError):
        processor.process_with_pipeline([2], pipeline)
    ok = processor.create_processing_pipeline([double])
    processor.process_with_pipeline([1, 2], ok)
    stats = processor.get_statistics()
    assert stats["errors"] == 2
    assert stats["calls"] == 1 and stats["items_processed"] == 2  # failures add no latency


# -- checkpoints ---------------------------------------------------------------------------
def test_checkpoint_pass_fail_counts(processor) -> None:
    processor.add_quality_checkpoint("non_empty", lambda x: len(x) > 0)
    processor.add_quality_checkpoint("all_positive", lambda x: all(v > 0 for v in x))
    assert processor.validate_all_checkpoints([1, 2, 3]) == {
        "non_empty": True,
        "all_positive": True,
    }
    assert processor.validate_all_checkpoints([1, -2]) == {"non_empty": True, "all_positive": False}
    assert processor.validate_all_checkpoints([]) == {"non_empty": False, "all_positive": True}
    assert processor.get_statistics()["checkpoints"] == {
        "non_empty": {"passed": 2, "failed": 1},
        "all_positive": {"passed": 2, "failed": 1},
    }


def test_raising_or_ambiguous_checkpoint_counts_as_failed(processor) -> None:
    def explode(data):
        raise RuntimeError("checkpoint crashed")

    processor.add_quality_checkpoint("explodes", explode)
    processor.add_quality_checkpoint("ambiguous", lambda x: np.asarray(x) > 0)
    processor.add_quality_checkpoint("truthy", lambda x: "yes")
    results = processor.validate_all_checkpoints([1, 2])
    assert results == {"explodes": False, "ambiguous": False, "truthy": True}
    assert all(type(v) is bool for v in results.values())
    counts = processor.get_statistics()["checkpoints"]
    assert counts["explodes"] == {"passed": 0, "failed": 1}
    assert counts["ambiguous"] == {"passed": 0, "failed": 1}
    assert counts["truthy"] == {"passed": 1, "failed": 0}


def test_replacing_a_checkpoint_resets_its_counts(processor) -> None:
    processor.add_quality_checkpoint("c", lambda x: False)
    processor.validate_all_checkpoints([1])
    processor.add_quality_checkpoint("c", lambda x: True)
    assert processor.validate_all_checkpoints([1]) == {"c": True}
    assert processor.get_statistics()["checkpoints"] == {"c": {"passed": 1, "failed": 0}}


def test_checkpoint_argument_validation(processor) -> None:
    with pytest.raises(ValueError, match="name"):
        processor.add_quality_checkpoint("", lambda x: True)
    with pytest.raises(ValueError, match="name"):
        processor.add_quality_checkpoint(None, lambda x: True)
    with pytest.raises(TypeError, match="checkpoint"):
        processor.add_quality_checkpoint("c", True)
    assert processor.validate_all_checkpoints([1]) == {}


# -- parallel ------------------------------------------------------------------------------
def test_process_parallel_keeps_input_order(processor) -> None:
    rng = random.Random(1234)
    delays = [rng.uniform(0.001, 0.006) for _ in range(24)]
    threads: set[str] = set()
    lock = threading.Lock()

    def slow_stage(batch):
        with lock:
            threads.add(threading.current_thread().name)
        time.sleep(delays[batch[0]])
        return [batch[0], sum(batch)]

    processor.enable_parallel_processing(num_workers=4)
    pipeline = processor.create_processing_pipeline([slow_stage])
    batches = [[i, i, i] for i in range(24)]
    results = processor.process_parallel(batches, pipeline)
    assert results == [[i, 3 * i] for i in range(24)]
    assert len(threads) > 1 and all(n.startswith("amqadf-stream") for n in threads)
    stats = processor.get_statistics()
    assert stats["calls"] == 24 and stats["items_processed"] == 72
    assert stats["parallel_enabled"] is True and stats["num_workers"] == 4


def test_process_parallel_sequential_when_disabled(processor) -> None:
    seen: list[str] = []
    pipeline = processor.create_processing_pipeline(
        [lambda b: seen.append(threading.current_thread().name) or sum(b)]
    )
    assert processor.process_parallel([[1, 2], [3], []], pipeline) == [3, 3, 0]
    assert seen == [threading.current_thread().name] * 3
    assert processor.process_parallel([], pipeline) == []
    with pytest.raises(TypeError, match="batches"):
        processor.process_parallel("abc", pipeline)


def test_parallel_error_propagates_and_is_counted(processor) -> None:
    def maybe_fail(batch):
        if batch == [2]:
            raise ValueError("bad batch 2")
        return batch

    processor.enable_parallel_processing(num_workers=2)
    pipeline = processor.create_processing_pipeline([maybe_fail])
    with pytest.raises(ValueError, match="bad batch 2"):
        processor.process_parallel([[0], [1], [2], [3]], pipeline)
    processor.disable_parallel_processing()  # waits for batches still running
    stats = processor.get_statistics()
    assert stats["errors"] == 1
    # results are collected in order, so [0] and [1] finished; [3] may have been cancelled
    assert stats["calls"] in (2, 3)


def test_enable_disable_parallel(processor) -> None:
    processor.enable_parallel_processing()
    assert processor.get_statistics()["num_workers"] == 4
    processor.enable_parallel_processing(num_workers=2)  # replaces the pool
    stats = processor.get_statistics()
    assert stats["parallel_enabled"] is True and stats["num_workers"] == 2
    processor.disable_parallel_processing()
    processor.disable_parallel_processing()  # harmless twice
    stats = processor.get_statistics()
    assert stats["parallel_enabled"] is False and stats["num_workers"] == 0
    pipeline = processor.create_processing_pipeline([double])
    assert processor.process_parallel([[1], [2]], pipeline) == [[2], [4]]


@pytest.mark.parametrize(
    ("workers", "exc"),
    [(0, ValueError), (-1, ValueError), ("4", TypeError), (True, TypeError), (2.0, TypeError)],
)
def test_enable_parallel_validates_workers(processor, workers, exc) -> None:
    with pytest.raises(exc, match="num_workers"):
        processor.enable_parallel_processing(num_workers=workers)
    assert processor.get_statistics()["parallel_enabled"] is False
