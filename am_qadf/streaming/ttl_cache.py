"""An in-process key/value cache with per-key expiry (the embedded stand-in for Redis)."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["TTLCache"]


class TTLCache:
    """``setex``/``get``/``ttl`` like Redis, in memory, bounded to ``max_keys``.

    >>> c = TTLCache(); c.setex("k", 60, b"v"); c.get("k")
    b'v'
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._items: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def setex(self, key: str, ttl_seconds: int, value: bytes) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds``."""
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (time.monotonic() + ttl_seconds, value)
            if len(self._items) > self.max_keys:
                self._evict()

    def _evict(self) -> None:
        now = time.monotonic()
        for k in [k for k, (exp, _) in self._items.items() if exp <= now]:
            del self._items[k]
        while len(self._items) > self.max_keys:  # oldest insertion first
            del self._items[next(iter(self._items))]

    def get(self, key: str) -> bytes | None:
        """Value of ``key``, or None when missing or expired."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= time.monotonic():
                del self._items[key]
                return None
            return item[1]

    def ttl(self, key: str) -> int:
        """Seconds left for ``key`` (-2 when missing, as Redis answers)."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= time.monotonic():
                return -2
            return max(1, math.ceil(item[0] - time.monotonic()))

    def delete(self, key: str) -> int:
        """Remove ``key``; return 1 if it was there."""
        with self._lock:
            return 1 if self._items.pop(key, None) is not None else 0
