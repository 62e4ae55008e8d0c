"""Query arguments of a served page (``?kiosk=1&period=1000``), read safely.

A query string comes from whoever typed the address: a value that is not what the page
expects falls back to the default, and numbers are held within bounds.

>>> flag_arg("kiosk"), int_arg("period", 500, 100, 60_000)  # outside a served page
(False, 500)
"""

from __future__ import annotations

import panel as pn

__all__ = ["flag_arg", "int_arg", "session_arg"]


def session_arg(name: str, default: str = "") -> str:
    """The first value of query argument ``name`` of this session (``default`` if none)."""
    values = pn.state.session_args.get(name) if pn.state.session_args else None
    return values[0].decode(errors="replace") if values else default


def flag_arg(name: str) -> bool:
    """True when ``?name=`` is 1, true, yes or on."""
    return session_arg(name, "0").strip().lower() in ("1", "true", "yes", "on")


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    """``?name=`` as an int within ``lo``..``hi`` (``default`` when it is not a number)."""
    try:
        return max(lo, min(hi, int(session_arg(name, str(default)))))
    except ValueError:
        return default
