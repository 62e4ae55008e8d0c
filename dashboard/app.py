"""``panel serve dashboard/app.py``: the dashboard on the embedded default, or on real
servers when ``AMQADF_KAFKA`` / ``AMQADF_REDIS_URL`` / ``AMQADF_MONGO_URI`` /
``AMQADF_TOPIC`` / ``AMQADF_RATE`` are set (same code path).

With ``AMQADF_STATE`` set (``redis://…``), the page is the dashboard of fleet machine
``?machine=ID`` read from the state store its worker publishes to
(:class:`~am_qadf.fleet.remote_machine.RemoteMachine`); an unknown or missing id gets
a page listing the known machines. Without it, the page is the embedded pipeline's,
also under ``?machine=`` its own id (as the fleet page links to it); another id gets a
page saying so, with a link to the embedded machine.

Query arguments: ``?kiosk=1`` for the shop-floor layout, ``?period=1000`` to refresh
less often (milliseconds), ``?watchdog=45`` to reload a page that got no refresh for
that many seconds once the server answers again (after a restart).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# ``panel serve dashboard/app.py`` runs this file as a script: the project root goes
# first on sys.path so ``dashboard`` is this checkout's package, not an installed copy.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import holoviews as hv  # noqa: E402
import panel as pn  # noqa: E402

from am_qadf.machine_profile import ProfileError  # noqa: E402
from dashboard import Dashboard  # noqa: E402
from dashboard.access import session_policy  # noqa: E402
from dashboard.markup import esc  # noqa: E402
from dashboard.pipeline_cache import get_monitor, not_this_machine_html  # noqa: E402
from dashboard.state_cache import (  # noqa: E402
    get_remote_machine,
    get_state_store,
    machine_choice_html,
    state_url,
)
from dashboard.theme import serve_css_locally  # noqa: E402


def _arg(name: str, default: str = "") -> str:
    values = pn.state.session_args.get(name) if pn.state.session_args else None
    return values[0].decode(errors="replace") if values else default


kiosk = _arg("kiosk", "0").lower() in ("1", "true", "yes", "on")
try:
    period = max(100, min(60_000, int(_arg("period", "500"))))
except ValueError:
    period = 500
try:
    watchdog = max(5, min(3600, int(_arg("watchdog", "45"))))
except ValueError:
    watchdog = 45

pn.extension("vtk", "tabulator", notifications=True, reconnect=True, design="fast")
hv.extension("bokeh", logo=False)
pn.config.reconnect = True  # a screen left running for days re-attaches by itself
serve_css_locally()  # also in a session made for a websocket (no page render)

log = logging.getLogger("dashboard.app")


def _message(html: str, title: str, color: str = "#b42318") -> None:
    pn.pane.HTML(html, styles={"color": color, "font-size": "16px", "padding": "24px"}).servable(
        title=title
    )


def _fleet_machine(machine_id: str) -> None:
    """The dashboard of one fleet machine, read from the state store (``?machine=``)."""
    try:
        remote = get_remote_machine(machine_id) if machine_id else None
        known = [] if remote is not None else get_state_store().machines()
    except ProfileError as exc:
        log.error("bad machine profile: %s", exc)
        _message(
            f'<div class="amq-profile-error"><b>The machine profile cannot be used.</b> '
            f"{esc(exc)}</div>",
            "AM-QADF Live · bad machine profile",
        )
        return
    except (KeyError, ValueError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        try:
            known = get_state_store().machines()
        except Exception as down:  # the store is down: say so rather than list nothing
            _message(f"The fleet state store cannot be read: {esc(down)}", "AM-QADF Live")
            return
        _message(machine_choice_html(machine_id, known, str(reason)), "AM-QADF Live · machines")
        return
    except Exception as exc:  # the store is not reachable
        log.exception("reading the fleet state failed")
        _message(f"The fleet state store cannot be read: {esc(exc)}", "AM-QADF Live")
        return
    if remote is None:
        _message(machine_choice_html("", known), "AM-QADF Live · machines", color="inherit")
        return
    policy = session_policy()
    name = remote.monitor_snapshot().name or machine_id
    Dashboard(
        monitor=remote.with_policy(policy),
        policy=policy,
        kiosk=kiosk,
        period_ms=period,
        watchdog_s=watchdog,
        title=f"AM-QADF Live · {name}",
    ).servable(title=f"{name} · AM-QADF Live" + (" · kiosk" if kiosk else ""))


machine = _arg("machine", "").strip()
if state_url() is not None:
    _fleet_machine(machine)
else:  # the embedded default: this process's own pipeline (under its own id)
    try:
        monitor = get_monitor()
    except ProfileError as exc:  # AMQADF_PROFILE names a bad profile: say so on the page
        log.error("bad machine profile: %s", exc)
        monitor = None
        _message(
            f'<div class="amq-profile-error"><b>The machine profile cannot be used.</b> '
            f"{esc(exc)}</div>",
            "AM-QADF Live · bad machine profile",
        )
    other = None if monitor is None else not_this_machine_html(machine, monitor.machine_id)
    if other is not None:
        _message(other, "AM-QADF Live · machines", color="inherit")
    elif monitor is not None:
        Dashboard(monitor=monitor, kiosk=kiosk, period_ms=period, watchdog_s=watchdog).servable(
            title="AM-QADF Live" + (" · kiosk" if kiosk else "")
        )
