"""The AM-QADF Live dashboard: every view of one monitoring pipeline, in one page.

``Dashboard`` is a :class:`panel.viewable.Viewer`. Each browser session (or notebook
output) gets its own views and ONE periodic callback that reads a snapshot of the
shared pipeline and lets every view pull what changed; the callback stops, and the
views release their change cursors and render window, when the session ends.

In a notebook::

    from dashboard import Dashboard
    Dashboard.embedded()          # simulated build, in-process broker, embedded storage

From a terminal: ``panel serve dashboard/app.py`` (``?kiosk=1`` for a shop-floor screen).

>>> Dashboard.embedded().servable()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import holoviews as hv
import panel as pn
import param

from am_qadf.access_policy import AccessPolicy
from am_qadf.fleet.remote_machine import RemoteMachine
from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import MonitorSnapshot
from am_qadf.streaming import to_utc

from .access import session_policy
from .alerts_view import AlertsView
from .controls import Controls
from .health_view import HealthView
from .history_view import HistoryView
from .kiosk import KioskStatus, Watchdog
from .layer_map import LayerMap
from .live_signals import LiveSignals
from .loop_share import VIEWS_SHARE
from .markup import TEXT_LIMIT, esc, whole_number
from .metrics import METRICS
from .pipeline_cache import get_monitor, monitor_config
from .signals import profile_of
from .spc_view import SPCView
from .theme import ACCENT, KIOSK_CSS_FILE, LOGO_FILE, OfflineFast, read_css
from .view_base import MonitorView, feed_status, html_pane, outside_grid_text
from .voxel_view import VoxelView

__all__ = ["NOTEBOOK_EXTENSIONS", "Dashboard", "load_notebook_extensions"]

log = logging.getLogger(__name__)

# Bokeh plots draw on 2D canvases: a browser allows only a handful of WebGL contexts
# per page and the 3D view needs one (with WebGL plots it was lost, "context lost").
hv.renderer("bokeh").webgl = False


_CARD = {
    "background": "var(--amq-card, #ffffff)",
    "border": "1px solid var(--amq-line, #dde3e8)",
    "border-radius": "8px",
    "box-shadow": "0 1px 2px rgba(16, 24, 40, 0.06)",
    "padding": "2px 8px 8px 8px",
}


def _card(title: str, body: Any, css: str, **kw: Any) -> pn.Column:
    head = html_pane(f'<div class="amq-card-title">{esc(title)}</div>', margin=(0, 0, 4, 0))
    return pn.Column(
        head,
        body,
        css_classes=["amq-card", css],
        styles=_CARD,
        sizing_mode="stretch_both",
        margin=6,
        **kw,
    )


@contextlib.contextmanager
def _models_frozen(doc: Any = None) -> Iterator[None]:
    """Hold the document's model graph while views update, and walk it afterwards only
    if an update asked for that (a model added or removed). Bokeh's own
    ``models.freeze()`` walks every model of the document when it ends, whether or not
    anything changed: with the machine page's plots that walk was about a seventh of
    the server's time per refresh, and most refreshes only send new data.

    >>> from bokeh.document import Document
    >>> from bokeh.models import ColumnDataSource, Div
    >>> doc = Document(); doc.add_root(Div(text="a"))
    >>> with _models_frozen(doc):
    ...     doc.roots[0].text = "b"  # data only: no walk of the model graph
    >>> src = ColumnDataSource()
    >>> with _models_frozen(doc):
    ...     doc.roots[0].tags = [src]  # a model added: the graph is walked at the end
    >>> doc.get_model_by_id(src.id) is src
    True
    """
    doc = doc if doc is not None else pn.state.curdoc
    models = getattr(doc, "models", None)
    if models is None:
        yield
        return
    if not (hasattr(models, "_push_freeze") and hasattr(models, "_freeze_count")):
        with models.freeze():  # a Bokeh without these internals: its own freeze
            yield
        return
    if "invalidate" in vars(models):  # nested in another of ours: the outer one walks
        yield
        return
    asked: list[bool] = []
    models._push_freeze()  # inner freezes (HoloViews, Panel) then do not walk either
    models.invalidate = lambda: asked.append(True)  # what a graph change calls
    try:
        yield
    finally:
        del models.invalidate
        models._freeze_count -= 1
        if asked:
            models.invalidate()  # walks now, unless someone else still holds it


#: Panel extensions the dashboard's components need in a notebook.
NOTEBOOK_EXTENSIONS = ("vtk", "tabulator")


def load_notebook_extensions() -> bool:
    """In a Jupyter kernel, load the Panel extensions the dashboard needs unless they
    are loaded already (so ``Dashboard.embedded()`` renders in a fresh notebook without
    a ``pn.extension(...)`` cell first); True if it loaded them. Elsewhere (a server, a
    script) it does nothing.

    >>> load_notebook_extensions()  # not in a notebook here
    False
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    loaded = set(pn.extension._loaded_extensions)
    if pn.extension._loaded and loaded.issuperset(NOTEBOOK_EXTENSIONS):
        return False
    pn.extension(*NOTEBOOK_EXTENSIONS)
    return True


class Dashboard(pn.viewable.Viewer):
    """Live signals, SPC, 3D voxels, layer map, alerts, controls, history and health.

    Args:
        monitor: the machine shown, a :class:`~am_qadf.machine_view.MachineSource`: the
            shared :class:`~am_qadf.live_monitor.LiveMonitor` (default: the process-wide
            one from :func:`dashboard.pipeline_cache.get_monitor`) or a fleet machine's
            :class:`~am_qadf.fleet.remote_machine.RemoteMachine`.
        kiosk: shop-floor layout (dark, large type, no controls, self-reloading).
        period_ms: refresh period of this session.
    """

    monitor = param.Parameter(default=None)

    kiosk = param.Boolean(default=False)

    policy = param.ClassSelector(
        class_=AccessPolicy,
        default=None,
        allow_None=True,
        doc="Who may act (default: from AMQADF_OPERATORS and the login configuration).",
    )

    period_ms = param.Integer(default=500, bounds=(100, 60_000))

    watchdog_s = param.Integer(
        default=45,
        bounds=(5, 3600),
        doc="Reload the page this long after the last refresh, once the server answers.",
    )

    tick_budget_ms = param.Number(
        default=150.0,
        bounds=(0.0, None),
        doc="Once a refresh has taken this long, the views not yet refreshed wait for the "
        "next one (views take turns, so each still refreshes every few ticks under load, "
        "and the header is always current); 0: refresh every view every tick.",
    )

    title = param.String(default="AM-QADF Live")

    ticks = param.Integer(default=0, doc="Refreshes done by this session.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.monitor is None:
            self.monitor = get_monitor()
        self.session_id = uuid.uuid4().hex[:12]
        user = pn.state.user if pn.state.curdoc is not None else None
        common = {
            "monitor": self.monitor,
            "kiosk": self.kiosk,
            "viewer_id": self.session_id,
            "user": user,
            "policy": self.policy or session_policy(),
        }
        self.profile = profile_of(self.monitor)
        live_signals = list(self.profile.live_signals)
        live_signals = live_signals[:2] if self.kiosk else live_signals
        self.live = LiveSignals(
            **common,
            window_seconds=30.0,
            signals=live_signals,
            plot_height=None if self.kiosk else 92,
        )
        self.voxels = VoxelView(**common, update_seconds=2.0 if self.kiosk else 1.0)
        self.layer_map = LayerMap(**common, update_seconds=2.0 if self.kiosk else 1.0)
        self.alerts = AlertsView(**common, max_rows=12 if self.kiosk else 200)
        self.views: list[MonitorView] = [self.live, self.voxels, self.layer_map, self.alerts]
        if not self.kiosk:
            self.spc = SPCView(**common)
            self.controls = Controls(**common)
            self.history = HistoryView(**common)
            self.health = HealthView(**common)
            self.views += [self.spc, self.controls, self.history, self.health]
        else:
            self.kiosk_status = KioskStatus()
        # every page, not only kiosks: after a server restart its session is gone
        self.watchdog = Watchdog(timeout_s=self.watchdog_s)
        self.header = html_pane("", css_classes=["amq-header-status"], sizing_mode="stretch_width")
        self.timings: dict[str, float] = {}
        self._callback: Any = None
        self._views_pending = False
        self._last_snap: MonitorSnapshot | None = None
        self._tab_views: list[list[MonitorView]] = []  # per tab of the main page
        self._next_view = 0  # where the next refresh starts when the last ran out of time
        self._closed = False

    # -- construction helpers -----------------------------------------------------------
    @classmethod
    def embedded(cls, profile: MachineProfile | str | None = None, **params: Any) -> Dashboard:
        """A ready dashboard on the embedded default (simulated build streamed over
        ``memory://``, embedded storage; ``AMQADF_*`` variables still apply). In a
        notebook it loads the Panel extensions it needs itself.

        ``profile`` (a :class:`MachineProfile` or a TOML path; default
        ``AMQADF_PROFILE``, else the simulator's) says which machine is monitored. The
        pipeline is one per process: a later call with another profile gets a
        :class:`ValueError` naming both.
        """
        load_notebook_extensions()
        cfg = monitor_config()
        if profile is not None:
            cfg.profile = MachineProfile.resolve(profile)
        mon = get_monitor(cfg)
        if profile is not None and mon.profile != cfg.profile:
            raise ValueError(
                f"this process already monitors {mon.profile.source}; one pipeline per "
                f"process (asked for {cfg.profile.source})"
            )
        return cls(monitor=mon, **params)

    # -- ticking ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Read one snapshot, show the status line, then let every view pull what
        changed (session thread)."""
        if self._closed:
            return
        t_start = time.perf_counter()
        snap = self._last_snap = self.monitor.monitor_snapshot()
        self.timings = {"snapshot": (time.perf_counter() - t_start) * 1e3}
        with pn.io.hold():
            self._update_header(snap)
            if self.kiosk:
                self.kiosk_status.update(snap, self.live.latest_values(), self.profile)
            self.watchdog.heartbeat += 1
        if self._views_pending or not VIEWS_SHARE.allows():
            return  # the views' turn comes on a later tick; the status line went out
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            # The status line goes to the browser on its own, now: what the page says
            # is current must not wait for the plots. The views follow in a callback
            # of their own, right after (at most one waiting at a time).
            self._views_pending = True
            doc.add_next_tick_callback(lambda: self._refresh_all(snap, t_start))
        else:
            self._refresh_all(snap, t_start)

    def _refresh_all(self, snap: MonitorSnapshot, t_start: float) -> None:
        self._views_pending = False
        if self._closed:
            return
        # one websocket message for all the views, and Bokeh re-walks the document's
        # models once instead of once per plot update
        t0 = time.perf_counter()
        with pn.io.hold(), _models_frozen():
            self._refresh_views(snap, t0)
        VIEWS_SHARE.spend(time.perf_counter() - t0)
        self.ticks += 1
        total = (time.perf_counter() - t_start) * 1e3
        METRICS.observe_refresh("app", total / 1e3)
        if total > 1000:
            slow = ", ".join(f"{k} {v:.0f} ms" for k, v in self.timings.items() if v >= 20)
            log.warning("session %s: refresh took %.0f ms (%s)", self.session_id, total, slow)

    def _refresh_views(self, snap: MonitorSnapshot, t_start: float) -> None:
        n = len(self.views)
        budget_s = self.tick_budget_ms / 1e3 if self.ticks else 0.0  # the first tick: all
        for i in range(n):
            view = self.views[(self._next_view + i) % n]
            if not view.shown:
                continue
            t0 = time.perf_counter()
            try:
                view.refresh(snap)
            except Exception:  # one broken view must not stop the others
                log.exception("refreshing %s failed", type(view).__name__)
            self.timings[type(view).__name__] = (time.perf_counter() - t0) * 1e3
            if budget_s and i < n - 1 and time.perf_counter() - t_start > budget_s:
                self._next_view = (self._next_view + i + 1) % n  # the rest go first next time
                return

    def _update_header(self, snap: MonitorSnapshot) -> None:
        feed, state_text, color = feed_status(snap)
        state = snap.state or "stopped"
        layer = whole_number(snap.current_layer)
        msgs = int(snap.messages_new or 0)
        replayed = int(snap.messages_replayed or 0)
        voxels = int(snap.occupied_voxels or 0)
        alerts = int(snap.alerts_active or 0)
        build = esc(snap.build_id or "–", limit=TEXT_LIMIT)
        machine = esc(self.profile.machine.title, limit=TEXT_LIMIT)
        again = f' <span class="amq-hdr-replayed">+{replayed:,} replayed</span>' if replayed else ""
        items = [
            ("machine", esc(self.profile.machine.id, limit=TEXT_LIMIT), f"<b>{machine}</b>"),
            ("build", build, f"Build <b>{build}</b>"),
            ("layer", "" if layer is None else layer,
             f"Layer <b>{'–' if layer is None else layer}</b>"),
            ("state", esc(state),
             f'<span class="amq-dot" style="background:{color}"></span>'
             f"{esc(state_text)}"),
            ("msgs", msgs, f"<b>{msgs:,}</b> msgs{again}"),
            ("voxels", voxels, f"<b>{voxels:,}</b> voxels"),
            ("alerts", alerts, f"<b>{alerts:,}</b> active alerts"),
        ]  # fmt: skip
        # the newest message's own time and the time this line left the server (epoch
        # ms): lets a page (or a benchmark) see how old what it shows is, and where
        # that age comes from
        try:
            newest = f' data-newest="{to_utc(snap.newest_timestamp).timestamp() * 1e3:.0f}"'
        except (TypeError, ValueError, OverflowError):
            newest = ""
        newest += f' data-sent="{time.time() * 1e3:.0f}" data-replayed="{replayed}"'
        extra = {"msgs": newest, "state": f' data-feed="{esc(feed)}"'}
        if outside := outside_grid_text(snap):
            n = int(snap.points_outside_grid or 0)
            # short in the header; the whole line is its tooltip and on Health
            items.append(("outside", n, f"⚠ <b>{n:,}</b> points outside the plate"))
            extra["outside"] = f' title="{esc(outside)}"'
        self.header.object = (
            '<div class="amq-hdr">'
            + "".join(
                f'<span class="amq-hdr-item amq-hdr-{k}" data-{k}="{v}"'
                f"{extra.get(k, '')}>{body}</span>"
                for k, v, body in items
            )
            + "</div>"
        )

    def start(self) -> None:
        """Start this session's periodic refresh (idempotent)."""
        if self._callback is not None:
            return
        self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)
        METRICS.set_machines_shown("app", 1)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: self.stop())

    def stop(self) -> None:
        """Stop refreshing and release per-session resources."""
        if self._closed:
            return
        self._closed = True
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        for view in self.views:
            try:
                view.close()
            except Exception:
                log.exception("closing %s failed", type(view).__name__)

    # -- layouts ----------------------------------------------------------------------------
    def _overview(self) -> pn.viewable.Viewable:
        grid = pn.GridSpec(sizing_mode="stretch_width", height=1000, css_classes=["amq-grid"])
        grid[0:11, 0:6] = _card("Live signals · last 30 s", self.live, "amq-card-live")
        grid[0:11, 6:12] = _card("Build so far · 3D voxels", self.voxels, "amq-card-voxels")
        grid[11:20, 0:4] = _card("Layer map", self.layer_map, "amq-card-layer")
        grid[11:20, 4:12] = _card("Alerts", self.alerts, "amq-card-alerts")
        return grid

    def _main(self) -> pn.viewable.Viewable:
        # Views that live only in one tab are refreshed only while it is shown. History
        # (it delivers finished queries) and Health (its summary is in the sidebar)
        # keep refreshing.
        tab_views: list[tuple[str, Any, list[MonitorView]]] = [
            ("Overview", self._overview(), [self.live, self.voxels, self.layer_map, self.alerts]),
            ("SPC", pn.Column(self.spc, height=720, sizing_mode="stretch_width"), [self.spc]),
            ("History", self.history, []),
            ("Health", self.health, []),
        ]
        tabs = pn.Tabs(
            *[(title, body) for title, body, _ in tab_views],
            dynamic=False,  # the 3D pane must not be torn down on every tab switch
            sizing_mode="stretch_width",
            css_classes=["amq-tabs"],
        )
        self._tab_views = [views for _, _, views in tab_views]
        tabs.param.watch(lambda e: self.show_tab(e.new), "active")
        self.show_tab(tabs.active)
        return tabs

    def show_tab(self, index: int) -> None:
        """Mark the views of tab ``index`` shown and the other tabs' views hidden; the
        views that come into sight catch up at once (session thread)."""
        tab = self._tab_views[index] if 0 <= index < len(self._tab_views) else []
        appeared = [view for view in tab if not view.shown]
        for i, views in enumerate(self._tab_views):
            for view in views:
                view.shown = i == index
        if self._last_snap is not None and not self._closed:
            for view in appeared:
                view.refresh(self._last_snap)

    def _sidebar(self) -> list[Any]:
        if isinstance(self.monitor, RemoteMachine):
            flow = (
                "Data flow: machine → Kafka → its worker (voxel grid, SPC, alerts) → "
                "state store → this page, which reads derived state only; operator actions "
                "go to the machine's worker."
            )
        else:
            flow = (
                "Data flow: machine → Kafka → streaming client → voxel grid, SPC, alerts → "
                "this page. Each session reads snapshots; pause, replay and history queries "
                "call the library directly."
            )
        about = html_pane(f'<div class="amq-about">{flow}</div>')
        return [
            html_pane('<div class="amq-side-title">Pipeline</div>'),
            self.controls,
            html_pane('<div class="amq-side-title">Connections</div>'),
            self.health.summary(),
            about,
        ]

    def _kiosk_body(self) -> pn.viewable.Viewable:
        # A kiosk cannot scroll: the body fills the screen below the page header
        # (assets/kiosk.css sets its height), the banner and tiles take what they need
        # and the grid of cards shrinks to the rest; alerts get the full width.
        grid = pn.GridSpec(
            sizing_mode="stretch_both", min_height=300, css_classes=["amq-kiosk-grid"]
        )
        grid[0:6, 0:5] = _card("Live signals · last 30 s", self.live, "amq-card-live")
        grid[0:6, 5:9] = _card("Build so far", self.voxels, "amq-card-voxels")
        grid[0:6, 9:12] = _card("Current layer", self.layer_map, "amq-card-layer")
        grid[6:10, 0:12] = _card("Active alerts", self.alerts, "amq-card-alerts")
        return pn.Column(
            self.alerts.banner,  # the newest unacknowledged critical alert, full width
            self.kiosk_status.pane,
            grid,
            self.watchdog,
            sizing_mode="stretch_both",
            css_classes=["amq-kiosk"],
        )

    def __panel__(self) -> pn.viewable.Viewable:
        self.start()
        if self.kiosk:
            return self._kiosk_body()
        return pn.Column(
            self.header,
            pn.Row(pn.Column(*self._sidebar(), width=300), self._main()),
            self.watchdog,
            sizing_mode="stretch_width",
        )

    def template(self) -> pn.template.BaseTemplate:
        """The page: a FastListTemplate with the pipeline status in the header."""
        self.start()
        css = read_css() + ("\n" + read_css(KIOSK_CSS_FILE) if self.kiosk else "")
        common = {
            "title": esc(self.title),  # the template puts it into the page unescaped
            "logo": str(LOGO_FILE) if LOGO_FILE.exists() else None,
            "favicon": str(LOGO_FILE) if LOGO_FILE.exists() else None,
            "header_background": "#0b1f2a" if self.kiosk else ACCENT,
            "raw_css": [css] if css else [],
            "design": OfflineFast,
        }
        if self.kiosk:
            common["title"] = esc(f"{self.profile.machine.title} · {self.title}")
            return pn.template.FastListTemplate(
                main=[self._kiosk_body()],
                theme="dark",
                theme_toggle=False,
                collapsed_sidebar=True,
                main_layout=None,
                main_max_width="",
                **common,
            )
        return pn.template.FastListTemplate(
            main=[self._main(), self.watchdog],
            sidebar=self._sidebar(),
            header=[self.header],
            sidebar_width=300,
            main_layout=None,
            theme_toggle=False,
            **common,
        )

    def servable(self, title: str | None = None, *args: Any, **kwargs: Any) -> Any:
        """Serve the templated page (``panel serve``)."""
        return self.template().servable(title=title)
