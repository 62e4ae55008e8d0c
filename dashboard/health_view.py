"""Health: throughput, latency, consumer lag, errors, dead letters, the seconds of data
the signal buffers hold (their fill is always 100 % once a build streams: they are
rings), the connection state of the broker (Kafka or the in-process one), the cache
(Redis or in-process) and the history (MongoDB or the embedded SQLite file), and
whether the machine profile fits the stream (fields missing, points off the plate).

Everything comes from :meth:`LiveMonitor.snapshot` (statistics and health of the
streaming client) plus the signal buffers' own statistics. Throughput is measured
between two ticks (messages processed per second now, not since start).

>>> health = HealthReport("memory", ("memory://",), "running")
>>> row = connection_rows(health)[0]
>>> row["system"], row["backend"], row["state"]
('Broker', 'in-process broker', 'ok')
"""

from __future__ import annotations

import time
from typing import Any

import panel as pn
import param

from am_qadf.machine_view import HealthReport, MonitorSnapshot, StorageHealth

from .markup import TEXT_LIMIT, esc
from .view_base import MonitorView, html_pane, outside_grid_text

__all__ = ["HealthView", "connection_rows", "profile_fit_html"]


def profile_fit_html(fit: dict[str, Any] | None) -> str:
    """The machine profile and how it fits the stream (``snapshot()["profile"]``): one
    line per problem, or that every expected field arrives; other fields are listed
    (they are stored and can be plotted).

    >>> print(profile_fit_html({"machine": "M290", "machine_id": "m2", "profile": "m.toml",
    ...     "recent": 10000, "problems": ["field ts missing in 100 % of the last 10,000 messages"],
    ...     "outside_plate": 0, "unnamed_fields": []}))  # doctest: +ELLIPSIS
    <div class="amq-profile-fit" data-problems="1" ...field ts missing in 100 %...
    """
    if not fit:
        return ""
    problems = list(fit.get("problems") or [])
    head = (
        f"<b>{esc(fit.get('machine', ''))}</b> "
        f"({esc(fit.get('machine_id', ''))}) · profile "
        f"<code>{esc(fit.get('profile', ''))}</code>"
    )
    if problems:
        body = "".join(f'<li class="amq-fit-bad">{esc(p)}</li>' for p in problems)
    elif fit.get("recent"):
        body = (
            '<li class="amq-fit-ok">every field of the profile arrives '
            f"(last {fit['recent']:,} messages)</li>"
        )
    else:
        body = "<li>no message yet</li>"
    other = fit.get("unnamed_fields") or []
    if other:
        names = ", ".join(esc(n) for n in other[:20])
        body += f"<li>other fields, stored and plottable: {names}</li>"
    return (
        f'<div class="amq-profile-fit" data-problems="{len(problems)}" '
        f'data-outside-plate="{int(fit.get("outside_plate") or 0)}">'
        f'<div class="amq-card-title">Machine profile</div>{head}<ul>{body}</ul></div>'
    )


def connection_rows(
    health: HealthReport, *, feed: str | None = None, topic: str | None = None
) -> list[dict[str, str]]:
    """One row per part of the pipeline: broker, cache, history. Each row names its
    system, backend, state (``ok``, ``waiting``, ``down`` or ``off``) and a detail.

    The embedded defaults are named for what they are (in-process broker and cache,
    embedded history file), not as a missing server. A consumer that has received no
    message yet (``feed`` ``"waiting"``) is ``waiting``, not ``ok``: its topic may not
    even exist yet.
    """
    rows = []
    broker = health.broker
    servers = ", ".join(health.bootstrap_servers)
    consumer = health.consumer_state
    state = "ok" if consumer in ("running", "paused") else "down"
    where = f"{servers} · topic {topic}" if topic else servers
    detail = f"{where} · consumer {consumer}"
    if state == "ok" and feed == "waiting":
        state = "waiting"
        detail += " · no message yet (the topic may not exist yet)"
    rows.append(
        {
            "system": "Broker" if broker == "memory" else "Kafka",
            "backend": "in-process broker" if broker == "memory" else "Kafka",
            "state": state,
            "detail": detail,
        }
    )
    st = health.storage
    rows.append(
        _storage_row(
            st,
            "cache",
            {"redis": ("Redis", "Redis"), "memory": ("Cache", "in-process cache")},
            ""
            if st is None
            else f"{st.cache_writes:,} writes, {st.cache_failures:,} failures"
            + (f", {st.cache_skipped:,} skipped while down" if st.cache_skipped else ""),
        )
    )
    location = "" if st is None else st.history_location
    rows.append(
        _storage_row(
            st,
            "history",
            {
                "mongodb": ("MongoDB", "MongoDB"),
                "sqlite": ("History", "embedded history (SQLite)"),
            },
            (f"{location} · " if location else "")
            + ("" if st is None else f"{st.documents_inserted:,} stored, {st.spooled:,} spooled"),
        )
    )
    return rows


def _storage_row(
    st: StorageHealth | None, part: str, names: dict[str, tuple[str, str]], detail: str
) -> dict[str, str]:
    """The row of one storage part (``"cache"`` or ``"history"``) of the storage health."""
    backend = "" if st is None else getattr(st, f"{part}_backend")
    system, label = names.get(backend, (part.capitalize(), backend or "off"))
    return {
        "system": system,
        "backend": label,
        "state": "off" if st is None else ("ok" if getattr(st, f"{part}_ok") else "down"),
        "detail": detail if st is not None else f"{part} disabled",
    }


def _row_start(r: dict[str, str]) -> str:
    """A connection row's cells up to its state (the detail cell, if any, follows)."""
    system, state = esc(r["system"]), esc(r["state"])
    return (
        f'<tr class="amq-conn amq-conn-{system.lower()}" data-state="{state}">'
        f'<td><span class="amq-dot amq-dot-{state}"></span>{system}</td>'
        f'<td>{esc(r["backend"])}</td><td class="amq-conn-state">{state}</td>'
    )


class HealthView(MonitorView):
    """Pipeline figures as number indicators and a connection table."""

    throughput = param.Number(default=0.0, doc="Messages per second between the last two ticks.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        size = "28pt" if not self.kiosk else "34pt"
        title = "11pt"

        def number(name: str, fmt: str, css: str, **kw: Any) -> pn.indicators.Number:
            return pn.indicators.Number(
                name=name,
                value=0,
                format=fmt,
                font_size=size,
                title_size=title,
                css_classes=["amq-number", css],
                **kw,
            )

        self.n_rate = number("Throughput (msg/s)", "{value:,.0f}", "amq-h-rate")
        self.n_latency = number(
            "Batch latency (ms)",
            "{value:,.1f}",
            "amq-h-latency",
            colors=[(50, "#2f9e44"), (200, "#f5a524"), (1e12, "#e5484d")],
        )
        self.n_lag = number(
            "Consumer lag (msgs)",
            "{value:,.0f}",
            "amq-h-lag",
            colors=[(5000, "#2f9e44"), (50000, "#f5a524"), (1e12, "#e5484d")],
        )
        self.n_errors = number(
            "Errors", "{value:,.0f}", "amq-h-errors", colors=[(0.5, "#2f9e44"), (1e12, "#e5484d")]
        )
        self.n_dead = number(
            "Dead-lettered",
            "{value:,.0f}",
            "amq-h-dead",
            colors=[(0.5, "#2f9e44"), (1e12, "#f5a524")],
        )
        self.n_buffer = number("Buffers hold (s)", "{value:,.1f}", "amq-h-buffer")
        self.n_total = number("Messages processed", "{value:,.0f}", "amq-h-total")
        self.connections = html_pane(
            "", sizing_mode="stretch_width", css_classes=["amq-connections"]
        )
        self.compact = html_pane(
            "", sizing_mode="stretch_width", css_classes=["amq-connections-compact"]
        )
        self.detail = html_pane("", sizing_mode="stretch_width", css_classes=["amq-health-detail"])
        self.fit = html_pane("", sizing_mode="stretch_width", css_classes=["amq-health-fit"])
        self._last: tuple[float, int] | None = None

    def refresh(self, snapshot: MonitorSnapshot) -> None:
        stats = snapshot.stats
        processed = stats.messages_processed
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            rate = max(0, processed - self._last[1]) / (now - self._last[0])
            self.throughput = 0.7 * self.throughput + 0.3 * rate if self.throughput else rate
        self._last = (now, processed)
        self.n_rate.value = round(self.throughput)
        self.n_latency.value = stats.average_latency_ms
        self.n_lag.value = stats.consumer_lag
        self.n_errors.value = stats.errors
        self.n_dead.value = stats.dead_lettered
        self.n_total.value = processed
        self.n_buffer.value = self.monitor.buffered_seconds()
        grid_bytes = int(snapshot.grid_bytes or 0)  # the build's voxel data
        rows = connection_rows(snapshot.health, feed=snapshot.feed, topic=snapshot.topic)
        self.connections.object = self._connections_html(rows)
        figures = (
            ("throughput", f"{self.throughput:,.0f} msg/s"),
            ("batch latency", f"{self.n_latency.value:,.1f} ms"),
            ("consumer lag", f"{self.n_lag.value:,}"),
            ("errors / dead letters", f"{self.n_errors.value:,} / {self.n_dead.value:,}"),
            ("buffers hold", f"{self.n_buffer.value:,.1f} s"),
            ("voxel grid", f"{grid_bytes / 2**20:,.0f} MiB"),
        )
        disk = snapshot.history_disk or {}
        history_file = ""
        if disk.get("bytes") is not None:  # the embedded history file, against its limit
            limit = disk.get("max_bytes")
            size = f"{disk['bytes'] / 2**20:,.0f} MiB"
            figures = (
                *figures,
                ("history file", f"{size} of {limit / 2**20:,.0f} MiB" if limit else size),
            )
            history_file = f" · history file {size}" + (
                f" (limit {limit / 2**20:,.0f} MiB, oldest messages deleted first)"
                if limit
                else " (no size limit)"
            )
        if lost := int(snapshot.publish_failed or 0):  # shown only when it happens
            figures = (*figures, ("simulator undelivered", f'<b class="amq-fig-bad">{lost:,}</b>'))
        if refused := stats.signals_refused:  # names past the signal limit
            kept = stats.signals_buffered
            figures = (
                *figures,
                ("signals refused", f'<b class="amq-fig-bad">{refused:,}</b> ({kept:,} kept)'),
            )
        self.compact.object = self._compact_html(rows) + (
            f'<table class="amq-conn-table amq-figures" data-grid-bytes="{grid_bytes}"><tbody>'
            + "".join(f'<tr><td>{k}</td><td class="amq-fig">{v}</td></tr>' for k, v in figures)
            + "</tbody></table>"
        )
        fit = profile_fit_html(dict(snapshot.profile or {}))
        if outside := outside_grid_text(snapshot):
            fit = f'<div class="amq-outside-grid amq-fit-bad">⚠ {esc(outside)}</div>' + fit
        if fit != self.fit.object:
            self.fit.object = fit
        last_error = stats.last_error
        self.detail.object = (
            f"max batch latency {stats.max_latency_ms:,.1f} ms · "
            "mean throughput since start "
            f"{stats.throughput_messages_per_sec:,.0f} msg/s"
            + history_file
            + (" · <b>back-pressure: storage is behind</b>" if stats.backpressure else "")
            + (
                f" · last error: <code>{esc(last_error, limit=TEXT_LIMIT)}</code>"
                if last_error
                else ""
            )
        )

    @staticmethod
    def _connections_html(rows: list[dict[str, str]]) -> str:
        rows = "".join(_row_start(r) + f"<td>{esc(r['detail'])}</td></tr>" for r in rows)
        return (
            '<table class="amq-conn-table"><thead><tr><th>System</th><th>Backend</th>'
            f"<th>State</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    @staticmethod
    def _compact_html(rows: list[dict[str, str]]) -> str:
        rows = "".join(_row_start(r) + "</tr>" for r in rows)
        return f'<table class="amq-conn-table"><tbody>{rows}</tbody></table>'

    def summary(self) -> pn.viewable.Viewable:
        """Compact connection states (system, backend, state) for the sidebar."""
        return self.compact

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.FlexBox(
                self.n_rate,
                self.n_latency,
                self.n_lag,
                self.n_errors,
                self.n_dead,
                self.n_buffer,
                self.n_total,
                css_classes=["amq-numbers"],
            ),
            self.connections,
            self.fit,
            self.detail,
            sizing_mode="stretch_width",
            css_classes=["amq-health-view"],
        )
