"""Kiosk mode (``?kiosk=1``): a full-screen dark layout for a shop-floor screen.

No controls, large type, and two layers of self-healing for a screen left running for
days: Panel's own websocket re-connection (``pn.config.reconnect``), and a
:class:`Watchdog` in the page that reloads it once the server answers again if no
heartbeat arrived for ``timeout_s`` (server restarted, session expired, laptop lid
closed overnight...).

>>> Watchdog(heartbeat=3).timeout_s
45
"""

from __future__ import annotations

import param
from panel.custom import JSComponent

from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import MonitorSnapshot

from .markup import TEXT_LIMIT, esc, whole_number
from .view_base import feed_status, html_pane

__all__ = ["KioskStatus", "Watchdog", "duration_text"]


class Watchdog(JSComponent):
    """Invisible component: reloads the page when heartbeats stop and the server is back."""

    heartbeat = param.Integer(default=0, doc="Incremented by the server on every tick.")

    timeout_s = param.Integer(default=45, bounds=(5, None))

    _esm = """
    export function render({ model, el }) {
      let last = Date.now()
      model.on('heartbeat', () => { last = Date.now() })
      el.style.display = 'none'
      const timer = setInterval(async () => {
        if (Date.now() - last < model.timeout_s * 1000) return
        try {
          // Any answer means the server is up. HEAD, because a GET of the page would
          // build a whole new session just to ask (ruinous on a busy server).
          await fetch(window.location.href, { method: 'HEAD', cache: 'no-store' })
          window.location.reload()
        } catch (e) { /* server still away: try again later */ }
      }, 5000)
      return () => clearInterval(timer)
    }
    """


def duration_text(seconds: float | None) -> str:
    """A duration as a shop-floor screen shows it: "45 s", "12 min", "2 h 05 min".

    >>> duration_text(44.6), duration_text(725), duration_text(7500), duration_text(None)
    ('45 s', '12 min', '2 h 05 min', '–')
    """
    if seconds is None:
        return "–"
    s = max(float(seconds), 0.0)
    if s < 60:
        return f"{s:.0f} s"
    minutes = int(s // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class KioskStatus:
    """Big status tiles for a screen read from 3 m: build, "layer N of M", ETA, state,
    the data's age, active alerts and the first live signal."""

    def __init__(self) -> None:
        self.pane = html_pane("", css_classes=["amq-kiosk-status"], sizing_mode="stretch_width")

    def update(
        self,
        snapshot: MonitorSnapshot,
        latest: dict[str, float],
        profile: MachineProfile | None = None,
    ) -> None:
        """Show the tiles; the first of ``latest`` (the profile's first live signal) gets
        its own tile, labelled from ``profile``. The layer count and ETA come from the
        snapshot's ``build_plan`` when the source knows it (a simulated build)."""
        feed, state_text, color = feed_status(snapshot)
        layer = whole_number(snapshot.current_layer)
        plan = snapshot.build_plan or {}
        layers = whole_number(plan.get("layers"))
        age = snapshot.data_age_s
        layer_text = "–" if layer is None else f"{layer:,}"
        if layer is not None and layers:
            layer_text += f"<small> of {layers:,}</small>"
        tiles = [
            ("Build", esc(snapshot.build_id or "–", limit=TEXT_LIMIT), "amq-k-build"),
            ("Layer", layer_text, "amq-k-layer"),
            (
                "State",
                f'<span class="amq-dot" style="background:{color}"></span>{esc(state_text)}',
                f"amq-k-state amq-feed-{feed}",
            ),
            # how old the newest data is (a stale feed says it in the state tile)
            ("Data age", duration_text(age), f"amq-k-age amq-feed-{feed}"),
            ("Active alerts", f"{int(snapshot.alerts_active or 0):,}", "amq-k-alerts"),
        ]
        if plan.get("eta_s") is not None:
            tiles.insert(2, ("Done in", duration_text(plan["eta_s"]), "amq-k-eta"))
        first = next(iter(latest), None)
        if first is not None:
            info = (profile or MachineProfile.default()).info(first)
            tiles.append(
                (
                    esc(info.short_label),
                    f"{esc(info.fmt(latest[first]))}<small> {esc(info.unit)}</small>",
                    "amq-k-sig",
                )
            )
        msgs = int(snapshot.messages_new or 0)
        self.pane.object = (
            f'<div class="amq-kiosk-tiles" data-msgs="{msgs}">'
            + "".join(
                f'<div class="amq-tile {css}"><div class="amq-tile-label">{label}</div>'
                f'<div class="amq-tile-value">{value}</div></div>'
                for label, value, css in tiles
            )
            + "</div>"
        )
