"""``panel serve dashboard/app.py``: the dashboard on the embedded default, or on real
servers when ``AMQADF_KAFKA`` / ``AMQADF_REDIS_URL`` / ``AMQADF_MONGO_URI`` /
``AMQADF_TOPIC`` / ``AMQADF_RATE`` are set (same code path).

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
from dashboard.markup import esc  # noqa: E402
from dashboard.pipeline_cache import get_monitor  # noqa: E402


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

try:
    monitor = get_monitor()
except ProfileError as exc:  # AMQADF_PROFILE names a bad profile: say so on the page too
    logging.getLogger("dashboard.app").error("bad machine profile: %s", exc)
    monitor = None
    pn.pane.HTML(
        f'<div class="amq-profile-error"><b>The machine profile cannot be used.</b> '
        f"{esc(exc)}</div>",
        styles={"color": "#b42318", "font-size": "16px", "padding": "24px"},
    ).servable(title="AM-QADF Live · bad machine profile")
if monitor is not None:
    Dashboard(monitor=monitor, kiosk=kiosk, period_ms=period, watchdog_s=watchdog).servable(
        title="AM-QADF Live" + (" · kiosk" if kiosk else "")
    )
