"""AlertManager: cooldown per (metric, rule), acknowledge/clear, bounded history, threads."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from am_qadf.monitoring.alerts import Alert, AlertManager

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_cooldown_in_points_is_per_metric_and_rule() -> None:
    m = AlertManager(cooldown_points=100)
    first = m.raise_alert("temperature", "threshold_high", 2500.0, index=0)
    assert first is not None
    assert m.raise_alert("temperature", "threshold_high", 2500.0, index=99) is None
    # other rule, same metric; other metric, same rule: not suppressed
    assert m.raise_alert("temperature", "threshold_low", 1500.0, index=50) is not None
    assert m.raise_alert("intensity", "threshold_high", 9000.0, index=50) is not None
    # 100 points after the last occurrence (99), not after the alert: the same episode
    assert m.raise_alert("temperature", "threshold_high", 2500.0, index=150) is None
    assert m.suppressed_until("temperature", "threshold_high") == (250, None)
    assert m.raise_alert("temperature", "threshold_high", 2500.0, index=250) is not None
    assert m.suppressed_count == 2 and m.raised_count == 4
    assert m.suppressed_until("power", "threshold_high") == (None, None)
    episode = m.get(first.id)
    assert (episode.repeats, episode.last_index) == (2, 150)


def test_cooldown_in_seconds() -> None:
    m = AlertManager(cooldown_points=None, cooldown_seconds=2.0)
    a = m.raise_alert("t", "r", 1.0, time=T0)
    assert a is not None
    assert m.raise_alert("t", "r", 1.0, time=T0 + timedelta(seconds=1.9)) is None
    assert m.raise_alert("t", "r", 1.0, time=T0 + timedelta(seconds=3.8)) is None
    assert m.get(a.id).last_time == T0 + timedelta(seconds=3.8)
    assert m.raise_alert("t", "r", 1.0, time=T0 + timedelta(seconds=5.9)) is not None
    # naive times are taken as UTC
    assert m.raise_alert("t", "r", 1.0, time=datetime(2026, 1, 1, 0, 0, 7)) is None


def test_a_lasting_condition_raises_one_alert_until_it_is_cleared() -> None:
    m = AlertManager(cooldown_points=10)
    a = m.raise_alert("temperature", "threshold_high", 2500.0, index=0)
    assert not any(
        m.raise_alert("temperature", "threshold_high", 2500.0, index=i) for i in range(1, 500)
    )
    assert m.record_repeats("temperature", "threshold_high", 20, last_index=520)
    assert m.continues_episode("temperature", "threshold_high", index=529)
    assert not m.continues_episode("temperature", "threshold_high", index=530)
    kept = m.get(a.id)
    assert (kept.repeats, kept.last_index, m.raised_count) == (519, 520, 1)
    assert m.statistics()["suppressed"] == 519
    m.acknowledge(a.id)  # acknowledged: still counting
    assert m.raise_alert("temperature", "threshold_high", 2500.0, index=521) is None
    m.clear(a.id)  # cleared: the episode is over, the next occurrence is a new alert
    assert not m.record_repeats("temperature", "threshold_high", 1, last_index=522)
    assert m.raise_alert("temperature", "threshold_high", 2500.0, index=523) is not None
    with pytest.raises(ValueError, match="count must be an int >= 0"):
        m.record_repeats("temperature", "threshold_high", -1)


def test_an_episode_ends_with_its_alert_leaving_history() -> None:
    m = AlertManager(cooldown_points=10, history_size=2)
    m.raise_alert("a", "r", 1.0, index=0)
    m.raise_alert("b", "r", 1.0, index=0)
    m.raise_alert("c", "r", 1.0, index=0)  # drops a's alert: a's next occurrence is new
    assert m.raise_alert("a", "r", 1.0, index=1) is not None


def test_cooldown_override_and_zero() -> None:
    m = AlertManager(cooldown_points=1000)
    m.set_cooldown("power", "threshold_low", points=0)
    assert all(m.raise_alert("power", "threshold_low", 1.0, index=i) for i in range(3))
    assert AlertManager(cooldown_points=0).raise_alert("a", "b", 1.0, index=1) is not None


def test_acknowledge_and_unknown_id() -> None:
    m = AlertManager()
    a = m.raise_alert(
        "temperature", "threshold_high", 2500.0, index=1, layer=3, x=1.0, y=2.0, z=0.12
    )
    assert a.state == "active" and a.location == {"x": 1.0, "y": 2.0, "z": 0.12, "layer": 3}
    acked = m.acknowledge(a.id, by="operator")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "operator"
    assert acked.acknowledged_at is not None
    with pytest.raises(KeyError, match="nope-42"):
        m.acknowledge("nope-42")
    # acknowledged alerts are still active (not cleared) unless asked otherwise
    assert [x.id for x in m.active_alerts()] == [a.id]
    assert m.active_alerts(include_acknowledged=False) == []


def test_clear_by_id_metric_rule_or_all() -> None:
    m = AlertManager(cooldown_points=None)
    a = m.raise_alert("temperature", "high", 1.0)
    b = m.raise_alert("temperature", "low", 1.0)
    c = m.raise_alert("intensity", "high", 1.0)
    assert [x.id for x in m.clear(a.id)] == [a.id]
    assert m.clear(a.id) == []  # already cleared
    assert [x.id for x in m.clear(rule="high")] == [c.id]
    assert [x.id for x in m.clear()] == [b.id]
    assert m.active_alerts() == []
    assert {x.state for x in m.history()} == {"cleared"}
    with pytest.raises(KeyError, match="missing"):
        m.clear("missing")


def test_unique_ids_and_copies() -> None:
    m = AlertManager(cooldown_points=None)
    ids = {m.raise_alert("t", "r", float(i)).id for i in range(500)}
    assert len(ids) == 500
    assert AlertManager().raise_alert("t", "r", 1.0).id not in ids  # another manager
    a = m.history(limit=1)[0]
    a.state = "cleared"  # a copy: the manager's alert is untouched
    assert m.get(a.id).state == "active"


def test_history_is_bounded_and_filterable() -> None:
    m = AlertManager(cooldown_points=None, history_size=5)
    alerts = [
        m.raise_alert("t" if i % 2 else "u", "r", float(i), severity="info") for i in range(8)
    ]
    kept = m.history()
    assert [a.value for a in kept] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert len(m) == 5
    with pytest.raises(KeyError):
        m.acknowledge(alerts[0].id)  # dropped from history
    assert [a.value for a in m.history(limit=2)] == [6.0, 7.0]
    assert [a.value for a in m.history(metric="t")] == [3.0, 5.0, 7.0]
    assert m.history(severity="critical") == []
    assert m.history(limit=0) == []
    assert m.statistics()["kept"] == 5


def test_text_from_messages_is_stored_as_given() -> None:
    m = AlertManager()
    text = "<b>hot</b> & 'quoted'"
    a = m.raise_alert("temperature", "r", 1.0, message=text, build_id="<script>x</script>")
    assert a.message == text and a.build_id == "<script>x</script>"
    d = a.to_dict()
    assert d["message"] == text
    json.dumps(d, allow_nan=False)


def test_to_dict_is_json_friendly() -> None:
    m = AlertManager()
    a = m.raise_alert("t", "r", float("nan"), time=T0, index=5)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["value"] is None and d["time"] == T0.isoformat() and d["index"] == 5
    assert set(d) >= {"id", "severity", "rule", "metric", "value", "time", "location", "state"}


def test_listeners_get_new_alerts_and_errors_do_not_propagate() -> None:
    m = AlertManager(cooldown_points=None)
    seen: list[Alert] = []
    m.add_listener(seen.append)
    m.add_listener(lambda a: 1 / 0)
    a = m.raise_alert("t", "r", 1.0)
    assert [x.id for x in seen] == [a.id]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"cooldown_points": -1}, "cooldown_points"),
        ({"cooldown_points": 1.5}, "cooldown_points"),
        ({"cooldown_seconds": -2}, "cooldown_seconds"),
        ({"history_size": 0}, "history_size"),
    ],
)
def test_constructor_validation(kwargs, word) -> None:
    with pytest.raises(ValueError, match=word):
        AlertManager(**kwargs)


def test_raise_validation() -> None:
    m = AlertManager()
    with pytest.raises(ValueError, match="severity"):
        m.raise_alert("t", "r", 1.0, severity="fatal")
    with pytest.raises(ValueError, match="metric"):
        m.raise_alert("", "r", 1.0)
    with pytest.raises(TypeError, match="time"):
        m.raise_alert("t", "r", 1.0, time="2026-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state"):
        m.history(state="open")


def test_thread_safety_raise_while_acknowledging() -> None:
    m = AlertManager(cooldown_points=1, history_size=100_000)
    stop = threading.Event()
    acked: list[str] = []

    def producer(metric: str) -> None:
        for i in range(2000):
            m.raise_alert(metric, "r", float(i), index=i)
        stop.set()

    def ui() -> None:
        while not stop.is_set():
            for a in m.active_alerts(include_acknowledged=False)[:50]:
                acked.append(m.acknowledge(a.id).id)
            m.history(limit=10)

    threads = [threading.Thread(target=producer, args=(f"m{k}",)) for k in range(3)]
    threads += [threading.Thread(target=ui) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.raised_count == 6000 and len(m) == 6000
    ids = [a.id for a in m.history()]
    assert len(set(ids)) == 6000
    assert all(m.get(i).state == "acknowledged" for i in set(acked))
