"""Western Electric / Nelson run rules 1-8, vectorised and stateful across batches.

The rules work on a standardised series ``z = (statistic - center) / sigma``.
:class:`NelsonRules` keeps the last 14 values of that series between calls,
so a pattern that starts in one batch and completes in the next is found, and
reported once, at the point that completes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from am_qadf.monitoring.resume_state import Resumable

__all__ = ["RULE_DESCRIPTIONS", "RULE_NAMES", "NelsonRules", "Violation", "check_rules"]

RULE_NAMES: dict[int, str] = {
    1: "beyond_limits",
    2: "nine_same_side",
    3: "six_trending",
    4: "fourteen_alternating",
    5: "two_of_three_beyond_2sigma",
    6: "four_of_five_beyond_1sigma",
    7: "fifteen_within_1sigma",
    8: "eight_outside_1sigma",
}

RULE_DESCRIPTIONS: dict[int, str] = {
    1: "one point beyond the control limits",
    2: "nine points in a row on the same side of the center line",
    3: "six points in a row steadily increasing or decreasing",
    4: "fourteen points in a row alternating up and down",
    5: "two of three points beyond 2 sigma on the same side",
    6: "four of five points beyond 1 sigma on the same side",
    7: "fifteen points in a row within 1 sigma of the center line",
    8: "eight points in a row beyond 1 sigma on either side",
}

ALL_RULES: tuple[int, ...] = tuple(range(1, 9))
_TAIL = 14  # longest pattern (rule 7) spans 15 points


@dataclass
class Violation:
    """One rule violation on one plotted point.

    ``index`` is the global point index (of the last point of the subgroup for
    subgrouped charts); ``value`` is the plotted statistic.

    >>> Violation(rule=1, statistic="individual", index=7, value=4.2).rule_name
    'beyond_limits'
    """

    rule: int
    statistic: str
    index: int
    value: float
    signal: str | None = None
    time: Any = None
    x: float | None = None
    y: float | None = None
    z: float | None = None
    layer: int | None = None

    @property
    def rule_name(self) -> str:
        return RULE_NAMES.get(self.rule, f"rule_{self.rule}")

    @property
    def key(self) -> str:
        """Rule identifier used for alert cooldowns, e.g. ``"spc:individual:rule_1"``."""
        return f"spc:{self.statistic}:rule_{self.rule}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        t = d["time"]
        d["time"] = t.isoformat() if hasattr(t, "isoformat") else t
        d["rule_name"] = self.rule_name
        d["description"] = RULE_DESCRIPTIONS.get(self.rule, "")
        d["key"] = self.key
        return d


def _validate_rules(rules: Iterable[int] | None) -> tuple[int, ...]:
    if rules is None:
        return ALL_RULES
    out = []
    for r in rules:
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or not 1 <= r <= 8:
            raise ValueError(f"rules must be integers 1..8, got {r!r}")
        out.append(int(r))
    return tuple(sorted(set(out)))


def _run_all(flags: np.ndarray, w: int) -> np.ndarray:
    """True at i when flags[i-w+1 .. i] are all true (False for i < w-1)."""
    return _count(flags, w) == w


def _count(flags: np.ndarray, w: int, partial: bool = False) -> np.ndarray:
    """Number of true flags in the window of length ``w`` ending at each i.

    Windows that would start before the series are 0, or with ``partial`` the
    count over the points available (right for "k of w" rules: k hits among
    fewer than w points are k hits among any w that contain them).
    """
    c = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    out = c[1:].copy() if partial else np.zeros(flags.shape[0], dtype=np.int64)
    if flags.shape[0] >= w:
        out[w - 1 :] = c[w:] - c[: c.shape[0] - w]
    return out


def check_rules(
    z: np.ndarray, rules: Iterable[int] | None = None, limit: float = 3.0, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Flag rule violations on a standardised series ``z``.

    Returns ``(positions, rule_numbers)`` for positions ``>= start`` (earlier
    points are history only). Each flag sits on the point that completes the
    pattern.

    >>> pos, rule = check_rules(np.array([0.1, 3.5, -0.2]), rules=[1])
    >>> pos.tolist(), rule.tolist()
    ([1], [1])
    """
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[0]
    rules = _validate_rules(rules)
    pos_parts: list[np.ndarray] = []
    rule_parts: list[np.ndarray] = []
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    up = z > 0
    down = z < 0
    d = np.diff(z)
    # Diff k is z[k+1] - z[k]; pad so index i means "the step that ends at point i".
    inc = np.concatenate(([False], d > 0))
    dec = np.concatenate(([False], d < 0))
    for r in rules:
        if r == 1:
            f = np.abs(z) > limit
        elif r == 2:
            f = _run_all(up, 9) | _run_all(down, 9)
        elif r == 3:
            # Six points rising = five rising steps; the first point has no step.
            f = _run_all(inc, 5) | _run_all(dec, 5)
        elif r == 4:
            s = np.sign(np.concatenate(([0.0], d)))
            alt = np.concatenate(([False], (s[1:] * s[:-1]) < 0))
            # Fourteen points = thirteen steps = twelve sign changes between steps.
            f = _run_all(alt, 12)
        elif r == 5:
            hi, lo = z > 2.0, z < -2.0
            f = (hi & (_count(hi, 3, True) >= 2)) | (lo & (_count(lo, 3, True) >= 2))
        elif r == 6:
            hi, lo = z > 1.0, z < -1.0
            f = (hi & (_count(hi, 5, True) >= 4)) | (lo & (_count(lo, 5, True) >= 4))
        elif r == 7:
            f = _run_all(np.abs(z) < 1.0, 15)
        else:
            f = _run_all(np.abs(z) > 1.0, 8)
        if start:
            f[:start] = False
        p = np.flatnonzero(f)
        if p.size:
            pos_parts.append(p)
            rule_parts.append(np.full(p.size, r, dtype=np.int64))
    if not pos_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pos = np.concatenate(pos_parts)
    rule = np.concatenate(rule_parts)
    order = np.lexsort((rule, pos))
    return pos[order], rule[order]


class NelsonRules(Resumable):
    """Stateful Nelson rules: feed standardised values batch after batch.

    >>> nr = NelsonRules(rules=[2])
    >>> nr.check(np.full(5, 0.5))[0].tolist()   # five above: not yet
    []
    >>> nr.check(np.full(4, 0.5))[0].tolist()   # ninth point completes rule 2
    [3]
    """

    def __init__(self, rules: Iterable[int] | None = None, limit: float = 3.0) -> None:
        self.rules = _validate_rules(rules)
        if not np.isfinite(limit) or limit <= 0:
            raise ValueError(f"limit must be a positive number of sigmas, got {limit!r}")
        self.limit = float(limit)
        self._tail = np.empty(0, dtype=np.float64)

    def reset(self) -> None:
        """Forget the history (e.g. after the limits change)."""
        self._tail = np.empty(0, dtype=np.float64)

    def check(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(positions into z, rule numbers)`` of violations completed in ``z``."""
        z = np.asarray(z, dtype=np.float64)
        if z.size == 0 or not self.rules:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        k = self._tail.shape[0]
        zz = np.concatenate((self._tail, z)) if k else z
        pos, rule = check_rules(zz, self.rules, self.limit, start=k)
        self._tail = zz[-_TAIL:].copy()
        return pos - k, rule
