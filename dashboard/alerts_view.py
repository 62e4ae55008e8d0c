"""Alerts: critical first, then newest; acknowledged and cleared from the table.

All text that came from messages (message, metric, rule, build id) is escaped here
(:func:`dashboard.markup.esc`) and rendered with Tabulator's ``html`` formatter, so a
crafted message can never inject markup. One row stands for an episode: ``seen``
counts its occurrences and gives the newest one's time. Each row says what (signal and
rule in words), the value with what it is (a reading, a change, a count), where (build
layer and position) and the full message (as a tooltip when the column is too narrow).
The table is rebuilt when the set of alerts or their states changed
(:meth:`AlertManager.statistics`), at most once per tick, and when only the counts grew,
at most every ``count_refresh_s`` seconds. The newest unacknowledged critical alert is
also shown as a banner (full width on the kiosk) and, when sound is on, chimes once.

>>> alerts_frame([])  # doctest: +NORMALIZE_WHITESPACE
Empty DataFrame
Columns: [id, time, severity, what, value, seen, where, message, metric, rule, layer, state,
          ack, clear]
Index: []
"""

from __future__ import annotations

import html
import logging
import re
import time
from datetime import datetime
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.custom import JSComponent

from am_qadf.machine_profile import MachineProfile
from am_qadf.machine_view import MonitorSnapshot

from .markup import esc
from .signals import signal_info
from .theme import stylesheet
from .view_base import MonitorView, control_row, html_pane

__all__ = ["AlertsView", "Chime", "alerts_frame", "banner_html", "sort_alerts", "value_text"]

log = logging.getLogger(__name__)

_COLUMNS = [
    "id",
    "time",
    "severity",
    "what",
    "value",
    "seen",
    "where",
    "message",
    "metric",
    "rule",
    "layer",
    "state",
    "ack",
    "clear",
]
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_ALERT_ID = re.compile(r'data-alert="([^"]+)"')
_HTML_COLUMNS = (
    "severity",
    "what",
    "metric",
    "rule",
    "value",
    "seen",
    "where",
    "message",
    "state",
    "ack",
    "clear",
)
_RULE_WORDS = {
    "threshold_high": "above its limit",
    "threshold_low": "below its limit",
    "rate_of_change": "jumped",
    "missing_data": "missing",
    "time_gap": "samples lost",
}


def _clock(t: Any) -> str:
    return t.strftime("%H:%M:%S.%f")[:-3] if isinstance(t, datetime) else ""


def _seen(a: Any) -> str:
    """Occurrences of the alert's episode, and the newest one's time."""
    if not a.repeats:
        return "1x"
    last = _clock(a.last_time)
    # the newest occurrence's time on hover, so the column stays narrow
    until = f' <span class="amq-seen-last" title="the newest at {last}">↦</span>' if last else ""
    return f"{a.repeats + 1:,}x{until}"


def rule_words(rule: str) -> str:
    """A rule id in words.

    >>> rule_words("threshold_high"), rule_words("spc:ewma:rule_1")
    ('above its limit', 'SPC ewma rule 1')
    """
    if rule in _RULE_WORDS:
        return _RULE_WORDS[rule]
    if rule.startswith("spc:"):
        return "SPC " + " ".join(rule[4:].replace("rule_", "rule ").split(":"))
    return rule.replace("_", " ")


def value_text(a: Any, profile: MachineProfile | None = None) -> str:
    """The alert's value with what it is: a reading, a change, a count or a statistic
    (labels and units from ``profile``, default: the simulator's).

    >>> from am_qadf.monitoring.alerts import Alert
    >>> value_text(Alert("a", "critical", "threshold_high", "temperature", 2650.0))
    '2,650 K'
    >>> value_text(Alert("b", "warning", "missing_data", "temperature", 20.0))
    '20 msgs without'
    """
    info = signal_info(a.metric, profile)
    unit = f" {info.unit}" if info.unit else ""
    if a.rule == "rate_of_change":
        return f"Δ {info.fmt(a.value)}{unit}"
    if a.rule == "missing_data":
        return f"{a.value:,.0f} msgs without"
    if a.rule == "time_gap":
        return f"{a.value:,.0f} samples lost"
    if a.rule.startswith("spc:"):
        statistic = a.rule.split(":")[1] if a.rule.count(":") >= 2 else "statistic"
        return f"{statistic} {info.fmt(a.value)}{unit}"
    return f"{info.fmt(a.value)}{unit}"


def _where(a: Any) -> str:
    parts = [] if a.layer is None else [f"layer {a.layer}"]
    if a.x is not None and a.y is not None:
        parts.append(f"x {a.x:.0f} y {a.y:.0f}")
    return " · ".join(parts)


def sort_alerts(alerts: list[Any]) -> list[Any]:
    """Critical first, then warning, then info; within each, unacknowledged before
    acknowledged before cleared, newest first."""
    rank = {"active": 0, "acknowledged": 1, "cleared": 2}
    by_time = sorted(alerts, key=lambda a: a.time or a.raised_at, reverse=True)
    return sorted(by_time, key=lambda a: (_SEVERITY_RANK.get(a.severity, 2), rank.get(a.state, 3)))


def alerts_frame(alerts: list[Any], profile: MachineProfile | None = None) -> pd.DataFrame:
    """Rows for the table from :class:`Alert` objects (critical first, then newest;
    see :func:`sort_alerts`), every text escaped; signal labels and units from
    ``profile`` (default: the simulator's)."""
    rows = []
    for a in sort_alerts(alerts):
        info = signal_info(a.metric, profile)
        sev = a.severity if a.severity in _SEVERITY_RANK else "info"
        state = a.state
        done = f'<span class="amq-state amq-state-{esc(state)}">{esc(state)}</span>'
        rows.append(
            {
                "id": a.id,
                "time": _clock(a.time or a.raised_at),
                "severity": f'<span class="amq-sev amq-sev-{sev}">{esc(a.severity)}</span>',
                # the whole message on hover: the column is cut on narrow screens
                "what": f'<span title="{esc(a.message or rule_words(a.rule))}">'
                f"<b>{esc(info.label)}</b> {esc(rule_words(a.rule))}</span>",
                "value": esc(value_text(a, profile)),
                "seen": _seen(a),
                "where": esc(_where(a)),
                "message": esc(a.message),
                "metric": esc(info.label),
                "rule": esc(a.rule),
                "layer": "" if a.layer is None else str(a.layer),
                "state": done,
                "ack": f'<span class="amq-ack-btn" data-alert="{esc(a.id)}" '
                'title="Acknowledge">Ack</span>'
                if state == "active"
                else done,
                "clear": f'<span class="amq-clear-btn" data-alert="{esc(a.id)}">Clear</span>'
                if state != "cleared"
                else "",
            }
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


def banner_html(a: Any | None, kiosk: bool = False, profile: MachineProfile | None = None) -> str:
    """The banner of the newest unacknowledged critical alert ('' when there is none;
    on a kiosk a quiet bar of the same height, so the screen's layout never jumps).

    >>> banner_html(None), "amq-kiosk-clear" in banner_html(None, kiosk=True)
    ('', True)
    """
    if a is None:
        if not kiosk:
            return ""
        return (
            '<div class="amq-kiosk-banner amq-kiosk-clear">No unacknowledged critical alert</div>'
        )
    info = signal_info(a.metric, profile)
    where = _where(a)
    text = (
        f"{esc(info.label)} {esc(rule_words(a.rule))}: {esc(value_text(a, profile))}"
        + (f" · {esc(where)}" if where else "")
        + f" · {esc(_clock(a.time or a.raised_at))} UTC"
    )
    return (
        f'<div class="amq-critical-banner{" amq-kiosk-banner" if kiosk else ""}" '
        f'data-alert="{esc(a.id)}" title="CRITICAL · {text}"><b>CRITICAL</b> · {text}</div>'
    )


class Chime(JSComponent):
    """Plays a short tone in the browser each time ``count`` grows, when ``enabled``
    (off by default: a sound must be chosen by the person in front of the screen)."""

    count = param.Integer(default=0)

    enabled = param.Boolean(default=False)

    _esm = """
    export function render({ model, el }) {
      el.style.display = 'none'
      model.on('count', () => {
        if (!model.enabled) return
        try {
          const ctx = new (window.AudioContext || window.webkitAudioContext)()
          const osc = ctx.createOscillator()
          const gain = ctx.createGain()
          osc.frequency.value = 880
          gain.gain.value = 0.2
          osc.connect(gain).connect(ctx.destination)
          osc.start()
          osc.stop(ctx.currentTime + 0.4)
          osc.onended = () => ctx.close()
        } catch (e) { /* no audio on this device */ }
      })
    }
    """


class AlertsView(MonitorView):
    """Table of alerts (critical first, then newest) with acknowledge and clear buttons,
    and a banner (and optional chime) for the newest unacknowledged critical alert."""

    show = param.Selector(
        default="active",
        objects=["active", "all"],
        doc="active: not cleared (active and acknowledged); all: cleared ones too.",
    )

    max_rows = param.Integer(default=200, bounds=(10, 10_000))

    operator = param.String(default="operator", doc="Name recorded with acknowledgements.")

    acknowledged = param.Integer(default=0, doc="Acknowledgements made from this view.")

    cleared = param.Integer(default=0, doc="Alerts cleared from this view.")

    new_criticals = param.Integer(
        default=0, doc="Unacknowledged critical alerts that appeared while this view ran."
    )

    sound = param.Boolean(default=False, doc="Chime when a new critical alert appears.")

    count_refresh_s = param.Number(
        default=2.0,
        bounds=(0, None),
        doc="Least seconds between rebuilds of the table when only occurrence counts grew.",
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._key: tuple | None = None
        self._counted = (None, 0.0)  # occurrences shown, and when
        self._critical_id: str | None = None  # of the banner shown
        font = "20px" if self.kiosk else "13px"
        self.table = pn.widgets.Tabulator(
            alerts_frame([]),
            show_index=False,
            disabled=True,
            selectable=False,
            sizing_mode="stretch_both",
            min_height=100 if self.kiosk else 200,
            layout="fit_columns",
            # the message is the tooltip of "what" (the table must fit a 600 px card)
            hidden_columns=["id", "metric", "rule", "layer", "state", "message"]
            + (["ack", "clear", "seen"] if self.kiosk else []),
            formatters={c: {"type": "html"} for c in _HTML_COLUMNS},
            titles={"clear": " "},
            # a kiosk's large type needs wider columns (its table has the screen's width)
            widths=(
                {"time": 150, "severity": 120, "value": 210, "where": 260}
                if self.kiosk
                else {
                    "time": 86,
                    "severity": 78,
                    "value": 88,
                    "seen": 52,
                    "where": 116,
                    "ack": 48,
                    "clear": 48,
                }
            ),
            buttons={},
            configuration={"rowHeight": 36 if self.kiosk else 30},
            stylesheets=[
                stylesheet(),
                # the theme sets the rows' size itself
                f".tabulator, .tabulator .tabulator-row, .tabulator .tabulator-header "
                f"{{ font-size: {font} !important; }}",
            ],
            css_classes=["amq-alerts-table"],
        )
        self.table.on_click(self._on_click, column="ack")
        self.table.on_click(self._on_clear_click, column="clear")
        self._count = html_pane("", css_classes=["amq-alert-counts"], sizing_mode="stretch_width")
        #: The newest unacknowledged critical alert, as a banner (empty when none).
        self.banner = html_pane("", css_classes=["amq-critical"], sizing_mode="stretch_width")
        self.chime = Chime()
        self._ack_all = pn.widgets.Button(
            name="Acknowledge all", button_type="warning", css_classes=["amq-ack-all"], width=150
        )
        self._ack_all.on_click(self._on_ack_all)

    @param.depends("show", watch=True)
    def _on_show(self) -> None:
        self._key = None
        self.refresh(MonitorSnapshot())

    @param.depends("sound", watch=True)
    def _on_sound(self) -> None:
        self.chime.enabled = self.sound

    # -- data -------------------------------------------------------------------------------
    def refresh(self, snapshot: MonitorSnapshot) -> None:
        mon = self.monitor
        counts = mon.alert_counts()
        key = (self.show, counts.raised, counts.acknowledged, counts.cleared, counts.kept)
        occurrences, now = counts.suppressed, time.monotonic()
        counts_due = (
            occurrences != self._counted[0] and now - self._counted[1] >= self.count_refresh_s
        )
        if key == self._key and not counts_due:
            return
        self._key, self._counted = key, (occurrences, now)
        n = self.max_rows
        if self.show == "active":  # active + acknowledged, newest n (copies at most 2n)
            alerts = mon.alert_list(n, state="active") + mon.alert_list(n, state="acknowledged")
            alerts = sorted(alerts, key=lambda a: a.raised_at)[-n:]
        else:
            alerts = mon.alert_list(n)
        # criticals are few and must never fall off the newest n
        critical = mon.active_alerts(severity="critical")
        known = {a.id for a in alerts}
        alerts += [a for a in critical if a.id not in known]
        self.table.value = alerts_frame(alerts, self.profile)
        self._update_banner([a for a in critical if a.state == "active"])
        by_sev = {s: int(counts.by_severity.get(s, 0)) for s in _SEVERITY_RANK}
        self._count.object = (
            "".join(
                f'<span class="amq-badge amq-sev-{s}" data-count="{n}">{n} {s}</span>'
                for s, n in by_sev.items()
            )
            + '<span class="amq-badge amq-muted">'
            + f"{counts.acknowledged} acknowledged</span>"
        )

    def _update_banner(self, unacknowledged: list[Any]) -> None:
        newest = max(unacknowledged, key=lambda a: a.raised_at) if unacknowledged else None
        newest_id = None if newest is None else newest.id
        if newest_id is not None and newest_id != self._critical_id:
            self.new_criticals += 1
            self.chime.count += 1
        self._critical_id = newest_id
        self.banner.object = banner_html(newest, kiosk=self.kiosk, profile=self.profile)

    def _on_click(self, event: Any) -> None:
        # The table may have been refreshed between the click and now (new alerts push
        # rows down), so the alert id comes from the clicked cell, not the row number.
        m = _ALERT_ID.search(str(getattr(event, "value", "") or ""))
        if m is None:
            return
        self._acknowledge([html.unescape(m.group(1))])

    def _on_clear_click(self, event: Any) -> None:
        m = _ALERT_ID.search(str(getattr(event, "value", "") or ""))
        if m is None:
            return
        self.clear_alert(html.unescape(m.group(1)))

    def _on_ack_all(self, _: Any) -> None:
        self._acknowledge([a.id for a in self.monitor.active_alerts(include_acknowledged=False)])

    def _acknowledge(self, ids: list[str]) -> None:
        if self.refuse("acknowledge") is not None:
            return
        done = 0
        for alert_id in ids:
            try:
                self.monitor.acknowledge(alert_id, by=self.user or self.operator)
                done += 1
            except KeyError:  # dropped from history or reset by a replay meanwhile
                log.info("alert %s no longer exists", alert_id)
        self.acknowledged += done
        self._key = None
        self.refresh(MonitorSnapshot())

    def clear_alert(self, alert_id: str) -> bool:
        """Clear one alert (operators only, checked here on the server); True if done."""
        if self.refuse("clear_alert") is not None:
            return False
        try:
            self.monitor.clear_alert(alert_id, by=self.user or self.operator)
        except KeyError:
            log.info("alert %s no longer exists", alert_id)
            return False
        self.cleared += 1
        self._key = None
        self.refresh(MonitorSnapshot())
        return True

    # -- layout -----------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        items: list[Any] = []
        if not self.kiosk:
            items.append(
                control_row(
                    self._count,
                    pn.widgets.RadioButtonGroup.from_param(
                        self.param.show,
                        name="Show",
                        button_type="light",
                        width=140,
                        css_classes=["amq-alerts-show"],
                    ),
                    pn.widgets.Checkbox.from_param(
                        self.param.sound, name="Sound", width=70, css_classes=["amq-sound"]
                    ),
                    self._ack_all,
                    sizing_mode="stretch_width",
                )
            )
            items.append(self.banner)  # the kiosk shows it full width above everything
        else:
            items.append(self._count)
        items += [self.table, self.chime]
        return pn.Column(*items, sizing_mode="stretch_both", css_classes=["amq-alerts-view"])
