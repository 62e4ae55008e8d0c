"""A session the server creates for a websocket, not for a page, loads Panel's CSS from
the dashboard server too.

Bokeh discards a session that no browser connected to within
``--unused-session-lifetime`` and creates it again, from the websocket, when the
browser does connect (a page slow to start on a loaded machine; a page reconnecting
after it lost its connection for longer than that). Panel points a document's
stylesheets at the server only while rendering the page's HTML, so such a document's
stylesheets pointed at Panel's CDN, and the page asked the internet for ~20 CSS files
(``test_dashboard.py::test_pages_request_nothing_beyond_the_dashboard_server`` failed
so under load). Here the websocket path is taken directly: a Bokeh protocol client asks
for the document of a session id no page was rendered for.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bokeh.client.websocket import WebSocketClientConnectionWrapper
from bokeh.protocol import Protocol
from bokeh.protocol.receiver import Receiver
from bokeh.util.token import generate_jwt_token, generate_session_id
from panel.io.resources import CDN_DIST
from tornado.websocket import websocket_connect

from .conftest import _free_port, start_dashboard, stop_dashboard

APPS = ("dashboard/app.py", "dashboard/fleet.py")


@pytest.fixture(scope="module")
def both_pages() -> Iterator[str]:
    """``panel serve`` of the machine page and the fleet page (embedded default)."""
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="amqadf-offline-")
    proc = start_dashboard(port, data_dir, Path(data_dir) / "panel-serve.log", app=APPS)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        stop_dashboard(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _read(conn: Any, receiver: Receiver) -> Any:
    while True:
        fragment = await asyncio.wait_for(conn.read_message(), 120)
        if fragment is None:
            raise AssertionError("the server closed the websocket")
        msg = await receiver.consume(fragment)
        if msg is not None:
            return msg


async def _document_over_websocket(url: str) -> list[dict[str, Any]]:
    """The document JSON of a new session that only a websocket asked for (as a
    browser's does after its session was discarded), after the document changes the
    server sent before it (its periodic callbacks already run)."""
    token = generate_jwt_token(generate_session_id())
    conn = await websocket_connect(url, subprotocols=["bokeh", token])
    try:
        protocol = Protocol()
        receiver = Receiver(protocol)
        ack = await _read(conn, receiver)
        assert ack.msgtype == "ACK"
        await protocol.create("PULL-DOC-REQ").send(WebSocketClientConnectionWrapper(conn))
        contents = []
        while True:
            msg = await _read(conn, receiver)
            assert msg.msgtype in ("PATCH-DOC", "PULL-DOC-REPLY"), msg.msgtype
            contents.append(msg.content)
            if msg.msgtype == "PULL-DOC-REPLY":
                return contents
    finally:
        conn.close()


def _run_on_own_loop(coro: Any) -> Any:
    """``asyncio.run`` on a thread of its own: in a full run Playwright's sync API
    keeps an event loop running in this thread, where ``asyncio.run`` is refused."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    worker = threading.Thread(target=run, name="bokeh-protocol-client")
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.parametrize("page", ["app", "fleet"])
def test_a_session_created_by_its_websocket_loads_no_css_from_the_cdn(
    both_pages: str, page: str
) -> None:
    messages = _run_on_own_loop(_document_over_websocket(f"{both_pages}/{page}/ws"))
    text = json.dumps(messages)
    assert "ImportedStyleSheet" in text  # the document's stylesheets are in it ...
    assert "static/extensions/panel/css/loading.css" in text
    cdn = sorted(set(s.split('"')[0] for s in text.split(CDN_DIST)[1:]))
    assert cdn == [], f"stylesheets from {CDN_DIST}: {cdn}"  # ... and none from the CDN
