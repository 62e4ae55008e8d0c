"""A 3D scene of one colour, for ``test_voxel_colours.py``: ``panel serve
tests/browser/voxel_colour_app.py`` shows a 12 x 12 x 4 block of voxels that all hold
the value in the middle of the colour range, seen obliquely (top and two sides visible),
through the dashboard's own scene and VTK pane."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import panel as pn  # noqa: E402

from dashboard.voxel_scene import VoxelScene  # noqa: E402
from dashboard.vtk_pane import IncrementalVTK, install_inplace  # noqa: E402

install_inplace()
pn.extension("vtk")

scene = VoxelScene((0.0, 0.0, 0.0), 1.0, (24, 24, 8), clim=(0.0, 1.0))
block = np.argwhere(np.ones((12, 12, 4), dtype=bool)) + np.array([6, 6, 0])
scene.load(block, np.full(block.shape[0], 0.5))  # the palette's middle stop
camera = scene.default_camera()
scene.apply_camera(camera)
pane = IncrementalVTK(
    scene.render_window,
    width=640,
    height=480,
    orientation_widget=False,
    enable_keybindings=False,
    css_classes=["amq-colour-pane"],
)
pane.camera = dict(camera)
pn.Column(pane).servable()
