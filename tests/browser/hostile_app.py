"""A dashboard fed hostile input, for ``test_markup_inert.py``: ``panel serve
tests/browser/hostile_app.py`` serves the same page as ``dashboard/app.py``, but its
pipeline (embedded broker, no simulated build) is fed by a small line whose build id,
field names and string values carry markup, with overheating samples that raise alerts
naming that build. A processor fails once with the build id in its error (shown on
Health), and a few documents with markup field names are written straight into the
history (as another writer of the database could) so the History table gets them as
columns whatever the line's own validation lets through.

Every mark, once it runs as HTML, sets ``window.__pwned`` or adds an element whose id
starts with ``amqpwn``; the test looks for both.
"""

from __future__ import annotations

import runpy
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import panel as pn  # noqa: E402

from am_qadf.streaming import KafkaProducer  # noqa: E402
from dashboard.pipeline_cache import get_monitor  # noqa: E402
from tests.browser.hostile_marks import BUILD, KEY, MACHINE, NOTE  # noqa: E402

_ROUNDS = 2_400  # bounded: 10 minutes at 4 rounds a second
_PER_ROUND = 40


def _message(i: int, hot: bool, markup_key: bool) -> dict:
    layer = 1 + i // 4_000
    msg = {
        "timestamp": datetime.now(UTC).isoformat(),
        "build_id": BUILD,
        "machine": MACHINE,
        "layer": layer,
        "x": 20.0 + (i % 400) * 0.05,
        "y": 20.0 + (i // 400 % 10) * 0.5,
        "z": layer * 0.04,
        "power": 280.0,
        "scan_speed": 1000.0,
        "temperature": 2650.0 if hot else 1900.0 + (i % 7),
        "melt_pool_area": 0.03,
        "intensity": 2000.0,
        "value": 1.0,
        "note": NOTE,
    }
    if markup_key:  # in messages of their own: a line that refuses the name keeps the rest
        msg[KEY] = 1.0
    return msg


def _feed(monitor) -> None:  # noqa: ANN001 - LiveMonitor
    cfg = monitor.config.streaming
    producer = KafkaProducer(cfg.kafka_bootstrap_servers, cfg.kafka_topic, config=cfg.kafka_config)
    i = 0
    try:
        for r in range(_ROUNDS):
            hot = r % 40 == 10  # an overheating stretch now and then: alerts naming the build
            for _ in range(_PER_ROUND):
                producer.produce(_message(i, hot, markup_key=r % 4 == 3), key="hostile")
                i += 1
            producer.flush()
            time.sleep(0.25)
    finally:
        producer.close()


def _fail_once(state: dict) -> object:
    def processor(batch: list[dict]) -> dict:
        if not state["failed"] and batch:
            state["failed"] = True
            raise ValueError(f"cannot place build {batch[-1].get('build_id')}")
        return {}

    return processor


def _start(monitor) -> None:  # noqa: ANN001 - LiveMonitor
    monitor.client.register_processor("hostile_probe", _fail_once({"failed": False}))
    doc = {
        "timestamp": datetime.now(UTC),
        "build_id": BUILD,
        "layer": 1,
        "temperature": 1900.0,
        "note": NOTE,
        "machine": MACHINE,
    }
    for docs, what in (([doc], "plain"), ([{**doc, KEY: 2.0}], "markup key")):
        try:
            monitor.storage.store_batch(docs)
        except Exception as exc:  # a storage that refuses markup field names is fine too
            print(f"hostile_app: {what} documents refused: {exc}", flush=True)
    threading.Thread(target=_feed, args=(monitor,), name="hostile-feed", daemon=True).start()


monitor = get_monitor()
if not pn.state.cache.get("hostile_started"):  # sessions are created one at a time
    pn.state.cache["hostile_started"] = True
    _start(monitor)

runpy.run_path(str(ROOT / "dashboard" / "app.py"))
