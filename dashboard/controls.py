"""Controls: pause / resume the consumer, replay the build from its first message, and
(on a simulated build) inject a test defect. Each button calls the library directly.

Seeking waits for the consumer thread to reset the grid, SPC and alerts between two
batches, so it runs off the session thread; its outcome shows on the next tick.

>>> Controls(monitor=get_monitor()).pause()  # doctest: +SKIP
"""

from __future__ import annotations

import html
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import numpy as np
import panel as pn
import param

from am_qadf.streaming import KafkaProducer

from .theme import STATE_COLORS
from .view_base import MonitorView, html_pane

__all__ = ["Controls", "inject_defect"]

log = logging.getLogger(__name__)


def inject_defect(monitor: Any, n_points: int = 60, temperature: float = 2650.0) -> int:
    """Publish ``n_points`` overheating samples (a hot spot at the laser's current
    position) to the monitored topic, as a machine would; returns how many were sent.

    The alert processor turns them into a critical ``threshold_high`` alert. Meant for
    demonstrations and end-to-end checks on a simulated build.
    """
    client = monitor.client
    latest: dict[str, Any] = {}
    newest = None
    for name in ("x", "y", "z", "layer", "power", "scan_speed"):
        try:
            values, times, _ = client.get_buffer(name).get_sliding_window(1)
        except KeyError:
            continue
        if len(values):
            latest[name] = float(np.ravel(values)[-1])
            newest = times[-1] if newest is None else max(newest, times[-1])
    if newest is None:
        raise RuntimeError("no data has arrived yet: there is no position to put a defect at")
    snap = monitor.snapshot()
    cfg = monitor.config.streaming
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic, config=cfg.kafka_config)
    try:
        for i in range(n_points):
            msg = {
                "timestamp": newest + timedelta(microseconds=10 * (i + 1)),
                "build_id": snap.get("build_id"),
                "layer": int(latest.get("layer", 0)),
                "x": latest.get("x", 0.0) + 0.05 * i,
                "y": latest.get("y", 0.0),
                "z": latest.get("z", 0.0),
                "power": latest.get("power", 280.0),
                "scan_speed": latest.get("scan_speed", 1000.0),
                "temperature": temperature,
                "melt_pool_area": 0.03,
                "intensity": 2600.0,
                "value": temperature,
            }
            producer.produce(msg, key=str(snap.get("build_id")))
        producer.flush()
    finally:
        producer.close()
    return n_points


class Controls(MonitorView):
    """Pause, resume, replay and test-defect buttons with the pipeline state."""

    state = param.String(default="", doc="Pipeline state from the latest snapshot.")

    message = param.String(default="", doc="Outcome of the latest operator action.")

    replay_from_layer = param.Integer(
        default=None,
        allow_None=True,
        doc=("Lowest layer seen since the latest replay started (None: no replay yet)."),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pause = pn.widgets.Button(
            name="Pause",
            button_type="warning",
            css_classes=["amq-pause"],
            sizing_mode="stretch_width",
        )
        self._resume = pn.widgets.Button(
            name="Resume",
            button_type="success",
            css_classes=["amq-resume"],
            sizing_mode="stretch_width",
        )
        self._seek = pn.widgets.Button(
            name="Replay from start",
            button_type="primary",
            css_classes=["amq-seek"],
            sizing_mode="stretch_width",
            description="Reset grid, SPC and alerts, then consume the build from its first message",
        )
        self._inject = pn.widgets.Button(
            name="Inject test defect",
            button_type="danger",
            button_style="outline",
            css_classes=["amq-inject"],
            sizing_mode="stretch_width",
            visible=bool(getattr(self.monitor.config, "simulate", False)),
            description="Publish a short hot spot at the laser position (simulated builds only)",
        )
        if not self.permitted("pause"):  # viewers see the controls greyed out
            for button in (self._pause, self._resume, self._seek, self._inject):
                button.disabled = True
        self._pause.on_click(lambda _: self.pause())
        self._resume.on_click(lambda _: self.resume())
        self._seek.on_click(lambda _: self.seek_to_beginning())
        self._inject.on_click(lambda _: self.inject())
        self._status = html_pane(
            "", sizing_mode="stretch_width", css_classes=["amq-control-status"]
        )
        self._seeking = False
        self._seek_result: str | None = None

    # -- actions ----------------------------------------------------------------------------
    def pause(self) -> None:
        """Pause the consumer (the source keeps producing; nothing is lost)."""
        self._act("paused", self.monitor.pause, "pause")

    def resume(self) -> None:
        """Resume the consumer."""
        self._act("resumed", self.monitor.resume, "resume")

    def _denied(self, action: str) -> bool:
        reason = self.refuse(action)
        if reason is not None:
            self.message = reason
            self._render()
        return reason is not None

    def _act(self, what: str, action: Any, permission: str) -> None:
        if self._denied(permission):
            return
        try:
            action()
            self.message = f"Consumer {what} at {time.strftime('%H:%M:%S')}"
        except RuntimeError as exc:
            self.message = f"Could not do that: {exc}"
        self._render()

    def seek_to_beginning(self) -> None:
        """Replay the build from its first message, with clean grid, SPC and alerts."""
        if self._seeking or self._denied("seek"):
            return
        self._seeking = True
        self.message = "Replay requested…"
        self._render()

        def run() -> None:
            try:
                self.monitor.seek_to_beginning()
                self._seek_result = (
                    f"Replaying from the first message (started {time.strftime('%H:%M:%S')})"
                )
            except Exception as exc:  # reported on the next tick, never raised in a thread
                log.exception("seek to beginning failed")
                self._seek_result = f"Replay failed: {exc}"

        threading.Thread(target=run, name="amqadf-seek", daemon=True).start()

    def inject(self) -> None:
        """Publish a short hot spot (simulated builds): it should raise a critical alert."""
        if self._denied("inject_defect"):
            return
        try:
            n = inject_defect(self.monitor)
            self.message = f"Injected a {n}-point hot spot at {time.strftime('%H:%M:%S')}"
        except Exception as exc:
            self.message = f"Could not inject a defect: {exc}"
        self._render()

    # -- ticking ----------------------------------------------------------------------------
    def refresh(self, snapshot: dict[str, Any]) -> None:
        self.state = str(snapshot.get("state", ""))
        if self._seek_result is not None:
            self.message, self._seek_result = self._seek_result, None
            self._seeking = False
        self.replay_from_layer = snapshot.get("replay_from_layer")
        self._render()

    def _render(self) -> None:
        state = "replaying" if self._seeking else (self.state or "stopped")
        paused = state == "paused"
        viewer = not self.permitted("pause")  # viewers keep seeing the controls greyed out
        self._pause.disabled = viewer or paused or state == "stopped"
        self._resume.disabled = viewer or not paused
        self._seek.disabled = viewer or self._seeking
        color = STATE_COLORS.get(state, STATE_COLORS["stopped"])
        replay = ""
        if self.replay_from_layer is not None:
            replay = (
                f'<div class="amq-replay" data-layer="{self.replay_from_layer}">'
                f"Replay passed layer {self.replay_from_layer}</div>"
            )
        self._status.object = (
            f'<div class="amq-state-line"><span class="amq-dot" style="background:{color}"></span>'
            f'<span class="amq-state-text" data-state="{html.escape(state)}">'
            f"{html.escape(state.capitalize())}</span></div>"
            f'<div class="amq-control-msg">{html.escape(self.message)}</div>{replay}'
        )

    def __panel__(self) -> pn.viewable.Viewable:
        self._render()
        return pn.Column(
            self._status,
            pn.Row(self._pause, self._resume, sizing_mode="stretch_width"),
            self._seek,
            self._inject,
            sizing_mode="stretch_width",
            css_classes=["amq-controls"],
        )
