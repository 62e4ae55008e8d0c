"""The result of pushing one batch through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

__all__ = ["StreamingResult"]


@dataclass
class StreamingResult:
    """What :meth:`StreamingClient.process_stream_batch` returns.

    ``data_batch`` holds each message's ``value`` as float (NaN where a message has
    none); processors fill ``voxel_updates``, ``quality_metrics``, ``spc_results``
    and ``alerts_generated``; other processors' results are in
    ``metadata["processors"]``.

    >>> from datetime import datetime
    >>> StreamingResult(datetime.now(), np.array([1.0]), 1, 0.1).alerts_generated
    []
    """

    timestamp: datetime
    data_batch: np.ndarray
    processed_count: int
    processing_time_ms: float
    voxel_updates: dict[str, Any] | None = None
    quality_metrics: dict[str, float] | None = None
    spc_results: dict[str, Any] | None = None
    alerts_generated: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
