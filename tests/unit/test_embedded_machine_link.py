"""The one-process demo's fleet tile links to ``/app?machine=<its id>`` like a worker
machine's, and ``/app`` serves the embedded machine under its own id (another id gets
a page that says so, with a link to it)."""

from __future__ import annotations

import gc
import uuid

import panel as pn

from am_qadf.live_monitor import MonitorConfig
from am_qadf.streaming import StreamingConfig
from dashboard.fleet_view import FleetOverview
from dashboard.pipeline_cache import get_monitor, not_this_machine_html, shutdown_monitor
from tests.waiting import wait_for


def test_the_embedded_machine_answers_to_its_own_id_only() -> None:
    assert not_this_machine_html("", "sim-1") is None
    assert not_this_machine_html("sim-1", "sim-1") is None
    html = not_this_machine_html('m9"><b>', "sim-1")
    assert html is not None
    assert 'href="/app?machine=sim-1"' in html  # the way to the machine it does show
    assert "one-process pipeline of machine sim-1 only" in html and "AMQADF_STATE" in html
    assert '"><b>' not in html  # what was asked is escaped


def test_the_embedded_fleet_tile_links_to_the_machine_by_id(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AMQADF_STATE", raising=False)
    streaming = StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://demo-link-{uuid.uuid4().hex[:8]}"],
        storage_path=str(tmp_path),
    )
    shutdown_monitor()
    pn.state.cache.pop("am_qadf_fleet_source", None)
    thresholds = gc.get_threshold()  # the server's GC tuning must not outlive the test
    view = None
    try:
        mon = get_monitor(MonitorConfig(streaming=streaming, simulate=False))
        view = FleetOverview()  # the page's own source: the embedded pipeline
        mid = mon.profile.machine.id
        assert wait_for(lambda: f'data-machine="{mid}"' in view.render())
        assert f'href="app?machine={mid}"' in view.render()
    finally:
        source = pn.state.cache.pop("am_qadf_fleet_source", None)
        if source is not None:
            source.reader.stop()
        shutdown_monitor()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
