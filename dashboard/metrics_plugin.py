"""``panel serve ... --plugins dashboard.metrics_plugin``: ``/metrics`` on the
dashboard's own port, in Prometheus' text format (see :mod:`dashboard.metrics`).

The endpoint is outside the dashboard's log-in (Prometheus scrapes without a
browser). It shows counts and machine ids, no process data; set
``AMQADF_METRICS_TOKEN`` to require ``Authorization: Bearer <token>`` (Prometheus'
``authorization`` / ``bearer_token_file`` settings) when the port is reachable
beyond the host.

>>> [path for path, _handler, _kwargs in ROUTES]
['/metrics']
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import RequestHandler

from dashboard.metrics import METRICS

__all__ = ["ROUTES", "MetricsHandler", "page_sessions"]


def page_sessions(server: Any) -> dict[str, int]:
    """Open sessions per page of a Bokeh/Panel tornado ``server`` (``/app`` -> ``app``).

    A session counts while a browser is connected to it: Bokeh keeps a closed page's
    session for ``unused_session_lifetime`` and discards it on a periodic check, which
    on a busy server comes late, so counting every kept session over-reports.

    >>> from types import SimpleNamespace as S
    >>> class Server:
    ...     app_paths = {"/app", "/fleet"}
    ...     def get_sessions(self, path):
    ...         return [S(connection_count=1), S(connection_count=0)] if path == "/app" else []
    >>> page_sessions(Server())
    {'app': 1, 'fleet': 0}
    """
    paths = getattr(server, "app_paths", None)
    if paths is None:
        return {}
    return {
        p.strip("/") or "root": sum(
            1 for s in server.get_sessions(p) if getattr(s, "connection_count", 1) > 0
        )
        for p in sorted(paths)
    }


class MetricsHandler(RequestHandler):
    """GET ``/metrics``: the process's metrics (401 without the token, when one is set)."""

    def get(self) -> None:
        token = os.environ.get("AMQADF_METRICS_TOKEN", "")
        if token:
            given = self.request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                self.set_status(401)
                self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
                self.finish("metrics need Authorization: Bearer <AMQADF_METRICS_TOKEN>\n")
                return
        METRICS.set_sessions(page_sessions(self.application))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(METRICS.text())


ROUTES = [("/metrics", MetricsHandler, {})]
