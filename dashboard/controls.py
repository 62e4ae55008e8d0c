"""Controls: pause / resume the consumer, replay the build from its first message, and
(on a simulated build) inject a test defect. Each button calls the library directly.

Seeking waits for the consumer thread to reset the grid, SPC and alerts between two
batches, so it runs off the session thread; its outcome shows on the next tick.

>>> Controls(monitor=get_monitor()).pause()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import panel as pn
import param

from am_qadf.machine_view import MonitorSnapshot

from .markup import esc
from .theme import STATE_COLORS
from .view_base import MonitorView, html_pane

__all__ = ["Controls"]

log = logging.getLogger(__name__)


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
            visible="inject_defect" in self.monitor.actions,
            description="Publish a short hot spot at the laser position (simulated builds only)",
        )
        # a fleet machine's worker replays nothing by itself: no button for it
        self._seek.visible = "seek" in self.monitor.actions
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
        self._act("paused", lambda: self.monitor.pause(by=self.user), "pause")

    def resume(self) -> None:
        """Resume the consumer."""
        self._act("resumed", lambda: self.monitor.resume(by=self.user), "resume")

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
        except (RuntimeError, PermissionError) as exc:
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
                self.monitor.seek_to_beginning(by=self.user)
                self._seek_result = (
                    f"Replaying from the first message (started {time.strftime('%H:%M:%S')})"
                )
            except RuntimeError as exc:  # e.g. another operator's replay is starting
                self._seek_result = f"Replay not started: {exc}"
            except Exception as exc:  # reported on the next tick, never raised in a thread
                log.exception("seek to beginning failed")
                self._seek_result = f"Replay failed: {exc}"

        threading.Thread(target=run, name="amqadf-seek", daemon=True).start()

    def inject(self) -> None:
        """Publish a short hot spot (simulated builds): it should raise a critical alert.
        The monitor refuses it on a line that is not simulated, whatever the browser
        sent (:meth:`LiveMonitor.inject_test_defect`)."""
        if self._denied("inject_defect"):
            return
        try:
            n = self.monitor.inject_test_defect(by=self.user)
            self.message = f"Injected a {n}-point hot spot at {time.strftime('%H:%M:%S')}"
        except (RuntimeError, ValueError) as exc:
            self.message = f"Could not inject a defect: {exc}"
        except Exception as exc:  # the broker refused it: say so, never raise in a callback
            log.exception("injecting a test defect failed")
            self.message = f"Could not inject a defect: {exc}"
        self._render()

    # -- ticking ----------------------------------------------------------------------------
    def refresh(self, snapshot: MonitorSnapshot) -> None:
        self.state = snapshot.state or ""
        if self._seek_result is not None:
            self.message, self._seek_result = self._seek_result, None
            self._seeking = False
        self.replay_from_layer = snapshot.replay_from_layer
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
            f'<span class="amq-state-text" data-state="{esc(state)}">'
            f"{esc(state.capitalize())}</span></div>"
            f'<div class="amq-control-msg">{esc(self.message)}</div>{replay}'
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
