"""Alerts: raised by threshold and SPC rules, acknowledged and cleared by operators.

:class:`AlertManager` is shared between the consumer thread (which raises)
and UI threads (which acknowledge and read), so every method takes one lock
and returns copies. Cooldown is kept per ``(metric, rule)``: a burst of
temperature alerts never silences an intensity alert.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

__all__ = ["SEVERITIES", "STATES", "Alert", "AlertManager", "escalation_level"]

_log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
STATES: tuple[str, ...] = ("active", "acknowledged", "cleared")


def escalation_level(score: Any) -> np.ndarray:
    """Level of occurrences ``score`` times as far out as their limit: 0 below twice the
    limit's distance, then one more per doubling (NaN or no score: 0).

    >>> escalation_level([1.0, 1.9, 2.0, 4.5, 9.0]).tolist()
    [0, 0, 1, 2, 3]
    """
    s = np.asarray(score, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.floor(np.log2(np.where(np.isfinite(s) & (s > 1.0), s, 1.0)))
    return np.minimum(lv, 30).astype(np.int64)


def _check_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return severity


@dataclass
class Alert:
    """One alert. ``rule`` names the threshold or SPC rule, ``metric`` the signal.

    Text taken from messages (``message``, ``build_id``, ``details``) is stored
    exactly as given; escaping for HTML is the UI's job.

    >>> a = Alert(id="a1", severity="warning", rule="threshold_high", metric="temperature",
    ...           value=2400.0, message="temperature above 2200")
    >>> a.state, a.to_dict()["location"]
    ('active', {'x': None, 'y': None, 'z': None, 'layer': None})
    """

    id: str
    severity: str
    rule: str
    metric: str
    value: float
    message: str = ""
    time: datetime | None = None
    index: int | None = None
    x: float | None = None
    y: float | None = None
    z: float | None = None
    layer: int | None = None
    build_id: str | None = None
    state: str = "active"
    raised_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    cleared_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Later occurrences of the same (metric, rule) within its cooldown, counted here
    #: instead of raising alerts of their own, and the newest of them.
    repeats: int = 0
    last_time: datetime | None = None
    last_index: int | None = None

    @property
    def location(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "z": self.z, "layer": self.layer}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (datetimes as ISO strings, non-finite floats as None)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
            elif isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        d["location"] = self.location
        return d


def _as_utc(t: Any) -> datetime | None:
    if t is None:
        return None
    if not isinstance(t, datetime):
        raise TypeError(f"time must be a datetime or None, got {type(t).__name__}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


class AlertManager:
    """Raise, cool down, acknowledge, clear and list alerts; thread-safe.

    One alert stands for an episode: occurrences of the same ``(metric, rule)``
    that follow each other within the cooldown are counted on the alert
    (``repeats``, ``last_time``, ``last_index``) instead of raising new ones, so a
    condition that lasts raises one alert, not one per cooldown.
    ``cooldown_points``: an occurrence at point index ``i`` keeps the episode open
    until index ``i + cooldown_points``; ``cooldown_seconds`` does the same on
    times. Either or both may be set; an occurrence belongs to the open episode
    while any applicable cooldown runs. So an episode ends once its rule has been
    quiet (the statistic back in control) for the whole cooldown stretch.
    Clearing the alert ends its episode.

    An open episode never hides a new development: an occurrence with a higher
    ``level`` than the episode has reached (for SPC: the statistic at least twice
    as far out, see :func:`escalation_level`) raises an *escalation* alert, one
    severity step up, which carries the earlier alert's id in
    ``details["escalates"]`` and takes over the episode. Once the episode is
    critical, a rise within a cooldown of the last one (the same defect still
    growing) only updates ``details["level"]``; a rise after the peak has held for
    a whole cooldown is raised. One in the opposite ``direction`` (the other side
    of the center) begins a new episode.
    ``history_size`` bounds how many alerts are kept (oldest dropped first).

    >>> m = AlertManager(cooldown_points=100)
    >>> a = m.raise_alert("temperature", "threshold_high", 2500.0, index=10)
    >>> m.raise_alert("temperature", "threshold_high", 2600.0, index=50) is None  # same episode
    True
    >>> m.raise_alert("intensity", "threshold_high", 9e3, index=50) is not None  # other metric
    True
    >>> m.acknowledge(a.id).state, m.get(a.id).repeats, m.get(a.id).last_index
    ('acknowledged', 1, 50)
    >>> e = m.raise_alert("temperature", "threshold_high", 9e3, index=60, level=2)
    >>> e.severity, e.details["escalates"] == a.id      # escalated, one step up
    ('critical', True)
    """

    def __init__(
        self,
        *,
        cooldown_points: int | None = 1000,
        cooldown_seconds: float | None = None,
        history_size: int = 10_000,
        id_prefix: str = "alert",
    ) -> None:
        if cooldown_points is not None and (
            isinstance(cooldown_points, bool)
            or not isinstance(cooldown_points, int)
            or cooldown_points < 0
        ):
            raise ValueError(
                f"cooldown_points must be an int >= 0 or None, got {cooldown_points!r}"
            )
        if cooldown_seconds is not None and not (
            isinstance(cooldown_seconds, int | float)
            and math.isfinite(cooldown_seconds)
            and cooldown_seconds >= 0
        ):
            raise ValueError(
                f"cooldown_seconds must be a number >= 0 or None, got {cooldown_seconds!r}"
            )
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"history_size must be an int >= 1, got {history_size!r}")
        self.cooldown_points = cooldown_points
        self.cooldown_seconds = cooldown_seconds
        self.history_size = history_size
        self.id_prefix = str(id_prefix)
        self._lock = threading.RLock()
        self._alerts: deque[Alert] = deque()
        self._by_id: dict[str, Alert] = {}
        self._last: dict[tuple[str, str], tuple[int | None, datetime | None]] = {}
        self._episode: dict[tuple[str, str], Alert] = {}  # the alert of each open episode
        # (level, direction, index and time the level was reached) of each open episode
        self._episode_meta: dict[tuple[str, str], tuple[int, int, int | None, Any]] = {}
        self._overrides: dict[tuple[str, str], tuple[int | None, float | None]] = {}
        self._seq = itertools.count(1)
        self._session = uuid.uuid4().hex[:8]
        self._listeners: list[Callable[[Alert], None]] = []
        self.raised_count = 0
        self.suppressed_count = 0

    # cooldown
    def set_cooldown(
        self, metric: str, rule: str, *, points: int | None = None, seconds: float | None = None
    ) -> None:
        """Override the cooldown for one ``(metric, rule)`` pair."""
        with self._lock:
            self._overrides[(metric, rule)] = (points, seconds)

    def cooldown(self, metric: str, rule: str) -> tuple[int | None, float | None]:
        """``(points, seconds)`` of the cooldown that applies to ``(metric, rule)``."""
        with self._lock:
            return self._cooldowns((metric, rule))

    def _cooldowns(self, key: tuple[str, str]) -> tuple[int | None, float | None]:
        return self._overrides.get(key, (self.cooldown_points, self.cooldown_seconds))

    def suppressed_until(self, metric: str, rule: str) -> tuple[int | None, datetime | None]:
        """First point index and time at which ``(metric, rule)`` may alert again (None: now)."""
        key = (metric, rule)
        with self._lock:
            last = self._last.get(key)
            if last is None or key not in self._episode:
                return None, None
            pts, secs = self._cooldowns(key)
            li, lt = last
            return (
                li + pts if pts is not None and li is not None else None,
                lt + timedelta(seconds=secs) if secs is not None and lt is not None else None,
            )

    def _cooling(self, key: tuple[str, str], index: int | None, time: datetime | None) -> bool:
        last = self._last.get(key)
        if last is None or key not in self._episode:
            return False
        pts, secs = self._cooldowns(key)
        li, lt = last
        if pts is not None and index is not None and li is not None and 0 <= index - li < pts:
            return True
        return (
            secs is not None
            and time is not None
            and lt is not None
            and timedelta(0) <= time - lt < timedelta(seconds=secs)
        )

    # raising
    def raise_alert(
        self,
        metric: str,
        rule: str,
        value: float,
        *,
        severity: str = "warning",
        message: str | None = None,
        time: datetime | None = None,
        index: int | None = None,
        x: float | None = None,
        y: float | None = None,
        z: float | None = None,
        layer: int | None = None,
        build_id: str | None = None,
        details: dict[str, Any] | None = None,
        level: int = 0,
        direction: int = 0,
    ) -> Alert | None:
        """Raise an alert unless ``(metric, rule)`` is cooling down; return it (a copy) or None.

        ``level`` (how far out, 0 = just beyond) and ``direction`` (+1/-1, 0 = none)
        decide whether an occurrence within the cooldown is a repeat, an escalation
        or a new episode (see the class docstring)."""
        _check_severity(severity)
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty str, got {metric!r}")
        if not isinstance(rule, str) or not rule:
            raise ValueError(f"rule must be a non-empty str, got {rule!r}")
        time = _as_utc(time)
        key = (metric, rule)
        level, direction = int(level), int(np.sign(direction))
        with self._lock:
            escalates: Alert | None = None
            if self._cooling(key, index, time):
                if self._repeats_episode(key, level, direction, index, time):
                    self._repeat(key, 1, index, time)
                    return None
                if self._same_direction(key, direction):
                    escalates = self._episode[key]
            if escalates is not None:
                step = min(SEVERITIES.index(escalates.severity) + 1, len(SEVERITIES) - 1)
                severity = SEVERITIES[max(step, SEVERITIES.index(severity))]
                details = {**(details or {}), "escalates": escalates.id, "level": level}
                if message is not None:
                    message = f"escalation: {message}"
            seq = next(self._seq)
            alert = Alert(
                id=f"{self.id_prefix}-{self._session}-{seq:06d}",
                severity=severity,
                rule=rule,
                metric=metric,
                value=float(value),
                message=message if message is not None else f"{metric} {rule}: {float(value):.6g}",
                time=time,
                index=None if index is None else int(index),
                x=x,
                y=y,
                z=z,
                layer=layer,
                build_id=build_id,
                details=dict(details or {}),
            )
            if len(self._alerts) >= self.history_size:
                old = self._alerts.popleft()
                self._by_id.pop(old.id, None)
                self._end_episode(old)
            self._alerts.append(alert)
            self._by_id[alert.id] = alert
            self._episode[key] = alert
            self._episode_meta[key] = (level, direction, alert.index, time)
            self._last[key] = (alert.index, time)
            self.raised_count += 1
            listeners = list(self._listeners)
            snapshot = replace(alert, details=dict(alert.details))
        for cb in listeners:
            try:
                cb(replace(snapshot))
            except Exception:  # a broken UI callback must not stop the consumer
                _log.exception("alert listener %r failed", cb)
        return snapshot

    def _same_direction(self, key: tuple[str, str], direction: int) -> bool:
        d0 = self._episode_meta.get(key, (0, 0, None, None))[1]
        return direction == 0 or d0 == 0 or direction == d0

    def _repeats_episode(
        self,
        key: tuple[str, str],
        level: int,
        direction: int,
        index: int | None,
        time: datetime | None,
    ) -> bool:
        if not self._same_direction(key, direction):
            return False
        lev, d, pi, pt = self._episode_meta.get(key, (0, 0, None, None))
        if level <= lev:
            return True
        if self._episode[key].severity != SEVERITIES[-1]:
            return False
        # Already critical. A rise soon after the last one is the same defect still
        # growing: kept on the alert. A rise after the peak had held for a whole cooldown
        # is news (a new defect on top of an open episode): raised.
        pts, secs = self._cooldowns(key)
        late = (pts is not None and index is not None and pi is not None and index - pi >= pts) or (
            secs is not None
            and time is not None
            and pt is not None
            and time - pt >= timedelta(seconds=secs)
        )
        if late:
            return False
        self._episode_meta[key] = (level, d, index if index is not None else pi, time or pt)
        self._episode[key].details["level"] = level
        return True

    def continues_episode(
        self,
        metric: str,
        rule: str,
        *,
        index: int | None = None,
        time: datetime | None = None,
        level: int = 0,
        direction: int = 0,
    ) -> bool:
        """True when an occurrence at ``index``/``time`` falls within the cooldown of the
        open episode of ``(metric, rule)`` and neither escalates it nor goes the other way
        (it would be counted, not raised)."""
        key = (metric, rule)
        with self._lock:
            t = _as_utc(time)
            return self._cooling(key, index, t) and self._repeats_episode(
                key, int(level), int(np.sign(direction)), index, t
            )

    def episode_level(self, metric: str, rule: str) -> int | None:
        """Highest level reached by the open episode of ``(metric, rule)`` (None: none open)."""
        key = (metric, rule)
        with self._lock:
            return (
                self._episode_meta.get(key, (0, 0, None, None))[0] if key in self._episode else None
            )

    def record_repeats(
        self,
        metric: str,
        rule: str,
        count: int,
        *,
        last_index: int | None = None,
        last_time: datetime | None = None,
    ) -> bool:
        """Count ``count`` more occurrences on the open episode of ``(metric, rule)``, the
        newest at ``last_index``/``last_time`` (the cooldown runs on from there). False,
        with nothing counted, when no episode is open."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        key = (metric, rule)
        with self._lock:
            if key not in self._episode:
                return False
            self._repeat(key, count, last_index, _as_utc(last_time))
            return True

    def _repeat(
        self, key: tuple[str, str], count: int, index: int | None, time: datetime | None
    ) -> None:
        alert = self._episode[key]
        alert.repeats += count
        if index is not None:
            alert.last_index = int(index)
        if time is not None:
            alert.last_time = time
        li, lt = self._last.get(key, (None, None))
        self._last[key] = (li if index is None else int(index), lt if time is None else time)
        self.suppressed_count += count

    def _end_episode(self, alert: Alert) -> None:
        key = (alert.metric, alert.rule)
        if self._episode.get(key) is alert:
            del self._episode[key]
            self._episode_meta.pop(key, None)
            self._last.pop(key, None)

    def add_listener(self, callback: Callable[[Alert], None]) -> None:
        """Call ``callback(alert)`` (outside the lock) for every newly raised alert."""
        with self._lock:
            self._listeners.append(callback)

    # operator actions
    def _get(self, alert_id: str) -> Alert:
        try:
            return self._by_id[alert_id]
        except (KeyError, TypeError):
            raise KeyError(
                f"unknown alert id {alert_id!r} (never raised or dropped from history)"
            ) from None

    def acknowledge(self, alert_id: str, by: str | None = None) -> Alert:
        """Mark an active alert acknowledged; ``KeyError`` naming the id if unknown."""
        with self._lock:
            a = self._get(alert_id)
            if a.state == "active":
                a.state = "acknowledged"
                a.acknowledged_at = datetime.now(UTC)
                a.acknowledged_by = by
            return replace(a)

    def clear(
        self, alert_id: str | None = None, *, metric: str | None = None, rule: str | None = None
    ) -> list[Alert]:
        """Clear one alert by id, or every non-cleared alert matching ``metric``/``rule``
        (all of them when neither is given). Returns the alerts cleared now."""
        now = datetime.now(UTC)
        with self._lock:
            if alert_id is not None:
                targets = [self._get(alert_id)]
            else:
                targets = [
                    a
                    for a in self._alerts
                    if (metric is None or a.metric == metric) and (rule is None or a.rule == rule)
                ]
            out = []
            for a in targets:
                if a.state != "cleared":
                    a.state = "cleared"
                    a.cleared_at = now
                    self._end_episode(a)  # the next occurrence raises a new alert
                    out.append(replace(a))
            return out

    def get(self, alert_id: str) -> Alert:
        """The alert with this id (copy); ``KeyError`` if unknown."""
        with self._lock:
            return replace(self._get(alert_id))

    # reading
    def active_alerts(
        self,
        *,
        include_acknowledged: bool = True,
        severity: str | None = None,
        metric: str | None = None,
    ) -> list[Alert]:
        """Alerts not cleared yet (optionally only unacknowledged ones), oldest first."""
        ok_states = ("active", "acknowledged") if include_acknowledged else ("active",)
        if severity is not None:
            _check_severity(severity)
        with self._lock:
            return [
                replace(a)
                for a in self._alerts
                if a.state in ok_states
                and (severity is None or a.severity == severity)
                and (metric is None or a.metric == metric)
            ]

    def history(
        self,
        limit: int | None = None,
        *,
        metric: str | None = None,
        severity: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
    ) -> list[Alert]:
        """Kept alerts, oldest first, filtered; ``limit`` keeps the newest ``limit``."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        if severity is not None:
            _check_severity(severity)
        since = _as_utc(since)
        with self._lock:
            rows = [
                a
                for a in self._alerts
                if (metric is None or a.metric == metric)
                and (severity is None or a.severity == severity)
                and (state is None or a.state == state)
                and (since is None or (a.time or a.raised_at) >= since)
            ]
            if limit is not None:
                rows = rows[-limit:] if limit > 0 else []
            return [replace(a) for a in rows]

    def __len__(self) -> int:
        with self._lock:
            return len(self._alerts)

    def statistics(self) -> dict[str, int]:
        """Counts: raised, suppressed by cooldown (counted on their episode's alert as
        ``repeats``), kept, and per state."""
        with self._lock:
            out = {
                "raised": self.raised_count,
                "suppressed": self.suppressed_count,
                "kept": len(self._alerts),
            }
            for s in STATES:
                out[s] = sum(1 for a in self._alerts if a.state == s)
            return out

    def reset(self) -> None:
        """Forget every alert and cooldown (e.g. for a new build)."""
        with self._lock:
            self._alerts.clear()
            self._by_id.clear()
            self._last.clear()
            self._episode.clear()
            self._episode_meta.clear()

    @staticmethod
    def ids(alerts: Iterable[Alert]) -> list[str]:
        return [a.id for a in alerts]
