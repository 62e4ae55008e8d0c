"""``am-qadf worker`` and ``am-qadf simulate --machines N``: the fleet from a terminal.

The worker takes the storage settings of :meth:`StreamingConfig.from_env`
(``AMQADF_MONGO_URI``, ``AMQADF_DATA_DIR``, …), the state store from ``--state`` or
``AMQADF_STATE`` (``redis://host:port/db``; default in-process, which only makes
sense for a try-out) and ``AMQADF_STATE_PREFIX`` (key namespace), and per-machine
profiles from ``--profiles-dir`` (every ``*.toml``, by its machine id).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from am_qadf.machine_profile import MachineProfile
from am_qadf.streaming import StreamingConfig

__all__ = ["load_profiles", "run_fleet_simulation", "run_worker"]


def load_profiles(directory: str | os.PathLike[str] | None) -> dict[str, MachineProfile]:
    """Every ``*.toml`` profile in ``directory`` by machine id (a bad one raises
    :class:`~am_qadf.machine_profile.ProfileError`; two with one id raise ValueError).

    >>> load_profiles(None)
    {}
    """
    if directory is None:
        return {}
    out: dict[str, MachineProfile] = {}
    for path in sorted(Path(directory).glob("*.toml")):
        p = MachineProfile.load(path)
        if p.machine.id in out:
            raise ValueError(
                f"{path}: machine id {p.machine.id!r} is also {out[p.machine.id].source}'s"
            )
        out[p.machine.id] = p
    return out


def run_worker(args: argparse.Namespace, profile: MachineProfile) -> int:
    """Run a fleet worker until SIGTERM/SIGINT (or ``--seconds``)."""
    from .state_store import open_state_store
    from .worker import FleetWorker
    from .worker_metrics import WorkerMetrics

    cfg = StreamingConfig.from_env()
    if args.bootstrap:
        cfg.kafka_bootstrap_servers = args.bootstrap.split(",")
    if args.topic:
        cfg.kafka_topic = args.topic
    if args.group:
        cfg.consumer_group_id = args.group
    cfg.auto_commit_interval_ms = 1000  # less to process again after a takeover
    cfg.max_poll_records = max(cfg.max_poll_records, 5000)
    prefix = os.environ.get("AMQADF_STATE_PREFIX", "amqadf:fleet")
    url = args.state or os.environ.get("AMQADF_STATE")
    if not url or url.startswith("memory://"):
        print(
            "note: the state store is in this process; dashboards elsewhere see nothing"
            " (give --state redis://host:port/db)",
            file=sys.stderr,
        )
    state = open_state_store(url, prefix=prefix)
    metrics = WorkerMetrics()
    server = metrics.serve(args.metrics_port, args.metrics_addr) if args.metrics_port >= 0 else None
    worker = FleetWorker(
        cfg,
        state,
        profile=profile,
        profiles=load_profiles(args.profiles_dir),
        worker_id=args.id,
        metrics=metrics,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker.start()
    where = f", metrics on :{server.server_port}/metrics" if server is not None else ""
    print(
        f"worker {worker.worker_id} ready: {cfg.kafka_topic} on {cfg.kafka_bootstrap_servers}"
        f" group {cfg.consumer_group_id}{where}",
        flush=True,
    )
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while not stop.wait(args.interval):
            if deadline is not None and time.monotonic() > deadline:
                break
            st = worker.statistics()
            machines = ", ".join(
                f"{m}:{p.messages:,}{' (paused)' if p.paused else ''}"
                for m, p in sorted(worker.pipelines.items())
            )
            print(
                f"[{st['consumer_state']}] {st['messages']:,} msgs"
                f" lag {st['consumer_lag']:,} dead-lettered {st['dead_lettered']}"
                f" | {machines or 'no machine yet'}",
                flush=True,
            )
    finally:
        worker.stop()
        if server is not None:
            server.shutdown()
        state.close()
    return 0


def run_fleet_simulation(args: argparse.Namespace) -> int:
    """Publish ``args.machines`` simulated machines' builds until done or interrupted."""
    from am_qadf.simulation.publisher import publish_until_done

    from .fleet_simulation import fleet_publishers

    pubs = fleet_publishers(
        args.machines,
        args.bootstrap.split(","),
        args.topic,
        rate=args.rate,
        seed=args.seed,
        builds=args.builds,
        n_points=args.points,
    )

    def progress(elapsed: float) -> str:
        total = sum(p.published for p in pubs)
        layers = " ".join(f"{p.key}:L{p.layer}" for p in pubs)
        return f"published {total:,} ({total / elapsed:,.0f} msg/s) {layers}"

    publish_until_done(pubs, progress)
    print(f"published {sum(p.published for p in pubs):,} messages of {len(pubs)} machines")
    sys.stdout.flush()
    return 0
