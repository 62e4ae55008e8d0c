"""Named batch processors, and how their outputs fill a :class:`StreamingResult`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .streaming_result import StreamingResult

__all__ = ["ProcessorRegistry", "RESULT_FIELDS", "Processor"]

log = logging.getLogger(__name__)

#: ``processor(data_batch) -> result`` (a dict, by the spec's convention).
Processor = Callable[[list[dict[str, Any]]], Any]

#: Processors whose results have their own field in :class:`StreamingResult`.
RESULT_FIELDS = {
    "voxel_processor": "voxel_updates",
    "quality_processor": "quality_metrics",
    "spc_processor": "spc_results",
    "alert_processor": "alerts_generated",
}


class ProcessorRegistry:
    """Processors by name (thread-safe); :meth:`run` passes a batch through each.

    >>> import numpy as np
    >>> from datetime import datetime
    >>> reg = ProcessorRegistry()
    >>> reg.register("count", lambda batch: {"n": len(batch)})
    >>> reg.register("alert_processor", lambda batch: {"alert_ids": [7]})
    >>> result = StreamingResult(datetime.now(), np.array([1.0]), 1, 0.0)
    >>> reg.run([{"value": 1.0}], result)
    {}
    >>> result.alerts_generated, result.metadata["processors"]["count"]
    (['7'], {'n': 1})
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processors: dict[str, Processor] = {}

    def register(self, name: str, processor: Processor) -> None:
        """Register ``processor`` under ``name`` (replaces that name)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not callable(processor):
            raise TypeError(f"processor must be callable, got {type(processor).__name__}")
        with self._lock:
            self._processors[name] = processor

    def unregister(self, name: str) -> None:
        """Remove the processor registered under ``name`` (KeyError naming the known
        ones if there is none)."""
        with self._lock:
            if self._processors.pop(name, None) is None:
                raise KeyError(f"no processor named {name!r}; have {sorted(self._processors)}")

    def snapshot(self) -> dict[str, Processor]:
        """The processors by name, in registration order (a copy)."""
        with self._lock:
            return dict(self._processors)

    def __len__(self) -> int:
        with self._lock:
            return len(self._processors)

    def run(self, batch: list[dict[str, Any]], result: StreamingResult) -> dict[str, str]:
        """Run every processor on ``batch`` and put its output in ``result``: the
        :data:`RESULT_FIELDS` processors in their fields (``alert_processor``'s
        ``alert_ids`` as strings in ``alerts_generated``, its whole output in the
        metadata too), the others in ``metadata["processors"][name]``;
        ``metadata["processor_count"]`` is how many ran. A processor that raises is
        logged and skipped; returns ``{name: error}`` of those."""
        errors: dict[str, str] = {}
        others: dict[str, Any] = {}
        processors = self.snapshot()
        for name, proc in processors.items():
            try:
                out = proc(batch)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                log.exception("processor %r failed", name)
                continue
            target = RESULT_FIELDS.get(name)
            if target == "alerts_generated":
                ids = out.get("alert_ids", []) if isinstance(out, dict) else out
                result.alerts_generated = [str(i) for i in (ids or [])]
                others[name] = out
            elif target is not None:
                setattr(result, target, out)
            else:
                others[name] = out
        result.metadata["processors"] = others
        result.metadata["processor_count"] = len(processors)
        return errors
