"""Fleet workers: 2 ``am-qadf worker`` processes vs 1 on the same 6-partition topic.

Kafka -> worker (per-machine validation, voxels, SPC, alerts) -> history (each
worker's embedded SQLite file, so the shared MongoDB-wire server is not what is
measured; ``--mongo`` uses it instead) and derived state in Redis. For each run a
fresh topic and group; the workers join first, then ``--messages`` messages of six
machines are produced, and the clock runs until Redis shows every message
processed. Printed: throughput of each run, the 2-vs-1 ratio (target >= 1.5x) and
the CPU seconds each process used, to tell "the workers scale" from "the machine is
full" on a 2-core host shared with Kafka, Redis and the producer. A second pair of
runs consumes a backlog (produced before the workers start), without the producer
competing for the cores.

``--failover``: two workers under a steady stream; one is SIGKILLed and the time
until the survivor publishes state for every machine the dead one owned is printed
(today's single monitor waits ~30 s, the default session timeout).

Run: python bench/bench_fleet.py [--messages 60000] [--mongo] [--failover]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from am_qadf.fleet.state_store import RedisStateStore
from am_qadf.simulation.build_simulator import BuildSimulator
from am_qadf.streaming import KafkaProducer

KAFKA = os.environ.get("AMQADF_KAFKA", "127.0.0.1:9092")
REDIS = os.environ.get("AMQADF_REDIS_URL", "redis://127.0.0.1:6379/0")
MONGO = os.environ.get("AMQADF_MONGO_URI", "mongodb://127.0.0.1:27017/am_qadf_bench")
ROOT = Path(__file__).resolve().parents[1]
MACHINES = [f"m{i:02d}" for i in range(1, 7)]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (all cores)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = list(map(int, parts))
    return (sum(v) - v[3] - v[4]) / TICK  # minus idle and iowait


def messages(per_machine: int) -> dict[str, list[dict]]:
    out = {}
    for i, m in enumerate(MACHINES):
        sim = BuildSimulator(100 + i, n_points=per_machine, n_defects=0, warmup_points=0)
        out[m] = [msg for b in sim.iter_batches(2000) for msg in b]
    return out


def spawn(n_workers: int, tag: str, use_mongo: bool, tmp: Path) -> list[subprocess.Popen]:
    """Start ``n_workers`` workers on topic/group/prefix ``bench-fleet-<tag>``."""
    name = f"bench-fleet-{tag}"
    procs = []
    for w in range(n_workers):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AMQADF_STATE_PREFIX": name,
            "AMQADF_REDIS_URL": REDIS,
            "AMQADF_MONGO_URI": f"{MONGO}_{tag}" if use_mongo else "none",
            "AMQADF_DATA_DIR": str(tmp / f"{tag}-{w}"),
        }
        args = ["--bootstrap", KAFKA, "--topic", name, "--group", name, "--state", REDIS]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "am_qadf.cli", "worker", *args, "--id", f"w{w}"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def wait_assigned(admin: AdminClient, group: str, n_workers: int) -> None:
    """Until every worker of ``group`` holds partitions (120 s at most)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        desc = admin.describe_consumer_groups([group])[group].result(10)
        if sum(1 for m in desc.members if m.assignment.topic_partitions) == n_workers:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{n_workers} workers did not all get partitions")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def run(n_workers: int, data: dict[str, list[dict]], use_mongo: bool, tmp: Path) -> dict:
    tag = uuid.uuid4().hex[:10]
    topic = group = prefix = f"bench-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    state = RedisStateStore(REDIS, prefix=prefix)
    procs = spawn(n_workers, tag, use_mongo, tmp)
    try:
        wait_assigned(admin, group, n_workers)
        total = sum(map(len, data.values()))
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        own0, box0 = cpu_seconds(os.getpid()), machine_cpu()
        t0 = time.perf_counter()
        prod = KafkaProducer([KAFKA], topic)
        for m, msgs in data.items():
            prod.produce_batch(msgs, key=m)
        prod.flush()
        prod.close()
        produced_s = time.perf_counter() - t0
        deadline = time.monotonic() + 600
        while sum(s.messages for s in state.snapshots().values()) < total:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not finish within 600 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        return {
            "rate": total / elapsed,
            "elapsed": elapsed,
            "produce_s": produced_s,
            "workers_cpu": [cpu_seconds(p.pid) - cpu0[p.pid] for p in procs],
            "bench_cpu": cpu_seconds(os.getpid()) - own0,
            "machine_cpu": machine_cpu() - box0,
        }
    finally:
        stop(procs)
        state.clear()
        state.close()
        admin.delete_topics([topic, topic + ".dlq"])


def run_backlog(n_workers: int, data: dict[str, list[dict]], tmp: Path) -> dict:
    """The messages are in the topic first; the workers start together (the group's
    initial rebalance delay lets both join one generation), and the clock runs from
    the first state published to the last message processed: consumption only."""
    tag = uuid.uuid4().hex[:10]
    name = f"bench-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(name, 6, 1)])[name].result(30)
    prod = KafkaProducer([KAFKA], name)
    for m, msgs in data.items():
        prod.produce_batch(msgs, key=m)
    prod.flush()
    prod.close()
    total = sum(map(len, data.values()))
    state = RedisStateStore(REDIS, prefix=name)
    procs = spawn(n_workers, tag, False, tmp)
    try:
        deadline = time.monotonic() + 600
        while not state.machines():
            if time.monotonic() > deadline:
                raise RuntimeError("no worker published within 600 s")
            time.sleep(0.01)
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        box0, t0 = machine_cpu(), time.perf_counter()
        while sum(s.messages for s in state.snapshots().values()) < total:
            if time.monotonic() > deadline:
                raise RuntimeError("not done within 600 s (a rebalance mid-run?)")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        return {
            "rate": total / elapsed,
            "elapsed": elapsed,
            "workers_cpu": [cpu_seconds(p.pid) - cpu0[p.pid] for p in procs],
            "machine_cpu": machine_cpu() - box0,
        }
    finally:
        stop(procs)
        state.clear()
        state.close()
        admin.delete_topics([name, name + ".dlq"])


def failover(data: dict[str, list[dict]], rate: float, tmp: Path) -> float:
    """Seconds from SIGKILL of one of two workers under a steady stream of ``rate``
    msg/s until the survivor has published state for every machine the dead one had."""
    tag = uuid.uuid4().hex[:10]
    name = f"bench-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(name, 6, 1)])[name].result(30)
    state = RedisStateStore(REDIS, prefix=name)
    procs = spawn(2, tag, False, tmp)
    stop_producing = threading.Event()

    def produce() -> None:  # steady, bounded: at most the prepared messages
        prod = KafkaProducer([KAFKA], name)
        chunk = max(1, int(rate / len(data) / 20))  # every 50 ms
        for i in range(0, min(map(len, data.values())), chunk):
            if stop_producing.is_set():
                break
            for m, msgs in data.items():
                prod.produce_batch(msgs[i : i + chunk], key=m)
            time.sleep(0.05)
        prod.flush()
        prod.close()

    producer = threading.Thread(target=produce, daemon=True)
    try:
        wait_assigned(admin, name, 2)
        producer.start()
        deadline = time.monotonic() + 120
        while not {s.worker for s in state.snapshots().values()} >= {"w0", "w1"}:
            if time.monotonic() > deadline:
                raise RuntimeError("both workers did not publish state within 120 s")
            time.sleep(0.05)
        time.sleep(1.0)  # in the middle of the stream
        owned = {m for m, s in state.snapshots().items() if s.worker == "w1"}
        killed_at = time.time()
        procs[1].send_signal(signal.SIGKILL)
        while True:
            snaps = state.snapshots()
            if all(snaps[m].worker == "w0" and snaps[m].updated_at > killed_at for m in owned):
                return time.time() - killed_at
            if time.time() - killed_at > 120:
                raise RuntimeError("the survivor did not take over within 120 s")
            time.sleep(0.05)
    finally:
        stop_producing.set()
        producer.join(timeout=30)
        stop(procs)
        state.clear()
        state.close()
        admin.delete_topics([name, name + ".dlq"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--mongo", action="store_true", help="history in MongoDB, not SQLite")
    ap.add_argument("--failover", action="store_true", help="measure takeover after SIGKILL")
    args = ap.parse_args()
    if args.failover:
        data = messages(40_000)
        with tempfile.TemporaryDirectory() as tmp:
            took = [failover(data, 6000.0, Path(tmp)) for _ in range(3)]
        print(
            "takeover after SIGKILL of 1 of 2 workers (6 machines, 6,000 msg/s): "
            + ", ".join(f"{t:.1f} s" for t in took)
            + " (session timeout 6 s; target < 10 s)"
        )
        return
    data = messages(max(1, args.messages // len(MACHINES)))
    total = sum(map(len, data.values()))
    print(f"{total:,} messages of {len(MACHINES)} machines, 6 partitions, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: run(n, data, args.mongo, Path(tmp)) for n in (1, 2)}
    for n, r in results.items():
        cpu = " + ".join(f"{c:.1f}" for c in r["workers_cpu"])
        print(
            f"{n} worker(s): {r['rate']:>9,.0f} msg/s ({r['elapsed']:.1f} s, produce "
            f"{r['produce_s']:.1f} s) | CPU s: workers {cpu}, producer {r['bench_cpu']:.1f}, "
            f"whole machine {r['machine_cpu']:.1f} of {r['elapsed'] * (os.cpu_count() or 1):.1f}"
        )
    ratio = results[2]["rate"] / results[1]["rate"]
    print(f"2 workers vs 1, producing meanwhile: {ratio:.2f}x (target >= 1.5x)")
    with tempfile.TemporaryDirectory() as tmp:
        backlog = {n: run_backlog(n, data, Path(tmp)) for n in (1, 2)}
    for n, r in backlog.items():
        cpu = " + ".join(f"{c:.1f}" for c in r["workers_cpu"])
        print(
            f"backlog, {n} worker(s): {r['rate']:>9,.0f} msg/s ({r['elapsed']:.1f} s) | CPU s:"
            f" workers {cpu}, whole machine {r['machine_cpu']:.1f}"
            f" of {r['elapsed'] * (os.cpu_count() or 1):.1f}"
        )
    ratio = backlog[2]["rate"] / backlog[1]["rate"]
    print(f"2 workers vs 1, backlog: {ratio:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
