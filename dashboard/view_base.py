"""The contract every dashboard view follows.

A view is a :class:`panel.viewable.Viewer` holding the shared monitor. The dashboard
calls :meth:`MonitorView.refresh` with a fresh :meth:`LiveMonitor.snapshot` on its one
periodic callback per session (on the session's thread, so Bokeh models may be
touched there); a view never starts callbacks or threads of its own.

>>> class Clock(MonitorView):
...     def refresh(self, snapshot):
...         self.seen = snapshot["state"]
>>> v = Clock(monitor=None)
>>> v.refresh({"state": "running"}); v.seen
'running'
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from .theme import stylesheet

__all__ = ["MonitorView", "html_pane"]


def html_pane(obj: str = "", **params: Any) -> pn.pane.HTML:
    """An HTML pane that carries the dashboard stylesheet (panes render in shadow DOM)."""
    params.setdefault("sizing_mode", "stretch_width")
    params["stylesheets"] = [*params.get("stylesheets", []), stylesheet()]
    return pn.pane.HTML(obj, **params)


class MonitorView(pn.viewable.Viewer):
    """Base of the dashboard views: a monitor, a kiosk flag and a ``refresh`` hook."""

    monitor = param.Parameter(default=None, doc="The shared LiveMonitor (read-only use).")

    kiosk = param.Boolean(default=False, doc="Shop-floor layout: no controls, large type.")

    viewer_id = param.String(default="", doc="Change-cursor id of this browser session.")

    def refresh(self, snapshot: dict[str, Any]) -> None:
        """Pull what changed from the monitor and update the view (called every tick)."""

    def close(self) -> None:
        """Release per-session resources (the session ended)."""

    def __panel__(self) -> pn.viewable.Viewable:  # pragma: no cover - overridden
        raise NotImplementedError
