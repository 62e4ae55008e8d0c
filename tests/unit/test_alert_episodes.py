"""Alert episodes that span a signal's statistics (issue 16): one defect, one alert (plus
an escalation if it worsens); the rules that keep an open episode from hiding news."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from am_qadf.monitoring import AlertManager, AlertProcessor, SPCProcessor
from am_qadf.monitoring.alerts import spc_episode_group

EWMA, RES, VAR = "spc:ewma:rule_1", "spc:residual:rule_1", "spc:residual_variance:rule_1"


def test_statistics_of_one_signal_share_one_alert() -> None:
    m = AlertManager(cooldown_points=1000)
    a = m.raise_alert("t", RES, 9.0, index=100, level=0)
    assert m.raise_alert("t", EWMA, 1.0, index=140, level=0, direction=1) is None
    assert m.raise_alert("t", VAR, 2.0, index=600, level=0, direction=1) is None
    assert m.raise_alert("t", EWMA, 1.0, index=700, level=0, direction=1) is None
    kept = m.get(a.id)
    assert kept.details["statistics"] == [RES, EWMA, VAR] and kept.repeats == 3
    assert m.raised_count == 1
    # another signal, or a rule outside the group, is its own episode
    assert m.raise_alert("area", EWMA, 1.0, index=150, direction=1) is not None
    assert m.raise_alert("t", "threshold_high", 2500.0, index=150) is not None


def test_without_groups_every_statistic_alerts() -> None:
    m = AlertManager(cooldown_points=1000, episode_group=None)
    assert m.raise_alert("t", RES, 9.0, index=100) is not None
    assert m.raise_alert("t", EWMA, 1.0, index=140, direction=1) is not None
    with pytest.raises(ValueError, match="episode_group must be callable"):
        AlertManager(episode_group="spc")  # type: ignore[arg-type]
    assert spc_episode_group(VAR) == spc_episode_group(EWMA) != spc_episode_group("time_gap")


def test_a_joining_statistic_that_is_further_out_escalates() -> None:
    m = AlertManager(cooldown_points=1000)
    a = m.raise_alert("t", EWMA, 1.0, index=0, level=0, direction=1)
    e = m.raise_alert("t", RES, 20.0, index=30, level=2)
    assert e is not None and e.details["escalates"] == a.id and e.severity == "critical"
    assert e.details["statistics"] == [EWMA, RES]
    # the escalation took the episode over: both statistics count on it now
    assert m.raise_alert("t", EWMA, 1.0, index=40, level=1, direction=1) is None
    assert m.raise_alert("t", RES, 9.0, index=45, level=0) is None
    assert m.get(e.id).repeats == 2 and m.get(a.id).repeats == 0
    assert m.episode_level("t", EWMA) == m.episode_level("t", RES) == 2


def test_a_joining_statistic_of_higher_severity_raises_the_severity() -> None:
    m = AlertManager(cooldown_points=1000)
    a = m.raise_alert("t", "spc:individual:rule_2", 1.0, index=0, severity="info")
    e = m.raise_alert("t", "spc:individual:rule_1", 4.0, index=5, severity="warning")
    assert e is not None and e.severity == "warning" and e.details["escalates"] == a.id


def test_the_episode_ends_once_every_statistic_has_been_quiet_for_the_cooldown() -> None:
    m = AlertManager(cooldown_points=1000)
    a = m.raise_alert("t", EWMA, 1.0, index=0, direction=1)
    assert m.raise_alert("t", RES, 9.0, index=400) is None  # joins
    assert m.raise_alert("t", RES, 9.0, index=1300) is None  # its own stretch still runs
    # 1,000 quiet points after the last occurrence of every statistic: a new episode
    b = m.raise_alert("t", EWMA, 1.0, index=2300, direction=1)
    assert b is not None and "escalates" not in b.details and b.id != a.id


def test_a_statistic_that_starts_late_in_an_open_episode_is_a_new_defect() -> None:
    m = AlertManager(cooldown_points=1000)
    a = m.raise_alert("t", EWMA, 1.0, index=0, direction=1)
    for i in range(100, 3000, 100):  # a long episode: the EWMA stays out
        assert m.raise_alert("t", EWMA, 1.0, index=i, direction=1) is None
    s = m.raise_alert("t", RES, 9.0, index=3000)  # a spike long after the episode began
    assert s is not None and "escalates" not in s.details
    assert m.get(a.id).details.get("statistics") is None
    # and the rules that joined nothing keep counting on their own alerts
    assert m.raise_alert("t", EWMA, 1.0, index=3100, direction=1) is None
    assert m.raise_alert("t", RES, 9.0, index=3150) is None
    assert m.get(s.id).repeats == 1


def test_a_statistic_that_turns_to_the_other_side_is_a_new_episode() -> None:
    m = AlertManager(cooldown_points=1000)
    m.raise_alert("t", EWMA, 1.0, index=0, direction=1)
    assert m.raise_alert("t", RES, 9.0, index=10) is None
    low = m.raise_alert("t", EWMA, -1.0, index=50, direction=-1)
    assert low is not None and "escalates" not in low.details


def _batches(x: np.ndarray, size: int = 1000) -> list[list[dict[str, float]]]:
    return [[{"temperature": float(v)} for v in x[b : b + size]] for b in range(0, x.size, size)]


def test_a_step_raises_one_alert_per_signal_not_one_per_statistic() -> None:
    rng = np.random.default_rng(5)
    x = 1900.0 + 10.0 * rng.normal(size=12_000)
    x[6000:8000] += 80.0  # a step: far beyond the residual limit and the EWMA's
    opts = {"lam": 0.05, "L": 3.5, "sigma_method": "ar", "residual_L": 5.0, "variance_L": 6.0}
    out = {}
    for group in (None, spc_episode_group):
        spc = SPCProcessor(["temperature"], chart="ewma", baseline_points=3000, **opts)
        ap = AlertProcessor(AlertManager(cooldown_points=1000, episode_group=group), spc=spc)
        out[group] = [a for b in _batches(x) for a in ap(b)["alerts"]]
    last = ap.alert_manager.get(out[spc_episode_group][-1]["id"])
    apart, together = out[None], out[spc_episode_group]
    assert {a["rule"] for a in apart} >= {EWMA, RES}  # each statistic alerted on its own
    firsts = [a for a in together if "escalates" not in a["details"]]
    assert len(firsts) == 1 and 6000 <= firsts[0]["index"] < 6010
    assert len(together) < len(apart)
    assert set(last.details["statistics"]) >= {EWMA, RES}  # the EWMA joined the episode


def test_episodes_on_times_when_points_are_not_counted() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    m = AlertManager(cooldown_points=None, cooldown_seconds=1.0)
    a = m.raise_alert("t", EWMA, 1.0, time=t0, direction=1)
    # another statistic 0.4 s later joins; one 3 s into the still open episode is news
    assert m.raise_alert("t", RES, 9.0, time=t0 + timedelta(seconds=0.4)) is None
    for k in range(1, 8):
        m.raise_alert("t", EWMA, 1.0, time=t0 + timedelta(seconds=0.5 * k), direction=1)
    assert m.raise_alert("t", VAR, 2.0, time=t0 + timedelta(seconds=3.0)) is not None
    assert m.get(a.id).details["statistics"] == [EWMA, RES]


def test_every_alert_names_its_episode_group_and_side() -> None:
    """Published alerts carry what tells two episodes apart (a takeover check needs it)."""
    m = AlertManager(cooldown_points=100)
    up = m.raise_alert("temperature", "spc:ewma:rule_1", 1.0, index=0, direction=1)
    down = m.raise_alert("temperature", "spc:ewma:rule_1", -1.0, index=10, direction=-1)
    plain = m.raise_alert("temperature", "threshold_high", 9.0, index=20)
    assert up is not None and down is not None and plain is not None
    assert (up.details["episode"], up.details["side"]) == ("spc", "above")
    assert (down.details["episode"], down.details["side"]) == ("spc", "below")
    assert (plain.details["episode"], plain.details["side"]) == ("threshold_high", None)
    assert down.to_dict()["details"]["side"] == "below"
