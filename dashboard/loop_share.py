"""How much of the server's event loop the sessions' view refreshes may take.

Every browser session refreshes its views on the same Bokeh event loop. With a few
pages at a short period, refreshes can ask for more loop time than there is; then
everything queues behind them, the status lines too, and a page that waits long
enough is reloaded by its watchdog. The sessions therefore share one budget: a view
refresh starts only while the refreshes of the last few seconds took less than
``share`` of the time. The status line does not count against it, so every page keeps
showing current figures while its plots wait their turn.

>>> share = LoopShare(share=0.5, horizon_s=2.0)
>>> share.allows(now=0.0)
True
>>> share.spend(1.5, now=0.0)  # a long refresh
>>> share.allows(now=0.1), share.allows(now=2.0)
(False, True)
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["LoopShare", "VIEWS_SHARE"]


class LoopShare:
    """Busy time, decaying exponentially over ``horizon_s``, against a share of it."""

    def __init__(self, share: float = 0.5, horizon_s: float = 2.0) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        if horizon_s <= 0:
            raise ValueError(f"horizon_s must be positive, got {horizon_s!r}")
        self.share = share
        self.horizon_s = horizon_s
        self._busy = 0.0  # decayed busy seconds
        self._at: float | None = None  # when _busy was last brought up to date
        self._lock = threading.Lock()

    def _decay(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._busy *= math.exp(-(now - self._at) / self.horizon_s)
        self._at = now if self._at is None else max(self._at, now)

    def allows(self, now: float | None = None) -> bool:
        """True while the recent busy time is below ``share`` of the horizon."""
        with self._lock:
            self._decay(time.monotonic() if now is None else now)
            return self._busy < self.share * self.horizon_s

    def spend(self, seconds: float, now: float | None = None) -> None:
        """Count ``seconds`` of loop time just spent."""
        with self._lock:
            self._decay(time.monotonic() if now is None else now)
            self._busy += max(0.0, seconds)


#: The share of this server's event loop that all sessions' view refreshes together
#: may take (the rest: status lines, websocket traffic, page loads, user actions).
VIEWS_SHARE = LoopShare(share=0.5, horizon_s=2.0)
