"""Markup from the line stays text in every view, in Chromium.

The server (``hostile_app.py``) is fed messages whose build id, field names and string
values carry HTML that runs if it is ever parsed: it sets ``window.__pwned`` or adds
an element whose id starts with ``amqpwn``. Each view that shows such data (status
line, alerts, health, History table with its column titles and their tooltips, SPC,
kiosk tiles) is opened and must show the text literally, with nothing run or injected.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import VIEWPORT, _free_port, int_attr, start_dashboard, stop_dashboard, wait_until
from .hostile_marks import BUILD, KEY, NOTE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

# Elements the marks would create, and on* attributes that would run them, in the page
# and in every shadow root (Panel components render in shadow DOM).
_INJECTED_JS = """() => {
  const found = []
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.id && el.id.startsWith('amqpwn')) found.push(el.tagName + '#' + el.id)
      for (const name of el.getAttributeNames()) {
        if (name.startsWith('on') && (el.getAttribute(name) || '').includes('__pwned'))
          found.push(el.tagName + '[' + name + ']')
      }
      if (el.shadowRoot) walk(el.shadowRoot)
    }
  }
  walk(document)
  return found
}"""


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[tuple[str, Path]]:
    data_dir = tempfile.mkdtemp(prefix="amqadf-hostile-")
    log_path = Path(data_dir) / "panel-serve.log"
    port = _free_port()
    proc = start_dashboard(
        port,
        data_dir,
        log_path,
        extra_env={"AMQADF_SIMULATE": "0"},
        app="tests/browser/hostile_app.py",
    )
    try:
        yield f"http://127.0.0.1:{port}/hostile_app", log_path
    finally:
        stop_dashboard(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def _assert_inert(page: Any, where: str) -> None:
    pwned = page.evaluate("() => window.__pwned")
    assert pwned is None, f"{where}: markup from a message ran ({pwned!r})"
    injected = page.evaluate(_INJECTED_JS)
    assert not injected, f"{where}: markup from a message became elements: {injected}"


def _text(page: Any, selector: str) -> str:
    loc = page.locator(selector)
    return "\n".join(loc.all_inner_texts()) if loc.count() else ""


def _open(browser: Any, url: str) -> Any:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(30_000)
    page.goto(url, wait_until="domcontentloaded", timeout=45_000)
    return page


def test_markup_from_the_line_stays_text_in_every_view(browser, hostile_server):
    url, log_path = hostile_server
    page = _open(browser, url)
    try:
        # status line: the build id, shown as it came
        wait_until(lambda: BUILD in _text(page, ".amq-hdr-build"), timeout=90, what="the build id")
        # alerts: the overheating samples raise alerts whose message names the build
        wait_until(
            lambda: BUILD in _text(page, ".amq-alerts-table .tabulator-cell"),
            timeout=90,
            what="an alert naming the build",
        )
        _assert_inert(page, "overview")

        page.locator(".bk-tab", has_text="Health").first.click()
        wait_until(
            lambda: BUILD in _text(page, ".amq-health-detail code"),
            timeout=60,
            what="the processor error on Health",
        )
        _assert_inert(page, "health")

        page.locator(".bk-tab", has_text="SPC").first.click()
        page.locator(".amq-spc-kv").first.wait_for()
        _assert_inert(page, "SPC")

        page.locator(".bk-tab", has_text="History").first.click()
        page.locator(".amq-history-recent button").click()
        wait_until(
            lambda: (int_attr(page, ".amq-history-rows", "data-rows") or 0) > 0,
            timeout=90,
            what="history rows",
        )
        titles = page.locator(".amq-history-table .tabulator-col-title")
        wait_until(lambda: titles.count() > 0, timeout=30, what="the table's column titles")
        _assert_inert(page, "history table")  # its column titles come from field names
        shown = titles.all_inner_texts()
        refused = "markup key documents refused" in log_path.read_text(errors="replace")
        if not refused:  # the history took the markup field name: it is a column title
            assert KEY in shown, shown
            # its tooltip (Tabulator renders it as HTML as well) shows once the mouse rests
            title = titles.nth(shown.index(KEY))
            title.scroll_into_view_if_needed()
            box = title.bounding_box()
            page.mouse.move(box["x"] + 4, box["y"] + box["height"] / 2)
            page.mouse.move(box["x"] + 8, box["y"] + box["height"] / 2)
            tooltip = page.locator(".tabulator-tooltip")
            # the mouse may pass another title on its way: wait for this title's tooltip
            wait_until(
                lambda: any(KEY in t for t in tooltip.all_inner_texts()),
                timeout=30,
                what="the title's tooltip showing the field name as text",
            )
        wait_until(
            lambda: NOTE in _text(page, ".amq-history-table .tabulator-cell"),
            timeout=30,
            what="a string value in the table",
        )
        _assert_inert(page, "history")
    finally:
        page.context.close()


def test_markup_from_the_line_stays_text_on_the_kiosk(browser, hostile_server):
    url, _ = hostile_server
    page = _open(browser, url + "?kiosk=1")
    try:
        wait_until(
            lambda: BUILD in _text(page, ".amq-k-build"), timeout=90, what="the kiosk build tile"
        )
        wait_until(
            lambda: BUILD in _text(page, ".amq-alerts-table .tabulator-cell"),
            timeout=90,
            what="an alert naming the build",
        )
        _assert_inert(page, "kiosk")
    finally:
        page.context.close()
