"""What the dashboard knows about each process signal: label, unit, format, limits,
colour — all from the machine profile of the monitor (``monitor.profile``).

A field the profile does not name still gets a readable label (it is stored and
can be plotted). SPC limits come live from :meth:`LiveMonitor.spc_state`.

>>> signal_info("temperature").unit
'K'
>>> signal_info("melt_pool_area").fmt(0.01512)
'0.01512'
>>> signal_info("unknown_probe").label
'Unknown probe'
>>> signal_color("unknown_probe")
'#495057'
"""

from __future__ import annotations

from typing import Any

from am_qadf.machine_profile import MachineProfile, SignalSpec

__all__ = [
    "LIVE_SIGNALS",
    "SIGNALS",
    "SignalInfo",
    "profile_of",
    "signal_color",
    "signal_info",
]

#: Display metadata of one signal: the profile's :class:`SignalSpec` (label, unit,
#: digits, low/high alarm limits, short label, colour; ``title`` and ``fmt``).
SignalInfo = SignalSpec

_FALLBACK_COLOR = "#495057"
# colours for signals whose profile gives none, by their place in the profile
_PALETTE = ("#d9480f", "#1c7ed6", "#7048e8", "#2b8a3e", "#e67700", "#c2255c", "#0b7285")


def profile_of(monitor: Any) -> MachineProfile:
    """The machine profile of ``monitor`` (the simulator's when it has none)."""
    profile = getattr(monitor, "profile", None)
    return profile if isinstance(profile, MachineProfile) else MachineProfile.default()


def signal_info(name: str, profile: MachineProfile | None = None) -> SignalSpec:
    """Metadata of ``name`` in ``profile`` (default: the simulator's); a field the
    profile does not name gets a readable label and no limits."""
    return (profile or MachineProfile.default()).info(name)


def signal_color(name: str, profile: MachineProfile | None = None) -> str:
    """Line colour of ``name``: the profile's, else one by its place in the profile."""
    p = profile or MachineProfile.default()
    spec = p.info(name)
    if spec.color:
        return spec.color
    names = p.signal_names
    return _PALETTE[names.index(name) % len(_PALETTE)] if name in names else _FALLBACK_COLOR


#: The simulator profile's signals, for code written before profiles (views use
#: their monitor's profile).
SIGNALS: dict[str, SignalSpec] = {s.name: s for s in MachineProfile.default().signals}

#: The simulator profile's live-view signals, in display order.
LIVE_SIGNALS: tuple[str, ...] = MachineProfile.default().live_signals
