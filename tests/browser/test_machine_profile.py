"""Another machine, no code change: a stream in the EOS example profile's shape (its
own field names, °C, mV, epoch-ms timestamps) published into REAL Kafka, and the
dashboard started with ``AMQADF_PROFILE`` shows its signals with the profile's labels,
units and limits, with SPC and alerts working."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from am_qadf.streaming import KafkaProducer
from tests.browser.conftest import (
    SCREENSHOTS,
    VIEWPORT,
    _free_port,
    data_attr,
    int_attr,
    start_dashboard,
    stop_dashboard,
    wait_until,
)
from tests.eos_stream import EOS_PROFILE, eos_messages


@pytest.fixture(scope="module")
def eos_server(kafka_bootstrap: str) -> Iterator[str]:
    """A dashboard on the EOS profile, consuming a Kafka topic (the real broker the
    server fixtures start) an EOS-shaped stream goes to (12,000 messages first, then
    2,000 a second while the tests run)."""
    topic = f"eos-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(kafka_bootstrap.split(","), topic)
    # stream time keeps step with the wall clock: 2,000 points a second, the first
    # 12,000 (6 s) at once, with a hot episode in layer 5 (500 K over the profile's
    # 2,700 K limit) after the SPC baseline (5,000 points) is learned
    rate = 2_000.0
    t0 = int(time.time() * 1000) - 6_000
    first = eos_messages(12_000, t0_ms=t0, hot=(9_000, 9_100), rate_hz=rate)
    producer.produce_batch(first, key="m290-2")
    producer.flush()
    stop = threading.Event()

    def keep_publishing() -> None:
        start = 12_000
        while not stop.wait(0.5) and start < 400_000:  # bounded (200 s)
            batch = eos_messages(1_000, start=start, t0_ms=t0, rate_hz=rate)
            producer.produce_batch(batch, key="m290-2")
            start += 1_000

    pub = threading.Thread(target=keep_publishing, daemon=True)
    pub.start()
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="amqadf-eos-")
    log_path = Path(data_dir) / "panel-serve.log"
    env = {
        "AMQADF_KAFKA": kafka_bootstrap,
        "AMQADF_TOPIC": topic,
        "AMQADF_GROUP": f"dash-{topic}",
        "AMQADF_PROFILE": str(EOS_PROFILE),
        "AMQADF_SIMULATE": "0",
        "AMQADF_REDIS_URL": "none",
        "AMQADF_MONGO_URI": "none",
    }
    proc = start_dashboard(port, data_dir, log_path, extra_env=env)
    try:
        yield f"http://127.0.0.1:{port}/app"
    finally:
        stop.set()
        pub.join(timeout=10)
        producer.flush()
        producer.close()
        stop_dashboard(proc)
        shutil.copy(log_path, Path(tempfile.gettempdir()) / "amqadf-eos-server.log")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture()
def page(browser: Any, eos_server: str) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(eos_server, wait_until="domcontentloaded", timeout=45_000)
    yield pg
    ctx.close()


def _text(page: Any, selector: str) -> str:
    loc = page.locator(selector)
    return " ".join(loc.all_text_contents()) if loc.count() else ""


def test_dashboard_shows_another_machine_from_its_profile(page: Any) -> None:
    wait_until(
        lambda: data_attr(page, ".amq-hdr-machine", "data-machine") == "m290-2",
        timeout=60,
        what="the machine in the header",
    )
    assert "EOS M290 #2" in _text(page, ".amq-hdr-machine")
    wait_until(
        lambda: (int_attr(page, ".amq-hdr-msgs", "data-msgs") or 0) >= 12_000,
        timeout=90,
        what="the EOS stream to be consumed from Kafka",
    )
    wait_until(
        lambda: (int_attr(page, ".amq-hdr-voxels", "data-voxels") or 0) > 0,
        timeout=30,
        what="voxels placed from pos_x/pos_y and layer_no x thickness",
    )
    # live tiles: the profile's short labels and units, values converted (°C -> K, mV -> V)
    latest = wait_until(
        lambda: (t := _text(page, ".amq-latest")) and "–" not in t and t,
        timeout=30,
        what="latest values",
    )
    for label in ("Temperature", "K", "Photodiode", "V", "Power", "W"):
        assert label in latest, (label, latest)
    assert "mp_temp_C" not in latest and "Melt-pool area" not in latest
    kelvin = float(latest.split("Temperature")[1].split("K")[0].replace(",", ""))
    assert 2_150 < kelvin < 2_450  # 2,026.85 °C + 273.15, not the raw Celsius value
    # the 3D view colours by the profile's signal with its alarm limits
    legend = wait_until(lambda: _text(page, ".amq-legend-box"), timeout=30, what="legend")
    assert "Melt-pool temperature (K)" in legend and "1,900" in legend and "2,700" in legend
    # alerts: the hot episode is a critical threshold alert, listed under the profile's label
    wait_until(
        lambda: (int_attr(page, ".amq-sev-critical", "data-count") or 0) >= 1,
        timeout=60,
        what="a critical alert (temperature above the profile's 2,700 K)",
    )
    wait_until(
        lambda: "Melt-pool temperature" in _text(page, ".amq-alerts-table .tabulator-row"),
        timeout=30,
        what="the alert under the profile's label",
    )
    plot = page.locator(".amq-live-plots").first
    before = plot.screenshot()
    wait_until(lambda: plot.screenshot() != before, timeout=20, what="live plots to move")
    time.sleep(3)  # a few seconds of trace for the README's picture
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "machine-profile-eos.png"))

    # SPC: the profile's charted signals and chart kinds, baseline learned from this stream
    page.locator(".bk-tab", has_text="SPC").first.click()
    summary = wait_until(
        lambda: (t := _text(page, ".amq-spc-kv")) and "monitoring" in t and t,
        timeout=60,
        what="the SPC baseline",
    )
    assert "EWMA (λ = 0.05)" in summary
    centre = float(summary.split("centre")[1].split("σ")[0].replace(",", ""))
    assert 2_250 < centre < 2_350, summary  # its own material, not the simulator's 1,900 K
    buttons = _text(page, ".amq-spc-signal button")
    assert "Melt-pool temperature" in buttons and "Photodiode signal" in buttons
    assert "Melt-pool area" not in buttons
    page.locator(".amq-spc-signal button", has_text="Photodiode signal").click()
    wait_until(lambda: "I-MR" in _text(page, ".amq-spc-kv"), timeout=30, what="I-MR chart")

    # Health: the profile fits (every field arrives) and other fields are listed
    page.locator(".bk-tab", has_text="Health").first.click()
    fit = wait_until(
        lambda: (t := _text(page, ".amq-profile-fit")) and "every field" in t and t,
        timeout=30,
        what="the profile fit",
    )
    assert "eos-m290-example.toml" in fit and "chamber_o2_ppm" in fit
    assert data_attr(page, ".amq-profile-fit", "data-problems") == "0"


def test_a_bad_profile_is_named_on_the_page(browser: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad-m290.toml"
    bad.write_text('[machine]\nid = "m"\n[signals.t]\nspc = "shewhart"\n')
    port = _free_port()
    log_path = tmp_path / "panel-serve.log"
    proc = start_dashboard(port, str(tmp_path), log_path, extra_env={"AMQADF_PROFILE": str(bad)})
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        pg = ctx.new_page()
        pg.goto(f"http://127.0.0.1:{port}/app", wait_until="domcontentloaded", timeout=45_000)
        text = wait_until(
            lambda: _text(pg, ".amq-profile-error"), timeout=30, what="the profile error"
        )
        assert "bad-m290.toml: signals.t.spc: must be one of" in text
        assert "bad machine profile: " in log_path.read_text()
    finally:
        ctx.close()
        stop_dashboard(proc)
