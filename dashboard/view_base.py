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

import logging
from typing import Any

import panel as pn
import param

from am_qadf.access_policy import AccessPolicy
from am_qadf.machine_profile import MachineProfile, SignalSpec

from .signals import profile_of, signal_color
from .theme import stylesheet

__all__ = ["MonitorView", "html_pane"]

log = logging.getLogger(__name__)


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

    user = param.String(default=None, allow_None=True, doc="Logged-in user (None: anonymous).")

    policy = param.ClassSelector(
        class_=AccessPolicy,
        default=AccessPolicy(open_access=True),
        doc="Who may act; checked here, on the server, before every operator action.",
    )

    shown = param.Boolean(
        default=True,
        doc="On screen. The dashboard skips refreshing a view while it is off screen "
        "(in a hidden tab) and refreshes it as soon as it is shown again.",
    )

    @property
    def profile(self) -> MachineProfile:
        """The machine profile of the monitor: signals, labels, units, limits, SPC."""
        return profile_of(self.monitor)

    def spec_of(self, signal: str) -> SignalSpec:
        """Label, unit, format and limits of ``signal`` in the monitor's profile."""
        return self.profile.info(signal)

    def color(self, signal: str) -> str:
        """Line colour of ``signal`` in the monitor's profile."""
        return signal_color(signal, self.profile)

    def permitted(self, action: str) -> bool:
        """True when this session's user may take ``action`` (see :class:`AccessPolicy`)."""
        return self.policy.allows(self.user, action, kiosk=self.kiosk)

    def refuse(self, action: str) -> str | None:
        """None when ``action`` is allowed, else the reason (and the refusal is logged)."""
        try:
            self.policy.require(self.user, action, kiosk=self.kiosk)
        except PermissionError as exc:
            log.warning("refused: %s", exc)
            return str(exc)
        return None

    def refresh(self, snapshot: dict[str, Any]) -> None:
        """Pull what changed from the monitor and update the view (called every tick)."""

    def close(self) -> None:
        """Release per-session resources (the session ended)."""

    def __panel__(self) -> pn.viewable.Viewable:  # pragma: no cover - overridden
        raise NotImplementedError
