"""``/metrics`` of a served dashboard (``panel serve ... --plugins
dashboard.metrics_plugin``), parsed with prometheus_client's own parser: sessions,
page refreshes, and the embedded pipeline's counters under the worker's names."""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from am_qadf.machine_profile import MachineProfile

from .conftest import VIEWPORT, _free_port, start_dashboard, stop_dashboard, wait_until

pytestmark = pytest.mark.timeout(300)
TOKEN = "scrape-token-for-tests"


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[str]:
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="amqadf-metrics-")
    log_path = Path(data_dir) / "panel-serve.log"
    proc = start_dashboard(
        port,
        data_dir,
        log_path,
        extra_args=["--plugins", "dashboard.metrics_plugin"],
        extra_env={"AMQADF_METRICS_TOKEN": TOKEN},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_dashboard(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def _scrape(base: str, token: str | None = TOKEN) -> dict[tuple[str, tuple], float]:
    req = urllib.request.Request(base + "/metrics")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_token_when_one_is_set(metrics_server: str) -> None:
    for token in (None, "wrong"):
        with pytest.raises(urllib.error.HTTPError) as err:
            _scrape(metrics_server, token)
        assert err.value.code == 401


def test_a_served_dashboard_exports_sessions_refreshes_and_pipeline_counters(
    metrics_server: str, browser: Any
) -> None:
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.goto(metrics_server + "/app", wait_until="domcontentloaded", timeout=45_000)
        machine = MachineProfile.default().machine.id

        def refreshed_and_counted() -> dict | None:
            s = _scrape(metrics_server)
            ok = (
                _value(s, "amqadf_dashboard_sessions", page="app") >= 1
                and _value(s, "amqadf_dashboard_refresh_seconds_count", page="app") >= 2
                and _value(s, "amqadf_messages_out_total", machine=machine) > 0
                and _value(s, "amqadf_batch_seconds_count") > 0
            )
            return s if ok else None

        s = wait_until(refreshed_and_counted, timeout=120, what="metrics of a live page")
        assert _value(s, "amqadf_dashboard_machines_shown", page="app") == 1
        assert _value(s, "amqadf_messages_in_total", machine=machine) >= _value(
            s, "amqadf_messages_out_total", machine=machine
        )
    finally:
        ctx.close()
    wait_until(
        lambda: _value(_scrape(metrics_server), "amqadf_dashboard_sessions", page="app") == 0,
        timeout=60,
        what="the closed page's session to end",
    )
