"""The fleet's state store, one per server process, shared by every browser session.

A dashboard server that shows fleet machines (``/app?machine=ID``) reads the state
store named by ``AMQADF_STATE`` (``redis://…``; unset: an in-process store, which only
holds what a worker in this same process publishes), under the key namespace
``AMQADF_STATE_PREFIX`` (as the workers do). The store connection and one
:class:`~am_qadf.fleet.remote_machine.RemoteMachine` per machine (with its voxel
mirror) live in ``pn.state.cache``: sessions share them, and a session gets its own
access policy with :meth:`RemoteMachine.with_policy`.

>>> from dashboard.state_cache import get_state_store  # doctest: +SKIP
>>> get_state_store().machines()  # doctest: +SKIP
['m01', 'm02']
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

import panel as pn

from am_qadf.fleet.remote_machine import RemoteMachine
from am_qadf.fleet.state_store import StateStore, open_state_store
from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import StreamingConfig, StreamStorage

__all__ = [
    "STATE_ENV",
    "get_remote_machine",
    "get_state_store",
    "history_store",
    "machine_choice_html",
    "shutdown_state_store",
    "state_url",
]

log = logging.getLogger(__name__)

#: The variable naming the state store.
STATE_ENV = "AMQADF_STATE"
_STORE_KEY = "am_qadf_state_store"
_MACHINES_KEY = "am_qadf_remote_machines"
_HISTORY_KEY = "am_qadf_fleet_history"
_LOCK = threading.Lock()


def state_url(env: dict[str, str] | None = None) -> str | None:
    """``AMQADF_STATE`` (None when unset or blank).

    >>> state_url({"AMQADF_STATE": " redis://127.0.0.1:6379/0 "})
    'redis://127.0.0.1:6379/0'
    >>> state_url({}) is None
    True
    """
    env = os.environ if env is None else env
    url = (env.get(STATE_ENV) or "").strip()
    return url or None


def get_state_store() -> StateStore:
    """The process-wide state store (opened on first use; ``ValueError`` for an
    ``AMQADF_STATE`` that names no store)."""
    with _LOCK:
        store = pn.state.cache.get(_STORE_KEY)
        if store is None:
            prefix = (os.environ.get("AMQADF_STATE_PREFIX") or "").strip()
            store = open_state_store(state_url(), **({"prefix": prefix} if prefix else {}))
            pn.state.cache[_STORE_KEY] = store
            log.info("reading fleet state from %s", state_url() or "the in-process store")
        return store


def history_store() -> StreamStorage | None:
    """The history the workers write to, for queries (MongoDB at ``AMQADF_MONGO_URI``;
    None without one: a worker's embedded history file is its own)."""
    with _LOCK:
        if _HISTORY_KEY not in pn.state.cache:
            cfg = StreamingConfig.from_env()
            uri = cfg.mongodb_uri if cfg.enable_mongodb_storage else None
            pn.state.cache[_HISTORY_KEY] = (
                StreamStorage(
                    None,
                    uri,
                    max_rows=cfg.query_max_rows,
                    query_timeout_s=cfg.query_timeout_s,
                )
                if uri
                else None
            )
        return pn.state.cache[_HISTORY_KEY]


def get_remote_machine(machine_id: str) -> RemoteMachine:
    """The process-wide :class:`RemoteMachine` of ``machine_id`` (made on first use,
    with ``AMQADF_PROFILE``'s profile if set, and :func:`history_store`);
    ``ValueError`` for a malformed id, ``KeyError`` for a machine the store does not
    know."""
    store = get_state_store()
    history = history_store()
    with _LOCK:
        machines: dict[str, RemoteMachine] = pn.state.cache.setdefault(_MACHINES_KEY, {})
        remote = machines.get(machine_id)
        if remote is None:
            remote = RemoteMachine(
                store, machine_id, profile=MachineProfile.from_env(), history=history
            )
            machines[machine_id] = remote
        return remote


def shutdown_state_store() -> None:
    """Close the process-wide store (if any) and forget the machines read from it."""
    with _LOCK:
        store = pn.state.cache.pop(_STORE_KEY, None)
        pn.state.cache.pop(_MACHINES_KEY, None)
        pn.state.cache.pop(_HISTORY_KEY, None)
    if store is not None:
        try:
            store.close()
        except Exception:  # at interpreter exit, report and carry on
            log.exception("closing the state store failed")


atexit.register(shutdown_state_store)


def machine_choice_html(asked: str, known: list[str], reason: str = "") -> str:
    """The page shown instead of a machine's dashboard when ``?machine=`` names no
    machine the store knows (or none): what was asked, why, and a link to each known
    machine (everything escaped).

    >>> html = machine_choice_html("m9", ["m01", "m02"], "no machine 'm9'")
    >>> 'href="/app?machine=m02"' in html and "m9" in html
    True
    """
    from .markup import esc

    links = "".join(
        f'<li><a class="amq-machine-link" href="/app?machine={esc(m)}">{esc(m)}</a></li>'
        for m in known
    )
    what = (
        f"There is no machine <b>{esc(asked)}</b> in the fleet state."
        if asked
        else "Choose a machine of the fleet."
    )
    detail = f' <span class="amq-muted">({esc(reason)})</span>' if reason and asked else ""
    listing = (
        f'<p>Known machines ({len(known)}):</p><ul class="amq-known-machines">{links}</ul>'
        if known
        else "<p>No machine has published state yet: is a worker running?</p>"
    )
    return (
        f'<div class="amq-unknown-machine"><p>{what}{detail}</p>{listing}'
        '<p><a href="/fleet">Fleet overview</a></p></div>'
    )
