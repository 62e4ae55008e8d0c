"""What the extra SPC charts of the live monitor cost.

Feeds the same simulated batches (1,000 messages each) through a
:class:`LiveMonitor` pipeline (processors, buffers, the SPC series the SPC tab reads)
once per chart set and prints messages per second and the ratio to the EWMA-only
pipeline measured in the same run, best of ``--repeat`` rounds.

    python bench/bench_spc_charts.py [--batches 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.live_monitor import LiveMonitor, MonitorConfig  # noqa: E402
from am_qadf.simulation.build_simulator import BuildSimulator  # noqa: E402
from am_qadf.streaming import StreamingConfig  # noqa: E402

CHART_SETS = (
    ("ewma",),
    ("ewma", "imr", "xbar_r"),
    ("ewma", "imr", "xbar_r", "xbar_s", "cusum"),
)


def throughput(charts: tuple[str, ...], batches: list[list[dict]]) -> float:
    """Messages per second through a fresh monitor's pipeline running ``charts``."""
    cfg = StreamingConfig.embedded(
        kafka_bootstrap_servers=[f"memory://bench-spc-{uuid.uuid4().hex[:8]}"],
        enable_mongodb_storage=False,
    )
    mon = LiveMonitor(MonitorConfig(streaming=cfg, simulate=False, spc_charts=charts))
    n = sum(len(b) for b in batches)
    t0 = time.perf_counter()
    for batch in batches:
        mon._on_result(batch, mon.client.process_stream_batch(batch))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sim = BuildSimulator(7, n_points=max(200_000, 1000 * args.batches))
    batches = [list(b) for b in sim.iter_batches(1000)][: args.batches]
    best = {c: max(throughput(c, batches) for _ in range(args.repeat)) for c in CHART_SETS}
    base = best[CHART_SETS[0]]
    for charts, rate in best.items():
        print(f"{'+'.join(charts):32s} {rate:>10,.0f} msg/s  {rate / base:5.2f}x EWMA only")


if __name__ == "__main__":
    main()
