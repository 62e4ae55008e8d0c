"""Low-latency processing pipelines: chained stages, quality checkpoints, parallel batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .latency_stats import LatencyStats
from .streaming_config import StreamingConfig

__all__ = ["StreamProcessor"]


class StreamProcessor:
    """Build pipelines from stage functions and run data through them.

    >>> processor = StreamProcessor(StreamingConfig())
    >>> pipeline = processor.create_processing_pipeline([lambda d: [x * 2 for x in d]])
    >>> processor.process_with_pipeline([1, 2], pipeline)
    [2, 4]
    """

    def __init__(self, config: StreamingConfig) -> None:
        if not isinstance(config, StreamingConfig):
            raise TypeError(f"config must be a StreamingConfig, got {type(config).__name__}")
        self.config = config
        self._lock = threading.RLock()
        self._checkpoints: dict[str, Callable[[Any], bool]] = {}
        self._checkpoint_counts: dict[str, dict[str, int]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._num_workers = 0
        self._latency = LatencyStats()
        self._errors = 0

    def create_processing_pipeline(self, stages: list[Callable[[Any], Any]]) -> Callable:
        """Return a function that feeds data through ``stages`` in order.

        The stage list is copied, so pipelines made from the same list stay independent.
        """
        if not isinstance(stages, list | tuple):
            raise TypeError(f"stages must be a list of callables, got {type(stages).__name__}")
        if not stages:
            raise ValueError("stages must contain at least one callable")
        for i, stage in enumerate(stages):
            if not callable(stage):
                raise TypeError(f"stages[{i}] is not callable: {stage!r}")
        frozen = tuple(stages)

        def pipeline(data: Any) -> Any:
            for stage in frozen:
                data = stage(data)
            return data

        pipeline.stages = frozen  # type: ignore[attr-defined]
        return pipeline

    def process_with_pipeline(self, data: list[Any], pipeline: Callable) -> Any:
        """Run ``data`` through ``pipeline`` and return the last stage's output."""
        if not callable(pipeline):
            raise TypeError(f"pipeline must be callable, got {type(pipeline).__name__}")
        start = time.perf_counter()
        try:
            result = pipeline(data)
        except Exception:
            with self._lock:
                self._errors += 1
            raise
        with self._lock:
            self._latency.add((time.perf_counter() - start) * 1000.0, _count(data))
        return result

    def add_quality_checkpoint(self, name: str, checkpoint: Callable[[Any], bool]) -> None:
        """Register ``checkpoint(data) -> bool`` under ``name`` (replacing one of that name)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not callable(checkpoint):
            raise TypeError(f"checkpoint must be callable, got {type(checkpoint).__name__}")
        with self._lock:
            self._checkpoints[name] = checkpoint
            self._checkpoint_counts[name] = {"passed": 0, "failed": 0}

    def validate_all_checkpoints(self, data: list[Any]) -> dict[str, bool]:
        """Run every checkpoint on ``data``; a checkpoint that raises counts as failed."""
        with self._lock:
            checkpoints = dict(self._checkpoints)
        results: dict[str, bool] = {}
        for name, check in checkpoints.items():
            try:
                results[name] = bool(check(data))
            except Exception:
                results[name] = False
        with self._lock:
            for name, ok in results.items():
                counts = self._checkpoint_counts.get(name)
                if counts is not None:
                    counts["passed" if ok else "failed"] += 1
        return results

    def enable_parallel_processing(self, num_workers: int = 4) -> None:
        """Process batches on ``num_workers`` threads in :meth:`process_parallel`."""
        if isinstance(num_workers, bool) or not isinstance(num_workers, int):
            raise TypeError(f"num_workers must be an int, got {type(num_workers).__name__}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        with self._lock:
            old = self._executor
            self._executor = ThreadPoolExecutor(num_workers, thread_name_prefix="amqadf-stream")
            self._num_workers = num_workers
        if old is not None:
            old.shutdown(wait=True)

    def disable_parallel_processing(self) -> None:
        """Go back to processing batches one after another."""
        with self._lock:
            old, self._executor, self._num_workers = self._executor, None, 0
        if old is not None:
            old.shutdown(wait=True)

    def process_parallel(self, batches: list[list[Any]], pipeline: Callable) -> list[Any]:
        """Process each batch through ``pipeline``; results come back in input order."""
        if not isinstance(batches, list | tuple):
            raise TypeError(f"batches must be a list of batches, got {type(batches).__name__}")
        with self._lock:
            executor = self._executor
        if executor is None:
            return [self.process_with_pipeline(b, pipeline) for b in batches]
        return list(executor.map(lambda b: self.process_with_pipeline(b, pipeline), batches))

    def get_statistics(self) -> dict[str, Any]:
        """Latency (min/avg/max, ms), throughput, checkpoint pass/fail counts, errors."""
        with self._lock:
            stats = self._latency.summary()
            stats.update(
                {
                    "errors": self._errors,
                    "parallel_enabled": self._executor is not None,
                    "num_workers": self._num_workers,
                    "checkpoints": {k: dict(v) for k, v in self._checkpoint_counts.items()},
                }
            )
            return stats

    def __del__(self) -> None:
        ex = getattr(self, "_executor", None)
        if ex is not None:
            ex.shutdown(wait=False)


def _count(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 1
