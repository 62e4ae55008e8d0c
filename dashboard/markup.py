"""The one way data gets into the dashboard's HTML: escaped, as text.

Whatever a view shows may have come from the line: field names, build and machine ids,
string values, alert messages, error texts. The views build their HTML from constant
markup and :func:`esc` of every value; nothing from a message is ever markup. Tabulator
renders column titles (and their tooltips) as HTML, so a table whose columns come from
data takes its titles from :func:`column_titles`; cells shown with Tabulator's ``html``
formatter hold :func:`esc` output. Plots and widgets (Bokeh titles, axis labels, hover
tooltips, select options) draw text, not HTML, and need nothing.

>>> esc('<img src=x onerror="alert(1)">')
'&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
>>> esc(None), esc(3)
('', '3')
>>> esc("x" * 10, limit=4)
'xxx…'
>>> whole_number(12.0), whole_number([3]), whole_number(float("nan"))
(12, None, None)
>>> column_titles(["temperature", "<b>"])
{'temperature': 'temperature', '<b>': '&lt;b&gt;'}
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["TEXT_LIMIT", "column_titles", "esc", "whole_number"]

#: Most characters of one value shown in a status line, tile or error text.
TEXT_LIMIT = 200


def esc(value: Any, *, limit: int | None = None) -> str:
    """``value`` as text, safe inside an element or a double-quoted attribute.

    None is the empty string. ``limit`` caps the characters shown (the rest is cut and
    marked with "…"), for values a message may make arbitrarily long, such as a build id
    shown on every refresh.
    """
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return html.escape(text, quote=True)


def column_titles(columns: Iterable[Any]) -> dict[Any, str]:
    """Tabulator ``titles`` for ``columns``: each column's name, escaped (Tabulator puts
    titles into the page as HTML, and a column name may be a message's field name)."""
    return {c: esc(c) for c in columns}


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a finite real number (a layer, a count), else None:
    a status line shows "–" for a layer that came as a list or a string instead of
    failing the whole refresh."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None
