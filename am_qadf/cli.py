"""``am-qadf``: run the pipeline from a terminal.

Commands:
  simulate  publish a simulated build to a topic (``memory://`` or Kafka)
  monitor   run the whole monitoring pipeline and print live figures
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

__all__ = ["main"]


def _simulate(args: argparse.Namespace) -> int:
    from am_qadf.simulation.publisher import SimulationPublisher

    pub = SimulationPublisher(
        args.bootstrap.split(","),
        args.topic,
        rate=args.rate,
        seed=args.seed,
        builds=args.builds,
        n_points=args.points,
    )
    pub.start()
    started = time.monotonic()
    try:
        while pub.is_alive:
            time.sleep(1.0)
            elapsed = time.monotonic() - started
            print(
                f"build {pub.build_id}  layer {pub.layer}  published {pub.published:,}"
                f"  ({pub.published / elapsed:,.0f} msg/s)",
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    finally:
        pub.stop()
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from am_qadf.live_monitor import LiveMonitor, MonitorConfig

    cfg = MonitorConfig.from_env()
    cfg.rate = args.rate
    monitor = LiveMonitor(cfg)
    monitor.start()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    print(f"monitoring {cfg.streaming.kafka_topic} on {cfg.streaming.kafka_bootstrap_servers}")
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(args.interval)
            s = monitor.snapshot()
            st = s["stats"]
            print(
                f"[{s['state']}] build {s['build_id']} layer {s['current_layer']}"
                f" | {st['messages_processed']:,} msgs {st['throughput_messages_per_sec']:,.0f}/s"
                f" | batch {st['average_latency_ms']:.1f} ms | lag {st['consumer_lag']:,}"
                f" | voxels {s['occupied_voxels']:,} | alerts {s['alerts_active']}"
                f" | dead-lettered {st['dead_lettered']} errors {st['errors']}",
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    finally:
        monitor.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``am-qadf`` command."""
    parser = argparse.ArgumentParser(prog="am-qadf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="publish a simulated L-PBF build")
    sim.add_argument("--bootstrap", default="memory://", help="Kafka servers or memory://")
    sim.add_argument("--topic", default="am_qadf_monitoring")
    sim.add_argument("--rate", type=float, default=20000.0, help="messages per second")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--builds", type=int, default=1)
    sim.add_argument("--points", type=int, default=None, help="points per build (default: all)")
    sim.set_defaults(func=_simulate)
    mon = sub.add_parser("monitor", help="run the pipeline and print live figures")
    mon.add_argument("--rate", type=float, default=5000.0, help="simulated messages per second")
    mon.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    mon.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    mon.set_defaults(func=_monitor)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
