"""Alert volume: how many alerts one defect raises, with and without episodes that span a
signal's SPC statistics.

Feeds two simulated streams through ``default_processors()`` in message batches, once with
the default :class:`~am_qadf.monitoring.alerts.AlertManager` (one episode per signal's SPC
statistics, ``spc_episode_group``) and once, as the baseline in the same run, with
``episode_group=None`` (an episode per (signal, rule), as before issue 16's round on alert
volume):

* the default ``BuildSimulator()`` build: 1 M points, 24 injected defects; alerts per
  defect counted from its start to 1,000 points after its end;
* the embedded demo's stream (``SimulationPublisher`` defaults: seed 7, the whole build,
  5,000 msg/s, batches of 250), its first 500 k points.

    python bench/bench_alert_volume.py [--points 1000000] [--demo-points 500000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.monitoring.alerts import AlertManager, spc_episode_group  # noqa: E402
from am_qadf.monitoring.processors import default_processors  # noqa: E402
from am_qadf.simulation import BuildSimulator  # noqa: E402

TAIL = 1_000


def run(
    sim: BuildSimulator,
    batches: Iterable[list[dict[str, Any]]],
    group: Callable[[str], str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    manager = AlertManager(cooldown_points=1000, episode_group=group)
    ap = default_processors(sample_rate_hz=sim.sensor_rate_hz, alert_manager=manager)[
        "alert_processor"
    ]
    out: list[dict[str, Any]] = []
    seen = 0
    for msgs in batches:
        out.extend(ap(msgs)["alerts"])
        seen += len(msgs)
        if seen >= limit:
            break
    return out


def summary(alerts: list[dict[str, Any]]) -> str:
    sev = Counter(a["severity"] for a in alerts)
    esc = sum("escalates" in a["details"] for a in alerts)
    return (
        f"{len(alerts):>4} alerts ({sev['critical']} critical, {sev['warning']} warning, "
        f"{sev['info']} info; {esc} escalations)"
    )


def per_defect(sim: BuildSimulator, alerts: list[dict[str, Any]]) -> dict[str, float]:
    idx = np.array([sim.index_of(datetime.fromisoformat(a["time"])) for a in alerts])
    kinds: dict[str, list[int]] = {}
    for e in sim.ground_truth:
        n = int(np.count_nonzero((idx >= e.start_index) & (idx < e.end_index + TAIL)))
        kinds.setdefault(e.kind, []).append(n)
    out = {k: float(np.mean(v)) for k, v in kinds.items()}
    out["all"] = float(np.mean([n for v in kinds.values() for n in v]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--demo-points", type=int, default=500_000)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    modes = (("per (signal, rule)", None), ("per signal's SPC", spc_episode_group))
    build = BuildSimulator(n_points=args.points)
    print(f"default build, {args.points:,} points, {len(build.ground_truth)} injected defects")
    for name, group in modes:
        alerts = run(build, build.iter_batches(batch_size=1000), group, args.points)
        pd = per_defect(build, alerts)
        kinds = ", ".join(f"{k} {v:.1f}" for k, v in pd.items() if k != "all")
        print(f"  episodes {name:<20} {summary(alerts)}; per defect {pd['all']:.2f} ({kinds})")
    demo = BuildSimulator(7, n_points=None, n_defects=24, sensor_rate_hz=5000.0)
    started = sum(e.start_index < args.demo_points for e in demo.ground_truth)
    print(f"demo stream, first {args.demo_points:,} points ({started} injected defects begin)")
    for name, group in modes:
        alerts = run(demo, demo.iter_batches(batch_size=250), group, args.demo_points)
        print(f"  episodes {name:<20} {summary(alerts)}")
    print(f"total time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
