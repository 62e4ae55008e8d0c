"""Fleet workers: 2 ``am-qadf worker`` processes vs 1 on the same 6-partition topic.

Kafka -> worker (per-machine validation, voxels, SPC, alerts) -> history (each
worker's embedded SQLite file, so the shared MongoDB-wire server is not what is
measured; ``--mongo`` uses it instead) and derived state in Redis. For each run a
fresh topic and group; the workers join first, then ``--messages`` messages of six
machines are produced, and the clock runs until Redis shows every message
processed. Printed: throughput of each run, the 2-vs-1 ratio (target >= 1.5x) and
the CPU seconds each process used, to tell "the workers scale" from "the machine is
full" on a 2-core host shared with Kafka, Redis and the producer.

Run: python bench/bench_fleet.py [--messages 60000] [--mongo]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
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


def run(n_workers: int, data: dict[str, list[dict]], use_mongo: bool, tmp: Path) -> dict:
    tag = uuid.uuid4().hex[:10]
    topic = group = prefix = f"bench-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    state = RedisStateStore(REDIS, prefix=prefix)
    procs = []
    for w in range(n_workers):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AMQADF_STATE_PREFIX": prefix,
            "AMQADF_REDIS_URL": REDIS,
            "AMQADF_MONGO_URI": f"{MONGO}_{tag}" if use_mongo else "none",
            "AMQADF_DATA_DIR": str(tmp / f"{tag}-{w}"),
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "am_qadf.cli",
                    "worker",
                    "--bootstrap",
                    KAFKA,
                    "--topic",
                    topic,
                    "--group",
                    group,
                    "--state",
                    REDIS,
                    "--id",
                    f"w{w}",
                    "--interval",
                    "3600",
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every worker holds partitions
            desc = admin.describe_consumer_groups([group])[group].result(10)
            if sum(1 for m in desc.members if m.assignment.topic_partitions) == n_workers:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{n_workers} workers did not all get partitions")
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
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        state.clear()
        state.close()
        admin.delete_topics([topic, topic + ".dlq"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--mongo", action="store_true", help="history in MongoDB, not SQLite")
    args = ap.parse_args()
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
    print(f"2 workers vs 1: {ratio:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
