"""Colours, palettes and sizes shared by every view (one place to restyle the dashboard).

The voxel palette is used by both the 3D view (as a VTK colour transfer function) and
the layer map (as a Bokeh palette), so a colour means the same value everywhere.

>>> from dashboard.theme import interpolate_palette, SEVERITY_COLORS
>>> len(interpolate_palette(VOXEL_PALETTE, 16))
16
>>> SEVERITY_COLORS["critical"]
'#e5484d'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import panel as pn
from bokeh.document import Document
from panel.io.resources import LOCAL_DIST, use_cdn
from panel.theme.fast import Fast

__all__ = [
    "ACCENT",
    "OfflineFast",
    "ASSETS_DIR",
    "CSS_FILE",
    "KIOSK_CSS_FILE",
    "LOGO_FILE",
    "SEVERITY_COLORS",
    "STATE_COLORS",
    "VOXEL_PALETTE",
    "hex_to_rgb",
    "interpolate_palette",
    "read_css",
    "serve_css_locally",
    "stylesheet",
]

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
CSS_FILE = ASSETS_DIR / "dashboard.css"
KIOSK_CSS_FILE = ASSETS_DIR / "kiosk.css"
LOGO_FILE = ASSETS_DIR / "logo.svg"

ACCENT = "#0f7b8a"  # teal: the product colour (header, active controls)

SEVERITY_COLORS: dict[str, str] = {
    "critical": "#e5484d",
    "warning": "#f5a524",
    "info": "#3e9fd8",
}

STATE_COLORS: dict[str, str] = {
    "running": "#2f9e44",
    "paused": "#f5a524",
    "stopped": "#868e96",
    "replaying": "#3e9fd8",
    "error": "#e5484d",
}

#: Cool-to-hot ramp for voxel values: low values are blue, nominal teal/green, high
#: values orange/red, so hot spots stand out against an in-control build.
VOXEL_PALETTE: tuple[str, ...] = (
    "#2c3e8f",
    "#2a6fb0",
    "#1f9eab",
    "#47b881",
    "#a6cf4f",
    "#f2c84b",
    "#f08a32",
    "#d7402b",
    "#8f1d21",
)


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    """``"#rrggbb"`` as three floats in [0, 1].

    >>> hex_to_rgb("#ff8000")
    (1.0, 0.5019607843137255, 0.0)
    """
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour must look like '#rrggbb', got {color!r}")
    return tuple(int(c[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def interpolate_palette(stops: tuple[str, ...] | list[str], n: int) -> list[str]:
    """``n`` colours linearly interpolated through ``stops`` (for Bokeh colour mappers).

    >>> interpolate_palette(("#000000", "#ffffff"), 3)
    ['#000000', '#808080', '#ffffff']
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    rgb = [hex_to_rgb(s) for s in stops]
    out = []
    for i in range(n):
        pos = i / (n - 1) * (len(rgb) - 1)
        j = min(int(pos), len(rgb) - 2)
        f = pos - j
        c = [a + (b - a) * f for a, b in zip(rgb[j], rgb[j + 1], strict=True)]
        out.append("#" + "".join(f"{round(v * 255):02x}" for v in c))
    return out


def read_css(path: Path = CSS_FILE) -> str:
    """A stylesheet from ``assets/`` (default ``dashboard.css``), or "" if it is missing."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """The stylesheet, read once: Panel components live in shadow DOM, so every pane that
    shows dashboard markup carries it in its ``stylesheets``."""
    return read_css()


class OfflineFast(Fast):
    """Panel's Fast design without its web font (Open Sans, fetched from the internet):
    kiosk PCs on the shop floor are often offline, and their page then waited for and
    failed a font request on every load. The system sans-serif font is used instead.

    >>> "font" in OfflineFast._resources and not OfflineFast._resources["font"]
    True
    """

    _resources = {**Fast._resources, "font": {}}


# Panel serves a design's own scripts from a folder named after its class
OfflineFast.__name__ = Fast.__name__


def serve_css_locally(doc: Document | None = None) -> str | None:
    """Point the stylesheets of session document ``doc`` (default: this session's) at
    this server's copy of Panel's files, however the session began; returns the path
    used (None outside a served session, or when the server serves from the CDN).

    Panel sets that path (the document's ``dist_url``) only while it renders the page's
    HTML; until then, and for good in a session that Bokeh creates for a websocket
    (after it discarded the page's session as unused: a browser slow to connect, or
    reconnecting after a lost connection), every stylesheet points at Panel's CDN,
    which an offline kiosk cannot reach. Call it first in a served script.

    >>> serve_css_locally() is None  # not in a served session
    True
    """
    doc = doc if doc is not None else pn.state.curdoc
    if doc is None or doc.session_context is None or use_cdn():
        return None
    rel = pn.state.rel_path  # as Panel's own page render computes it
    return doc.template_variables.setdefault(
        "dist_url", f"{rel}/{LOCAL_DIST}" if rel else LOCAL_DIST
    )
