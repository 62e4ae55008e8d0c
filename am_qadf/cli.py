"""``am-qadf``: run the pipeline from a terminal.

Commands:
  simulate  publish a simulated build to a topic (``memory://`` or Kafka);
            ``--machines N`` publishes N machines' builds keyed by machine id
  worker    consume in a consumer group, one pipeline per machine, publish state
  monitor   run the whole monitoring pipeline and print live figures
  replay    publish a recording (CSV/Parquet) to a topic, paced by its timestamps
  profile   draft or check a machine profile

Every command takes ``--profile PATH`` (default: ``AMQADF_PROFILE``, else the
simulator's profile); a bad profile stops the command with its file, key and reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from am_qadf.machine_profile import MachineProfile, ProfileError

__all__ = ["main"]


def _profile(args: argparse.Namespace) -> MachineProfile:
    return MachineProfile.resolve(args.profile) if args.profile else MachineProfile.from_env()


def _simulate(args: argparse.Namespace) -> int:
    from am_qadf.simulation.publisher import SimulationPublisher, publish_until_done

    if args.machines:
        from am_qadf.fleet.run import run_fleet_simulation

        return run_fleet_simulation(args)
    profile = _profile(args)
    if not profile.is_identity:
        print(
            f"note: the simulator publishes its own message shape, not {profile.source}'s",
            file=sys.stderr,
        )
    pub = SimulationPublisher(
        args.bootstrap.split(","),
        args.topic,
        rate=args.rate,
        seed=args.seed,
        builds=args.builds,
        n_points=args.points,
    )
    publish_until_done(
        [pub],
        lambda elapsed: (
            f"build {pub.build_id}  layer {pub.layer}  published {pub.published:,}"
            f"  ({pub.published / elapsed:,.0f} msg/s)"
        ),
    )
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from am_qadf.fleet.run import run_worker

    return run_worker(args, _profile(args))


def _monitor(args: argparse.Namespace) -> int:
    from am_qadf.live_monitor import LiveMonitor, MonitorConfig

    cfg = MonitorConfig.from_env()
    cfg.rate = args.rate
    monitor = LiveMonitor(cfg, profile=_profile(args))
    monitor.start()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    print(
        f"monitoring {cfg.streaming.kafka_topic} on {cfg.streaming.kafka_bootstrap_servers}"
        f" as {monitor.profile.machine.title} (profile {monitor.profile.source})"
    )
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
            for line in s["profile"]["problems"]:
                print(f"  profile: {line}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        monitor.stop()
    return 0


def _replay(args: argparse.Namespace) -> int:
    from am_qadf.simulation.replay import FileReplay
    from am_qadf.streaming.kafka_producer import KafkaProducer

    profile = _profile(args)
    f = profile.fields
    replay = FileReplay(args.recording, speed=args.speed, time_field=f.time, time_unit=f.time_unit)
    producer = KafkaProducer(args.bootstrap.split(","), args.topic)
    sent = 0
    started = time.monotonic()
    try:
        for batch in replay.iter_batches(args.batch):
            sent += producer.produce_batch(batch, key=profile.machine.id)
            if args.verbose:
                print(f"published {sent:,} ({sent / (time.monotonic() - started):,.0f} msg/s)")
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
    print(
        f"published {sent:,} messages of {args.recording} to {args.topic} as {profile.machine.id}"
    )
    return 0


def _profile_draft(args: argparse.Namespace) -> int:
    from am_qadf.profile_draft import draft_profile

    text = draft_profile(args.recording, rows=args.rows, machine_id=args.id)
    if args.output:
        with open(args.output, "x", encoding="utf-8") as fh:  # never overwrite an edited one
            fh.write(text)
        print(f"wrote {args.output}: edit it, then run with AMQADF_PROFILE={args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _profile_check(args: argparse.Namespace) -> int:
    p = _profile(args)
    print(
        f"{p.source}: machine {p.machine.id} ({p.machine.title}), material {p.machine.material!r}"
    )
    for s in p.signals:
        lim = f"[{s.low}, {s.high}]" if s.low is not None or s.high is not None else "no limits"
        print(f"  {s.name:<20} <- {s.field:<20} {s.unit:<8} {lim:<24} spc {s.spc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``am-qadf`` command."""
    parser = argparse.ArgumentParser(prog="am-qadf", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile", default=None, help="machine profile TOML (default: AMQADF_PROFILE)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="publish a simulated L-PBF build", parents=[common])
    sim.add_argument("--bootstrap", default="memory://", help="Kafka servers or memory://")
    sim.add_argument("--topic", default="am_qadf_monitoring")
    sim.add_argument("--rate", type=float, default=20000.0, help="messages per second")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--builds", type=int, default=1)
    sim.add_argument("--points", type=int, default=None, help="points per build (default: all)")
    sim.add_argument("--machines", type=int, default=0, help="publish N machines (keyed)")
    sim.set_defaults(func=_simulate)
    wk = sub.add_parser(
        "worker", help="consume in a group and publish each machine's state", parents=[common]
    )
    wk.add_argument("--bootstrap", default=None, help="Kafka servers (default: AMQADF_KAFKA)")
    wk.add_argument("--topic", default=None, help="topic (default: AMQADF_TOPIC)")
    wk.add_argument("--group", default=None, help="consumer group (default: AMQADF_GROUP)")
    wk.add_argument("--state", default=None, help="redis://host:port/db (default: AMQADF_STATE)")
    wk.add_argument("--profiles-dir", default=None, help="one profile TOML per machine")
    wk.add_argument("--id", default=None, help="worker id (default: host-pid)")
    wk.add_argument("--metrics-port", type=int, default=-1, help="/metrics port (-1: off)")
    wk.add_argument("--metrics-addr", default="127.0.0.1", help="/metrics address")
    wk.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    wk.add_argument("--interval", type=float, default=5.0, help="seconds between reports")
    wk.set_defaults(func=_run_worker)
    mon = sub.add_parser(
        "monitor", help="run the pipeline and print live figures", parents=[common]
    )
    mon.add_argument("--rate", type=float, default=5000.0, help="simulated messages per second")
    mon.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    mon.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    mon.set_defaults(func=_monitor)
    rep = sub.add_parser("replay", help="publish a recording to a topic", parents=[common])
    rep.add_argument("recording", help="CSV or Parquet file in the profile's shape")
    rep.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka servers")
    rep.add_argument("--topic", default="am_qadf_monitoring")
    rep.add_argument("--speed", type=float, default=1.0, help="1 real time, 0 as fast as possible")
    rep.add_argument("--batch", type=int, default=500, help="messages per produce call")
    rep.add_argument("--verbose", action="store_true")
    rep.set_defaults(func=_replay)
    prof = sub.add_parser("profile", help="draft or check a machine profile")
    psub = prof.add_subparsers(dest="action", required=True)
    draft = psub.add_parser(
        "draft", help="write a commented starter profile for a recording", parents=[common]
    )
    draft.add_argument("recording", help="CSV or Parquet recording of the machine")
    draft.add_argument("-o", "--output", help="file to write (default: standard output)")
    draft.add_argument("--rows", type=int, default=100_000, help="rows to learn from")
    draft.add_argument("--id", default=None, help="machine id (default: from the file name)")
    draft.set_defaults(func=_profile_draft)
    check = psub.add_parser(
        "check", help="validate a profile and list its signals", parents=[common]
    )
    check.set_defaults(func=_profile_check)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ProfileError as exc:
        print(f"am-qadf: bad machine profile: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
