"""The contract every dashboard view follows.

A view is a :class:`panel.viewable.Viewer` holding the machine it shows: a
:class:`~am_qadf.machine_view.MachineSource` (the pipeline in this process, or one
machine of a fleet read from the state store). It reads that source's typed values
only, never a pipeline's client, grid or alert manager. The dashboard calls
:meth:`MonitorView.refresh` with a fresh :class:`~am_qadf.machine_view.MonitorSnapshot`
on its one periodic callback per session (on the session's thread, so Bokeh models
may be touched there); a view never starts callbacks or threads of its own.

>>> class Clock(MonitorView):
...     def refresh(self, snapshot):
...         self.seen = snapshot.state
>>> v = Clock(monitor=None)
>>> v.refresh(MonitorSnapshot(state="running")); v.seen
'running'
"""

from __future__ import annotations

import logging
from typing import Any

import panel as pn
import param

from am_qadf.access_policy import AccessPolicy
from am_qadf.machine_profile import MachineProfile, SignalSpec
from am_qadf.machine_view import MonitorSnapshot

from .signals import profile_of, signal_color
from .theme import STATE_COLORS, stylesheet

__all__ = [
    "MonitorView",
    "build_layers_text",
    "control_row",
    "feed_status",
    "html_pane",
    "outside_grid_text",
]

log = logging.getLogger(__name__)


def html_pane(obj: str = "", **params: Any) -> pn.pane.HTML:
    """An HTML pane that carries the dashboard stylesheet (panes render in shadow DOM)."""
    params.setdefault("sizing_mode", "stretch_width")
    params["stylesheets"] = [*params.get("stylesheets", []), stylesheet()]
    return pn.pane.HTML(obj, **params)


def control_row(*items: Any, **params: Any) -> pn.FlexBox:
    """A row of widgets that wraps onto a second line when its card is narrow (a
    ``pn.Row`` keeps its width and pushes the card past the page at 1366 px).

    >>> control_row(pn.widgets.Button(name="a"), css_classes=["x"]).flex_wrap
    'wrap'
    """
    params.setdefault("sizing_mode", "stretch_width")
    params.setdefault("align_items", "flex-end")
    return pn.FlexBox(*items, flex_wrap="wrap", **params)


def feed_status(snapshot: MonitorSnapshot) -> tuple[str, str, str]:
    """What the state badge of the header and kiosk says: ``(feed, text, colour)``.

    A consumer that runs but gets nothing is not shown as a green "Running": after
    ``stale_after_s`` without a message it says "No data for N s" (red), and before the
    first message "Waiting for data".

    >>> feed_status(MonitorSnapshot(state="running", feed="stale", data_age_s=12.4))[:2]
    ('stale', 'No data for 12 s')
    >>> feed_status(MonitorSnapshot(state="running", feed="live"))[:2]
    ('live', 'Running')
    """
    state = snapshot.state or "stopped"
    feed = snapshot.feed or state
    age = snapshot.data_age_s
    if feed == "stale":
        return feed, f"No data for {float(age or 0):,.0f} s", STATE_COLORS["error"]
    if feed == "waiting":
        return feed, "Waiting for data", STATE_COLORS["paused"]
    color = STATE_COLORS.get(state, STATE_COLORS["stopped"])
    return feed, state.capitalize(), color


def outside_grid_text(snapshot: MonitorSnapshot) -> str:
    """The warning for points the voxel grid dropped ('' when none): they are in no
    3D view or layer map, so the page must say so rather than look complete.

    >>> outside_grid_text(MonitorSnapshot(points_outside_grid=1234,
    ...                                   grid_box=([0, 0, 0], [250, 250, 40])))
    '1,234 points outside the plate (x 0–250, y 0–250, z 0–40 mm): not in the 3D view'
    >>> outside_grid_text(MonitorSnapshot())
    ''
    """
    n = int(snapshot.points_outside_grid or 0)
    if n <= 0:
        return ""
    box = snapshot.grid_box
    where = ""
    if box is not None:
        lo, hi = box
        spans = (f"{axis} {a:g}–{b:g}" for axis, a, b in zip("xyz", lo, hi, strict=True))
        where = " (" + ", ".join(spans) + " mm)"
    return f"{n:,} points outside the plate{where}: not in the 3D view"


def build_layers_text(monitor: Any, k: int) -> str:
    """The build layers (the header's numbering) voxel layer ``k`` holds, as the monitor
    saw them: "build layers 48–59", "build layer 7", or "no build layer yet".

    >>> class Seen:
    ...     def build_layers(self, k): return (48, 59) if k == 4 else None
    >>> build_layers_text(Seen(), 4), build_layers_text(Seen(), 5)
    ('build layers 48–59', 'no build layer yet')
    """
    seen = monitor.build_layers(k)
    if seen is None:
        return "no build layer yet"
    lo, hi = seen
    return f"build layer {lo}" if lo == hi else f"build layers {lo}–{hi}"


class MonitorView(pn.viewable.Viewer):
    """Base of the dashboard views: a monitor, a kiosk flag and a ``refresh`` hook."""

    monitor = param.Parameter(
        default=None,
        doc="The machine shown: a MachineSource (a LiveMonitor, or a RemoteMachine of a fleet).",
    )

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

    def refresh(self, snapshot: MonitorSnapshot) -> None:
        """Pull what changed from the machine and update the view (called every tick)."""

    def close(self) -> None:
        """Release per-session resources (the session ended)."""

    def __panel__(self) -> pn.viewable.Viewable:  # pragma: no cover - overridden
        raise NotImplementedError
