"""Pace a stream against the wall clock: real time, N times faster, or flat out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """Sleep until stream time ``t`` (seconds) is due at ``speed`` x real time.

    The first call anchors stream time to the wall clock; later calls sleep
    until ``anchor + (t - t_first) / speed``. Because the schedule is absolute,
    time spent by the caller between calls is not added on top. ``speed`` of
    0 or inf means no pacing at all.

    >>> slept = []
    >>> p = Pacer(speed=2.0, clock=lambda: 0.0, sleep=slept.append)
    >>> p.wait(10.0); p.wait(11.0); slept
    [0.5]
    """

    def __init__(
        self,
        speed: float = 1.0,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        try:
            s = float(speed)
        except (TypeError, ValueError):
            raise TypeError(f"speed must be a number, got {type(speed).__name__}") from None
        if math.isnan(s) or s < 0:
            raise ValueError(f"speed must be >= 0 (0 or inf: as fast as possible), got {speed!r}")
        self.speed = s
        self.enabled = 0 < s < math.inf
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._t0: float | None = None
        self._w0 = 0.0

    def wait(self, t: float) -> None:
        if not self.enabled or not math.isfinite(t):
            return
        if self._t0 is None:
            self._t0, self._w0 = t, self._clock()
            return
        delay = self._w0 + (t - self._t0) / self.speed - self._clock()
        if delay > 0:
            self._sleep(delay)
