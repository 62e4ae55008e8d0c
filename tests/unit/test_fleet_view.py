"""The fleet page's view logic (dashboard/fleet_view.py): tiles, badges, escaping, order."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from am_qadf.fleet.fleet_reader import FleetReader, MachineStatus, rank
from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
from dashboard.fleet_view import (
    FleetOverview,
    grid_shape,
    newest_alert_text,
    sparkline_svg,
    status_badge,
    tile_html,
)
from dashboard.metrics import METRICS
from tests.waiting import wait_for

EVIL = '"><script>alert(1)</script>'


def _status(snap: MachineSnapshot, now: float = 100.0) -> MachineStatus:
    [m] = rank([snap], now=now, stale_after=6)
    return m


def test_every_store_value_in_a_tile_is_escaped() -> None:
    snap = MachineSnapshot(
        "m1",
        name=EVIL,
        state="running",
        build_id=EVIL,
        signal=EVIL,
        alerts_active={"critical": 1},
        newest_alert={"severity": EVIL, "message": EVIL, "value": 1.0, "layer": 3},
        updated_at=100.0,
    )
    html = tile_html(_status(snap), (np.arange(3.0), np.ones(3)), now=100.0)
    assert "<script>" not in html and "&lt;script&gt;" in html
    # an unknown severity is not a class name taken from the data
    assert "amq-fl-alert-info" in html


def test_tile_says_layer_of_progress_rate_alerts_and_links_to_the_machine() -> None:
    snap = MachineSnapshot(
        "m-7.a",
        name="EOS M290 #2",
        state="running",
        build_id="b42",
        layer=41,
        layers=120,
        progress=0.35,
        rate=5123.4,
        alerts_active={"critical": 2, "warning": 1},
        newest_alert={"severity": "critical", "rule": "threshold_high", "metric": "temp",
                      "value": 2411.5, "layer": 41, "x": 10.0, "y": 20.25},
        updated_at=100.0,
    )  # fmt: skip
    html = tile_html(_status(snap), None, now=100.0, app_path="/app")
    assert 'href="/app?machine=m-7.a"' in html
    assert 'data-status="critical"' in html
    assert "Layer <b>41</b> of 120" in html and 'data-progress="35"' in html
    assert "<b>5,123</b> msg/s" in html
    assert 'data-critical="2"' in html and 'data-warning="1"' in html
    assert "threshold_high · temp" in html and "layer 41 · x 10.0 y 20.2 mm" in html
    assert "2,412" in html
    assert "<svg" not in html  # no window yet: no sparkline


def test_stale_badge_counts_the_silence_and_drops_the_rate() -> None:
    # the worker died 40 s ago: its last rate is not shown as current
    dead = MachineSnapshot("m1", state="running", rate=5000.0, data_at=55.0, updated_at=60.0)
    m = _status(dead)
    assert m.status == "stale"
    assert status_badge(m, now=100.0) == "No data for 45 s"
    html = tile_html(m, None, now=100.0)
    assert "5,000" not in html and "<b>–</b> msg/s" in html
    # a worker that publishes but gets no message: stale too, counted from the data
    quiet = MachineSnapshot("m2", state="running", data_at=88.0, updated_at=99.5)
    assert status_badge(_status(quiet), now=100.0) == "No data for 12 s"


@pytest.mark.parametrize("n", range(1, 9))
def test_kiosk_grid_holds_up_to_eight_machines_in_two_rows(n: int) -> None:
    cols, rows = grid_shape(n)
    assert cols * rows >= n and rows <= 2 and cols <= 4
    assert cols * (rows - 1) < n  # no empty row


def test_sparkline_skips_non_finite_points_and_flat_or_short_windows() -> None:
    t = np.arange(5.0)
    v = np.array([1.0, np.nan, 3.0, np.inf, 2.0])
    svg = sparkline_svg((t, v), width=4, height=4)
    points = re.search(r'<polyline points="([^"]*)"', svg).group(1)
    assert points == "0.0,3.0 2.0,1.0 4.0,2.0"  # 1 px inside the box
    assert "<polygon" not in svg  # one point per run: no spread to draw
    flat = sparkline_svg((t, np.ones(5)))
    assert "nan" not in flat.lower() and "inf" not in flat
    assert sparkline_svg((np.array([1.0]), np.array([1.0]))) == ""


def test_sparkline_draws_run_means_over_their_min_max_band() -> None:
    n = 10_000
    t = np.arange(n, dtype=float)
    v = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)  # noise around 0
    v[5000:5010] = 50.0  # one short spike
    svg = sparkline_svg((t, v), width=100, height=52, bins=50)
    line = re.search(r'<polyline points="([^"]*)"', svg).group(1).split()
    band = re.search(r'<polygon class="amq-fl-band" points="([^"]*)"', svg).group(1).split()
    assert len(line) == 50 and len(band) == 100
    ys = np.array([float(p.split(",")[1]) for p in line])
    # the mean line stays near the level of the noise; the band reaches the spike
    assert np.ptp(np.delete(ys, 25)) < 1.0
    assert min(float(p.split(",")[1]) for p in band) == 1.0


def test_newest_alert_text_tolerates_odd_values() -> None:
    assert newest_alert_text({"rule": "r", "value": "hot", "layer": [1], "x": "a"}) == (
        "r",
        "",
        "–",
    )


def test_overview_renders_worst_first_and_redraws_only_on_change() -> None:
    store = InProcessStateStore()
    now = time.time()
    store.put_snapshot(MachineSnapshot("ok", state="running", updated_at=now))
    store.put_snapshot(MachineSnapshot("bad", alerts_active={"critical": 1}, updated_at=now))
    store.put_snapshot(MachineSnapshot("gone", state="running", updated_at=now - 60))
    reader = FleetReader(store).start()
    try:
        view = FleetOverview(reader=reader, source="test store")
        html = view.render(now=now)
        assert re.findall(r'data-machine="([^"]+)"', html) == ["bad", "gone", "ok"]
        assert 'data-machines="3"' in html and "test store" in html
        view.tick()
        first = view.pane.object
        assert view.ticks == 1 and 'data-machine="bad"' in first
        # /metrics: the refresh is timed and the machines shown counted
        text = METRICS.text()
        assert 'amqadf_dashboard_machines_shown{page="fleet"} 3.0' in text
        assert 'amqadf_dashboard_refresh_seconds_count{page="fleet"}' in text
        view.stop()
        view.tick()  # a stopped session draws nothing more
        assert view.ticks == 1
    finally:
        reader.stop()


def test_overview_says_when_no_machine_published() -> None:
    reader = FleetReader(InProcessStateStore()).start()
    try:
        html = FleetOverview(reader=reader, source="Redis state store").render()
        assert "No machine has published its state yet" in html
        assert "Redis state store" in html
    finally:
        reader.stop()


@pytest.mark.parametrize("module", ["dashboard.fleet_view", "dashboard.page_args"])
def test_the_dashboard_modules_doctests_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_query_arguments_fall_back_and_stay_in_bounds(monkeypatch) -> None:
    from types import SimpleNamespace

    import dashboard.page_args as page_args

    args = {"kiosk": [b"Yes"], "period": [b"5"], "watchdog": [b"soon"]}
    monkeypatch.setattr(page_args, "pn", SimpleNamespace(state=SimpleNamespace(session_args=args)))
    assert page_args.flag_arg("kiosk") is True
    assert page_args.int_arg("period", 1000, 200, 60_000) == 200
    assert page_args.int_arg("watchdog", 45, 5, 3600) == 45
    assert page_args.session_arg("missing", "x") == "x"


class _FlakyStore:
    """A state store that stops answering while ``down`` is set."""

    def __init__(self) -> None:
        self.store = InProcessStateStore()
        self.down = False

    def __getattr__(self, name: str):
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise ConnectionError("Error 111 connecting to <redis>. Connection refused.")
            return attr(*args, **kwargs)

        return call


def test_a_store_that_stops_answering_is_said_and_caught_up_with() -> None:
    flaky = _FlakyStore()
    flaky.store.put_snapshot(MachineSnapshot("m1", state="running", updated_at=time.time()))
    flaky.down = True
    reader = FleetReader(flaky).start()  # down from the start: no exception here
    try:
        assert reader.error is not None and "Connection refused" in reader.error
        html = FleetOverview(reader=reader, source="Redis state store").render()
        assert "Redis state store not answering" in html and "&lt;redis&gt;" in html
        flaky.down = False  # back: everything is read again
        assert wait_for(lambda: reader.error is None and bool(reader.snapshots()), 30)
        v = reader.version
        flaky.store.put_snapshot(MachineSnapshot("m2", updated_at=time.time()))
        assert reader.wait_for_version(v + 1, timeout=30)
        assert sorted(reader.snapshots()) == ["m1", "m2"]
        flaky.down = True  # down again: the last state stays, the error is said
        assert wait_for(lambda: reader.error is not None, 30)  # the outage noticed
        assert sorted(reader.snapshots()) == ["m1", "m2"]
        assert "not answering" in FleetOverview(reader=reader, source="x").render()
    finally:
        flaky.down = False
        reader.stop()
