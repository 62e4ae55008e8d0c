"""What a fleet worker's publish costs now that it also writes a machine's dashboard
state (machine view every publish; SPC series, rule violations and voxel state every
2 s), against the publish of snapshot, alerts, SPC state, windows and deltas alone,
measured in the same run on the same pipeline.

A machine pipeline processes ``--points`` simulated points (one build: its SPC
baselines learned, its voxel grid filled), then each variant is published
``--repeats`` times into the in-process store and, with ``--redis URL``, into Redis
(a prefix of this run, cleared after). Printed: ms per publish of each variant and
the ratios, the voxel state's size, and the load average (a shared host is noisy).

Run: PYTHONPATH=. python bench/bench_machine_view.py [--points 40000] [--repeats 40] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

from am_qadf.fleet.machine_pipeline import MachinePipeline, profile_for
from am_qadf.fleet.state_store import InProcessStateStore, RedisStateStore, StateStore
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.streaming import StreamingConfig


def _pipeline(points: int) -> MachinePipeline:
    pipe = MachinePipeline(
        "m1", profile_for("m1"), StreamingConfig.embedded(enable_mongodb_storage=False)
    )
    sim = BuildSimulator(1, n_points=points, n_defects=2, warmup_points=0)
    for batch in sim.iter_batches(1000):
        pipe.process([{"topic": "t", "partition": 0}] * len(batch), batch)
    return pipe


def _base(pipe: MachinePipeline, store: StateStore) -> None:
    """The publish before the machine view (what it wrote before)."""
    store.put_spc("m1", pipe.monitor.spc_state())
    store.put_windows("m1", pipe.windows())
    store.put_snapshot(pipe.snapshot("w"))


_STATUS: dict[int, Any] = {}


def _view(pipe: MachinePipeline, store: StateStore) -> None:
    """What the machine view adds: making and writing it (the monitor's status is
    made once per publish for both the snapshot and the view: not counted here)."""
    status = _STATUS.setdefault(id(pipe), pipe.monitor.monitor_snapshot())
    store.put_view("m1", pipe.view(status))


def _slow(pipe: MachinePipeline, store: StateStore) -> None:
    pipe._bricks_since_slow = True
    pipe._publish_slow(store)


def _ms(fn: Any, pipe: MachinePipeline, store: StateStore, repeats: int) -> float:
    fn(pipe, store)  # warm
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(pipe, store)
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=40_000)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--redis", default=None, help="also publish into Redis at this URL")
    args = ap.parse_args()
    pipe = _pipeline(args.points)
    voxels = pipe.monitor.grid.occupied_count
    stores: list[tuple[str, StateStore]] = [("in-process", InProcessStateStore())]
    if args.redis:
        stores.append(
            ("redis", RedisStateStore(args.redis, prefix=f"bench-view-{uuid.uuid4().hex[:8]}"))
        )
    print(f"load average {os.getloadavg()[0]:.2f}; {args.points:,} points, {voxels:,} voxels")
    for name, store in stores:
        try:
            base = _ms(_base, pipe, store, args.repeats)
            view = _ms(_view, pipe, store, args.repeats)
            slow = _ms(_slow, pipe, store, max(3, args.repeats // 4))
        finally:
            if name == "redis":
                store.clear()
            store.close()
        # the slow part runs once per 2 s, publishes every 0.25 s: 1/8 of it per publish
        per_publish = base + view + slow / 8
        print(
            f"{name:>10}: base publish {base:6.2f} ms, + machine view {view:6.2f} ms "
            f"({view / base:.2f}x of base), slow part {slow:7.2f} ms every 2 s; "
            f"per publish at 4/s: {per_publish / base:.2f}x the base"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
