"""Only operators operate: the check runs on the server, in the view's own handlers,
so a viewer session cannot pause, replay or acknowledge even by calling them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.machine_view import MonitorSnapshot
from am_qadf.streaming import KafkaProducer, StreamingConfig
from dashboard.alerts_view import AlertsView
from dashboard.controls import Controls
from dashboard.history_view import HistoryView


@pytest.fixture
def monitor(tmp_path):
    servers = [f"memory://access-{uuid.uuid4().hex[:8]}"]
    mon = LiveMonitor(
        MonitorConfig(
            streaming=StreamingConfig.embedded(
                kafka_bootstrap_servers=servers, storage_path=str(tmp_path)
            ),
            simulate=False,
        )
    )
    mon.start()
    yield mon
    mon.stop()


POLICY = AccessPolicy(operators={"ada"})


def test_viewer_cannot_operate_even_through_the_callbacks(monitor):
    controls = Controls(monitor=monitor, user="bob", policy=POLICY)
    assert controls._pause.disabled and controls._seek.disabled
    controls.pause()
    assert monitor.snapshot()["state"] == "running"
    assert "may not pause" in controls.message
    replays = monitor.replays
    controls.seek_to_beginning()
    time.sleep(0.3)
    assert monitor.replays == replays, "a viewer's replay request must not run"

    alert = monitor.alerts.raise_alert("temperature", "threshold_high", 2600.0, severity="critical")
    AlertsView(monitor=monitor, user="bob", policy=POLICY)._acknowledge([alert.id])
    assert monitor.alerts.get(alert.id).state == "active"


def test_operator_can_operate(monitor):
    controls = Controls(monitor=monitor, user="ada", policy=POLICY)
    assert not controls._pause.disabled
    controls.pause()
    assert monitor.snapshot()["state"] == "paused"
    controls.resume()
    assert monitor.snapshot()["state"] == "running"
    alert = monitor.alerts.raise_alert("temperature", "threshold_high", 2600.0, severity="critical")
    AlertsView(monitor=monitor, user="ada", policy=POLICY)._acknowledge([alert.id])
    acked = monitor.alerts.get(alert.id)
    assert acked.state == "acknowledged" and acked.to_dict()["acknowledged_by"] == "ada"


def test_kiosk_sessions_are_viewers_even_for_operators(monitor):
    controls = Controls(monitor=monitor, user="ada", policy=POLICY, kiosk=True)
    controls.pause()
    assert monitor.snapshot()["state"] == "running"


def test_policy_from_environment():
    closed = AccessPolicy.from_env({"AMQADF_OPERATORS": "ada"}, login_configured=True)
    assert closed.role("ada") == "operator" and closed.role("eve") == "viewer"
    assert closed.role(None) == "viewer"
    assert AccessPolicy.from_env({}, login_configured=False).role(None) == "operator"
    locked = AccessPolicy.from_env({"AMQADF_OPEN_ACCESS": "0"}, login_configured=False)
    assert locked.role(None) == "viewer"


def _store_two_ages(monitor) -> None:
    now = datetime.now(UTC)
    docs = [
        {"timestamp": now - timedelta(hours=5), "build_id": "b", "layer": 1, "temperature": 1.0},
        {"timestamp": now - timedelta(minutes=5), "build_id": "b", "layer": 2, "temperature": 2.0},
    ]
    assert monitor.storage.store_batch(docs) == 2


def _wait_deleted(view) -> str:
    deadline = time.monotonic() + 20
    while view._deleted is None and time.monotonic() < deadline:
        time.sleep(0.05)
    view.refresh(MonitorSnapshot())
    return view.info.object


def test_viewer_cannot_delete_old_data_even_through_the_callback(monitor):
    _store_two_ages(monitor)
    view = HistoryView(monitor=monitor, user="bob", policy=POLICY)
    assert view.delete.disabled
    view.keep_hours.value = 1.0
    view.delete_old_data()
    assert "may not delete_old_data" in view.info.object
    time.sleep(0.3)
    assert view._deleted is None
    assert len(monitor.query_history(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))) == 2


def test_operator_deletes_only_data_older_than_kept_hours(monitor):
    _store_two_ages(monitor)
    view = HistoryView(monitor=monitor, user="ada", policy=POLICY)
    assert not view.delete.disabled
    view.keep_hours.value = 1.0
    view.delete_old_data()
    assert 'data-deleted="1"' in _wait_deleted(view)
    left = monitor.query_history(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert [d["layer"] for d in left] == [2]


def test_credentials_never_reach_the_page_or_the_log(tmp_path, caplog):
    """Secrets from the configuration are passed to the clients, never shown or logged."""
    import logging

    import panel as pn

    from dashboard.machine_dashboard import Dashboard

    secrets = ["k4fka-pw", "r3dis-pw"]
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://cred-{uuid.uuid4().hex[:8]}"],
        storage_path=str(tmp_path),
        kafka_config={"sasl.username": "amq", "sasl.password": secrets[0]},
        redis_password=secrets[1],
    )
    caplog.set_level(logging.DEBUG)
    mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False))
    mon.start()
    try:
        dash = Dashboard(monitor=mon, policy=POLICY)
        dash.tick()
        shown = [
            str(p.object)
            for p in dash.template().main[0].select(pn.pane.HTML)
            + dash.health.summary().select(pn.pane.HTML)
            + [dash.header]
        ]
        shown.append(repr(mon.config.streaming.describe()))
        shown.append(caplog.text)
        dash.stop()
    finally:
        mon.stop()
    text = "\n".join(shown)
    assert "in-process broker" in text or "memory://" in text  # the page did render
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"secrets shown or logged: {leaked}"


def test_viewer_controls_stay_disabled_after_refreshes(monitor):
    controls = Controls(monitor=monitor, user="bob", policy=POLICY)
    for _ in range(3):
        controls.refresh(monitor.monitor_snapshot())
    assert controls._pause.disabled and controls._resume.disabled and controls._seek.disabled


@pytest.mark.parametrize("hours", [1e-9, 0.0, -5.0, float("inf"), float("nan"), 1e300, None])
def test_keep_hours_are_checked_on_the_server(monitor, hours):
    """The browser's minimum is not a check: 1e-9 hours would delete everything, inf
    crashed the handler. The handler refuses them with the reason, deleting nothing."""
    _store_two_ages(monitor)
    view = HistoryView(monitor=monitor, user="ada", policy=POLICY)
    view.keep_hours.value = hours
    view.delete_old_data()
    assert "Nothing deleted" in view.info.object and "keep hours" in view.info.object
    assert view._deleted is None and not view.delete.disabled  # no deletion was started
    assert len(monitor.query_history(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))) == 2


def test_inject_defect_is_refused_on_a_real_line(monitor):
    """An operator's click on a line that is not simulated (the button is hidden there,
    but a crafted request still reaches the handler) stores no fake samples."""
    cfg = monitor.config.streaming
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    now = datetime.now(UTC)
    real = {"timestamp": now, "build_id": "real-1", "layer": 2, "x": 1.0, "y": 1.0, "z": 0.1,
            "temperature": 1900.0}  # fmt: skip
    producer.produce(real, key="real-1")
    producer.flush()

    def stored() -> list[dict]:
        return monitor.query_history(now - timedelta(hours=1), now + timedelta(hours=1))

    deadline = time.monotonic() + 30
    while not stored() and time.monotonic() < deadline:
        time.sleep(0.05)
    controls = Controls(monitor=monitor, user="ada", policy=POLICY)
    controls.inject()
    assert "Could not inject a defect" in controls.message
    assert "simulated build" in controls.message
    # a sentinel behind where fake samples would have gone (same key, same partition)
    producer.produce({**real, "layer": 3, "temperature": 1901.0}, key="real-1")
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 30
    while not any(d["layer"] == 3 for d in stored()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(d["temperature"] for d in stored()) == [1900.0, 1901.0]


def test_only_operators_clear_alerts_checked_on_the_server(monitor):
    alert = monitor.alerts.raise_alert("temperature", "threshold_high", 2600.0, severity="critical")
    assert not AlertsView(monitor=monitor, user="bob", policy=POLICY).clear_alert(alert.id)
    assert not AlertsView(monitor=monitor, user="ada", policy=POLICY, kiosk=True).clear_alert(
        alert.id
    )
    assert monitor.alerts.get(alert.id).state == "active"
    view = AlertsView(monitor=monitor, user="ada", policy=POLICY)
    assert view.clear_alert(alert.id) and view.cleared == 1
    assert monitor.alerts.get(alert.id).state == "cleared"
    assert not view.clear_alert("no-such-alert")
