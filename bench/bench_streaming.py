"""Streaming core benchmarks: BufferManager and process_stream_batch.

Every figure is measured in this run and printed beside a baseline measured in the same
run. Targets (issue "streaming core"):
  * add_data one point at a time  >= 300 k points/s
  * add_batch                       >= 1 M points/s
  * get_sliding_window(1000) on a full 100 k buffer: well under 1 ms
  * process_stream_batch of 1,000 dict messages with the voxel processor >= 200 k msg/s
Run: python bench/bench_streaming.py
"""

from __future__ import annotations

import sys
import time
from collections import deque
from datetime import UTC, datetime, timedelta

import numpy as np

from am_qadf.streaming import BufferManager, IncrementalProcessor, StreamingClient, StreamingConfig
from am_qadf.streaming.voxel_processor import VoxelProcessor
from am_qadf.voxelization.voxel_grid import VoxelGrid


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class DequeBuffer:
    """Baseline: the straightforward buffer (deque of tuples, windows built from lists)."""

    def __init__(self, buffer_size: int) -> None:
        self.items: deque = deque(maxlen=buffer_size)

    def add_data(self, data, timestamp, metadata=None) -> None:
        self.items.append((np.array(data, copy=True), timestamp, metadata or {}))

    def get_sliding_window(self, size: int):
        items = list(self.items)[-size:]
        return np.array([i[0] for i in items]), [i[1] for i in items], [i[2] for i in items]


def main() -> int:
    rows = []
    n = 200_000
    point = np.array([1.0])
    stamps = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=50 * i) for i in range(n)]

    def ours_add():
        b = BufferManager(buffer_size=100_000)
        for t in stamps:
            b.add_data(point, t)

    def base_add():
        b = DequeBuffer(100_000)
        for t in stamps:
            b.add_data(point, t)

    t_ours, t_base = best_of(ours_add, 3), best_of(base_add, 3)
    rows.append(("add_data, points/s", n / t_ours, n / t_base, n / t_ours >= 300_000))

    data = np.random.default_rng(0).normal(size=1_000_000)
    times = np.arange(1_000_000) * 5e-5 + 1.7e9

    def ours_batch():
        b = BufferManager(buffer_size=100_000)
        for i in range(0, 1_000_000, 1000):
            b.add_batch(data[i : i + 1000], times[i : i + 1000])

    t_batch = best_of(ours_batch, 3)
    rows.append(
        ("add_batch (1,000 rows), points/s", 1e6 / t_batch, n / t_base, 1e6 / t_batch >= 1e6)
    )

    full = BufferManager(buffer_size=100_000)
    full.add_batch(data[:100_000], times[:100_000])
    base_full = DequeBuffer(100_000)
    for i in range(100_000):
        base_full.add_data(point, stamps[i % n])
    t_win = best_of(lambda: [full.get_sliding_window(1000) for _ in range(100)], 5) / 100
    t_bwin = best_of(lambda: [base_full.get_sliding_window(1000) for _ in range(10)], 3) / 10
    rows.append(
        ("get_sliding_window(1000) on 100 k, ms", t_win * 1e3, t_bwin * 1e3, t_win < 0.5e-3)
    )

    rng = np.random.default_rng(1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    msgs = [
        {
            "timestamp": t0 + timedelta(microseconds=50 * i),
            "build_id": "B1",
            "layer": 3,
            "x": float(x),
            "y": float(y),
            "z": 0.12,
            "power": 200.0,
            "scan_speed": 1000.0,
            "temperature": float(tt),
            "melt_pool_area": 0.02,
            "intensity": 1.0,
            "value": float(tt),
        }
        for i, (x, y, tt) in enumerate(
            zip(
                rng.uniform(80, 170, 100_000),
                rng.uniform(80, 170, 100_000),
                rng.normal(1900, 30, 100_000),
                strict=True,
            )
        )
    ]
    client = StreamingClient(StreamingConfig.embedded(buffer_size=100_000))
    grid = VoxelGrid((0, 0, 0), (250, 250, 30), 0.5)
    client.register_processor("voxel_processor", VoxelProcessor(IncrementalProcessor(grid)))
    batches = [msgs[i : i + 1000] for i in range(0, len(msgs), 1000)]

    def ours_process():
        for b in batches:
            client.process_stream_batch(b)

    def base_process():  # the per-point path: one add_point call per message
        g = VoxelGrid((0, 0, 0), (250, 250, 30), 0.5)
        for m in msgs[:5000]:
            g.add_point(m["x"], m["y"], m["z"], {"temperature": m["temperature"]})

    t_proc = best_of(ours_process, 3)
    t_bproc = best_of(base_process, 1) * (len(msgs) / 5000)
    rate = len(msgs) / t_proc
    rows.append(("process_stream_batch + voxel, msg/s", rate, len(msgs) / t_bproc, rate >= 200_000))

    print(f"{'measure':42s} {'ours':>14s} {'baseline':>14s} {'ratio':>8s}  target")
    for name, ours, base, ok in rows:
        ratio = base / ours if name.endswith(", ms") else ours / base
        print(f"{name:42s} {ours:14,.3f} {base:14,.3f} {ratio:8.1f}x  {'PASS' if ok else 'MISS'}")
    print("baseline: deque-of-tuples buffer; per-point VoxelGrid.add_point for processing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
