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
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from am_qadf.monitoring.resume_state import decode, encode

__all__ = [
    "SEVERITIES",
    "STATES",
    "Alert",
    "AlertManager",
    "escalation_level",
    "spc_episode_group",
]

_log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
STATES: tuple[str, ...] = ("active", "acknowledged", "cleared")
_SIDES = {1: "above", -1: "below"}  # an alert's direction as the side of the center


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


def spc_episode_group(rule: str) -> str:
    """Episode group of a rule (see :class:`AlertManager`): every SPC statistic of a
    signal (rules named ``"spc:..."``) shares one; any other rule is a group of its own.

    >>> spc_episode_group("spc:residual:rule_1"), spc_episode_group("threshold_high")
    ('spc', 'threshold_high')
    """
    return "spc" if rule.startswith("spc:") else rule


@dataclass
class _Member:
    """One rule's part in an episode: its side of the center and its newest occurrence."""

    direction: int
    last_index: int | None
    last_time: datetime | None


@dataclass
class _Episode:
    """An open episode: its current alert, the highest level reached (and where), where it
    began, and the rules counted on it."""

    alert: Alert
    level: int
    level_index: int | None
    level_time: datetime | None
    start_index: int | None
    start_time: datetime | None
    members: dict[str, _Member]


def _within(pts: int | None, secs: float | None, d_index: Any, d_time: Any, back: bool) -> bool:
    """Whether a distance (points and/or time) from a reference lies within a cooldown:
    ``0 <= d < cooldown``, or ``|d| < cooldown`` with ``back`` (the reference may be later)."""
    if pts is not None and d_index is not None and (back or d_index >= 0):
        return (abs(d_index) if back else d_index) < pts or _within(None, secs, None, d_time, back)
    if secs is None or d_time is None:
        return False
    lim = timedelta(seconds=secs)
    return abs(d_time) < lim if back else timedelta(0) <= d_time < lim


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_time(v: Any) -> datetime | None:
    if v is not None and not isinstance(v, datetime):
        raise ValueError(f"expected a time, got {v!r}")
    return v


def _minus(a: Any, b: Any) -> Any:
    return None if a is None or b is None else a - b


class AlertManager:
    """Raise, cool down, acknowledge, clear and list alerts; thread-safe.

    One alert stands for an episode: occurrences of the same ``(metric, rule)``
    that follow each other within the cooldown are counted on the alert
    (``repeats``, ``last_time``, ``last_index``) instead of raising new ones, so a
    condition that lasts raises one alert, not one per cooldown.
    ``cooldown_points``: an occurrence at point index ``i`` keeps the episode open
    until index ``i + cooldown_points``; ``cooldown_seconds`` does the same on
    times. Either or both may be set; an occurrence belongs to the open episode
    while any applicable cooldown runs. So a rule's part in an episode ends once it
    has been quiet (its statistic back in control) for the whole cooldown stretch.
    Clearing the alert ends its episode.

    One defect, one alert: rules of a metric in the same *episode group*
    (``episode_group(rule)``; by default :func:`spc_episode_group`, which puts every
    SPC statistic of a signal together) share an episode. A rule of the group that
    starts firing within one cooldown of the open episode's first occurrence is
    taken for the same defect: it *joins* the episode (listed in
    ``details["statistics"]`` of its alert, counted in ``repeats``), no new alert,
    unless it escalates (a higher level, or a higher severity than the episode's).
    One that starts later is a new defect and raises its own alert.
    ``episode_group=None`` keeps every rule apart.

    An open episode never hides a new development: an occurrence with a higher
    ``level`` than the episode has reached (for SPC: the statistic at least twice
    as far out, see :func:`escalation_level`; levels of all its rules count) raises
    an *escalation* alert, one severity step up, which carries the earlier alert's
    id in ``details["escalates"]`` and takes over the episode. Once the episode is
    critical, a rise within a cooldown of the last one (the same defect still
    growing) only updates ``details["level"]``; a rise after the peak has held for
    a whole cooldown is raised. A rule that goes to the other ``direction`` (the
    other side of the center) begins a new episode.
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
    >>> s = m.raise_alert("area", "spc:ewma:rule_1", 1.0, index=100)
    >>> m.raise_alert("area", "spc:residual:rule_1", 9.0, index=150) is None  # joins it
    True
    >>> m.get(s.id).details["statistics"]
    ['spc:ewma:rule_1', 'spc:residual:rule_1']
    """

    def __init__(
        self,
        *,
        cooldown_points: int | None = 1000,
        cooldown_seconds: float | None = None,
        history_size: int = 10_000,
        id_prefix: str = "alert",
        episode_group: Callable[[str], str] | None = spc_episode_group,
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
        if episode_group is not None and not callable(episode_group):
            raise ValueError(f"episode_group must be callable or None, got {episode_group!r}")
        self.cooldown_points = cooldown_points
        self.cooldown_seconds = cooldown_seconds
        self.history_size = history_size
        self.id_prefix = str(id_prefix)
        self.episode_group = episode_group
        self._lock = threading.RLock()
        self._alerts: deque[Alert] = deque()
        self._by_id: dict[str, Alert] = {}
        self._of: dict[tuple[str, str], _Episode] = {}  # (metric, rule) -> its episode
        self._open: dict[tuple[str, str], _Episode] = {}  # (metric, group) -> newest episode
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

    def _group_key(self, key: tuple[str, str]) -> tuple[str, str]:
        g = self.episode_group(key[1]) if self.episode_group is not None else key[1]
        return (key[0], "\0" + str(g))  # apart from rule keys

    def suppressed_until(self, metric: str, rule: str) -> tuple[int | None, datetime | None]:
        """First point index and time at which ``(metric, rule)`` may alert again (None: now)."""
        key = (metric, rule)
        with self._lock:
            ep = self._of.get(key)
            if ep is None:
                return None, None
            mem = ep.members[rule]
            pts, secs = self._cooldowns(key)
            li, lt = mem.last_index, mem.last_time
            return (
                li + pts if pts is not None and li is not None else None,
                lt + timedelta(seconds=secs) if secs is not None and lt is not None else None,
            )

    def _member_cooling(self, key: tuple[str, str], index: int | None, time: Any) -> bool:
        ep = self._of.get(key)
        if ep is None:
            return False
        mem = ep.members[key[1]]
        pts, secs = self._cooldowns(key)
        return _within(
            pts, secs, _minus(index, mem.last_index), _minus(time, mem.last_time), back=False
        )

    def _joinable(self, key: tuple[str, str], index: int | None, time: Any) -> _Episode | None:
        """The open episode of the rule's group, if the occurrence belongs to it: some rule
        of it still within its cooldown, and the episode begun within one cooldown."""
        ep = self._open.get(self._group_key(key))
        if ep is None:
            return None
        pts, secs = self._cooldowns(key)
        began = _within(
            pts, secs, _minus(index, ep.start_index), _minus(time, ep.start_time), back=True
        )
        if not began:
            return None
        for rule, m in ep.members.items():
            p, s = self._cooldowns((key[0], rule))
            if _within(p, s, _minus(index, m.last_index), _minus(time, m.last_time), back=True):
                return ep
        return None

    def _vs_level(
        self, ep: _Episode, key: tuple[str, str], level: int, index: Any, time: Any
    ) -> str:
        """``repeat`` (no higher than reached), ``rise`` (higher, kept: critical already and
        the last rise within a cooldown) or ``escalate``."""
        if level <= ep.level:
            return "repeat"
        if ep.alert.severity != SEVERITIES[-1]:
            return "escalate"
        # Already critical. A rise soon after the last one is the same defect still
        # growing: kept on the alert. A rise after the peak had held for a whole cooldown
        # is news (a new defect on top of an open episode): raised.
        pts, secs = self._cooldowns(key)
        d_i, d_t = _minus(index, ep.level_index), _minus(time, ep.level_time)
        late = (pts is not None and d_i is not None and d_i >= pts) or (
            secs is not None and d_t is not None and d_t >= timedelta(seconds=secs)
        )
        return "escalate" if late else "rise"

    def _classify(
        self,
        key: tuple[str, str],
        level: int,
        direction: int,
        index: Any,
        time: Any,
        severity: str = SEVERITIES[0],
    ) -> tuple[str, _Episode | None]:
        """What an occurrence is: ``repeat``/``rise``/``escalate`` on the rule's open
        episode, ``join``/``join_rise``/``join_escalate`` of its group's, or ``new``."""
        if self._member_cooling(key, index, time):
            ep = self._of[key]
            d0 = ep.members[key[1]].direction
            if direction and d0 and direction != d0:
                return "new", None  # the other side of the center
            return self._vs_level(ep, key, level, index, time), ep
        ep = self._joinable(key, index, time)
        if ep is None:
            return "new", None
        if SEVERITIES.index(severity) > SEVERITIES.index(ep.alert.severity):
            return "join_escalate", ep  # a more severe rule joins: the severity rises
        return "join_" + self._vs_level(ep, key, level, index, time), ep

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
        """Raise an alert unless the occurrence belongs to an open episode; return it (a
        copy) or None.

        ``level`` (how far out, 0 = just beyond) and ``direction`` (+1/-1, 0 = none)
        decide whether an occurrence within the cooldown is a repeat, an escalation
        or a new episode (see the class docstring). The alert's ``details`` name the
        episode it stands for: ``episode`` (the rule's episode group) and ``side``
        (``"above"``/``"below"`` the center, None without a direction).

        >>> a = AlertManager().raise_alert("t", "spc:ewma:rule_1", 1.0, direction=-1)
        >>> a.details["episode"], a.details["side"]
        ('spc', 'below')
        """
        _check_severity(severity)
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty str, got {metric!r}")
        if not isinstance(rule, str) or not rule:
            raise ValueError(f"rule must be a non-empty str, got {rule!r}")
        time = _as_utc(time)
        key = (metric, rule)
        level, direction = int(level), int(np.sign(direction))
        index = None if index is None else int(index)
        with self._lock:
            kind, ep = self._classify(key, level, direction, index, time, severity)
            if ep is not None and kind.startswith("join"):
                self._join(ep, key, direction, index, time)
                kind = kind[5:]
            if ep is not None and kind in ("repeat", "rise"):
                if kind == "rise":
                    self._rise(ep, level, index, time)
                self._repeat(key, 1, index, time)
                return None
            # the episode this alert stands for: its group and its side of the center,
            # so whoever reads the alert (a new owner, a check) tells episodes apart
            details = {
                **(details or {}),
                "episode": self._group_key(key)[1][1:],
                "side": _SIDES.get(direction),
            }
            if ep is not None:  # an escalation of the open episode
                escalates = ep.alert
                step = min(SEVERITIES.index(escalates.severity) + 1, len(SEVERITIES) - 1)
                severity = SEVERITIES[max(step, SEVERITIES.index(severity))]
                details.update(escalates=escalates.id, level=level)
                if len(ep.members) > 1:
                    details["statistics"] = list(ep.members)
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
                index=index,
                x=x,
                y=y,
                z=z,
                layer=layer,
                build_id=build_id,
                details=details,
            )
            if len(self._alerts) >= self.history_size:
                old = self._alerts.popleft()
                self._by_id.pop(old.id, None)
                self._end_episode(old)
            self._alerts.append(alert)
            self._by_id[alert.id] = alert
            if ep is not None and self._of.get(key) is ep:
                ep.alert = alert
                self._rise(ep, level, index, time)
                m = ep.members[rule]
                m.last_index, m.last_time = index, time
            else:
                ep = _Episode(alert, level, index, time, index, time, {})
                ep.members[rule] = _Member(direction, index, time)
                self._of[key] = ep
                self._open[self._group_key(key)] = ep
            self.raised_count += 1
            listeners = list(self._listeners)
            snapshot = replace(alert, details=dict(alert.details))
        for cb in listeners:
            try:
                cb(replace(snapshot))
            except Exception:  # a broken UI callback must not stop the consumer
                _log.exception("alert listener %r failed", cb)
        return snapshot

    def _join(
        self, ep: _Episode, key: tuple[str, str], direction: int, index: Any, time: Any
    ) -> None:
        """Count rule ``key`` on episode ``ep`` from now on (listed on its alert)."""
        rule = key[1]
        if rule not in ep.members:
            ep.members[rule] = _Member(direction, index, time)
            stats = ep.alert.details.setdefault("statistics", [ep.alert.rule])
            if rule not in stats:
                stats.append(rule)
        else:
            ep.members[rule].direction = direction
        self._of[key] = ep

    @staticmethod
    def _rise(ep: _Episode, level: int, index: Any, time: Any) -> None:
        """The episode reached ``level`` at ``index``/``time``."""
        if level > ep.level:
            ep.alert.details["level"] = level
        ep.level = max(ep.level, level)
        ep.level_index = index if index is not None else ep.level_index
        ep.level_time = time or ep.level_time

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
            lv = int(level)
            kind, ep = self._classify(key, lv, int(np.sign(direction)), index, t)
            if kind == "rise" and ep is not None:
                self._rise(ep, lv, index, t)
            return kind in ("repeat", "rise")

    def episode_level(self, metric: str, rule: str) -> int | None:
        """Highest level reached by the open episode of ``(metric, rule)`` (None: none open)."""
        with self._lock:
            ep = self._of.get((metric, rule))
            return None if ep is None else ep.level

    def open_episodes(self) -> list[dict[str, Any]]:
        """Each ``(metric, rule)``'s part in its episode: the episode's alert id, build
        and severity, its episode group, the level reached, the rule's direction and
        newest occurrence (``last_index``, ``last_time``) and the cooldown that
        applies; whoever takes the stream over can continue them (a part whose
        cooldown ran out is listed until a new occurrence replaces it).

        >>> m = AlertManager(cooldown_points=100)
        >>> _ = m.raise_alert("temperature", "threshold_high", 2500.0, index=10, direction=1)
        >>> _ = m.raise_alert("temperature", "threshold_high", 2600.0, index=40)
        >>> e = m.open_episodes()[0]
        >>> e["metric"], e["level"], e["direction"], e["last_index"], e["cooldown_points"]
        ('temperature', 0, 1, 40, 100)
        """
        with self._lock:
            out = []
            for (metric, rule), ep in self._of.items():
                member = ep.members[rule]
                pts, secs = self._cooldowns((metric, rule))
                out.append(
                    {
                        "metric": metric,
                        "rule": rule,
                        "group": self.episode_group(rule) if self.episode_group else rule,
                        "alert_id": ep.alert.id,
                        "build_id": ep.alert.build_id,
                        "severity": ep.alert.severity,
                        "level": ep.level,
                        "direction": member.direction,
                        "last_index": member.last_index,
                        "last_time": member.last_time,
                        "cooldown_points": pts,
                        "cooldown_seconds": secs,
                    }
                )
            return out

    def export_state(self) -> dict[str, Any]:
        """The open episodes (their alerts, levels, members and where each member's
        cooldown runs from) and the counts, JSON-ready: what another manager needs to
        continue them (:meth:`import_state`)."""
        with self._lock:
            eps = list({id(ep): ep for ep in (*self._of.values(), *self._open.values())}.values())
            at = {id(ep): i for i, ep in enumerate(eps)}
            return {
                "raised_count": self.raised_count,
                "suppressed_count": self.suppressed_count,
                "episodes": [
                    encode(
                        {
                            "alert": {f.name: getattr(ep.alert, f.name) for f in fields(Alert)},
                            "level": ep.level,
                            "level_index": ep.level_index,
                            "level_time": ep.level_time,
                            "start_index": ep.start_index,
                            "start_time": ep.start_time,
                            "members": {
                                r: [m.direction, m.last_index, m.last_time]
                                for r, m in ep.members.items()
                            },
                        }
                    )
                    for ep in eps
                ],
                "of": [[m, r, at[id(ep)]] for (m, r), ep in self._of.items()],
                "open": [[m, g, at[id(ep)]] for (m, g), ep in self._open.items()],
            }

    def import_state(self, state: Any) -> None:
        """Continue the episodes of :meth:`export_state` (their alerts join this manager's
        history under their own ids, so they can be acknowledged and are not raised
        again); ``ValueError`` naming what does not fit, with nothing changed.

        >>> a = AlertManager(cooldown_points=100)
        >>> first = a.raise_alert("t", "threshold_high", 9.0, index=10)
        >>> b = AlertManager(cooldown_points=100); b.import_state(a.export_state())
        >>> b.raise_alert("t", "threshold_high", 9.5, index=60) is None, b.get(first.id).repeats
        (True, 1)
        """
        try:
            eps = []
            for raw in state["episodes"]:
                e = decode(raw)
                alert = Alert(**e["alert"])
                _check_severity(alert.severity)
                members = {
                    str(r): _Member(int(d), _opt_int(i), _opt_time(t))
                    for r, (d, i, t) in e["members"].items()
                }
                eps.append(
                    _Episode(
                        alert,
                        int(e["level"]),
                        _opt_int(e["level_index"]),
                        _opt_time(e["level_time"]),
                        _opt_int(e["start_index"]),
                        _opt_time(e["start_time"]),
                        members,
                    )
                )
            of = {(str(m), str(r)): eps[int(i)] for m, r, i in state["of"]}
            opened = {(str(m), str(g)): eps[int(i)] for m, g, i in state["open"]}
            if any(r not in ep.members for (_, r), ep in of.items()):
                raise ValueError("a rule is not a member of its episode")
            counts = int(state["raised_count"]), int(state["suppressed_count"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"AlertManager state: {exc}") from None
        with self._lock:
            for ep in eps:
                known = self._by_id.get(ep.alert.id)
                if known is None:
                    self._alerts.append(ep.alert)
                    self._by_id[ep.alert.id] = ep.alert
                else:
                    ep.alert = known
            while len(self._alerts) > self.history_size:
                self._by_id.pop(self._alerts.popleft().id, None)
            self._of, self._open = of, opened
            self.raised_count, self.suppressed_count = counts

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
            if key not in self._of:
                return False
            self._repeat(key, count, last_index, _as_utc(last_time))
            return True

    def _repeat(
        self, key: tuple[str, str], count: int, index: int | None, time: datetime | None
    ) -> None:
        ep = self._of[key]
        alert = ep.alert
        alert.repeats += count
        if index is not None:
            alert.last_index = int(index)
        if time is not None:
            alert.last_time = time
        m = ep.members[key[1]]
        if index is not None:
            m.last_index = int(index)
        if time is not None:
            m.last_time = time
        self.suppressed_count += count

    def _end_episode(self, alert: Alert) -> None:
        """The episode whose current alert is ``alert`` ends."""
        for k in [k for k, ep in self._of.items() if ep.alert is alert]:
            del self._of[k]
        for k in [k for k, ep in self._open.items() if ep.alert is alert]:
            del self._open[k]

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
            self._of.clear()
            self._open.clear()

    @staticmethod
    def ids(alerts: Iterable[Alert]) -> list[str]:
        return [a.id for a in alerts]
