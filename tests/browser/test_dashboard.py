"""End-to-end: the dashboard in headless Chromium against the embedded simulated build.

Screenshots of the main view, the 3D view and the kiosk view go to a scratch folder, or
to ``AMQADF_SCREENSHOTS`` (``docs/screenshots`` refreshes the README's).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import SCREENSHOTS, clipped_elements, font_px, int_attr, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def _msgs(page) -> int | None:
    return int_attr(page, ".amq-hdr-msgs", "data-msgs")


def _state(page) -> str | None:
    loc = page.locator(".amq-hdr-state")
    return loc.first.get_attribute("data-state") if loc.count() else None


def _wait_loaded(page) -> None:
    wait_until(lambda: (_msgs(page) or 0) > 0, timeout=45, what="messages in the header")


def _wait_voxels(page) -> None:
    wait_until(
        lambda: (int_attr(page, ".amq-voxel-count", "data-voxels") or 0) > 0,
        timeout=40,
        what="voxels in the 3D view",
    )


def _distinct_colors(png: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return len(img.getcolors(1 << 20) or [])


def test_page_loads_and_advances(open_page):
    page = open_page()
    _wait_loaded(page)
    assert "AM-QADF Live" in page.title()
    for css in (".amq-card-live", ".amq-card-voxels", ".amq-card-layer", ".amq-card-alerts"):
        assert page.locator(css).count() == 1, css
    assert page.locator(".amq-pause").count() == 1

    first = _msgs(page)
    wait_until(lambda: _msgs(page) > first + 1000, timeout=20, what="message counter to advance")
    wait_until(
        lambda: (int_attr(page, ".amq-hdr-voxels", "data-voxels") or 0) > 0,
        timeout=30,
        what="voxels",
    )
    plot = page.locator(".amq-live-plots").first
    before = plot.screenshot()
    wait_until(lambda: plot.screenshot() != before, timeout=15, what="live plot to move")
    # the latest-value tiles show numbers
    assert page.locator(".amq-latest-value").count() >= 4


def test_pause_freezes_and_resume_continues(open_page):
    page = open_page()
    _wait_loaded(page)
    page.locator(".amq-pause button").click()
    try:
        wait_until(lambda: _state(page) == "paused", timeout=25, what="paused state")
        time.sleep(1.5)  # a batch in flight may still land
        frozen = _msgs(page)
        time.sleep(2.5)
        assert _msgs(page) == frozen, "messages kept arriving while paused"
        assert page.locator(".amq-resume button").is_enabled()
    finally:
        page.locator(".amq-resume button").click()
    wait_until(lambda: _state(page) == "running", timeout=25, what="running state")
    wait_until(lambda: _msgs(page) > frozen, timeout=15, what="messages after resume")


def test_seek_replays_from_first_layer(open_page):
    page = open_page()
    _wait_loaded(page)
    layer_before = wait_until(
        lambda: (v := int_attr(page, ".amq-hdr-layer", "data-layer")) is not None and v >= 2 and v,
        timeout=60,
        what="the build to reach layer 2",
    )
    page.locator(".amq-pause button").click()
    try:
        wait_until(lambda: _state(page) == "paused", timeout=25, what="paused state")
        page.locator(".amq-seek button").click()
        # the library resets grid, SPC and alerts for a clean replay
        wait_until(
            lambda: int_attr(page, ".amq-hdr-voxels", "data-voxels") == 0,
            timeout=40,
            what="the voxel grid to be cleared",
        )
        wait_until(
            lambda: int_attr(page, ".amq-hdr-alerts", "data-alerts") == 0,
            timeout=20,
            what="alerts to be reset",
        )
    finally:
        page.locator(".amq-resume button").click()
    replayed_from = (
        wait_until(
            lambda: (
                int_attr(page, ".amq-replay", "data-layer") is not None
                and int_attr(page, ".amq-replay", "data-layer") + 1
            ),
            timeout=40,
            what="the replay to start",
        )
        - 1
    )
    assert replayed_from < layer_before, (replayed_from, layer_before)
    wait_until(
        lambda: (int_attr(page, ".amq-hdr-voxels", "data-voxels") or 0) > 0,
        timeout=40,
        what="voxels after the replay",
    )


def test_history_query_returns_rows_and_csv(open_page):
    page = open_page()
    _wait_loaded(page)
    page.locator(".bk-tab", has_text="History").first.click()
    page.locator(".amq-history-recent button").click()
    # the query runs in the background ("Running query…" shows meanwhile); a loaded
    # machine answers a minute of history (hundreds of thousands of rows) slowly
    rows = wait_until(
        lambda: int_attr(page, ".amq-history-rows", "data-rows"), timeout=75, what="history rows"
    )
    assert rows > 0
    assert page.locator(".amq-history-table").count() == 1
    with page.expect_download(timeout=30_000) as dl:
        page.locator(".amq-history-csv button, .amq-history-csv a").first.click()
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(text)))
    assert "timestamp" in table[0] and "temperature" in table[0]
    assert len(table) - 1 == rows


def test_alerts_list_criticals_first_with_a_banner_and_fit_their_card(open_page):
    page = open_page()
    _wait_loaded(page)
    page.locator(".amq-inject button").click()
    first_row = page.locator(".amq-alerts-table .tabulator-row").first
    wait_until(
        lambda: first_row.locator(".amq-sev-critical").count() > 0,
        timeout=30,
        what="the critical alert in the first row (above the warnings)",
    )
    wait_until(
        lambda: page.locator(".amq-critical-banner").count() > 0,
        timeout=15,
        what="the banner of the new critical alert",
    )
    for field in ("time", "severity", "what", "value", "seen", "where", "ack", "clear"):
        col = page.locator(f'.amq-alerts-table .tabulator-col[tabulator-field="{field}"]').first
        assert (col.bounding_box() or {}).get("width", 0) > 20, field
    # every column inside the table, every button inside the card
    assert clipped_elements(page, ".tabulator-col, button", ".tabulator, .amq-card") == []


def test_injected_defect_raises_alert_that_can_be_acknowledged(open_page):
    page = open_page()
    _wait_loaded(page)
    page.locator(".amq-inject button").click()
    critical = (
        page.locator(".amq-alerts-table .tabulator-row")
        .filter(has=page.locator(".amq-sev-critical"))
        .filter(has=page.locator(".amq-ack-btn"))
    )
    wait_until(lambda: critical.count() > 0, timeout=30, what="a critical alert")
    acked = (
        page.locator(".amq-alerts-table .tabulator-row")
        .filter(has=page.locator(".amq-sev-critical"))
        .filter(has=page.locator(".amq-state-acknowledged"))
    )

    def acknowledge() -> bool:
        # the table is rebuilt whenever alerts change, so a click can land on a row that
        # is being replaced: click again until the acknowledgement shows
        if acked.count() > 0:
            return True
        if critical.count() > 0:
            # force: the row may be re-rendered mid-click under load; the handler reads the
            # alert id from the clicked cell, so a click on a fresh copy of the row is fine
            critical.first.locator(".amq-ack-btn").click(timeout=5_000, force=True)
        time.sleep(2.0)
        return acked.count() > 0

    wait_until(acknowledge, timeout=75, interval=0.1, what="the alert to show acknowledged")


def _syncs(pane) -> int:
    return int(pane.get_attribute("data-amq-syncs") or 0)


def test_voxel_view_draws_and_updates_in_place(open_page):
    page = open_page()
    _wait_loaded(page)
    _wait_voxels(page)
    pane = page.locator(".amq-voxel-pane").first
    canvases = pane.locator("canvas")
    wait_until(lambda: canvases.count() > 0, timeout=45, what="the 3D canvas")
    # The update path keeps the canvas and its WebGL context (dashboard/vtk_inplace.js):
    # mark the canvases, let the build grow, and find the same elements afterwards.
    canvases.evaluate_all("els => els.forEach(e => { e.dataset.amqMark = 'seen' })")
    first = wait_until(lambda: _syncs(pane), timeout=45, what="a 3D update applied in place")
    wait_until(lambda: _syncs(pane) >= first + 3, timeout=45, what="three more 3D updates")
    marks = canvases.evaluate_all("els => els.map(e => e.dataset.amqMark || null)")
    assert marks and all(m == "seen" for m in marks), f"canvas re-created: {marks}"
    box = canvases.first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box
    # A page screenshot clipped to the pane: an element screenshot would wait for the
    # element to be "stable" across animation frames, which a busy software WebGL delays.
    colors = wait_until(
        lambda: (n := _distinct_colors(page.screenshot(clip=box, timeout=20_000))) > 20 and n,
        timeout=60,
        what="a non-blank 3D canvas",
    )
    print(f"3D canvas drew {colors} distinct colours after {_syncs(pane)} in-place updates")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    card = page.locator(".amq-card-voxels").first.bounding_box()
    page.screenshot(clip=card, path=str(SCREENSHOTS / "voxel3d.png"), timeout=20_000)


def test_kiosk_hides_controls(open_page):
    page = open_page("?kiosk=1")
    wait_until(lambda: page.locator(".amq-tile").count() >= 5, timeout=45, what="kiosk tiles")
    assert page.locator(".amq-pause").count() == 0
    assert page.locator(".amq-seek").count() == 0
    assert page.locator(".amq-history-view").count() == 0
    assert page.locator(".amq-voxel-controls").count() == 0
    wait_until(
        lambda: page.locator(".amq-voxel-pane canvas").count() > 0,
        timeout=30,
        what="3D canvas in kiosk mode",
    )


def test_pages_request_nothing_beyond_the_dashboard_server(open_page, server):
    # an operator kiosk on the shop floor is often offline: no font, script or style
    # may come from anywhere but the dashboard's own server
    host = urlsplit(server).netloc
    outside: list[str] = []

    def note(request) -> None:
        url = urlsplit(request.url)
        if url.scheme not in ("data", "blob") and url.netloc != host:
            outside.append(request.url)

    for query in ("", "?kiosk=1"):
        page = open_page(query)
        page.on("request", note)
        page.reload(wait_until="domcontentloaded")  # from the first request on
        wait_until(
            lambda p=page: p.locator(".amq-voxel-pane canvas").count() > 0,
            timeout=45,
            what="the 3D canvas",
        )
    assert outside == []


def test_main_view_screenshot(open_page):
    """Runs last: by now the build has layers, alerts and a replay behind it."""
    page = open_page()
    _wait_loaded(page)
    _wait_voxels(page)
    time.sleep(8)  # live plots fill their window, the layer map and alerts come in
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "main.png"))


@pytest.mark.parametrize("size", [(1366, 768), (1600, 1000), (1920, 1080)])
def test_nothing_clipped_on_any_tab(browser, server, size):
    """Every widget, button, label and plot of every tab of the main page lies inside
    its card (a table's columns inside the table) and inside the page's width."""
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(server, wait_until="domcontentloaded", timeout=45_000)
        _wait_loaded(page)
        tabs = page.locator(".amq-tabs .bk-tab")
        wait_until(lambda: tabs.count() == 4, timeout=30, what="the four tabs")
        found: dict[str, list[str]] = {}
        for i in range(4):
            name = tabs.nth(i).inner_text()
            tabs.nth(i).click()
            wait_until(
                lambda i=i: "bk-active" in (tabs.nth(i).get_attribute("class") or ""),
                timeout=15,
                what=f"tab {name}",
            )
            # layouts settle after a tab shows (plots size themselves to their card)
            bad = wait_until(
                lambda: (b := clipped_elements(page)) == [] or _settled(page, b),
                timeout=20,
                what=f"the layout of {name} to settle",
            )
            if bad is not True:
                found[name] = bad
        assert found == {}, "\n".join(f"{k}: {v}" for k, vs in found.items() for v in vs)
    finally:
        ctx.close()


def _settled(page, bad: list[str]) -> list[str] | None:
    """``bad`` if a second look a moment later finds the same (the layout is final)."""
    time.sleep(1.0)
    return bad if clipped_elements(page) == bad else None


#: Smallest type (px) of what a kiosk must show readably from 3 m.
KIOSK_MIN_PX = {
    ".amq-tile-value": 32,
    ".amq-kiosk-banner": 22,
    ".amq-alerts-table .tabulator-row": 18,
}


@pytest.mark.parametrize(
    "size, shot", [((1920, 1080), "kiosk.png"), ((1366, 768), "kiosk-1366x768.png")]
)
def test_kiosk_fits_the_screen_in_large_type(browser, server, size, shot):
    """A kiosk cannot scroll: every card (alerts included) lies inside the screen,
    nothing is clipped, the key tiles are in large type and say layer N of M, ETA and
    the data's age rather than a message rate."""
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(server + "?kiosk=1", wait_until="domcontentloaded", timeout=45_000)
        wait_until(lambda: page.locator(".amq-tile").count() >= 6, timeout=45, what="tiles")
        wait_until(
            lambda: page.locator(".amq-alerts-table .tabulator-row").count() > 0,
            timeout=60,
            what="an alert in the kiosk's list",
        )
        tiles = page.locator(".amq-kiosk-tiles").first.inner_text()
        assert "msg/s" not in tiles and "THROUGHPUT" not in tiles.upper(), tiles
        for label in ("LAYER", "DONE IN", "DATA AGE", "ACTIVE ALERTS"):
            assert label in tiles.upper(), (label, tiles)
        assert " of " in page.locator(".amq-k-layer .amq-tile-value").first.inner_text()
        assert "simulator" in page.title().lower() or "simulator" in (
            page.locator("#header").first.inner_text().lower()
        )
        for sel, px in KIOSK_MIN_PX.items():
            size_px = font_px(page, sel)  # the tiles are re-rendered every refresh
            assert size_px >= px, (sel, size_px, px)
        height = page.evaluate("() => window.innerHeight")

        problems: list[str] = []

        def fits() -> bool:
            problems[:] = [
                f"{sel} ends at {box['y'] + box['height']:.0f} px" if box else f"no {sel}"
                for sel in (".amq-kiosk-banner", ".amq-kiosk-tiles", ".amq-card-live",
                            ".amq-card-voxels", ".amq-card-layer", ".amq-card-alerts")
                if (box := page.locator(sel).first.bounding_box()) is None
                or box["y"] + box["height"] > height + 1
            ] + clipped_elements(page)  # fmt: skip
            return not problems

        # the plots size themselves to their cards a moment after the page shows
        try:
            wait_until(fits, timeout=30, interval=1.0, what="a kiosk screen that fits")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {problems}") from None
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / shot))
    finally:
        ctx.close()
