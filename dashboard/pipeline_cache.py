"""One monitoring pipeline per server process, shared by every browser session.

The pipeline (a :class:`~am_qadf.live_monitor.LiveMonitor`) lives in ``pn.state.cache``
and is started the first time a session asks for it. Sessions only read from it, on
their own periodic callback; the consumer thread never touches a Bokeh model. The
pipeline is stopped when the process exits (``atexit``), so offsets of processed
messages are committed.

Without ``AMQADF_STATE`` (the one-process demo) the pipeline also publishes its
machine's derived state, once a second, into a process-wide in-process state store
(:func:`embedded_state_store`), which the fleet page reads as it would read a plant's
Redis.

>>> from dashboard.pipeline_cache import monitor_config  # doctest: +SKIP
>>> monitor_config({"AMQADF_RATE": "2000"}).rate  # doctest: +SKIP
2000.0
"""

from __future__ import annotations

import atexit
import gc
import logging
import math
import threading
from dataclasses import replace

import panel as pn

from am_qadf.fleet.monitor_publisher import MonitorPublisher
from am_qadf.fleet.state_store import InProcessStateStore
from am_qadf.live_monitor import LiveMonitor, MonitorConfig

from .metrics import METRICS
from .state_cache import machine_choice_html, state_url

__all__ = [
    "CACHE_KEY",
    "embedded_state_store",
    "get_monitor",
    "monitor_config",
    "not_this_machine_html",
    "shutdown_monitor",
]

log = logging.getLogger(__name__)

CACHE_KEY = "am_qadf_live_monitor"
_STORE_KEY = "am_qadf_embedded_state"
_PUBLISHER_KEY = "am_qadf_monitor_publisher"
_LOCK = threading.Lock()

#: Seconds of messages each signal buffer must hold: a session reads only the rows
#: that arrived since its previous tick (every 0.5 s), so a few seconds of headroom
#: keep a slow tick from losing rows.
BUFFER_SECONDS = 4.0


def monitor_config(env: dict[str, str] | None = None) -> MonitorConfig:
    """The pipeline configuration from ``AMQADF_*`` variables, with signal buffers
    large enough for the live plots (``BUFFER_SECONDS`` of messages at the configured
    rate)."""
    cfg = MonitorConfig.from_env(env)
    need = int(math.ceil(cfg.rate * BUFFER_SECONDS))
    if cfg.streaming.buffer_size < need:
        cfg.streaming = replace(cfg.streaming, buffer_size=need)
    return cfg


def get_monitor(config: MonitorConfig | None = None) -> LiveMonitor:
    """The process-wide running :class:`LiveMonitor`, created and started on first use.

    ``config`` is only used by the first call (default: :func:`monitor_config`).
    """
    with _LOCK:
        mon = pn.state.cache.get(CACHE_KEY)
        if mon is None:
            mon = LiveMonitor(config or monitor_config())
            # /metrics: the pipeline's counters under the worker's names
            METRICS.watch_pipeline(mon.client, mon.alerts, mon.profile.machine.id)
            mon.start()
            pn.state.cache[CACHE_KEY] = mon
            log.info("started the monitoring pipeline")
            if state_url() is None:  # else workers publish the fleet
                _start_publisher(mon)
            _tune_gc()
        return mon


def _start_publisher(mon: LiveMonitor) -> None:
    """Publish the embedded machine for the fleet page; a profile whose machine id
    cannot name a fleet machine leaves the fleet page empty, never ``/app`` down."""
    try:
        pub = MonitorPublisher(mon, embedded_state_store())
    except ValueError as exc:
        log.warning("the fleet page will not show this machine: %s", exc)
        return
    pn.state.cache[_PUBLISHER_KEY] = pub.start()


def not_this_machine_html(asked: str, own: str) -> str | None:
    """None when the embedded pipeline's page serves ``?machine=asked`` (no id, or its
    own id ``own``, as the fleet page's tile links to it); else the page saying this
    server shows only ``own``, with a link to it.

    >>> not_this_machine_html("", "sim-1") is None, not_this_machine_html("sim-1", "sim-1")
    (True, None)
    >>> 'href="/app?machine=sim-1"' in not_this_machine_html("m9", "sim-1")
    True
    """
    if not asked or asked == own:
        return None
    reason = (
        f"this server runs the one-process pipeline of machine {own} only; "
        "set AMQADF_STATE to show the machines of a fleet's state store"
    )
    return machine_choice_html(asked, [own], reason)


def embedded_state_store() -> InProcessStateStore:
    """The process-wide in-process state store the embedded pipeline publishes into."""
    store = pn.state.cache.get(_STORE_KEY)
    if store is None:
        store = pn.state.cache.setdefault(_STORE_KEY, InProcessStateStore())
    return store


def _tune_gc() -> None:
    """Garbage collection for a server that streams 10 k messages/s.

    Collections stop every thread. The half million objects of the imported libraries
    live as long as the server, so they are frozen out of all later collections (full
    collections walked them all). And the youngest generation is collected every
    10,000 allocations, not 700: messages in flight then die before a collection sees
    them instead of being promoted, which made full collections frequent. Measured
    with gc callbacks over 70 s at 10 k msg/s with one page open: 4,900 collections
    taking 2.2 s, five of them full ones of 0.2-0.3 s each, before; 150 taking 1.0 s,
    one full one of 0.13 s, after.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def shutdown_monitor() -> None:
    """Stop the process-wide pipeline (if any) and forget it."""
    with _LOCK:
        mon = pn.state.cache.pop(CACHE_KEY, None)
        pub = pn.state.cache.pop(_PUBLISHER_KEY, None)
    if pub is not None:
        pub.stop()
    if mon is not None:
        try:
            mon.stop()
        except Exception:  # at interpreter exit, report and carry on
            log.exception("stopping the monitoring pipeline failed")


atexit.register(shutdown_monitor)
