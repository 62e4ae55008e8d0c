"""End-to-end: the fleet overview (``/fleet``, ``/fleet?kiosk=1``) in headless Chromium.

One server reads a real Redis state store (``AMQADF_STATE``, a prefix of its own) that
the test fills as workers would: eight machines (a critical one, one whose worker
stopped publishing, a warning, a paused one, running and idle ones), re-published
every half second except the stale one. Another server runs the one-process demo
(no ``AMQADF_STATE``): its embedded machine must appear as a tile by itself.

Screenshots go to a scratch folder, or to ``AMQADF_SCREENSHOTS`` (``docs/screenshots``
refreshes the README's).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from am_qadf.fleet.state_store import MachineSnapshot, RedisStateStore
from am_qadf.machine_profile import MachineProfile

from .conftest import (
    SCREENSHOTS,
    _free_port,
    data_attr,
    font_px,
    start_dashboard,
    stop_dashboard,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

APPS = ("dashboard/app.py", "dashboard/fleet.py")
HOSTILE = '<img src=x onerror="window.__fleet_xss=1">'

#: The machines the fake workers publish, and the status each must show.
MACHINES: dict[str, dict[str, Any]] = {
    "m01": {"state": "running", "rate": 5000.0},
    "m02": {"state": "running", "rate": 6500.0, "alerts_active": {"warning": 2}},
    "m03": {"state": "running", "rate": 8000.0, "alerts_active": {"critical": 1, "warning": 1}},
    "m04": {"state": "running", "rate": 9500.0},  # its worker dies: stale
    "m05": {"state": "paused", "rate": 0.0},
    "m06": {"state": "running", "rate": 5200.0},
    "m07": {"state": "idle", "rate": 0.0},
    "m08": {"state": "running", "rate": 7000.0, "alerts_active": {"info": 1}},
}
EXPECTED_ORDER = ["m03", "m04", "m02", "m05", "m01", "m06", "m08", "m07"]
EXPECTED_STATUS = {
    "m03": "critical",
    "m04": "stale",
    "m02": "warning",
    "m05": "paused",
    "m01": "running",
    "m06": "running",
    "m08": "running",
    "m07": "idle",
}


def _snapshot(mid: str, now: float) -> MachineSnapshot:
    spec = MACHINES[mid]
    alert = None
    if spec.get("alerts_active"):
        sev = next(iter(spec["alerts_active"]))
        alert = {
            "severity": sev,
            "rule": "threshold_high",
            "metric": "melt_pool_temperature",
            "message": f"{HOSTILE} too hot" if mid == "m03" else "",
            "value": 2411.5,
            "layer": 42,
            "x": 120.0,
            "y": 80.5,
        }
    return MachineSnapshot(
        mid,
        name=f"Line {mid[1:]}" if mid != "m01" else HOSTILE,
        state=spec["state"],
        worker="test-worker",
        build_id=f"build-{mid}",
        layer=42,
        layers=120 if mid != "m07" else None,
        progress=0.35 if mid != "m07" else None,
        messages=100_000,
        rate=spec["rate"],
        alerts_active=dict(spec.get("alerts_active", {})),
        newest_alert=alert,
        signal="melt_pool_temperature",
        data_at=now,
        updated_at=now,
    )


class FakeWorkers:
    """Publishes the machines' state every ``interval`` seconds, as workers do; the
    stale machine is published once, a minute old."""

    def __init__(self, store: RedisStateStore, interval: float = 0.5) -> None:
        self.store = store
        self.interval = interval
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def publish(self) -> None:
        now = time.time()
        t = now - np.linspace(10.0, 0.0, 300)
        v = 1600.0 + 80.0 * np.sin(t * 3.0)
        for mid in MACHINES:
            if mid == "m04" and self.rounds:
                continue  # its worker died after the first round
            snap = _snapshot(mid, now - 60 if mid == "m04" else now)
            self.store.put_windows(mid, {"melt_pool_temperature": (t, v)})
            self.store.put_snapshot(snap)
        self.rounds += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def start(self) -> FakeWorkers:
        self.publish()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def fleet_server(redis_url: str) -> Iterator[str]:
    """Base URL of a server whose /fleet reads a Redis state store fed by fake workers."""
    prefix = f"amqadf:test-fleet:{uuid.uuid4().hex[:8]}"
    store = RedisStateStore(redis_url, prefix=prefix)
    workers = FakeWorkers(store).start()
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="amqadf-fleet-")
    log_path = Path(data_dir) / "panel-serve.log"
    env = {"AMQADF_STATE": redis_url, "AMQADF_STATE_PREFIX": prefix}
    proc = start_dashboard(port, data_dir, log_path, extra_env=env, app=APPS)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_dashboard(proc)
        workers.stop()
        store.clear()
        store.close()
        shutil.copy(log_path, Path(tempfile.gettempdir()) / "amqadf-fleet-server.log")
        shutil.rmtree(data_dir, ignore_errors=True)


def _open(browser: Any, url: str, size: tuple[int, int] = (1600, 1000)) -> tuple[Any, Any]:
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(url, wait_until="domcontentloaded", timeout=45_000)
    return ctx, page


def _tiles(page: Any) -> list[tuple[str, str]]:
    """(machine id, status) of every tile, in page order (shadow DOM pierced)."""
    return page.locator(".amq-fl-tile").evaluate_all(
        "els => els.map(e => [e.dataset.machine, e.dataset.status])"
    )


def _wait_tiles(page: Any, n: int) -> list[tuple[str, str]]:
    def ready() -> list[tuple[str, str]] | None:
        tiles = _tiles(page)
        return tiles if len(tiles) == n and dict(tiles).get("m04") == "stale" else None

    return wait_until(ready, timeout=45, what=f"{n} tiles, m04 stale")


def test_fleet_tiles_worst_first_with_links_and_stale(browser, fleet_server):
    ctx, page = _open(browser, fleet_server + "/fleet")
    try:
        tiles = _wait_tiles(page, len(MACHINES))
        assert [m for m, _ in tiles] == EXPECTED_ORDER, tiles
        assert dict(tiles) == EXPECTED_STATUS
        assert "AM-QADF Live" in page.title() and "Fleet" in page.title()

        # each tile opens its machine's page
        hrefs = page.locator(".amq-fl-tile").evaluate_all("els => els.map(e => e.href)")
        assert hrefs == [f"{fleet_server}/app?machine={m}" for m in EXPECTED_ORDER]

        # the stale machine says for how long nothing came, and the number grows
        badge = page.locator('.amq-fl-tile[data-machine="m04"] .amq-fl-badge')
        first = wait_until(lambda: badge.inner_text(), what="stale badge")
        assert first.startswith("No data for ") and first.endswith(" s"), first
        seconds = int(first.split()[3].replace(",", ""))
        assert seconds >= 60
        wait_until(
            lambda: int(badge.inner_text().split()[3].replace(",", "")) > seconds,
            timeout=20,
            what="the stale age to grow",
        )

        # the critical one stands out: its badge and band are red, the running ones green
        def colour(mid: str, part: str) -> str:
            sel = f'.amq-fl-tile[data-machine="{mid}"]' + (f" {part}" if part else "")
            return page.locator(sel).first.evaluate(
                "e => getComputedStyle(e).backgroundColor", timeout=5_000
            )

        crit_badge, ok_badge = colour("m03", ".amq-fl-badge"), colour("m01", ".amq-fl-badge")
        assert crit_badge != ok_badge
        r, g, b = (int(c) for c in crit_badge[crit_badge.index("(") + 1 : -1].split(",")[:3])
        assert r > 180 and g < 90 and b < 100, crit_badge
        assert colour("m03", "") != colour("m01", ""), "the critical tile is tinted"

        # what the tile says: alerts by severity, the newest alert, layer N of M, rate
        crit = page.locator('.amq-fl-tile[data-machine="m03"]').first
        text = crit.inner_text()
        assert "1 critical" in text and "1 warning" in text, text
        assert "too hot" in text and "2,412" in text, text
        assert "Layer 42 of 120" in text and "8,000 msg/s" in text, text
        assert page.locator('.amq-fl-tile[data-machine="m03"] .amq-fl-spark').count() == 1

        # data from the store is text, never markup
        assert HOSTILE in page.locator('.amq-fl-tile[data-machine="m01"] .amq-fl-name').inner_text()
        assert page.evaluate("() => window.__fleet_xss") is None
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "fleet.png"))
    finally:
        ctx.close()


#: Smallest type (px) of the kiosk tiles' parts, readable from 3 m.
KIOSK_MIN_PX = {".amq-fl-name": 26, ".amq-fl-badge": 20, ".amq-fl-row": 22, ".amq-fl-chip": 18}


@pytest.mark.parametrize(
    "size, shot", [((1920, 1080), "fleet-kiosk.png"), ((1366, 768), "fleet-kiosk-1366x768.png")]
)
def test_fleet_kiosk_fits_the_screen_in_large_type(browser, fleet_server, size, shot):
    ctx, page = _open(browser, fleet_server + "/fleet?kiosk=1", size)
    try:
        tiles = _wait_tiles(page, len(MACHINES))
        assert [m for m, _ in tiles] == EXPECTED_ORDER
        height, width = size[1], size[0]

        problems: list[str] = []

        def fits() -> bool:
            boxes = page.locator(".amq-fl-tile").evaluate_all(
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " return [e.dataset.machine, r.left, r.top, r.right, r.bottom,"
                " e.scrollHeight - e.clientHeight] })"
            )
            problems[:] = [
                f"{m}: {left:.0f},{top:.0f}..{right:.0f},{bottom:.0f} (hidden {hidden} px)"
                for m, left, top, right, bottom, hidden in boxes
                if left < 0 or top < 0 or right > width + 1 or bottom > height + 1 or hidden > 1
            ]
            scroll = page.evaluate("() => document.scrollingElement.scrollHeight")
            if scroll > height + 1:
                problems.append(f"the page scrolls ({scroll} px in {height})")
            return len(boxes) == len(MACHINES) and not problems

        try:
            wait_until(fits, timeout=30, interval=1.0, what="a kiosk screen that fits")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {problems}") from None
        # two rows of four: every tile has the same size
        for sel, px in KIOSK_MIN_PX.items():
            size_px = font_px(page, sel)
            assert size_px >= px, (sel, size_px, px)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / shot))
    finally:
        ctx.close()


def test_fleet_embedded_shows_the_demo_machine(browser, tmp_path):
    """No AMQADF_STATE: /fleet shows the one-process demo's machine, running and live."""
    port = _free_port()
    proc = start_dashboard(port, str(tmp_path), tmp_path / "panel-serve.log", app=APPS)
    try:
        ctx, page = _open(browser, f"http://127.0.0.1:{port}/fleet")
        try:
            machine = MachineProfile.default().machine.id
            wait_until(
                lambda: [tuple(t) for t in _tiles(page)] == [(machine, "running")],
                timeout=60,
                what="the embedded machine's tile, running",
            )
            rate = page.locator(".amq-fl-rate").first
            wait_until(
                lambda: float(rate.get_attribute("data-rate") or 0) > 0,
                timeout=30,
                what="a throughput",
            )
            wait_until(
                lambda: page.locator(".amq-fl-spark").count() == 1, timeout=30, what="sparkline"
            )
            # this process's own machine, linked by its id as a worker machine is
            href = page.locator(".amq-fl-tile").first.evaluate("e => e.href")
            assert href == f"http://127.0.0.1:{port}/app?machine={machine}"
            page.locator(".amq-fl-tile").first.click()
            wait_until(
                lambda: data_attr(page, ".amq-hdr-machine", "data-machine") == machine,
                timeout=60,
                what="the embedded machine's dashboard",
            )
            # another id: a page saying this server shows only its own machine
            page.goto(f"http://127.0.0.1:{port}/app?machine=m99", wait_until="domcontentloaded")
            link = page.locator(".amq-unknown-machine .amq-machine-link")
            wait_until(lambda: link.count() == 1, timeout=60, what="the link to the machine")
            assert link.get_attribute("href") == f"/app?machine={machine}"
            assert "one-process pipeline" in page.locator(".amq-unknown-machine").inner_text()
        finally:
            ctx.close()
    finally:
        stop_dashboard(proc)


def test_fleet_follows_a_real_worker_and_shows_machines_going_quiet(
    browser, kafka_bootstrap, redis_url, tmp_path
):
    """``am-qadf simulate --machines 3`` into real Kafka, one ``am-qadf worker`` into
    Redis, the page reading Redis: three tiles that run, then say "No data for N s"
    once the builds are published (the worker still publishes; the data stopped); a
    tile opens that machine's dashboard."""
    import os
    import subprocess
    import sys

    from confluent_kafka.admin import AdminClient, NewTopic

    from .conftest import ROOT

    tag = uuid.uuid4().hex[:10]
    topic, prefix = f"bt-fleet-{tag}", f"amqadf:bt-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AMQADF_DATA_DIR": str(tmp_path / "worker"),
        "AMQADF_MONGO_URI": "none",  # history in the embedded file
        "AMQADF_REDIS_URL": "none",
        "AMQADF_STATE_PREFIX": prefix,
    }
    cli = [sys.executable, "-m", "am_qadf.cli"]
    procs: list[subprocess.Popen] = []

    def run(name: str, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*cli, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    store = RedisStateStore(redis_url, prefix=prefix)
    port = _free_port()
    server = start_dashboard(
        port,
        str(tmp_path),
        tmp_path / "panel-serve.log",
        extra_env={"AMQADF_STATE": redis_url, "AMQADF_STATE_PREFIX": prefix},
        app=APPS,
    )
    try:
        run("worker", "worker", "--bootstrap", kafka_bootstrap, "--topic", topic,
            "--group", f"bt-fleet-{tag}", "--state", redis_url, "--interval", "1")  # fmt: skip
        sim = run("simulate", "simulate", "--machines", "3", "--bootstrap", kafka_bootstrap,
                  "--topic", topic, "--rate", "1500", "--points", "15000")  # fmt: skip
        ctx, page = _open(browser, f"http://127.0.0.1:{port}/fleet")
        try:
            ids = ["m01", "m02", "m03"]
            wait_until(
                lambda: sorted(m for m, _ in _tiles(page)) == ids,
                timeout=90,
                what="the three simulated machines' tiles",
            )
            wait_until(
                lambda: any(
                    float(r or 0) > 0
                    for r in page.locator(".amq-fl-rate").evaluate_all(
                        "els => els.map(e => e.dataset.rate)"
                    )
                ),
                timeout=60,
                what="a throughput above 0",
            )
            wait_until(
                lambda: page.locator(".amq-fl-spark").count() == 3, timeout=60, what="sparklines"
            )
            # the simulated machines send their builds' layer counts (as a job file
            # knows them): every tile says "layer N of M" with a progress bar
            layers = page.locator(".amq-fl-layer")
            wait_until(
                lambda: (
                    all(
                        re.fullmatch(r"Layer [\d,]+ of [\d,]+", t)
                        for t in layers.evaluate_all("els => els.map(e => e.innerText)")
                    )
                    and page.locator(".amq-fl-progress").count() == 3
                ),
                timeout=60,
                what="layer N of M on every tile",
            )
            assert sim.wait(timeout=120) == 0
            # the builds are out: every machine goes quiet, none stays a green "Running"
            wait_until(
                lambda: (
                    {s for _, s in _tiles(page)} <= {"stale", "critical"}
                    and "stale" in {s for _, s in _tiles(page)}
                ),
                timeout=60,
                what="the machines shown as stale",
            )
            badge = page.locator('.amq-fl-tile[data-status="stale"] .amq-fl-badge').first
            assert badge.inner_text().startswith("No data for ")
            # the worker is alive and still publishing: it is the data that stopped
            assert procs[0].poll() is None
            assert all(time.time() - s.updated_at < 10 for s in store.snapshots().values())
            # drill down: a tile opens that machine's dashboard
            page.locator('.amq-fl-tile[data-machine="m02"]').first.click()
            wait_until(lambda: page.url.endswith("/app?machine=m02"), what="m02's page")
            wait_until(
                lambda: data_attr(page, ".amq-hdr-machine", "data-machine") == "m02",
                timeout=60,
                what="m02's dashboard",
            )
        finally:
            ctx.close()
    finally:
        stop_dashboard(server)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        store.clear()
        store.close()
        admin.delete_topics([topic, topic + ".dlq"])
