"""3D voxel view: the build so far, coloured by a signal, updated brick by brick.

Each browser session follows the grid with its own change cursor
(:meth:`LiveMonitor.take_updated_bricks`): on a tick it asks which 8 x 8 x 8 bricks
changed, reads just their voxels (:meth:`VoxelGrid.get_values`), hands them to the
:class:`~dashboard.voxel_scene.VoxelScene` (which redraws only its small "live" actor)
and synchronises the VTK pane (:class:`~dashboard.vtk_pane.IncrementalVTK`, a
``pn.pane.VTK`` that sends each data array once). The settled part of the build keeps
its VTK arrays, so it is not sent again. After a replay (or a change of signal) the
scene is reloaded once from :meth:`VoxelGrid.get_occupied`.

>>> view = VoxelView(monitor=get_monitor())  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import panel as pn
import param

from am_qadf.machine_profile import SignalSpec
from am_qadf.machine_view import MonitorSnapshot
from am_qadf.monitoring.alerts import Alert

from .markup import esc
from .theme import VOXEL_PALETTE
from .view_base import MonitorView, build_layers_text, control_row, html_pane
from .voxel_scene import BRICK, SceneUpdate, VoxelScene
from .vtk_pane import IncrementalVTK

__all__ = ["DETAIL_FACES", "VoxelView", "alert_locations", "brick_voxels"]

# faces the settled part of the build may have at each "detail" setting (software WebGL
# draws ~4 µs per face: 16 k faces turn at ~9 frames a second)
DETAIL_FACES = {"fast": 16_000, "fine": 64_000, "full": 10**9}

_OFFSETS = np.stack(
    np.meshgrid(np.arange(BRICK), np.arange(BRICK), np.arange(BRICK), indexing="ij"), axis=-1
).reshape(-1, 3)


def brick_voxels(bricks: np.ndarray, dims: tuple[int, int, int]) -> np.ndarray:
    """Every voxel index ((m, 3) int64) of ``bricks`` ((n, 3) brick coordinates) that lies
    inside ``dims`` (the last brick along an axis may be partial).

    >>> brick_voxels(np.array([[1, 0, 0]]), (10, 8, 8)).shape
    (128, 3)
    """
    b = np.asarray(bricks, dtype=np.int64).reshape(-1, 3)
    ijk = (b[:, None, :] * BRICK + _OFFSETS[None, :, :]).reshape(-1, 3)
    return ijk[np.all(ijk < np.asarray(dims, dtype=np.int64), axis=1)]


def _option(info: SignalSpec) -> str:
    """A signal's short label with its unit, e.g. ``"Area (mm²)"``."""
    return f"{info.short_label} ({info.unit})" if info.unit else info.short_label


def alert_locations(alerts: Sequence[Alert], limit: int = 500) -> tuple[np.ndarray, list[str]]:
    """World (x, y, z) ((n, 3)) and severity of the newest ``limit`` of ``alerts`` (those
    not cleared yet, oldest first) that carry a location (alerts from SPC rules on a
    whole window have none).

    >>> from am_qadf.monitoring.alerts import AlertManager
    >>> mgr = AlertManager()
    >>> _ = mgr.raise_alert("temperature", "threshold_high", 2600.0, severity="critical",
    ...                     x=10.0, y=20.0, z=1.5)
    >>> _ = mgr.raise_alert("power", "ewma_high", 300.0)
    >>> points, severities = alert_locations(mgr.active_alerts())
    >>> points.tolist(), severities
    ([[10.0, 20.0, 1.5]], ['critical'])
    """
    located = [a for a in alerts if a.x is not None and a.y is not None and a.z is not None][
        -limit:
    ]
    points = np.array([(a.x, a.y, a.z) for a in located], dtype=np.float64).reshape(-1, 3)
    return points, [a.severity for a in located]


class VoxelView(MonitorView):
    """Incremental 3D rendering of the voxel grid with colour, threshold and opacity."""

    signal = param.Selector(default=None, objects=[], doc="Colour by.")

    color_scale = param.Selector(
        default="alarm limits",
        objects=["alarm limits", "data range"],
        doc="Colour ramp from the signal's alarm limits or from the 1–99 % data range.",
    )

    threshold = param.Range(default=None, doc="Show only voxels inside this value range.")

    opacity = param.Number(default=1.0, bounds=(0.05, 1.0), step=0.05)

    detail = param.Selector(
        default="fast",
        objects=list(DETAIL_FACES),
        doc="How many faces the finished part may have before it is drawn coarser: "
        "'fast' turns smoothly without a GPU, 'full' shows every voxel.",
    )

    follow_layer = param.Boolean(default=True, doc="Highlight the layer being built.")

    update_seconds = param.Number(
        default=1.0, bounds=(0.0, 60.0), doc="Minimum time between two 3D updates."
    )

    last_update = param.Parameter(default=None, doc="SceneUpdate of the latest change.")

    sync_ms = param.Number(default=0.0, doc="Time of the latest pane synchronisation.")

    updates = param.Integer(default=0, doc="Scene updates sent to the browser.")

    full_loads = param.Integer(default=0, doc="Complete reloads (first draw, replay, signal).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        grid = self.monitor.grid_info()
        self._grid = grid
        # the profile's signals first, then any other field the grid holds
        signals = self.monitor.voxel_signals() or ["value"]
        # shown by short label and unit ("Area (mm²)"; the legend gives the full title),
        # chosen by name
        self.param.signal.objects = {_option(self.spec_of(s)): s for s in signals}
        if self.signal not in signals:
            with param.parameterized.discard_events(self):  # no view built yet
                self.signal = signals[0]
        self._vid = f"{self.viewer_id or id(self)}:voxels"
        self._dims = grid.dims
        self.scene = VoxelScene(
            grid.bbox_min,
            grid.resolution,
            self._dims,
            clim=self._clim_for(self.signal, None),
            background="#10151c" if self.kiosk else "#f4f6f8",
            face_budget=DETAIL_FACES[self.detail],
        )
        self._needs_full = True
        self._outline_k: int | None = None  # voxel layer outlined as being built
        self._newest_z: float | None = None  # the laser's newest height (mm)
        self._auto_camera = True  # frame the build until the operator moves the camera
        self._framed: dict[str, list[float]] | None = None
        self._last_time = 0.0
        self.pane = IncrementalVTK(
            self.scene.render_window,
            sizing_mode="stretch_both",
            min_height=120 if self.kiosk else 220,
            orientation_widget=False,  # its resize observer outlives the re-created views
            enable_keybindings=False,
            css_classes=["amq-voxel-pane"],
        )
        self._legend = html_pane("", sizing_mode="stretch_width", css_classes=["amq-legend"])
        self._status = html_pane("", sizing_mode="stretch_width", css_classes=["amq-voxel-status"])
        self._threshold_widget = pn.widgets.RangeSlider(
            name="Show values between",
            start=0.0,
            end=1.0,
            value=(0.0, 1.0),
            step=0.001,
            sizing_mode="stretch_width",
            min_width=240,
            css_classes=["amq-threshold"],
        )
        self._threshold_widget.param.watch(self._on_threshold_widget, "value_throttled")
        self.pane.param.watch(self._on_camera, "camera")
        self._reset_threshold_widget()
        self._update_legend()

    # -- colour scale -----------------------------------------------------------------------
    def _clim_for(self, signal: str, values: np.ndarray | None) -> tuple[float, float]:
        info = self.spec_of(signal)
        if self.color_scale == "alarm limits" and info.low is not None and info.high is not None:
            return (info.low, info.high)
        if values is not None and values.size:
            finite = values[np.isfinite(values)]
            if finite.size:
                lo, hi = np.percentile(finite, [1, 99])
                if hi > lo:
                    return float(lo), float(hi)
        if info.low is not None and info.high is not None:
            return (info.low, info.high)
        return (0.0, 1.0)

    def _reset_threshold_widget(self, *, keep: bool = False) -> None:
        """Spread the value filter's slider around the colour range; with ``keep``, the
        operator's filter stays as it is (the slider widens to hold it), else it is
        cleared (a new signal: the old numbers mean nothing there)."""
        lo, hi = self.scene.clim
        span = hi - lo
        w = self._threshold_widget
        start, end = lo - 0.5 * span, hi + 0.5 * span
        kept = self.threshold if keep else None
        if kept is not None:
            start, end = min(start, kept[0]), max(end, kept[1])
        w.param.update(start=start, end=end, value=kept or (start, end), step=span / 200)
        self.threshold = kept

    def _on_threshold_widget(self, event: param.parameterized.Event) -> None:
        lo, hi = event.new
        w = self._threshold_widget
        self.threshold = None if (lo <= w.start and hi >= w.end) else (lo, hi)

    # -- reacting to controls ---------------------------------------------------------------
    @param.depends("signal", watch=True)
    def _on_signal(self) -> None:
        self._rescale(keep_filter=False)

    @param.depends("color_scale", watch=True)
    def _on_color_scale(self) -> None:
        self._rescale(keep_filter=True)

    def _rescale(self, *, keep_filter: bool) -> None:
        self.scene.set_clim(self._clim_for(self.signal, None))
        self._reset_threshold_widget(keep=keep_filter)
        self._needs_full = True
        self._update(force=True)

    @param.depends("threshold", watch=True)
    def _on_threshold(self) -> None:
        self._record(self.scene.set_threshold(self.threshold))
        self._sync()

    @param.depends("opacity", watch=True)
    def _on_opacity(self) -> None:
        self.scene.set_opacity(self.opacity)
        self._sync()

    @param.depends("detail", watch=True)
    def _on_detail(self) -> None:
        self._record(self.scene.set_face_budget(DETAIL_FACES[self.detail]))
        self._sync()

    @param.depends("follow_layer", watch=True)
    def _on_follow(self) -> None:
        if not self.follow_layer and self.scene.set_current_layer(None):
            self._sync()

    def reset_view(self, *_: Any) -> None:
        """Frame the build again (oblique view) and keep framing it as it grows."""
        self._auto_camera = True
        self._frame(force=True)

    def _frame(self, *, force: bool = False) -> None:
        cam = self.scene.default_camera()
        if cam is None or (not force and cam == self._framed):
            return
        self._framed = cam
        self.scene.apply_camera(cam)
        self.pane.camera = dict(cam)

    def _on_camera(self, event: param.parameterized.Event) -> None:
        cam, ours = event.new or {}, self._framed
        if ours is None or not cam.get("position"):
            return
        focal = cam.get("focalPoint", ours["focalPoint"])
        moved = np.abs(np.subtract(cam["position"], ours["position"])).max()
        moved += np.abs(np.subtract(focal, ours["focalPoint"])).max()
        if moved > 1e-6 * (1.0 + np.abs(ours["position"]).max()):
            self._auto_camera = False  # the operator took over

    # -- ticking ----------------------------------------------------------------------------
    def refresh(self, snapshot: MonitorSnapshot) -> None:
        self._newest_z = snapshot.newest_z
        if time.monotonic() - self._last_time < self.update_seconds:
            return
        self._update(force=False)

    def _update(self, *, force: bool) -> None:
        mon = self.monitor
        self._last_time = time.monotonic()
        bricks, full = mon.take_updated_bricks(self._vid)
        changed = False
        if full or self._needs_full:
            ijk, values = self._occupied()
            if self.color_scale == "data range":
                self.scene.set_clim(self._clim_for(self.signal, values))
                self._reset_threshold_widget(keep=True)
            self._record(self.scene.load(ijk, values))
            self._needs_full = False
            self.full_loads += 1
            changed = True
        elif bricks.size:
            ijk = brick_voxels(bricks, self._dims)
            values = self._values(ijk)
            keep = np.isfinite(values)
            self._record(self.scene.update_bricks(bricks, ijk[keep], values[keep]))
            changed = True
        if self.follow_layer:
            self._outline_k = self._grid.layer_of(self._newest_z)
            changed |= self.scene.set_current_layer(self._outline_k)
        changed |= self.scene.set_alert_markers(*alert_locations(self.monitor.active_alerts()))
        if changed or force:
            if self._auto_camera:
                self._frame()
            self._sync()

    def _occupied(self) -> tuple[np.ndarray, np.ndarray]:
        return self.monitor.occupied(self.signal)

    def _values(self, ijk: np.ndarray) -> np.ndarray:
        return self.monitor.voxel_values(self.signal, ijk)

    def _record(self, upd: SceneUpdate) -> None:
        self.last_update = upd

    def _sync(self) -> None:
        t0 = time.perf_counter()
        self.pane.synchronize()
        self.sync_ms = (time.perf_counter() - t0) * 1e3
        self.updates += 1
        self._update_status()

    # -- text -------------------------------------------------------------------------------
    def _update_legend(self) -> None:
        info = self.spec_of(self.signal)
        lo, hi = self.scene.clim
        stops = ", ".join(VOXEL_PALETTE)
        self._legend.object = (
            f'<div class="amq-legend-box"><span class="amq-legend-title">{esc(info.title)}</span>'
            f'<span class="amq-legend-lo">{esc(info.fmt(lo))}</span>'
            f'<span class="amq-legend-bar" style="background:linear-gradient(90deg,{stops})">'
            f'</span><span class="amq-legend-hi">{esc(info.fmt(hi))}</span></div>'
        )

    def _update_status(self) -> None:
        self._update_legend()
        u = self.last_update or SceneUpdate()
        kind = "full load" if u.full else ("settle" if u.settled_rebuilt else "update")
        p = self.pane
        coarse = "" if u.detail == 1 else f" (settled part at {u.detail}x coarser detail)"
        self._status.object = (
            f'<span class="amq-voxel-count" data-voxels="{self.scene.voxel_count}" '
            f'data-faces="{self.scene.face_count}" data-detail="{u.detail}">'
            f"{self.scene.voxel_count:,} voxels</span> · {self.scene.face_count:,} faces"
            f"{coarse} · {u.live_voxels:,} live · "
            f"last {kind}: {p.last_arrays} arrays / {p.last_array_bytes / 1024:,.1f} kB sent, "
            f"{u.build_ms:.0f} ms build + {self.sync_ms:.0f} ms sync"
        )
        if self.follow_layer and self._outline_k is not None:
            self._status.object = (
                f'<span class="amq-voxel-layer" data-k="{self._outline_k}">outlined: '
                f"{build_layers_text(self.monitor, self._outline_k)}</span> · "
                + self._status.object
            )

    # -- layout -----------------------------------------------------------------------------
    def controls(self) -> pn.viewable.Viewable:
        """Signal, colour scale, threshold, opacity and layer controls."""
        reset = pn.widgets.Button(
            name="Reset view",
            button_type="light",
            css_classes=["amq-reset-view"],
            width=100,
            margin=(24, 10, 5, 10),
        )
        reset.on_click(self.reset_view)
        # one wrapping row: on a narrow card the controls take two or three lines
        # instead of pushing the card past the page
        return control_row(
            pn.widgets.Select.from_param(
                self.param.signal, name="Colour by", width=170, css_classes=["amq-voxel-signal"]
            ),
            pn.widgets.RadioButtonGroup.from_param(
                self.param.color_scale,
                name="Scale",
                button_type="light",
                width=200,
                margin=(24, 10, 5, 10),
            ),
            pn.widgets.FloatSlider.from_param(self.param.opacity, name="Opacity", width=140),
            pn.widgets.Select.from_param(
                self.param.detail, name="Detail", width=90, css_classes=["amq-voxel-detail"]
            ),
            reset,
            pn.widgets.Checkbox.from_param(
                self.param.follow_layer,
                name="Outline current layer",
                width=170,
                margin=(18, 10, 5, 10),
            ),
            self._threshold_widget,
            css_classes=["amq-voxel-controls"],
        )

    def close(self) -> None:
        mon = self.monitor
        if mon is not None:
            mon.forget_viewer(self._vid)
        self.scene.finalize()

    def __panel__(self) -> pn.viewable.Viewable:
        items: list[Any] = [] if self.kiosk else [self.controls()]
        items += [self._legend, self.pane]
        if not self.kiosk:
            items.append(self._status)
        return pn.Column(*items, sizing_mode="stretch_both", css_classes=["amq-voxel-view"])
