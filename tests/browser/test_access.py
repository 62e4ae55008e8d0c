"""Only operators operate: the check runs on the server, in the view's own handlers,
so a viewer session cannot pause, replay or acknowledge even by calling them."""

from __future__ import annotations

import time
import uuid

import pytest

from am_qadf.access_policy import AccessPolicy
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.streaming import StreamingConfig
from dashboard.alerts_view import AlertsView
from dashboard.controls import Controls


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
