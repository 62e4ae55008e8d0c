"""The access policy of this server's sessions (see :mod:`am_qadf.access_policy`).

Log-in comes from Panel itself: ``panel serve ... --basic-auth users.json
--cookie-secret ...`` or one of Panel's OAuth providers (``--oauth-provider``). With a
log-in configured, only the users named in ``AMQADF_OPERATORS`` may operate; everyone
else who logged in is a viewer. Without one (the local demo) access is open, unless
``AMQADF_OPEN_ACCESS=0`` makes every session a viewer.
"""

from __future__ import annotations

import panel as pn

from am_qadf.access_policy import AccessPolicy

__all__ = ["login_configured", "session_policy"]


def login_configured() -> bool:
    """True when this server asks users to log in (basic auth or OAuth).

    ``panel serve --basic-auth`` does not show in ``pn.config`` inside the session, so a
    session with a logged-in user counts as well (without a log-in there is no user).
    """
    if pn.config.basic_auth or pn.config.oauth_provider:
        return True
    return pn.state.curdoc is not None and bool(pn.state.user)


def session_policy() -> AccessPolicy:
    """The policy for a new session, from the environment and the log-in setup."""
    return AccessPolicy.from_env(login_configured=login_configured())
