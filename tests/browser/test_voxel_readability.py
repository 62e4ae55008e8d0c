"""3D readability (#13 item 10): colours as in the legend, the plate outlined, alerts
marked, signals by label, the value filter kept when the colour scale changes. In-process
checks of what the scene sends (no browser)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from dashboard.voxel_scene import VoxelScene


@pytest.fixture
def view(tmp_path):
    from am_qadf.live_monitor import LiveMonitor, MonitorConfig
    from am_qadf.streaming import StreamingConfig
    from dashboard.voxel_view import VoxelView

    servers = [f"memory://voxread-{uuid.uuid4().hex[:8]}"]
    cfg = StreamingConfig.embedded(kafka_bootstrap_servers=servers, storage_path=str(tmp_path))
    v = VoxelView(monitor=LiveMonitor(MonitorConfig(streaming=cfg, simulate=False)))
    yield v
    v.close()


def test_voxel_surfaces_are_unlit_so_colours_match_the_legend():
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (32, 32, 32), clim=(0.0, 1.0))
    scene.load(np.array([[1, 1, 1]]), np.array([0.5]))
    for actor in (scene._settled.actor, scene._live_actor.actor):
        prop = actor.GetProperty()
        # no light term: the browser draws ambient x colour-map colour, exactly
        assert not prop.GetLighting()
        assert (prop.GetAmbient(), prop.GetDiffuse(), prop.GetSpecular()) == (1.0, 0.0, 0.0)
    scene.finalize()


def test_scene_draws_the_plate_outline_from_the_grid_footprint():
    scene = VoxelScene((0.0, 0.0, 0.0), 0.5, (500, 500, 60))
    actors = scene.renderer.GetActors()
    bounds = [actors.GetItemAsObject(i).GetBounds() for i in range(actors.GetNumberOfItems())]
    assert (0.0, 250.0, 0.0, 250.0, 0.0, 0.0) in [tuple(round(b, 3) for b in x) for x in bounds]
    scene.finalize()
    plate = VoxelScene((0.0, 0.0, 0.0), 0.5, (64, 64, 8), plate=((-5.0, -5.0), (45.0, 45.0)))
    assert plate._plate_actor.GetBounds()[:4] == (-5.0, 45.0, -5.0, 45.0)
    plate.finalize()


def test_view_marks_located_alerts_in_3d(view):
    mgr = view.monitor.alerts
    mgr.raise_alert(
        "temperature",
        "threshold_high",
        2650.0,
        severity="critical",
        x=95.0,
        y=95.0,
        z=1.0,
        layer=25,
    )
    mgr.raise_alert("power", "ewma_high", 300.0)  # no location: nothing to mark
    view._update(force=True)
    assert view.scene.marker_count == {"info": 0, "warning": 0, "critical": 1}
    actor = view.scene._markers["critical"][0]
    x0, x1, y0, y1, z0, _ = actor.GetBounds()
    assert (x0, y0) == (95.0, 95.0) and z0 > 1.0  # above the voxel the alert fell in
    for a in mgr.active_alerts():
        mgr.clear(a.id)
    view._update(force=True)
    assert view.scene.marker_count["critical"] == 0


def test_colour_by_offers_labels_with_units(view):
    import panel as pn

    options = pn.widgets.Select.from_param(view.param.signal).options
    assert options["Area (mm²)"] == "melt_pool_area"
    assert options["Temperature (K)"] == "temperature"
    assert "melt_pool_area" not in options
    view.signal = "melt_pool_area"  # still chosen by name
    assert "Melt-pool area (mm²)" in view._legend.object


def test_data_range_keeps_the_operators_value_filter(view):
    view._threshold_widget.value = (1900.0, 2100.0)
    view._on_threshold_widget(type("E", (), {"new": (1900.0, 2100.0)})())
    assert view.threshold == (1900.0, 2100.0)
    view.color_scale = "data range"
    assert view.threshold == (1900.0, 2100.0)
    assert view._threshold_widget.value == (1900.0, 2100.0)
    assert view.scene._threshold == (1900.0, 2100.0)
    view._needs_full = True  # a full reload under "data range" rescales again
    view._update(force=True)
    assert view.threshold == (1900.0, 2100.0)
    view.color_scale = "alarm limits"
    assert view.threshold == (1900.0, 2100.0)
    view.signal = "power"  # another signal: the kelvin filter means nothing there
    assert view.threshold is None
