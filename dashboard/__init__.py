"""AM-QADF Live dashboard (Panel): live signals, SPC, 3D voxels, layer map, alerts,
controls, history and health of one monitoring pipeline.

``panel serve dashboard/app.py`` serves it; in a notebook, ``Dashboard.embedded()``
shows it in a cell. The dashboard only uses the library's public API.
"""

from __future__ import annotations

from .machine_dashboard import Dashboard

__all__ = ["Dashboard"]
