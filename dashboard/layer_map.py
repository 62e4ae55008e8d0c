"""Layer map: an x–y heat map of one voxel layer (the current one, or the one holding a
chosen build layer) with the alerts raised in it marked. It is labelled with the build
layers it holds (the header's numbering), as the monitor saw them
(:meth:`LiveMonitor.build_layers`), and its z range.

The slice is kept as a dense 2-D array. A tick asks the monitor which bricks changed
(its own change cursor) and re-reads only the voxels of changed bricks that cross the
shown layer (64 per brick, :meth:`VoxelGrid.get_values`); moving to another layer reads
that layer once from :meth:`VoxelGrid.get_occupied`. The image is cropped to the part
of the plate that holds voxels.

>>> view = LayerMap(monitor=get_monitor())  # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import holoviews as hv
import numpy as np
import panel as pn
import param

from am_qadf.machine_view import MonitorSnapshot

from .markup import esc
from .theme import SEVERITY_COLORS, VOXEL_PALETTE, interpolate_palette
from .view_base import MonitorView, build_layers_text, control_row, html_pane
from .voxel_scene import BRICK

__all__ = ["LayerMap"]

_PALETTE = interpolate_palette(VOXEL_PALETTE, 64)
# HoloViews computes the colour range of an image that is still empty (all NaN)
warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning, "holoviews")
_EMPTY_IMG = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.full((2, 2), np.nan))


class LayerMap(MonitorView):
    """Heat map of voxel layer ``k`` coloured by ``signal``, alerts marked."""

    signal = param.Selector(default=None, objects=[])

    follow = param.Boolean(default=True, doc="Show the layer being built.")

    layer_k = param.Integer(
        default=0, bounds=(0, None), doc="Voxel layer shown when not following."
    )

    build_layer = param.Integer(
        default=None,
        allow_None=True,
        bounds=(0, None),
        doc="Build layer to show (the voxel layer holding it); follows the build by default.",
    )

    update_seconds = param.Number(default=1.0, bounds=(0.0, 60.0))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        grid = self.monitor.grid_info()
        self._grid = grid
        self._dims = grid.dims
        self._lo = np.asarray(grid.bbox_min, dtype=np.float64)
        self._res = float(grid.resolution)
        signals = list(self.profile.signal_names) or ["value"]
        self.param.signal.objects = signals
        if self.signal not in signals:
            with param.parameterized.discard_events(self):  # no view built yet
                self.signal = signals[0]
        self.param.layer_k.bounds = (0, self._dims[2] - 1)
        self._vid = f"{self.viewer_id or id(self)}:layer"
        self._plane = np.full(self._dims[:2], np.nan, dtype=np.float32)
        self._shown_k: int | None = None
        self._needs_full = True
        self._last_time = 0.0
        self._snap = MonitorSnapshot()  # the newest one (an own refresh reuses it)
        self._syncing = False
        self._xy_lo: np.ndarray | None = None  # occupied bounds (voxel ij) over the build
        self._xy_hi: np.ndarray | None = None
        self._image = hv.streams.Pipe(data=_EMPTY_IMG)
        self._alerts = hv.streams.Pipe(data=([], [], []))
        self._title = html_pane("", sizing_mode="stretch_width", css_classes=["amq-layer-title"])
        self._plot = self._make_plot()

    # -- plot -------------------------------------------------------------------------------
    def _make_plot(self) -> pn.pane.HoloViews:
        info = self.spec_of(self.signal)
        lo, hi = (info.low, info.high) if info.low is not None else (None, None)

        def image(data: tuple) -> hv.Image:
            xs, ys, z = data
            return hv.Image((xs, ys, z), kdims=["x", "y"], vdims=[self.signal])

        def points(data: tuple) -> hv.Points:
            xs, ys, sev = data
            if len(xs) == 0:
                # one undrawn point: an empty element leaves the colour column out of
                # the plot's source (a browser warning on every update)
                xs, ys, sev = [np.nan], [np.nan], ["info"]
            colors = [SEVERITY_COLORS.get(s, SEVERITY_COLORS["info"]) for s in sev]
            return hv.Points((xs, ys, sev, colors), kdims=["x", "y"], vdims=["severity", "color"])

        clim = {"clim": (lo, hi)} if lo is not None else {}
        img = hv.DynamicMap(image, streams=[self._image]).opts(
            cmap=_PALETTE,
            colorbar=True,
            clipping_colors={"NaN": (0, 0, 0, 0)},
            tools=[] if self.kiosk else ["hover"],
            framewise=True,
            **clim,
        )
        pts = hv.DynamicMap(points, streams=[self._alerts]).opts(
            color=hv.dim("color"),
            marker="x",
            size=14,
            line_width=3,
            show_legend=False,
        )
        overlay = (img * pts).opts(
            hv.opts.Overlay(
                responsive=True,
                xticks=4,
                yticks=4,
                min_height=150,
                xlabel="x (mm)",
                ylabel="y (mm)",
                framewise=True,
                toolbar=None if self.kiosk else "right",
                default_tools=[] if self.kiosk else ["pan", "wheel_zoom", "reset"],
            )
        )
        return pn.pane.HoloViews(
            overlay,
            sizing_mode="stretch_both",
            css_classes=["amq-layer-plot"],
            **({"theme": "dark_minimal"} if self.kiosk else {}),
        )

    # -- reacting ---------------------------------------------------------------------------
    @param.depends("signal", watch=True)
    def _on_signal(self) -> None:
        self._plot.object = self._make_plot().object
        self._needs_full = True
        self._last_time = 0.0

    @param.depends("follow", "layer_k", watch=True)
    def _on_layer(self) -> None:
        if self._syncing:
            return
        self._last_time = 0.0
        self.refresh(self._snap)

    @param.depends("build_layer", watch=True)
    def _on_build_layer(self) -> None:
        if self._syncing or self.build_layer is None:
            return
        k = self.monitor.voxel_layer(self.build_layer)
        if k is None:  # not built (yet): stay where we are
            return
        self._syncing = True
        try:
            self.follow = False
            self.layer_k = k
        finally:
            self._syncing = False
        self._last_time = 0.0
        self.refresh(self._snap)

    def refresh(self, snapshot: MonitorSnapshot) -> None:
        if time.monotonic() - self._last_time < self.update_seconds:
            return
        self._last_time = time.monotonic()
        self._snap = snapshot
        bricks, full = self.monitor.take_updated_bricks(self._vid)
        k = self._grid.layer_of(snapshot.newest_z) if self.follow else self.layer_k
        if k is None:
            return
        if self.follow:
            self._syncing = True  # show the followed layer in the widgets without re-entering
            try:
                self.layer_k = k
                current = snapshot.current_layer
                if isinstance(current, int | float) and current >= 0:
                    self.build_layer = int(current)
            finally:
                self._syncing = False
        changed = False
        if full or self._needs_full or k != self._shown_k:
            self._load_layer(k)
            changed = True
        elif bricks.size:
            row = bricks[bricks[:, 2] == k // BRICK]
            if row.size:
                self._update_bricks(row, k)
                changed = True
        if changed:
            self._push_image()
        self._push_alerts()

    def _load_layer(self, k: int) -> None:
        self._plane.fill(np.nan)
        ijk, values = self.monitor.occupied(self.signal)
        if ijk.shape[0]:
            lo, hi = ijk[:, :2].min(axis=0), ijk[:, :2].max(axis=0) + 1
            self._xy_lo, self._xy_hi = lo, hi
        on = ijk[:, 2] == k
        self._plane[ijk[on, 0], ijk[on, 1]] = values[on]
        self._shown_k = k
        self._needs_full = False

    def _update_bricks(self, bricks: np.ndarray, k: int) -> None:
        g = np.arange(BRICK)
        ii, jj = np.meshgrid(g, g, indexing="ij")
        ij = (bricks[:, None, :2] * BRICK + np.stack((ii.ravel(), jj.ravel()), 1)[None]).reshape(
            -1, 2
        )
        ij = ij[np.all(ij < np.asarray(self._dims[:2]), axis=1)]
        ijk = np.column_stack((ij, np.full(ij.shape[0], k)))
        values = self.monitor.voxel_values(self.signal, ijk)
        self._plane[ij[:, 0], ij[:, 1]] = values
        occ = ij[np.isfinite(values)]
        if occ.size:
            lo, hi = occ.min(axis=0), occ.max(axis=0) + 1
            self._xy_lo = lo if self._xy_lo is None else np.minimum(self._xy_lo, lo)
            self._xy_hi = hi if self._xy_hi is None else np.maximum(self._xy_hi, hi)

    def _crop(self) -> tuple[int, int, int, int] | None:
        if self._xy_lo is None or self._xy_hi is None:
            return None
        pad = 4
        i0, j0 = np.maximum(self._xy_lo - pad, 0)
        i1, j1 = np.minimum(self._xy_hi + pad, self._dims[:2])
        return int(i0), int(i1), int(j0), int(j1)

    def _push_image(self) -> None:
        box = self._crop()
        k = self._shown_k
        info = self.spec_of(self.signal)
        if box is None or k is None:
            self._image.send(_EMPTY_IMG)
            self._title.object = '<span class="amq-layer-z">waiting for the first layer…</span>'
            return
        i0, i1, j0, j1 = box
        xs = self._lo[0] + (np.arange(i0, i1) + 0.5) * self._res
        ys = self._lo[1] + (np.arange(j0, j1) + 0.5) * self._res
        self._image.send((xs, ys, self._plane[i0:i1, j0:j1].T.astype(np.float64)))
        z0 = self._lo[2] + k * self._res
        filled = int(np.isfinite(self._plane).sum())
        self._title.object = (
            f'<span class="amq-layer-z" data-k="{k}">{build_layers_text(self.monitor, k)} · '
            f"z {z0:.2f}–{z0 + self._res:.2f} mm</span> · {filled:,} voxels · "
            f"colour: {esc(info.title)}" + (" · following the build" if self.follow else "")
        )

    def _push_alerts(self) -> None:
        k = self._shown_k
        if k is None:
            return
        z0 = self._lo[2] + k * self._res
        rows = [
            a
            for a in self.monitor.alert_list(limit=500)
            if a.state != "cleared"
            and a.x is not None
            and a.y is not None
            and a.z is not None
            and z0 <= a.z < z0 + self._res
        ]
        data = ([a.x for a in rows], [a.y for a in rows], [a.severity for a in rows])
        if data != self._alerts.data:
            self._alerts.send(data)

    def close(self) -> None:
        self.monitor.forget_viewer(self._vid)

    def __panel__(self) -> pn.viewable.Viewable:
        items: list[Any] = [self._title]
        if not self.kiosk:
            items.insert(
                0,
                control_row(
                    pn.widgets.Select.from_param(self.param.signal, name="Colour by", width=140),
                    pn.widgets.Checkbox.from_param(self.param.follow, name="Follow the build"),
                    pn.widgets.IntInput.from_param(
                        self.param.build_layer, name="Build layer", width=110
                    ),
                    sizing_mode="stretch_width",
                ),
            )
        items.append(self._plot)
        return pn.Column(*items, sizing_mode="stretch_both", css_classes=["amq-layer-map"])
