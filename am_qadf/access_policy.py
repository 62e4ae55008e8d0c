"""Who may operate the line: viewers watch, operators act.

Viewers (and kiosk screens) see everything. Operators may also pause and resume the
consumer, replay from the start, acknowledge alerts and delete old data. The check is
made where the action runs, on the server, so a viewer's session cannot act even by
calling a callback directly.

>>> policy = AccessPolicy(operators={"ada"})
>>> policy.role("ada"), policy.role("bob")
('operator', 'viewer')
>>> policy.require("bob", "pause")
Traceback (most recent call last):
...
PermissionError: user 'bob' (viewer) may not pause; ask an operator
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["AccessPolicy", "OPERATOR_ACTIONS", "ANONYMOUS"]

#: Actions only operators may take.
OPERATOR_ACTIONS = frozenset(
    {
        "pause",
        "resume",
        "seek",
        "acknowledge",
        "clear_alert",
        "delete_old_data",
        "inject_defect",
        "relearn_baseline",
    }
)
ANONYMOUS = "anonymous"


class AccessPolicy:
    """Roles by user name.

    ``operators`` may act; everyone else who got in is a viewer. ``open_access`` (no
    login configured, e.g. the local demo) makes every user, anonymous included, an
    operator. ``kiosk`` sessions are always viewers.
    """

    def __init__(self, operators: Iterable[str] = (), open_access: bool = False) -> None:
        self.operators = frozenset(o.strip() for o in operators if o.strip())
        self.open_access = bool(open_access)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, login_configured: bool) -> AccessPolicy:
        """``AMQADF_OPERATORS`` (comma-separated user names). Without a login
        (``login_configured=False``) access is open unless ``AMQADF_OPEN_ACCESS=0``.

        >>> policy = AccessPolicy.from_env({"AMQADF_OPERATORS": "ada, lin"}, login_configured=True)
        >>> sorted(policy.operators)
        ['ada', 'lin']
        """
        env = dict(os.environ) if env is None else env
        operators = env.get("AMQADF_OPERATORS", "").split(",")
        open_default = "0" if login_configured else "1"
        open_access = env.get("AMQADF_OPEN_ACCESS", open_default) not in ("0", "false", "no")
        return cls(operators, open_access=open_access)

    def role(self, user: str | None, *, kiosk: bool = False) -> str:
        """``"operator"`` or ``"viewer"`` for ``user`` (None: anonymous)."""
        if kiosk:
            return "viewer"
        if self.open_access or (user or ANONYMOUS) in self.operators:
            return "operator"
        return "viewer"

    def allows(self, user: str | None, action: str, *, kiosk: bool = False) -> bool:
        """True when ``user`` may take ``action``."""
        if action not in OPERATOR_ACTIONS:
            return True
        return self.role(user, kiosk=kiosk) == "operator"

    def require(self, user: str | None, action: str, *, kiosk: bool = False) -> None:
        """Raise ``PermissionError`` unless ``user`` may take ``action``."""
        if not self.allows(user, action, kiosk=kiosk):
            who = user or ANONYMOUS
            raise PermissionError(
                f"user {who!r} ({self.role(user, kiosk=kiosk)}) may not {action}; ask an operator"
            )
