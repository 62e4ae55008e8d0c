"""What the fleet page costs a dashboard server, next to what it shows.

1. The one-process demo's publisher (:class:`MonitorPublisher`, once a second): the CPU
   of one publish, and its share of the embedded pipeline's own CPU over the same
   seconds (the pipeline consumes and processes a simulated build at ``--rate``).
2. One fleet session: the CPU of rendering ``--machines`` tiles from a
   :class:`FleetReader` cache (what a session's periodic callback does), as a share
   of one core at the page's refresh period, and the bytes one update sends.

Thread CPU time (``time.thread_time``) for the measured calls, process CPU for the
pipeline; medians of ``--repeat`` calls. Noisy on a shared machine: print ``uptime``
beside the figures.

Run: python bench/bench_fleet_page.py [--rate 5000] [--machines 8] [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

import numpy as np

from am_qadf.fleet.fleet_reader import FleetReader
from am_qadf.fleet.monitor_publisher import MonitorPublisher
from am_qadf.fleet.state_store import InProcessStateStore, MachineSnapshot
from am_qadf.live_monitor import LiveMonitor, MonitorConfig
from am_qadf.streaming import StreamingConfig


def publisher_cost(rate: float, repeat: int) -> None:
    servers = [f"memory://bench-fleet-page-{uuid.uuid4().hex[:8]}"]
    streaming = StreamingConfig.embedded(
        kafka_bootstrap_servers=servers,
        storage_path=tempfile.mkdtemp(prefix="amqadf-bench-"),
        max_poll_records=1000,
        buffer_size=int(rate * 4),
    )
    mon = LiveMonitor(MonitorConfig(streaming=streaming, rate=rate))
    mon.start()
    pub = MonitorPublisher(mon, InProcessStateStore())
    try:
        deadline = time.monotonic() + 120
        while mon.snapshot()["stats"]["messages_processed"] < rate * 5:
            if time.monotonic() > deadline:
                raise SystemExit("the embedded pipeline did not get going within 120 s")
            time.sleep(0.2)
        costs = []
        cpu0, wall0 = time.process_time(), time.monotonic()
        for _ in range(repeat):
            t0 = time.thread_time()
            pub.publish()
            costs.append(time.thread_time() - t0)
            time.sleep(1.0)  # the publisher's own cadence
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        mon.stop()
    med = statistics.median(costs)
    pipeline = (cpu - sum(costs)) / wall  # CPU-s per second of everything else
    print(
        f"publisher: {med * 1e3:.1f} ms CPU per 1-s publish (median of {repeat}); the "
        f"pipeline used {pipeline:.2f} CPU-s/s at {rate:,.0f} msg/s: publishing adds "
        f"{med / pipeline * 100:.1f} %"
    )


def session_cost(machines: int, repeat: int, period_s: float = 0.5) -> None:
    from dashboard.fleet_view import FleetOverview

    store = InProcessStateStore()
    now = time.time()
    t = now - np.linspace(10.0, 0.0, store.window_points)
    for i in range(machines):
        mid = f"m{i + 1:02d}"
        store.put_windows(mid, {"temperature": (t, 1600 + 50 * np.sin(t * (i + 1)))})
        store.put_snapshot(
            MachineSnapshot(
                mid,
                state="running",
                layer=40,
                layers=120,
                progress=0.34,
                rate=5000.0,
                signal="temperature",
                alerts_active={"warning": i % 3},
                newest_alert={"severity": "warning", "rule": "r", "metric": "temperature",
                              "value": 1700.0, "layer": 40, "x": 1.0, "y": 2.0},
                data_at=now,
                updated_at=now,
            )
        )  # fmt: skip
    reader = FleetReader(store).start()
    try:
        view = FleetOverview(reader=reader, source="bench")
        costs, size = [], 0
        for _ in range(repeat):
            t0 = time.thread_time()
            html = view.render()
            costs.append(time.thread_time() - t0)
            size = len(html.encode())
    finally:
        reader.stop()
    med = statistics.median(costs)
    print(
        f"session: {med * 1e3:.2f} ms CPU per render of {machines} tiles (median of "
        f"{repeat}), {med / period_s * 100:.2f} % of a core at one render per "
        f"{period_s:g} s; {size / 1e3:.1f} kB per update"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    session_cost(args.machines, args.repeat)
    publisher_cost(args.rate, args.repeat)


if __name__ == "__main__":
    main()
