"""Alerts: newest first, coloured by severity, acknowledged from the table.

All text that came from messages (message, metric, rule, build id) is escaped here
(:func:`dashboard.markup.esc`) and rendered with Tabulator's ``html`` formatter, so a
crafted message can never inject markup. One row stands for an episode: ``seen``
counts its occurrences and gives the newest one's time. The table is rebuilt when the
set of alerts or their states changed (:meth:`AlertManager.statistics`), at most once
per tick, and when only the counts grew, at most every ``count_refresh_s`` seconds.

>>> alerts_frame([])  # doctest: +NORMALIZE_WHITESPACE
Empty DataFrame
Columns: [id, time, severity, metric, rule, value, seen, layer, where, message, state, ack]
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

from am_qadf.machine_profile import MachineProfile

from .markup import esc
from .signals import signal_info
from .theme import stylesheet
from .view_base import MonitorView, html_pane

__all__ = ["AlertsView", "alerts_frame"]

log = logging.getLogger(__name__)

_COLUMNS = [
    "id",
    "time",
    "severity",
    "metric",
    "rule",
    "value",
    "seen",
    "layer",
    "where",
    "message",
    "state",
    "ack",
]
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_ALERT_ID = re.compile(r'data-alert="([^"]+)"')
_HTML_COLUMNS = ("severity", "metric", "rule", "value", "seen", "where", "message", "state", "ack")


def _clock(t: Any) -> str:
    return t.strftime("%H:%M:%S.%f")[:-3] if isinstance(t, datetime) else ""


def _seen(a: Any) -> str:
    """Occurrences of the alert's episode, and the newest one's time."""
    if not a.repeats:
        return "1x"
    last = _clock(a.last_time)
    until = f' <span class="amq-seen-last">to {last}</span>' if last else ""
    return f"{a.repeats + 1:,}x{until}"


def alerts_frame(alerts: list[Any], profile: MachineProfile | None = None) -> pd.DataFrame:
    """Rows for the table from :class:`Alert` objects (newest first), every text escaped;
    signal labels and units from ``profile`` (default: the simulator's)."""
    rows = []
    for a in reversed(alerts):
        info = signal_info(a.metric, profile)
        where = "" if a.x is None else f"x {a.x:.1f}, y {a.y:.1f}, z {a.z:.2f}"
        sev = a.severity if a.severity in _SEVERITY_RANK else "info"
        state = a.state
        rows.append(
            {
                "id": a.id,
                "time": _clock(a.time or a.raised_at),
                "severity": f'<span class="amq-sev amq-sev-{sev}">{esc(a.severity)}</span>',
                "metric": esc(info.label),
                "rule": esc(a.rule),
                "value": esc(info.fmt(a.value)),
                "seen": _seen(a),
                "layer": "" if a.layer is None else str(a.layer),
                "where": esc(where),
                "message": esc(a.message),
                "state": f'<span class="amq-state amq-state-{esc(state)}">{esc(state)}</span>',
                "ack": f'<span class="amq-ack-btn" data-alert="{esc(a.id)}">Acknowledge</span>'
                if state == "active"
                else f'<span class="amq-state amq-state-{esc(state)}">{esc(state)}</span>',
            }
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


class AlertsView(MonitorView):
    """Table of alerts (newest first) with an acknowledge button per active alert."""

    show = param.Selector(default="active", objects=["active", "all"], doc="Which alerts to list.")

    max_rows = param.Integer(default=200, bounds=(10, 10_000))

    operator = param.String(default="operator", doc="Name recorded with acknowledgements.")

    acknowledged = param.Integer(default=0, doc="Acknowledgements made from this view.")

    count_refresh_s = param.Number(
        default=2.0,
        bounds=(0, None),
        doc="Least seconds between rebuilds of the table when only occurrence counts grew.",
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._key: tuple | None = None
        self._counted = (None, 0.0)  # occurrences shown, and when
        font = "16px" if self.kiosk else "13px"
        self.table = pn.widgets.Tabulator(
            alerts_frame([]),
            show_index=False,
            disabled=True,
            selectable=False,
            sizing_mode="stretch_both",
            min_height=200,
            layout="fit_columns",
            hidden_columns=["id", "rule", "where", "layer", "state"]
            + (["ack"] if self.kiosk else []),
            formatters={c: {"type": "html"} for c in _HTML_COLUMNS},
            widths={
                "time": 96,
                "severity": 92,
                "metric": 150,
                "value": 76,
                "seen": 150,
                "ack": 122,
            },
            buttons={},
            configuration={"rowHeight": 40 if self.kiosk else 30},
            stylesheets=[stylesheet(), f".tabulator {{ font-size: {font}; }}"],
            css_classes=["amq-alerts-table"],
        )
        self.table.on_click(self._on_click, column="ack")
        self._count = html_pane("", css_classes=["amq-alert-counts"], sizing_mode="stretch_width")
        self._ack_all = pn.widgets.Button(
            name="Acknowledge all", button_type="warning", css_classes=["amq-ack-all"], width=150
        )
        self._ack_all.on_click(self._on_ack_all)

    # -- data -------------------------------------------------------------------------------
    def refresh(self, snapshot: dict[str, Any]) -> None:
        mgr = self.monitor.alerts
        stats = mgr.statistics()
        key = (
            self.show,
            stats.get("raised"),
            stats.get("acknowledged"),
            stats.get("cleared"),
            stats.get("kept"),
        )
        occurrences, now = stats.get("suppressed"), time.monotonic()
        counts_due = (
            occurrences != self._counted[0] and now - self._counted[1] >= self.count_refresh_s
        )
        if key == self._key and not counts_due:
            return
        self._key, self._counted = key, (occurrences, now)
        n = self.max_rows
        if self.show == "active":  # active + acknowledged, newest n (copies at most 2n)
            alerts = mgr.history(limit=n, state="active") + mgr.history(
                limit=n, state="acknowledged"
            )
            alerts = sorted(alerts, key=lambda a: a.raised_at)[-n:]
        else:
            alerts = mgr.history(limit=n)
        self.table.value = alerts_frame(alerts, self.profile)
        # critical and info alerts are few; warnings are the rest of the active ones
        by_sev = {
            s: len(mgr.active_alerts(include_acknowledged=False, severity=s))
            for s in ("critical", "info")
        }
        by_sev["warning"] = max(0, int(stats.get("active", 0)) - sum(by_sev.values()))
        by_sev = {s: by_sev[s] for s in _SEVERITY_RANK}
        self._count.object = (
            "".join(
                f'<span class="amq-badge amq-sev-{s}" data-count="{n}">{n} {s}</span>'
                for s, n in by_sev.items()
            )
            + '<span class="amq-badge amq-muted">'
            + f"{stats.get('acknowledged', 0)} acknowledged</span>"
        )

    def _on_click(self, event: Any) -> None:
        # The table may have been refreshed between the click and now (new alerts push
        # rows down), so the alert id comes from the clicked cell, not the row number.
        m = _ALERT_ID.search(str(getattr(event, "value", "") or ""))
        if m is None:
            return
        self._acknowledge([html.unescape(m.group(1))])

    def _on_ack_all(self, _: Any) -> None:
        self._acknowledge(
            [a.id for a in self.monitor.alerts.active_alerts(include_acknowledged=False)]
        )

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
        self.refresh({})

    # -- layout -----------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        items: list[Any] = []
        if not self.kiosk:
            items.append(
                pn.Row(
                    self._count,
                    pn.widgets.RadioButtonGroup.from_param(
                        self.param.show,
                        name="Show",
                        button_type="light",
                        width=160,
                        css_classes=["amq-alerts-show"],
                    ),
                    self._ack_all,
                    sizing_mode="stretch_width",
                )
            )
        else:
            items.append(self._count)
        items.append(self.table)
        return pn.Column(*items, sizing_mode="stretch_both", css_classes=["amq-alerts-view"])
