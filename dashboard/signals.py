"""What the dashboard knows about each process signal: label, unit, format, limits.

Alarm limits come from the library's defaults
(:data:`am_qadf.monitoring.processors.DEFAULT_LIMITS`, the thresholds the alert
processor uses); SPC limits come live from :meth:`LiveMonitor.spc_state`.

>>> SIGNALS["temperature"].unit
'K'
>>> SIGNALS["melt_pool_area"].fmt(0.01512)
'0.01512'
>>> signal_info("unknown_probe").label
'Unknown probe'
"""

from __future__ import annotations

from dataclasses import dataclass

from am_qadf.monitoring.processors import DEFAULT_LIMITS

__all__ = ["LIVE_SIGNALS", "SIGNALS", "SignalInfo", "signal_info"]


@dataclass(frozen=True)
class SignalInfo:
    """Display metadata of one signal."""

    name: str
    label: str
    unit: str = ""
    digits: int = 1
    low: float | None = None  # alarm limits (None: no alarm on that side)
    high: float | None = None
    short: str = ""  # compact label for axes and tiles (default: label)

    @property
    def short_label(self) -> str:
        """Compact label, e.g. ``"Temperature"``."""
        return self.short or self.label

    @property
    def title(self) -> str:
        """Label with unit, e.g. ``"Melt-pool temperature (K)"``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def fmt(self, value: float | None) -> str:
        """Value formatted with this signal's precision ("–" for None/NaN)."""
        if value is None or value != value:
            return "–"
        if self.digits < 0:  # significant digits
            return f"{value:.{-self.digits}g}"
        return f"{value:,.{self.digits}f}"


def _limits(name: str) -> tuple[float | None, float | None]:
    d = DEFAULT_LIMITS.get(name, {})
    return d.get("low"), d.get("high")


SIGNALS: dict[str, SignalInfo] = {
    "temperature": SignalInfo(
        "temperature", "Melt-pool temperature", "K", 0, *_limits("temperature"), "Temperature"
    ),
    "melt_pool_area": SignalInfo(
        "melt_pool_area", "Melt-pool area", "mm²", -4, *_limits("melt_pool_area"), "Area"
    ),
    "power": SignalInfo("power", "Laser power", "W", 1, *_limits("power"), "Power"),
    "scan_speed": SignalInfo(
        "scan_speed", "Scan speed", "mm/s", 0, *_limits("scan_speed"), "Speed"
    ),
    "intensity": SignalInfo(
        "intensity", "Photodiode intensity", "counts", 0, *_limits("intensity"), "Intensity"
    ),
}

#: The signals of the live view, in display order.
LIVE_SIGNALS: tuple[str, ...] = ("temperature", "melt_pool_area", "power", "scan_speed")


def signal_info(name: str) -> SignalInfo:
    """Metadata of ``name``; an unknown signal gets a readable label and no limits."""
    info = SIGNALS.get(name)
    if info is None:
        info = SignalInfo(name, name.replace("_", " ").capitalize(), "", -4)
    return info
