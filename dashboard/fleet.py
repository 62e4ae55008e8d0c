"""``panel serve dashboard/app.py dashboard/fleet.py``: the fleet overview at ``/fleet``.

It reads derived state only: ``AMQADF_STATE=redis://…`` (with ``AMQADF_STATE_PREFIX``)
names the plant's state store, which ``am-qadf worker`` processes fill; without it the
page shows the embedded pipeline's machine (started here if ``/app`` has not yet).

Query arguments: ``?kiosk=1`` for a shop-floor screen, ``?period=2000`` to refresh
less often (milliseconds, default 500), ``?watchdog=45`` as on ``/app``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# Bokeh puts this script's folder first on sys.path, where a module of the dashboard
# package could shadow another package: import the package from the project root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import panel as pn  # noqa: E402

from am_qadf.machine_profile import ProfileError  # noqa: E402
from dashboard.fleet_view import FLEET_CSS_FILE, FleetOverview, fleet_source  # noqa: E402
from dashboard.markup import esc  # noqa: E402
from dashboard.page_args import flag_arg, int_arg  # noqa: E402
from dashboard.theme import (  # noqa: E402
    ACCENT,
    LOGO_FILE,
    OfflineFast,
    read_css,
    serve_css_locally,
)

# the kiosk page: dark behind the grid
_KIOSK_PAGE_CSS = """
body { background: #0a1116; }
#header .title { font-size: 26px; }
"""

kiosk = flag_arg("kiosk")
period = int_arg("period", 500, 200, 60_000)
watchdog = int_arg("watchdog", 45, 5, 3600)

pn.extension(notifications=False, reconnect=True, design="fast")
pn.config.reconnect = True  # a screen left running for days re-attaches by itself
serve_css_locally()  # also in a session made for a websocket (no page render)

title = "AM-QADF Live · Fleet" + (" · kiosk" if kiosk else "")
try:
    source = fleet_source()
except (ProfileError, ValueError, OSError) as exc:  # bad AMQADF_PROFILE / AMQADF_STATE
    logging.getLogger("dashboard.fleet").error("the fleet state cannot be read: %s", exc)
    source = None
    pn.pane.HTML(
        f'<div class="amq-fleet-error"><b>The fleet state cannot be read.</b> {esc(exc)}</div>',
        styles={"color": "#b42318", "font-size": "16px", "padding": "24px"},
    ).servable(title=title)
if source is not None:
    view = FleetOverview(
        reader=source.reader,
        source=source.description,
        kiosk=kiosk,
        period_ms=period,
        watchdog_s=watchdog,
    )
    logo = str(LOGO_FILE) if LOGO_FILE.exists() else None
    pn.template.FastListTemplate(
        title=esc(title),  # the template puts it into the page unescaped
        main=[view],
        logo=logo,
        favicon=logo,
        header_background="#0b1f2a" if kiosk else ACCENT,
        theme="dark" if kiosk else "default",
        theme_toggle=False,
        collapsed_sidebar=True,
        main_layout=None,
        main_max_width="",
        raw_css=[read_css(FLEET_CSS_FILE) + (_KIOSK_PAGE_CSS if kiosk else "")],
        design=OfflineFast,
    ).servable(title=title)
