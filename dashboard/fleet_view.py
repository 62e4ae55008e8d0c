"""The fleet overview (``/fleet``): one tile per machine, worst first.

The page reads derived state only, through one process-wide
:class:`~am_qadf.fleet.fleet_reader.FleetReader` (:func:`fleet_source`): the state
store named by ``AMQADF_STATE`` (a plant's Redis), or without it the in-process store
the embedded pipeline publishes into. Each session has one periodic callback that
ranks the reader's cached snapshots and redraws the tiles (one HTML pane: no Bokeh
model per tile); the reader's thread never touches a model.

A tile shows the machine's name, a state badge (a machine its worker stopped
publishing for, or whose data stopped coming, says "No data for N s", never a green
"Running"), build, "layer N of M" with a progress bar where the source knows the
layer count, throughput, active alerts by severity, the newest alert (what, where,
value) and a sparkline of the main signal; it links to ``app?machine=ID`` (in the
one-process demo too, where ``app`` serves the embedded machine under its own id).
Every value from the store is escaped (:func:`dashboard.markup.esc`).

>>> from am_qadf.fleet.fleet_reader import rank
>>> from am_qadf.fleet.state_store import MachineSnapshot
>>> [m] = rank([MachineSnapshot("m1", state="running", updated_at=100.0)], now=100.0)
>>> 'href="app?machine=m1"' in tile_html(m, None, now=100.0)
True
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import panel as pn
import param

from am_qadf.fleet.fleet_reader import FleetReader, MachineStatus, silent_for
from am_qadf.fleet.state_store import StateStore

from .kiosk import Watchdog
from .markup import TEXT_LIMIT, esc, whole_number
from .metrics import METRICS, timed_store
from .pipeline_cache import embedded_state_store, get_monitor
from .state_cache import get_state_store, state_url
from .theme import ASSETS_DIR, SEVERITY_COLORS, read_css

__all__ = [
    "FLEET_CSS_FILE",
    "FleetOverview",
    "FleetSource",
    "fleet_source",
    "grid_shape",
    "newest_alert_text",
    "sparkline_svg",
    "status_badge",
    "tile_html",
]

log = logging.getLogger(__name__)

FLEET_CSS_FILE = ASSETS_DIR / "fleet.css"
_SOURCE_KEY = "am_qadf_fleet_source"
_LOCK = threading.Lock()
_SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class FleetSource:
    """The process-wide :class:`FleetReader`, how the page names what it reads (never
    with a password), and whether it is the one-process demo's own machine."""

    reader: FleetReader
    description: str
    embedded: bool


def _open_store() -> tuple[StateStore, str, bool]:
    if state_url() is not None:  # the process-wide store the machine pages read too
        # its reads counted and timed on /metrics
        return timed_store(get_state_store()), "Redis state store", False
    get_monitor()  # the embedded pipeline publishes its machine into the store
    return embedded_state_store(), "embedded pipeline (in-process state store)", True


def fleet_source() -> FleetSource:
    """The process-wide fleet source, its reader started on first use: every session
    of every fleet page reads this one cache, so the store is read once per change,
    not once per session. ``AMQADF_STATE`` (with ``AMQADF_STATE_PREFIX``) names the
    store; without it the embedded pipeline is started and its machine read."""
    with _LOCK:
        source = pn.state.cache.get(_SOURCE_KEY)
        if source is None:
            store, description, embedded = _open_store()
            source = FleetSource(FleetReader(store).start(), description, embedded)
            pn.state.cache[_SOURCE_KEY] = source
            log.info("reading the fleet from the %s", description)
        return source


def grid_shape(n: int) -> tuple[int, int]:
    """Columns and rows of a kiosk grid for ``n`` tiles: as square as a 16:9 screen
    makes sense of, so up to 8 machines fit without scrolling.

    >>> [grid_shape(n) for n in (1, 2, 3, 4, 5, 8, 9)]
    [(1, 1), (2, 1), (3, 1), (2, 2), (3, 2), (4, 2), (4, 3)]
    """
    n = max(int(n), 1)
    if n <= 3:
        return n, 1
    if n == 4:
        return 2, 2
    cols = min(4, math.ceil(n / 2)) if n <= 8 else 4
    return cols, math.ceil(n / cols)


def status_badge(m: MachineStatus, now: float) -> str:
    """What a tile's state badge says.

    >>> from am_qadf.fleet.state_store import MachineSnapshot
    >>> s = MachineSnapshot("m", state="running", data_at=80.0, updated_at=99.0)
    >>> status_badge(MachineStatus(s, "stale"), now=100.0)
    'No data for 20 s'
    >>> status_badge(MachineStatus(s, "critical"), now=100.0)
    'Critical'
    """
    if m.status == "stale":
        return f"No data for {max(silent_for(m.snapshot, now), 0.0):,.0f} s"
    if m.status == "degraded":
        return "Running, degraded" if m.snapshot.state == "running" else "Degraded"
    return m.status.capitalize()


def _coords(xs: np.ndarray, ys: np.ndarray) -> str:
    """SVG ``points`` text of coordinate arrays (formatted by numpy, not point by point)."""
    pairs = np.char.add(np.char.add(np.char.mod("%.1f", xs), ","), np.char.mod("%.1f", ys))
    return " ".join(pairs.tolist())


def sparkline_svg(
    window: tuple[np.ndarray, np.ndarray] | None,
    *,
    width: int = 240,
    height: int = 48,
    bins: int = 60,
) -> str:
    """An inline SVG sparkline of a signal window (time on x, value on y): the mean of
    each of at most ``bins`` equal runs of points as a line over their min–max band, so
    a noisy raw signal reads as its level and spread; "" when there is nothing to draw.

    >>> svg = sparkline_svg((np.arange(3.0), np.array([1.0, 3.0, 2.0])), width=10, height=4)
    >>> svg[svg.index("<polyline points="):].split('"')[1]
    '0.0,3.0 5.0,1.0 10.0,2.0'
    >>> sparkline_svg(None)
    ''
    """
    if window is None:
        return ""
    t, v = (np.asarray(a, dtype=float) for a in window)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if len(v) < 2:
        return ""
    starts = np.unique(np.linspace(0, len(v), min(bins, len(v)) + 1).astype(np.int64))[:-1]
    counts = np.diff(np.append(starts, len(v)))
    mid = np.add.reduceat(t, starts) / counts
    mean = np.add.reduceat(v, starts) / counts
    low, high = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
    span_t = float(mid[-1] - mid[0]) or 1.0
    lo, hi = float(v.min()), float(v.max())
    span_v = (hi - lo) or 1.0
    pad = 1.0  # the stroke's half width stays inside the box
    xs = (mid - mid[0]) / span_t * width

    def y(values: np.ndarray) -> np.ndarray:
        return pad + (hi - values) / span_v * (height - 2 * pad)

    band = ""
    if (high > low).any():  # runs of several points: their spread
        band_x = np.concatenate([xs, xs[::-1]])
        band_y = np.concatenate([y(high), y(low)[::-1]])
        band = f'<polygon class="amq-fl-band" points="{_coords(band_x, band_y)}"/>'
    return (
        f'<svg class="amq-fl-spark" viewBox="0 0 {width} {height}" preserveAspectRatio="none"'
        f' role="img" aria-label="recent values">{band}<polyline points="'
        f'{_coords(xs, y(mean))}" fill="none" vector-effect="non-scaling-stroke"/></svg>'
    )


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def newest_alert_text(alert: dict[str, Any] | None) -> tuple[str, str, str]:
    """An alert event as a tile shows it: ``(what, where, value)``, plain text (escape it).

    >>> newest_alert_text({"rule": "threshold_high", "metric": "temp", "value": 2411.52,
    ...                    "layer": 40, "x": 12.04, "y": 80.5})
    ('threshold_high · temp', 'layer 40 · x 12.0 y 80.5 mm', '2,412')
    >>> newest_alert_text(None)
    ('', '', '')
    """
    if not isinstance(alert, dict):
        return "", "", ""
    what = alert.get("message") or " · ".join(
        str(alert[k]) for k in ("rule", "metric") if alert.get(k)
    )
    where = []
    layer = whole_number(alert.get("layer"))
    if layer is not None:
        where.append(f"layer {layer}")
    x, y = alert.get("x"), alert.get("y")
    if all(isinstance(c, int | float) and math.isfinite(c) for c in (x, y)):
        where.append(f"x {x:.1f} y {y:.1f} mm")
    return str(what), " · ".join(where), _number(alert.get("value"))


def tile_html(
    m: MachineStatus,
    window: tuple[np.ndarray, np.ndarray] | None,
    *,
    now: float,
    app_path: str = "app",
) -> str:
    """One machine's tile, every value escaped: a link to ``app_path?machine=ID``."""
    s = m.snapshot
    name = s.name or s.machine_id
    href = f"{app_path}?machine={quote(s.machine_id, safe='')}"
    layer = whole_number(s.layer)
    layers = whole_number(s.layers)
    layer_text = "Layer –" if layer is None else f"Layer <b>{layer:,}</b>"
    if layer is not None and layers:
        layer_text += f" of {layers:,}"
    progress = ""
    if isinstance(s.progress, int | float) and math.isfinite(s.progress):
        pct = min(max(float(s.progress), 0.0), 1.0) * 100
        progress = (
            f'<div class="amq-fl-progress" data-progress="{pct:.0f}">'
            f'<div style="width:{pct:.1f}%"></div></div>'
        )
    chips = (
        "".join(
            f'<span class="amq-fl-chip amq-fl-{sev}" data-{sev}="{n}">{n} {sev}</span>'
            for sev in _SEVERITIES
            if (n := int(s.alerts_active.get(sev, 0) or 0)) > 0
        )
        or '<span class="amq-fl-chip amq-fl-none">no active alert</span>'
    )
    what, where, value = newest_alert_text(s.newest_alert)
    newest = ""
    if what:
        sev = s.newest_alert.get("severity") if isinstance(s.newest_alert, dict) else ""
        sev = sev if sev in SEVERITY_COLORS else "info"
        newest = (
            f'<div class="amq-fl-alert amq-fl-alert-{sev}"'
            f' title="{esc(what, limit=TEXT_LIMIT)} {esc(where)} {esc(value)}">'
            f'<div class="amq-fl-what">{esc(what, limit=80)}</div>'
            f'<div class="amq-fl-where"><span>{esc(where)}</span>'
            f'<span class="amq-fl-value">{esc(value)}</span></div></div>'
        )
    # a machine nothing is heard of has no current rate: its last one would mislead
    rate = (
        '<span class="amq-fl-rate" data-rate=""><b>–</b> msg/s</span>'
        if m.status == "stale"
        else f'<span class="amq-fl-rate" data-rate="{float(s.rate):.0f}">'
        f"<b>{float(s.rate):,.0f}</b> msg/s</span>"
    )
    latest = ""
    if window is not None and len(window[1]):
        latest = f"{esc(s.signal, limit=40)} {esc(_number(float(window[1][-1])))}"
    return (
        f'<a class="amq-fl-tile amq-fl-st-{esc(m.status)}" href="{esc(href)}"'
        f' data-machine="{esc(s.machine_id)}" data-status="{esc(m.status)}">'
        '<div class="amq-fl-head">'
        f'<span class="amq-fl-name" title="{esc(s.machine_id)}">{esc(name, limit=60)}</span>'
        f'<span class="amq-fl-badge">{esc(status_badge(m, now))}</span></div>'
        '<div class="amq-fl-row">'
        f'<span class="amq-fl-build">Build <b>{esc(s.build_id or "–", limit=40)}</b></span>'
        f'<span class="amq-fl-layer">{layer_text}</span></div>'
        f"{progress}"
        '<div class="amq-fl-row">'
        f"{rate}"
        f'<span class="amq-fl-chips">{chips}</span></div>'
        f"{newest}"
        f'<div class="amq-fl-signal"><span class="amq-fl-latest">{latest}</span>'
        f"{sparkline_svg(window)}</div>"
        "</a>"
    )


def summary_html(machines: Sequence[MachineStatus], source: str, error: str | None = None) -> str:
    """The line above the tiles: how many machines in which status, the source, and
    why the source cannot be read now (``error``; the tiles then show the last state,
    ageing into stale).

    >>> from am_qadf.fleet.state_store import MachineSnapshot
    >>> m = MachineStatus(MachineSnapshot("m1"), "stale")
    >>> html = summary_html([m], "x")
    >>> '<b>1</b> machine · <span class="amq-fl-sum-stale">1 stale</span>' in html
    True
    """
    counts = Counter(m.status for m in machines)
    parts = [f"<b>{len(machines)}</b> machine{'s' if len(machines) != 1 else ''}"]
    parts += [
        f'<span class="amq-fl-sum-{st}">{counts[st]} {st}</span>'
        for st in ("critical", "stale", "warning", "paused", "degraded")
        if counts[st]
    ]
    if error:
        parts.append(
            f'<span class="amq-fl-error" title="{esc(error)}">'
            f"{esc(source or 'state store')} not answering</span>"
        )
    return (
        f'<div class="amq-fl-summary">{" · ".join(parts)}'
        f'<span class="amq-fl-source">{esc(source)}</span></div>'
    )


class FleetOverview(pn.viewable.Viewer):
    """The fleet page: one tile per machine from ``reader``, worst first, redrawn by one
    periodic callback per session. ``kiosk`` lays the tiles out to fill a shop-floor
    screen (dark, large type, no scrolling for up to 8 machines)."""

    reader = param.ClassSelector(class_=FleetReader, doc="The process-wide fleet reader.")

    kiosk = param.Boolean(default=False, doc="Shop-floor layout: fills the screen.")

    period_ms = param.Integer(default=500, bounds=(200, 60_000))

    watchdog_s = param.Integer(default=45, bounds=(5, 3600))

    app_path = param.String(default="app", doc="The machine page tiles link to.")

    source = param.String(default="", doc="Where the state comes from (shown).")

    ticks = param.Integer(default=0, doc="Refreshes done by this session.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.reader is None:
            src = fleet_source()
            self.reader = src.reader
            self.source = self.source or src.description
        css = read_css(FLEET_CSS_FILE)
        self.pane = pn.pane.HTML(
            "",
            sizing_mode="stretch_width",
            stylesheets=[css] if css else [],
            css_classes=["amq-fleet-pane"],
        )
        self.watchdog = Watchdog(timeout_s=self.watchdog_s)
        self._callback: Any = None
        self._closed = False
        self._shown = 0

    def render(self, now: float | None = None) -> str:
        """The page's HTML now: summary line and the grid of tiles."""
        now = time.time() if now is None else now
        machines = self.reader.overview(now=now)
        self._shown = len(machines)
        if not machines:
            body = (
                '<div class="amq-fl-empty">No machine has published its state yet '
                f"(reading the {esc(self.source or 'state store')}).</div>"
            )
        else:
            body = "".join(self._tile(m, now) for m in machines)
        cols, rows = grid_shape(len(machines))
        mode = "kiosk" if self.kiosk else "page"
        return (
            f'<div class="amq-fleet amq-fleet-{mode}" style="--cols:{cols};--rows:{rows}"'
            f' data-machines="{len(machines)}" data-version="{self.reader.version}">'
            f"{summary_html(machines, self.source, self.reader.error)}"
            f'<div class="amq-fl-grid">{body}</div></div>'
        )

    def _tile(self, m: MachineStatus, now: float) -> str:
        try:
            return tile_html(
                m,
                self.reader.main_window(m.machine_id),
                now=now,
                app_path=self.app_path,
            )
        except Exception:  # one malformed snapshot: that tile says so, the others show
            log.exception("drawing machine %s's tile failed", m.machine_id)
            return (
                f'<div class="amq-fl-tile amq-fl-st-{esc(m.status)}"'
                f' data-machine="{esc(m.machine_id)}" data-status="{esc(m.status)}">'
                f'<div class="amq-fl-head"><span class="amq-fl-name">{esc(m.machine_id)}</span>'
                '<span class="amq-fl-badge">Unreadable state</span></div></div>'
            )

    def tick(self) -> None:
        """Redraw the tiles (session thread); the ages in the badges move every tick."""
        if self._closed:
            return
        t0 = time.perf_counter()
        try:
            html = self.render()
        except Exception:  # a malformed snapshot must not stop the page
            log.exception("rendering the fleet failed")
            return
        with pn.io.hold():
            if html != self.pane.object:
                self.pane.object = html
            self.watchdog.heartbeat += 1
        self.ticks += 1
        METRICS.observe_refresh("fleet", time.perf_counter() - t0)
        METRICS.set_machines_shown("fleet", self._shown)

    def start(self) -> None:
        """Start this session's periodic refresh (idempotent)."""
        if self._callback is not None or self._closed:
            return
        self.tick()
        self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: self.stop())

    def stop(self) -> None:
        """Stop refreshing (the session ended)."""
        self._closed = True
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self) -> pn.viewable.Viewable:
        self.start()
        return pn.Column(self.pane, self.watchdog, sizing_mode="stretch_width", margin=0)
