"""Low-latency processing pipelines: chained stages, quality checkpoints, parallel batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from numbers import Real
from typing import Any, overload

from .latency_stats import LatencyStats
from .streaming_config import StreamingConfig
from .timestamps import to_utc

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
        self._stages: list[tuple[str, Callable[[Any], Any]]] = []  # add_stage order
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
        return self._timed(pipeline, (data,), _count(data))[0]

    def _timed(self, fn: Callable, args: tuple, items: int) -> tuple[Any, float]:
        """``fn(*args)`` and its latency in ms, counted in the statistics (an error if it
        raises)."""
        start = time.perf_counter()
        try:
            result = fn(*args)
        except Exception:
            with self._lock:
                self._errors += 1
            raise
        elapsed = (time.perf_counter() - start) * 1000.0
        with self._lock:
            self._latency.add(elapsed, items)
        return result, elapsed

    @overload
    def measure_latency(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]: ...
    @overload
    def measure_latency(self, fn: datetime | float, *args: datetime | float) -> float: ...
    def measure_latency(self, fn: Any, *args: Any) -> Any:
        """Time ``fn(*args)``: return ``(result, latency_ms)``, counted in the statistics as
        one batch of ``len(args[0])`` items (1 if unsized), as a pipeline run is.

        ``measure_latency(start, end)`` with two datetimes (naive ones are UTC) or two
        epoch-second numbers is the published AM-QADF's form: it returns ``end - start``
        in milliseconds and records nothing.

        >>> from datetime import datetime
        >>> processor = StreamProcessor(StreamingConfig())
        >>> result, ms = processor.measure_latency(sorted, [3, 1, 2])
        >>> result, ms >= 0.0, processor.get_statistics()["batches_processed"]
        ([1, 2, 3], True, 1)
        >>> processor.measure_latency(datetime(2026, 1, 1, 0, 0, 0), datetime(2026, 1, 1, 0, 0, 1))
        1000.0
        """
        if callable(fn):
            return self._timed(fn, args, _count(args[0]) if args else 1)
        if len(args) != 1:
            raise TypeError(
                "measure_latency takes a callable and its arguments, or (start, end) times; "
                f"got {type(fn).__name__} and {len(args)} more argument(s)"
            )
        start, end = fn, args[0]
        if isinstance(start, datetime) and isinstance(end, datetime):
            ms = (to_utc(end) - to_utc(start)).total_seconds() * 1000.0
        elif all(isinstance(t, Real) and not isinstance(t, bool) for t in (start, end)):
            ms = (float(end) - float(start)) * 1000.0
        else:
            raise TypeError(
                "start and end must both be datetimes or both epoch seconds, got "
                f"{type(start).__name__} and {type(end).__name__}"
            )
        if not ms >= 0.0:
            raise ValueError(f"end is before start (or not a number): {end!r} < {start!r}")
        return ms

    # -- named stages ---------------------------------------------------------------------
    @overload
    def add_stage(
        self, name: str, fn: Callable[[Any], Any], position: int | None = None
    ) -> None: ...
    @overload
    def add_stage(self, name: Callable[[Any], Any], fn: int | None = None) -> None: ...
    def add_stage(self, name: Any, fn: Any = None, position: int | None = None) -> None:
        """Add stage ``fn`` named ``name`` at ``position`` (default: last) of the
        processor's own pipeline, which :meth:`get_pipeline` returns.

        ``add_stage(fn)`` or ``add_stage(fn, position)``, the published AM-QADF's form,
        names the stage after the function (``fn.__name__``, then ``_2``, ``_3`` ... when
        that name is taken).

        >>> processor = StreamProcessor(StreamingConfig())
        >>> processor.add_stage("double", lambda d: [x * 2 for x in d])
        >>> processor.add_stage("first_plus_one", lambda d: [x + 1 for x in d], position=0)
        >>> list(processor.stages)
        ['first_plus_one', 'double']
        >>> processor.process_with_pipeline([1, 2], processor.get_pipeline())
        [4, 6]
        """
        if callable(name) and not isinstance(name, str):  # add_stage(fn[, position])
            if fn is not None and position is not None:
                raise TypeError("add_stage(fn, position): position given twice")
            fn, position = name, (fn if fn is not None else position)
            name = self._free_stage_name(fn)
        if not isinstance(name, str) or not name:
            raise ValueError(f"stage name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise TypeError(f"stage {name!r} must be callable, got {type(fn).__name__}")
        with self._lock:
            if any(n == name for n, _ in self._stages):
                raise ValueError(f"a stage named {name!r} exists; remove_stage({name!r}) first")
            count = len(self._stages)
            if position is None:
                position = count
            if isinstance(position, bool) or not isinstance(position, int):
                raise TypeError(f"position must be an int or None, got {type(position).__name__}")
            if not 0 <= position <= count:
                raise IndexError(f"position must be 0..{count} (stages: {count}), got {position}")
            self._stages.insert(position, (name, fn))

    def _free_stage_name(self, fn: Callable) -> str:
        base = getattr(fn, "__name__", None) or type(fn).__name__
        with self._lock:
            taken = {n for n, _ in self._stages}
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    def remove_stage(self, name: str | int) -> None:
        """Remove the stage named ``name`` (or, as in the published AM-QADF, the stage at
        position ``name`` when it is an int).

        >>> processor = StreamProcessor(StreamingConfig())
        >>> processor.add_stage("a", abs); processor.add_stage("b", round)
        >>> processor.remove_stage("a"); processor.remove_stage(0)
        >>> processor.stages
        {}
        """
        with self._lock:
            if isinstance(name, int) and not isinstance(name, bool):
                if not 0 <= name < len(self._stages):
                    raise IndexError(
                        f"stage position must be 0..{len(self._stages) - 1}, got {name}"
                    )
                del self._stages[name]
                return
            for i, (n, _) in enumerate(self._stages):
                if n == name:
                    del self._stages[i]
                    return
            raise KeyError(f"no stage named {name!r}; have {[n for n, _ in self._stages]}")

    def clear_pipeline(self) -> None:
        """Remove every stage added with :meth:`add_stage`.

        >>> processor = StreamProcessor(StreamingConfig())
        >>> processor.add_stage("a", abs)
        >>> processor.clear_pipeline(); processor.get_statistics()["num_stages"]
        0
        """
        with self._lock:
            self._stages.clear()

    @property
    def stages(self) -> dict[str, Callable[[Any], Any]]:
        """The stages added with :meth:`add_stage`, by name in pipeline order (a copy)."""
        with self._lock:
            return dict(self._stages)

    def get_pipeline(self) -> Callable:
        """A pipeline of the current stages (:meth:`create_processing_pipeline`; later
        stage changes do not alter it). ValueError when no stage was added.

        >>> processor = StreamProcessor(StreamingConfig())
        >>> processor.add_stage("inc", lambda d: d + 1)
        >>> processor.get_pipeline()(1)
        2
        """
        return self.create_processing_pipeline(list(self.stages.values()))

    def add_quality_checkpoint(self, name: str, checkpoint: Callable[[Any], bool]) -> None:
        """Register ``checkpoint(data) -> bool`` under ``name`` (replacing one of that name)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not callable(checkpoint):
            raise TypeError(f"checkpoint must be callable, got {type(checkpoint).__name__}")
        with self._lock:
            self._checkpoints[name] = checkpoint
            self._checkpoint_counts[name] = {"passed": 0, "failed": 0}

    def remove_quality_checkpoint(self, name: str) -> None:
        """Remove the checkpoint named ``name`` and its counts (KeyError if none).

        >>> processor = StreamProcessor(StreamingConfig())
        >>> processor.add_quality_checkpoint("non_empty", lambda x: len(x) > 0)
        >>> processor.remove_quality_checkpoint("non_empty")
        >>> processor.validate_all_checkpoints([1])
        {}
        """
        with self._lock:
            if self._checkpoints.pop(name, None) is None:
                raise KeyError(f"no checkpoint named {name!r}; have {sorted(self._checkpoints)}")
            del self._checkpoint_counts[name]

    def validate_checkpoint(self, name: str, data: Any) -> bool:
        """Run the checkpoint named ``name`` on ``data`` and count the outcome; one that
        raises counts as failed. KeyError if there is no such checkpoint.

        >>> processor = StreamProcessor(StreamingConfig())
        >>> processor.add_quality_checkpoint("non_empty", lambda x: len(x) > 0)
        >>> processor.validate_checkpoint("non_empty", [])
        False
        >>> processor.validate_checkpoint("non_empty", [1])
        True
        """
        with self._lock:
            check = self._checkpoints.get(name)
        if check is None:
            raise KeyError(f"no checkpoint named {name!r}; have {sorted(self._checkpoints)}")
        return self._run_checkpoint(name, check, data)

    def _run_checkpoint(self, name: str, check: Callable[[Any], bool], data: Any) -> bool:
        try:
            ok = bool(check(data))
        except Exception:
            ok = False
        with self._lock:
            counts = self._checkpoint_counts.get(name)
            if counts is not None and self._checkpoints.get(name) is check:
                counts["passed" if ok else "failed"] += 1
        return ok

    def validate_all_checkpoints(self, data: list[Any]) -> dict[str, bool]:
        """Run every checkpoint on ``data``; a checkpoint that raises counts as failed."""
        with self._lock:
            checkpoints = dict(self._checkpoints)
        return {name: self._run_checkpoint(name, c, data) for name, c in checkpoints.items()}

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
        """Latency (min/avg/max, ms), throughput, checkpoint pass/fail counts, errors,
        and ``batches_processed`` (= ``calls``), ``total_processing_time_ms``,
        ``num_stages`` and ``num_checkpoints`` as the published AM-QADF names them.

        >>> processor = StreamProcessor(StreamingConfig())
        >>> _ = processor.process_with_pipeline([1], processor.create_processing_pipeline([len]))
        >>> s = processor.get_statistics()
        >>> s["batches_processed"], s["num_stages"], s["total_processing_time_ms"] >= 0
        (1, 0, True)
        """
        with self._lock:
            stats = self._latency.summary()
            stats.update(
                {
                    "errors": self._errors,
                    "parallel_enabled": self._executor is not None,
                    "num_workers": self._num_workers,
                    "checkpoints": {k: dict(v) for k, v in self._checkpoint_counts.items()},
                    "batches_processed": stats["calls"],
                    "total_processing_time_ms": self._latency.total_ms,
                    "num_stages": len(self._stages),
                    "num_checkpoints": len(self._checkpoints),
                }
            )
            return stats

    def reset_statistics(self) -> None:
        """Zero latency, throughput, error and checkpoint counts (stages and checkpoints
        stay) and restart the throughput clock.

        >>> processor = StreamProcessor(StreamingConfig())
        >>> _ = processor.measure_latency(len, [1, 2])
        >>> processor.reset_statistics(); processor.get_statistics()["batches_processed"]
        0
        """
        with self._lock:
            self._latency.reset()
            self._errors = 0
            for counts in self._checkpoint_counts.values():
                counts.update(passed=0, failed=0)

    def __del__(self) -> None:
        ex = getattr(self, "_executor", None)
        if ex is not None:
            ex.shutdown(wait=False)


def _count(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 1
