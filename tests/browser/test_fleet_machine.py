"""``/app?machine=ID`` in Chromium: ``panel serve dashboard/app.py`` with
``AMQADF_STATE`` set shows one fleet machine's dashboard from the Redis state a
worker publishes (never a message), and an unknown id gets the list of machines."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from am_qadf.fleet.state_store import RedisStateStore
from am_qadf.fleet.worker import FleetWorker
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.streaming import KafkaProducer, StreamingConfig
from tests.browser.conftest import (
    SCREENSHOTS,
    VIEWPORT,
    _free_port,
    data_attr,
    start_dashboard,
    stop_dashboard,
    wait_until,
)


@pytest.fixture(scope="module")
def fleet_server(redis_url: str) -> Iterator[tuple[str, RedisStateStore]]:
    """A worker (in-process broker) publishing m01 and m02 to Redis under a prefix of
    this test, and a dashboard server reading that state."""
    prefix = f"bt-fleet-{uuid.uuid4().hex[:10]}"
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://{prefix}"], enable_mongodb_storage=False
    )
    prod = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic)
    for seed, machine in ((1, "m01"), (2, "m02")):
        sim = BuildSimulator(seed, n_points=2000, n_defects=0, warmup_points=0)
        prod.produce_batch([m for b in sim.iter_batches(500) for m in b], key=machine)
    prod.flush()
    prod.close()
    store = RedisStateStore(redis_url, prefix=prefix)
    worker = FleetWorker(cfg, store, publish_interval=0.2).start()
    data_dir = tempfile.mkdtemp(prefix="amqadf-fleet-browser-")
    proc = None
    try:
        assert worker.wait_until(
            lambda: all((s := store.snapshot(m)) and s.messages == 2000 for m in ("m01", "m02"))
        )
        port = _free_port()
        proc = start_dashboard(
            port,
            data_dir,
            Path(data_dir) / "panel-serve.log",
            extra_env={"AMQADF_STATE": redis_url, "AMQADF_STATE_PREFIX": prefix},
        )
        yield f"http://127.0.0.1:{port}/app", store
    finally:
        if proc is not None:
            stop_dashboard(proc)
        worker.stop()
        store.clear()
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _open(browser: Any, url: str) -> Any:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(url, wait_until="domcontentloaded", timeout=45_000)
    return page


def test_app_shows_the_fleet_machine_named_in_the_url(browser: Any, fleet_server: Any) -> None:
    url, store = fleet_server
    page = _open(browser, url + "?machine=m02")
    try:
        snap = store.snapshot("m02")
        wait_until(
            lambda: data_attr(page, ".amq-hdr-machine", "data-machine") == "m02",
            what="the header naming m02",
        )
        assert data_attr(page, ".amq-hdr-build", "data-build") == snap.build_id
        wait_until(
            lambda: data_attr(page, ".amq-hdr-layer", "data-layer") == str(snap.layer),
            what=f"layer {snap.layer}",
        )
        assert data_attr(page, ".amq-hdr-msgs", "data-msgs") == "2000"
        # the 3D view draws the machine's voxels from the published voxel state
        wait_until(
            lambda: int(data_attr(page, ".amq-voxel-count", "data-voxels") or 0) > 0,
            what="voxels of m02",
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "fleet-machine-m02.png"))
    finally:
        page.context.close()


def test_kiosk_of_a_fleet_machine(browser: Any, fleet_server: Any) -> None:
    url, store = fleet_server
    page = _open(browser, url + "?machine=m01&kiosk=1")
    try:
        tile = page.locator(".amq-k-build")
        wait_until(lambda: store.snapshot("m01").build_id in tile.first.inner_text(), what="tile")
        assert "m01" in page.title()
    finally:
        page.context.close()


def test_an_unknown_machine_gets_the_list_of_machines(browser: Any, fleet_server: Any) -> None:
    url, _ = fleet_server
    page = _open(browser, url + "?machine=m99")
    try:
        box = page.locator(".amq-unknown-machine")
        wait_until(lambda: box.count() > 0, what="the unknown-machine page")
        assert "no machine m99" in box.first.inner_text()
        links = page.locator("a.amq-machine-link")
        assert [links.nth(i).inner_text() for i in range(links.count())] == ["m01", "m02"]
        assert links.nth(1).get_attribute("href") == "/app?machine=m02"
    finally:
        page.context.close()
