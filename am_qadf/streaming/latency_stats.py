"""Running latency and throughput statistics shared by the client and the processor."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["LatencyStats"]


class LatencyStats:
    """Count calls and items, and track latency min/avg/max since start or reset.

    Throughput is items divided by wall time since start or reset (never per last call).

    >>> s = LatencyStats(); s.add(2.0, 10); s.add(4.0, 10)
    >>> s.summary()["average_latency_ms"], s.summary()["items_processed"]
    (3.0, 20)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything and restart the throughput clock."""
        self.calls = 0
        self.items = 0
        self.total_ms = 0.0
        self.min_ms = float("inf")
        self.max_ms = 0.0
        self.last_ms = 0.0
        self.started = time.monotonic()

    def add(self, latency_ms: float, items: int) -> None:
        """Record one call that handled ``items`` items in ``latency_ms``."""
        self.calls += 1
        self.items += items
        self.total_ms += latency_ms
        self.last_ms = latency_ms
        self.min_ms = min(self.min_ms, latency_ms)
        self.max_ms = max(self.max_ms, latency_ms)

    def summary(self) -> dict[str, Any]:
        """Plain dict of the figures."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "calls": self.calls,
            "items_processed": self.items,
            "average_latency_ms": self.total_ms / self.calls if self.calls else 0.0,
            "min_latency_ms": self.min_ms if self.calls else 0.0,
            "max_latency_ms": self.max_ms,
            "last_latency_ms": self.last_ms,
            "throughput_per_sec": self.items / elapsed,
            "elapsed_seconds": elapsed,
        }
