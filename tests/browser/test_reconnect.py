"""A dashboard server restart: open pages come back by themselves, nobody reloads them.

The server is stopped and started again on the same port (a new process: the page's
session is gone). Panel's websocket re-connection plus the page's watchdog (reload once
the server answers, after ``?watchdog=`` seconds without a refresh) must bring the page
back to live data: once the old process is gone, any change of the page's message
counter comes from the new server.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import VIEWPORT, _free_port, int_attr, start_dashboard, stop_dashboard, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.mark.parametrize("query", ["?kiosk=1&watchdog=10", "?watchdog=10"])
def test_pages_reconnect_after_a_server_restart(browser, query):
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="amqadf-reconnect-")
    log_path = Path(data_dir) / "panel-serve.log"
    url = f"http://127.0.0.1:{port}/app{query}"
    proc = start_dashboard(port, data_dir, log_path)
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=45_000)

        selector = ".amq-kiosk-tiles" if "kiosk" in query else ".amq-hdr-msgs"

        def msgs() -> int | None:
            return int_attr(page, selector, "data-msgs")

        wait_until(lambda: (msgs() or 0) > 1000, 60, what="live messages")
        stop_dashboard(proc)
        frozen = msgs()  # the old process is gone: nothing can change this any more...
        proc = start_dashboard(port, data_dir, log_path)  # ...but the new one, same address
        after = wait_until(
            lambda: (n := msgs()) is not None and n != frozen and n,
            90,
            what="the page to show the restarted server's messages",
        )
        wait_until(lambda: (msgs() or 0) > after, 30, what="messages to advance after reconnect")
    finally:
        ctx.close()
        stop_dashboard(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
