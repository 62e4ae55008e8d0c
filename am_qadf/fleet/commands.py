"""Operator commands for a machine's worker, sent through the state store.

A dashboard never acts on a machine itself: it checks the user's role (the same
:class:`~am_qadf.access_policy.AccessPolicy` as the single-process dashboard, on the
server) and appends a command to the machine's control stream with
:func:`send_action`. The worker that owns the machine reads the stream, parses each
command with :func:`parse_command` (a malformed one is ignored with a logged reason,
never half-applied) and records the outcome in the machine's snapshot
(``last_command``).

>>> from am_qadf.access_policy import AccessPolicy
>>> from am_qadf.fleet.state_store import InProcessStateStore
>>> store, policy = InProcessStateStore(), AccessPolicy(operators={"ada"})
>>> cid = send_action(store, policy, "ada", "m1", "pause")
>>> [(m, c["action"], c["by"]) for m, _, c in store.read_commands({"m1": "0"})]
[('m1', 'pause', 'ada')]
>>> send_action(store, policy, "bob", "m1", "resume")
Traceback (most recent call last):
...
PermissionError: user 'bob' (viewer) may not resume; ask an operator
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from am_qadf.access_policy import AccessPolicy

from .state_store import StateStore, check_machine_id

__all__ = ["FLEET_ACTIONS", "Command", "parse_command", "send_action"]

#: What an operator may ask a machine's worker to do.
FLEET_ACTIONS: tuple[str, ...] = (
    "pause",
    "resume",
    "acknowledge",
    "clear_alert",
    "relearn_baseline",
)
#: The actions that name an alert.
_ALERT_ACTIONS = frozenset({"acknowledge", "clear_alert"})
_MAX_TEXT = 200
_KEYS = frozenset({"action", "by", "alert_id", "issued_at"})


@dataclass(frozen=True)
class Command:
    """One parsed command: ``action`` (one of :data:`FLEET_ACTIONS`), who asked
    (``by``), the alert to acknowledge (``alert_id``) and when it was sent."""

    action: str
    by: str
    alert_id: str | None = None
    issued_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """What goes into the control stream."""
        d: dict[str, Any] = {"action": self.action, "by": self.by, "issued_at": self.issued_at}
        if self.alert_id is not None:
            d["alert_id"] = self.alert_id
        return d


def _text(raw: dict[str, Any], key: str) -> str:
    v = raw.get(key)
    if not isinstance(v, str) or not v or len(v) > _MAX_TEXT:
        raise ValueError(f"{key!r} must be a string of 1-{_MAX_TEXT} characters, got {v!r:.80}")
    return v


def parse_command(raw: Any) -> Command:
    """A :class:`Command` from what was read off a control stream, or ``ValueError``
    saying what is wrong with it.

    >>> parse_command({"action": "acknowledge", "by": "ada", "alert_id": "a7"}).alert_id
    'a7'
    >>> parse_command({"action": "rm -rf", "by": "ada"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown action 'rm -rf'; one of pause, resume, acknowledge, ...
    """
    if not isinstance(raw, dict):
        raise ValueError(f"a command must be a JSON object, got {type(raw).__name__}")
    extra = set(raw) - _KEYS
    if extra:
        raise ValueError(f"unknown command fields {sorted(extra)[:5]}")
    action = raw.get("action")
    if action not in FLEET_ACTIONS:
        raise ValueError(f"unknown action {action!r:.80}; one of {', '.join(FLEET_ACTIONS)}")
    by = _text(raw, "by")
    alert_id = _text(raw, "alert_id") if action in _ALERT_ACTIONS else None
    if action not in _ALERT_ACTIONS and "alert_id" in raw:
        raise ValueError(f"{action} takes no alert_id")
    issued = raw.get("issued_at", 0.0)
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        raise ValueError(f"'issued_at' must be a number of epoch seconds, got {issued!r:.80}")
    return Command(action, by, alert_id, float(issued))


def send_action(
    store: StateStore,
    policy: AccessPolicy,
    user: str | None,
    machine_id: str,
    action: str,
    *,
    alert_id: str | None = None,
    kiosk: bool = False,
) -> str:
    """Check that ``user`` may take ``action`` (``PermissionError`` if not), check the
    command (``ValueError``), then send it to ``machine_id``'s worker; returns the
    command id (the snapshot's ``last_command["id"]`` once the worker handled it)."""
    check_machine_id(machine_id)
    policy.require(user, action, kiosk=kiosk)
    raw: dict[str, Any] = {"action": action, "by": user or "anonymous", "issued_at": time.time()}
    if alert_id is not None:
        raw["alert_id"] = alert_id
    cmd = parse_command(raw)
    return store.send_command(machine_id, cmd.to_dict())
