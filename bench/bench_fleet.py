"""Fleet workers: throughput of 2 workers vs 1, failover after SIGKILL, produce ->
state-store latency.

Default: 2 ``am-qadf worker`` processes vs 1 on the same 6-partition topic. Kafka ->
worker (per-machine validation, voxels, SPC, alerts) -> history (each worker's
embedded SQLite file, so the shared MongoDB-wire server is not what is measured;
``--mongo`` uses it instead) and derived state in Redis. Six machines whose keys land
on six different partitions (``m01``..``m06`` would share three). For each run a
fresh topic and group; the workers join first, then ``--messages`` messages are
produced, and the clock runs until Redis shows every message processed. Printed:
throughput, the 2-vs-1 ratio (target >= 1.5x) and the CPU seconds of each process
(workers, producer, Kafka, Redis, MongoDB-wire server, the whole machine) with the
load average, to tell "the workers scale" from "the machine is full". A second pair
of runs consumes a backlog (produced before the workers start).

``--failover-runs N``: N times, two workers under a 200 k-message stream of six
machines with defects (history in MongoDB, shared); one worker, chosen at random, is
SIGKILLed at a random point (25-65 % of the stream). Printed per run: messages lost
and duplicated in history (``_id`` = topic:partition:offset), alerts raised twice
(same id, or same rule/signal/build/time) and alert episodes raised twice (two
owners' alerts of one build, signal, episode group and side of the center within one
cooldown of data time; each such pair printed), when the survivor held every
partition, and per orphaned machine when its partition was assigned to the survivor,
its pipeline made, its first batch processed and its state first published (target
< 10 s) and whether its charts continued from the checkpoint.

``--latency``: 8 machines x 5 k msg/s through 2 workers (a topic with one partition
per machine); every message carries the time it was handed to the producer, and a
reader blocked on ``StateStore.wait`` notes when each machine's snapshot first shows
it (its newest timestamp reaching the message's). Printed per run: p50/p95/p99/max
over all machines (per machine with one run; target p95 < 500 ms), where the time
went (produced -> processed by the worker, -> published, -> seen by the reader, from
the snapshot's ``data_at`` and ``updated_at``), the CPU seconds of each process and
of the whole machine over the measured window (warm-up excluded), and the load
average. ``--runs N`` repeats it.

Run: python bench/bench_fleet.py [--messages 300000] [--mongo]
     python bench/bench_fleet.py --failover-runs 3
     python bench/bench_fleet.py --latency [--seconds 60] [--latency-rate 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pymongo
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's library

from am_qadf.fleet.state_store import RedisStateStore  # noqa: E402
from am_qadf.simulation.build_simulator import BuildSimulator  # noqa: E402
from am_qadf.streaming import KafkaProducer  # noqa: E402
from am_qadf.streaming.serialization import dumps  # noqa: E402

KAFKA = os.environ.get("AMQADF_KAFKA", "127.0.0.1:9092")
REDIS = os.environ.get("AMQADF_REDIS_URL", "redis://127.0.0.1:6379/0")
MONGO = os.environ.get("AMQADF_MONGO_URI", "mongodb://127.0.0.1:27017/am_qadf_bench")
ROOT = Path(__file__).resolve().parents[1]


def spread_ids(n: int, partitions: int) -> list[str]:
    """``n`` machine ids (``m01`` …) whose keys land on ``n`` different partitions of
    ``partitions`` under librdkafka's default partitioner (CRC32 of the key), so the
    workers' partition shares are machine shares (``m01``..``m06`` share 3 of 6)."""
    out: dict[int, str] = {}
    for i in range(1, 1000):
        key = f"m{i:02d}"
        out.setdefault(zlib.crc32(key.encode()) % partitions, key)
        if len(out) == n:
            return sorted(out.values())
    raise ValueError(f"no {n} ids on distinct partitions of {partitions}")


MACHINES = spread_ids(6, 6)
TICK = os.sysconf("SC_CLK_TCK")
VERBOSE = bool(os.environ.get("FLEETBENCH_VERBOSE"))


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


def messages(per_machine: int, defects: int = 0) -> dict[str, list[dict]]:
    out = {}
    for i, m in enumerate(MACHINES):
        warmup = 5000 if defects else 0
        sim = BuildSimulator(100 + i, n_points=per_machine, n_defects=defects, warmup_points=warmup)
        out[m] = [msg for b in sim.iter_batches(2000) for msg in b]
    return out


def spawn(
    n_workers: int, tag: str, use_mongo: bool, tmp: Path, mongo_uri: str | None = None
) -> list[subprocess.Popen]:
    """Start ``n_workers`` workers on topic/group/prefix ``bench-fleet-<tag>``; history
    in ``mongo_uri``, else ``--mongo``'s database or each worker's SQLite file."""
    name = f"bench-fleet-{tag}"
    procs = []
    for w in range(n_workers):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AMQADF_STATE_PREFIX": name,
            "AMQADF_REDIS_URL": REDIS,
            "AMQADF_MONGO_URI": mongo_uri or (f"{MONGO}_{tag}" if use_mongo else "none"),
            "AMQADF_DATA_DIR": str(tmp / f"{tag}-{w}"),
        }
        args = ["--bootstrap", KAFKA, "--topic", name, "--group", name, "--state", REDIS]
        # the workers' status lines and logs, for a look when a run goes wrong
        log = open(tmp / f"worker-{tag}-{w}.log", "w")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "am_qadf.cli", "worker", *args, "--id", f"w{w}"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def poll_until(done: Callable[[], Any], deadline: float, failure: str, step: float) -> None:
    """Call ``done`` every ``step`` s until it is true; ``RuntimeError(failure)`` once
    ``time.monotonic()`` passes ``deadline`` (every wait of the bench is bounded)."""
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(step)


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
        servers = server_pids()
        srv0 = {k: cpu_seconds(v) for k, v in servers.items()}
        own0, box0 = cpu_seconds(os.getpid()), machine_cpu()
        t0 = time.perf_counter()
        prod = KafkaProducer([KAFKA], topic)
        for m, msgs in data.items():
            prod.produce_batch(msgs, key=m)
        prod.flush()
        prod.close()
        produced_s = time.perf_counter() - t0
        poll_until(
            lambda: sum(s.messages for s in state.snapshots().values()) >= total,
            time.monotonic() + 600,
            "workers did not finish within 600 s",
            0.05,
        )
        elapsed = time.perf_counter() - t0
        return {
            "rate": total / elapsed,
            "elapsed": elapsed,
            "produce_s": produced_s,
            "workers_cpu": [cpu_seconds(p.pid) - cpu0[p.pid] for p in procs],
            "bench_cpu": cpu_seconds(os.getpid()) - own0,
            "servers_cpu": {k: cpu_seconds(v) - srv0[k] for k, v in servers.items()},
            "machine_cpu": machine_cpu() - box0,
            "load": os.getloadavg(),
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
        poll_until(state.machines, deadline, "no worker published within 600 s", 0.01)
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        servers = server_pids()
        srv0 = {k: cpu_seconds(v) for k, v in servers.items()}
        box0, t0 = machine_cpu(), time.perf_counter()
        poll_until(
            lambda: sum(s.messages for s in state.snapshots().values()) >= total,
            deadline,
            "not done within 600 s (a rebalance mid-run?)",
            0.05,
        )
        elapsed = time.perf_counter() - t0
        return {
            "rate": total / elapsed,
            "elapsed": elapsed,
            "workers_cpu": [cpu_seconds(p.pid) - cpu0[p.pid] for p in procs],
            "servers_cpu": {k: cpu_seconds(v) - srv0[k] for k, v in servers.items()},
            "machine_cpu": machine_cpu() - box0,
            "load": os.getloadavg(),
        }
    finally:
        stop(procs)
        state.clear()
        state.close()
        admin.delete_topics([name, name + ".dlq"])


def server_pids() -> dict[str, int]:
    """Process ids of the local Kafka, Redis and MongoDB-wire servers (read from /proc)."""
    names = {"kafka": "kafka.Kafka", "redis": "redis-server", "mongo": "ferretdb"}
    out: dict[str, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for name, marker in names.items():
            if marker in cmd and name not in out:
                out[name] = int(d.name)
    return out


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _paced(
    data: dict[str, list[dict]], rate: float, stop_at: threading.Event, sent: list[int], name: str
) -> None:
    """Produce ``data`` (all machines interleaved) at ``rate`` msg/s in 20 ms steps;
    ``sent[0]`` counts what was handed to the producer."""
    prod = KafkaProducer([KAFKA], name)
    step = 0.02
    chunk = max(1, round(rate * step / len(data)))
    t0 = time.perf_counter()
    for n, i in enumerate(range(0, max(map(len, data.values())), chunk)):
        if stop_at.is_set():
            break
        for m, msgs in data.items():
            sent[0] += prod.produce_batch(msgs[i : i + chunk], key=m)
        ahead = t0 + (n + 1) * step - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    prod.flush()
    prod.close()


def _time(v: str | None) -> float:
    return datetime.fromisoformat(v).timestamp() if v else float("nan")


def _session(alert_id: str) -> str:
    return alert_id.rsplit("-", 1)[0]


def alert_repeats(events: list[dict], cooldown_s: float) -> tuple[int, int, int]:
    """``(raised, raised twice, episodes raised twice)`` over one machine's alert events:
    twice = the same id or the same (rule, signal, build, time); an episode twice = two
    raised events of one episode (the same build, signal, episode group and side of the
    center, from the alert's ``details``) by two owners (an alert id carries its
    manager's session), neither an escalation, closer in data time than one cooldown
    (``cooldown_s``): the second continues the first's episode. Each such pair is
    printed."""
    raised = [e for e in events if e.get("event") == "raised"]
    ids = [e["id"] for e in raised]
    keys = [(e["rule"], e["metric"], e["build_id"], e["time"]) for e in raised]
    twice = (len(ids) - len(set(ids))) + (len(keys) - len(set(keys)))
    last: dict[tuple, tuple[float, dict]] = {}
    episodes = 0
    for e in sorted(raised, key=lambda e: _time(e["time"])):
        details = e.get("details") or {}
        if details.get("escalates"):
            continue
        group = details.get("episode", e["rule"])
        k, t = (group, e["metric"], e["build_id"], details.get("side")), _time(e["time"])
        other_owner = k in last and _session(last[k][1]["id"]) != _session(e["id"])
        if other_owner and t - last[k][0] < cooldown_s:
            episodes += 1
            first = last[k][1]
            print(
                f"    episode twice: {e['metric']} {group} {details.get('side')}:"
                f" {first['id']} {first['rule']} {first['value']:.6g} at {first['time']} |"
                f" {e['id']} {e['rule']} {e['value']:.6g} at {e['time']}"
                f" ({(t - last[k][0]) * 1e3:.1f} ms later)"
            )
            if VERBOSE:
                print("     ", first, "|", e)
        last[k] = (t, e)
    return len(raised), twice, episodes


def failover_run(per_machine: int, rate: float, seed: int) -> dict:
    """SIGKILL one of two workers at a random point of a stream of ``per_machine`` x 6
    messages produced at ``rate`` msg/s; history in MongoDB (shared, ``_id`` =
    topic:partition:offset). Returns lost/duplicated counts, alert repeats and the
    seconds until each machine of the killed worker was published by the survivor."""
    rng = random.Random(seed)
    data = messages(per_machine, defects=4)
    total = sum(map(len, data.values()))
    # one cooldown (1000 points) in data time, per machine
    per_point = {m: (d[-1]["timestamp"] - d[0]["timestamp"]).total_seconds() / (len(d) - 1)
                 for m, d in data.items()}  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    name = f"bench-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(name, 6, 1)])[name].result(30)
    state = RedisStateStore(REDIS, prefix=name)
    mongo_uri = f"{MONGO.rsplit('/', 1)[0]}/fleetbench_fo_{tag}"
    mongo = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    coll = mongo[f"fleetbench_fo_{tag}"]["stream_data"]
    with tempfile.TemporaryDirectory() as tmp:
        procs = spawn(2, tag, False, Path(tmp), mongo_uri=mongo_uri)
        stop_producing, sent = threading.Event(), [0]
        producer = threading.Thread(
            target=_paced, args=(data, rate, stop_producing, sent, name), daemon=True
        )
        takeover: dict[str, float] = {}
        killed_id, reassigned = "", None
        try:
            wait_assigned(admin, name, 2)
            producer.start()
            kill_at = int(total * rng.uniform(0.25, 0.65))
            poll_until(
                lambda: sent[0] >= kill_at or not producer.is_alive(),
                time.monotonic() + 300,
                "the stream did not reach the kill point in 300 s",
                0.005,
            )
            victim = rng.randrange(2)
            killed_id, survivor = f"w{victim}", f"w{1 - victim}"
            orphans = {m for m, s in state.snapshots().items() if s.worker == killed_id}
            killed_at = time.time()
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(30)
            while len(takeover) < len(orphans):
                if reassigned is None and members_with_partitions(admin, name) == [6]:
                    reassigned = time.time() - killed_at
                for m, s in state.snapshots().items():
                    if (
                        m in orphans
                        and m not in takeover
                        and s.worker == survivor
                        and (s.updated_at > killed_at)
                        and s.messages > 0
                    ):
                        takeover[m] = s.updated_at - killed_at
                if time.time() - killed_at > 120:
                    raise RuntimeError(f"no takeover of {orphans - set(takeover)} in 120 s")
                time.sleep(0.02)
            # the survivor's own account: when it made each machine's pipeline, processed
            # its first batch and published it; whether it continued the checkpoint
            steps = {m: state.view(m).get("takeover") or {} for m in orphans}
            producer.join()
            poll_until(
                lambda: coll.estimated_document_count() >= total,
                time.monotonic() + 600,
                "history incomplete after 600 s",
                1.0,
            )
            stop(procs)  # the survivor publishes a last time
            ids = {d["_id"] for d in coll.find({}, {"_id": 1})}
            docs = coll.count_documents({})
            expected = {f"{name}:{p}:{o}" for p, o in partition_offsets(admin, name)}
            alerts = [0, 0, 0]
            for m in MACHINES:
                counts = alert_repeats(state.alerts(m, count=state.max_alerts), 1000 * per_point[m])
                alerts = [a + c for a, c in zip(alerts, counts, strict=True)]
            return {
                "total": total,
                "kill_at": kill_at,
                "killed": killed_id,
                "lost": len(expected - ids),
                "duplicated": docs - len(ids),
                "stored": docs,
                "raised": alerts[0],
                "raised_twice": alerts[1],
                "episodes_twice": alerts[2],
                "takeover": takeover,
                "steps": {m: _since(st, killed_at) for m, st in steps.items()},
                "reassigned": reassigned,
            }
        finally:
            stop_producing.set()
            stop(procs)
            state.clear()
            state.close()
            mongo.drop_database(f"fleetbench_fo_{tag}")
            mongo.close()
            admin.delete_topics([name, name + ".dlq"])


def _since(steps: dict, t0: float) -> dict:
    """A new owner's takeover record with its times as seconds after ``t0``."""
    out = dict(steps)
    for k in ("assigned", "created", "first_batch", "first_publish"):
        if isinstance(out.get(k), int | float):
            out[k] -= t0
    return out


def members_with_partitions(admin: AdminClient, group: str) -> list[int]:
    """How many partitions each member of ``group`` holds ([] if unknown)."""
    try:
        desc = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:
        return []
    return [len(m.assignment.topic_partitions) for m in desc.members if m.assignment]


def partition_offsets(admin: AdminClient, topic: str) -> list[tuple[int, int]]:
    """Every (partition, offset) of ``topic`` (its messages, from the watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"{topic}-wm"})
    try:
        out = []
        for p in range(6):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out += [(p, o) for o in range(lo, hi)]
        return out
    finally:
        c.close()


def latency(n_machines: int, rate: float, seconds: float, warmup: float = 5.0) -> dict:
    """``n_machines`` x ``rate`` msg/s through two workers for ``seconds`` (after
    ``warmup``): each message is stamped with the time it is handed to the producer,
    and a reader blocked on :meth:`StateStore.wait` notes when each machine's snapshot
    first shows it (its ``newest_timestamp`` reaching it). Returns the latencies per
    machine (s) and CPU seconds per process."""
    machines = spread_ids(n_machines, n_machines)
    # each machine's messages encoded without their timestamp (the first field), which
    # is put in front when a message is produced
    pool = {
        m: [dumps({k: v for k, v in x.items() if k != "timestamp"})[1:]
            for b in BuildSimulator(200 + i, n_points=10_000, n_defects=0,
                                    warmup_points=0).iter_batches(2000) for x in b]
        for i, m in enumerate(machines)
    }  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    name = f"bench-fleet-{tag}"
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(name, n_machines, 1)])[name].result(30)
    state = RedisStateStore(REDIS, prefix=name)
    reader_store = RedisStateStore(REDIS, prefix=name)
    stamps: dict[str, list[float]] = {m: [] for m in machines}  # produce time per chunk
    seen: dict[str, list[tuple[float, float]]] = {m: [] for m in machines}  # (newest, wall)
    parts: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in machines}
    done = threading.Event()

    def read() -> None:
        cursor = reader_store.change_cursor()
        newest = dict.fromkeys(machines, 0.0)
        while not done.is_set():
            cursor, changed = reader_store.wait(cursor, 0.5)
            if not changed:
                continue
            wall = time.time()
            for m, snap in reader_store.snapshots().items():
                t = _time(snap.newest_timestamp) if m in newest else float("nan")
                if t > newest[m]:
                    newest[m] = t
                    seen[m].append((t, wall))
                    parts[m].append((t, snap.data_at or float("nan"), snap.updated_at, wall))

    def produce(measuring: Callable[[], None]) -> None:
        prod = KafkaProducer([KAFKA], name)
        step = 0.01
        chunk = max(1, round(rate * step))
        t0 = time.perf_counter()
        end = t0 + warmup + seconds
        n = 0
        while time.perf_counter() < end:
            if n == round(warmup / step):
                measuring()
            for m in machines:
                i = (n * chunk) % (len(pool[m]) - chunk)
                now = time.time()
                # the message as dumps({**x, "timestamp": stamp}) writes it, the stamp
                # encoded once per chunk (the producer is not what is measured)
                head = b'{"timestamp":' + dumps(datetime.fromtimestamp(now, UTC)) + b","
                prod.produce_batch_raw([head + r for r in pool[m][i : i + chunk]], key=m)
                stamps[m].append(now)
            n += 1
            ahead = t0 + n * step - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        prod.flush()
        prod.close()

    with tempfile.TemporaryDirectory() as tmp:
        procs = spawn(2, tag, False, Path(tmp))
        reader = threading.Thread(target=read, daemon=True)
        try:
            wait_assigned(admin, name, 2)
            reader.start()
            servers = server_pids()
            pids = {
                **{f"worker w{i}": p.pid for i, p in enumerate(procs)},
                **servers,
                "bench (producer + reader)": os.getpid(),
            }
            cpu0: dict[str, float] = {}
            t0 = time.time()

            def measuring() -> None:  # the measured window starts after the warm-up
                cpu0.update({k: cpu_seconds(p) for k, p in pids.items()})
                cpu0["whole machine"] = machine_cpu()
                cpu0["at"], cpu0["load"] = time.time(), os.getloadavg()[0]

            produce(measuring)
            produced_until = time.time()
            cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
            cpu["whole machine"] = machine_cpu() - cpu0["whole machine"]
            elapsed = produced_until - cpu0["at"]
            load1 = os.getloadavg()[0]
            time.sleep(2.0)  # the last messages reach the store
            done.set()
            reader.join(5)
        finally:
            done.set()
            stop(procs)
            state.clear()
            state.close()
            reader_store.close()
            admin.delete_topics([name, name + ".dlq"])
    lat: dict[str, np.ndarray] = {}
    for m in machines:
        s = np.asarray(stamps[m])
        s = s[(s >= t0 + warmup) & (s <= produced_until)]
        obs = np.asarray(seen[m]).reshape(-1, 2)
        # each chunk becomes visible with the first snapshot whose newest point is at
        # or after it (chunks are stamped in produce order)
        at = np.searchsorted(obs[:, 0], s - 1e-6)
        ok = at < len(obs)
        lat[m] = obs[at[ok], 1] - s[ok]
        if not ok.all():
            lat[m] = np.append(lat[m], np.full(int((~ok).sum()), np.inf))
    measured = {m: [x for x in v if x[0] >= t0 + warmup] for m, v in parts.items()}
    return {
        "latency": lat,
        "parts": measured,
        "cpu": cpu,
        "elapsed": elapsed,
        "load": (cpu0["load"], load1),
    }


def _servers(r: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in r["servers_cpu"].items())


def failover_main(args: argparse.Namespace) -> None:
    per = max(1, args.failover_messages // len(MACHINES))
    print(
        f"failover: {per * len(MACHINES):,} messages of {len(MACHINES)} machines (4 defects"
        f" each), 6 partitions, {args.failover_rate:,.0f} msg/s, 2 workers, history in"
        f" MongoDB; {load()}"
    )
    for run in range(args.failover_runs):
        r = failover_run(per, args.failover_rate, int.from_bytes(os.urandom(4), "big") + run)
        what = f"SIGKILL {r['killed']} at message {r['kill_at']:,}"
        print(
            f"  {what}: lost {r['lost']}, duplicated {r['duplicated']} (history"
            f" {r['stored']:,} of {r['total']:,}); alerts raised {r['raised']}, twice"
            f" {r['raised_twice']}, an episode twice {r['episodes_twice']}"
            f"; all 6 partitions with the survivor after {r['reassigned'] or float('nan'):.1f}"
            f" s; {load()}"
        )
        nan = float("nan")
        for m, seen in sorted(r["takeover"].items()):
            st = r["steps"].get(m) or {}
            how = (
                f"charts continued from the checkpoint (restored in {st.get('restore_ms', nan):.0f}"
                f" ms, {st.get('stored_only', 0):,} re-read messages only stored)"
                if st.get("restored")
                else "charts rebuilt"
            )
            print(
                f"    {m}: partition assigned to the survivor +{st.get('assigned') or nan:.2f} s,"
                f" pipeline made +{st.get('created', nan):.2f} s, first batch processed"
                f" +{st.get('first_batch', nan):.2f} s, first publish"
                f" +{st.get('first_publish', nan):.2f} s (seen by the bench +{seen:.2f} s); {how}"
            )


def latency_main(args: argparse.Namespace) -> None:
    n, rate = args.latency_machines, args.latency_rate
    print(
        f"latency: {n} machines x {rate:,.0f} msg/s = {n * rate:,.0f} msg/s through 2 workers,"
        f" a {n}-partition topic (one machine each), {args.seconds:.0f} s after 5 s warm-up;"
        " latency = when the machine's snapshot in Redis first shows a message (its newest"
        " timestamp reaching the message's; a reader blocked on StateStore.wait) minus when"
        f" the message was handed to the producer; {os.cpu_count()} cores"
    )
    p95s = []
    for run in range(args.runs):
        r = latency(n, rate, args.seconds)
        print(f"run {run + 1} of {args.runs}:")
        p95s.append(latency_report(r, n, args.seconds, verbose=args.runs == 1))
    if args.runs > 1:
        print("p95 per run: " + ", ".join(f"{p:,.0f} ms" for p in p95s) + " (target < 500 ms)")


def latency_report(r: dict, n: int, seconds: float, verbose: bool) -> float:
    """Print one latency run (figures over all machines, where the time went, CPU per
    process over the measured window, load); return its p95 in ms."""

    def figures(lat: np.ndarray) -> tuple[str, float]:
        # "nearest": a chunk never seen (inf) makes a percentile inf, not NaN
        p50, p95, p99, top = np.percentile(lat, [50, 95, 99, 100], method="nearest") * 1000
        unseen = int(np.isinf(lat).sum())
        late = f", {unseen} of {len(lat)} chunks not yet shown at the end" if unseen else ""
        text = f"p50 {p50:6,.0f}  p95 {p95:6,.0f}  p99 {p99:6,.0f}  max {top:6,.0f} ms{late}"
        return text, p95

    if verbose:
        for m, lat in r["latency"].items():
            print(f"  {m}: {figures(lat)[0]}")
    text, p95 = figures(np.concatenate(list(r["latency"].values())))
    print(f"  all: {text} (target p95 < 500 ms)")
    steps = np.concatenate([np.asarray(v).reshape(-1, 4) for v in r["parts"].values()])
    if len(steps):  # (newest point, processed at, published at, seen at) per snapshot seen
        where = {
            "produced -> processed": steps[:, 1] - steps[:, 0],
            "processed -> published": steps[:, 2] - steps[:, 1],
            "published -> seen": steps[:, 3] - steps[:, 2],
        }
        ms = {k: np.nanpercentile(v, [50, 95]) * 1000 for k, v in where.items()}
        print(
            "  where, per snapshot seen (p50 / p95): "
            + ", ".join(f"{k} {a:,.0f} / {b:,.0f} ms" for k, (a, b) in ms.items())
        )
    chunks, planned = sum(map(len, r["latency"].values())), n * seconds / 0.01
    print(f"  produced {chunks:,} of {planned:,.0f} planned 10 ms chunks in the measured window")
    cpu = dict(r["cpu"])
    box = cpu.pop("whole machine")
    listed = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    cores = os.cpu_count() or 1
    print(
        f"  CPU s over the {r['elapsed']:.0f} s measured: {listed}; these {sum(cpu.values()):.1f},"
        f" whole machine {box:.1f} of {r['elapsed'] * cores:.1f}"
        f" ({box / (r['elapsed'] * cores):.0%} busy)"
    )
    a, b = r["load"]
    print(f"  load average {a:.2f} at the start, {b:.2f} at the end")
    return float(p95)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--mongo", action="store_true", help="history in MongoDB, not SQLite")
    ap.add_argument(
        "--failover-runs", type=int, default=0, help="SIGKILL one of two workers, N times"
    )
    ap.add_argument("--failover-messages", type=int, default=200_000)
    ap.add_argument("--failover-rate", type=float, default=15_000.0, help="msg/s")
    ap.add_argument("--latency", action="store_true", help="produce -> state-store latency")
    ap.add_argument("--latency-machines", type=int, default=8)
    ap.add_argument("--latency-rate", type=float, default=5000.0, help="msg/s per machine")
    ap.add_argument("--seconds", type=float, default=20.0, help="latency run length")
    ap.add_argument("--runs", type=int, default=1, help="latency runs, one after another")
    args = ap.parse_args()
    if args.failover_runs:
        failover_main(args)
        return
    if args.latency:
        latency_main(args)
        return
    data = messages(max(1, args.messages // len(MACHINES)))
    total = sum(map(len, data.values()))
    print(
        f"{total:,} messages of {len(MACHINES)} machines ({', '.join(MACHINES)}: one per"
        f" partition), 6 partitions, {os.cpu_count()} cores; {load()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: run(n, data, args.mongo, Path(tmp)) for n in (1, 2)}
    for n, r in results.items():
        cpu = " + ".join(f"{c:.1f}" for c in r["workers_cpu"])
        print(
            f"{n} worker(s): {r['rate']:>9,.0f} msg/s ({r['elapsed']:.1f} s, produce "
            f"{r['produce_s']:.1f} s) | CPU s: workers {cpu}, producer {r['bench_cpu']:.1f}, "
            f"{_servers(r)}, whole machine {r['machine_cpu']:.1f} of"
            f" {r['elapsed'] * (os.cpu_count() or 1):.1f}; load average {r['load'][0]:.2f}"
        )
    ratio = results[2]["rate"] / results[1]["rate"]
    print(f"2 workers vs 1, producing meanwhile: {ratio:.2f}x (target >= 1.5x)")
    with tempfile.TemporaryDirectory() as tmp:
        backlog = {n: run_backlog(n, data, Path(tmp)) for n in (1, 2)}
    for n, r in backlog.items():
        cpu = " + ".join(f"{c:.1f}" for c in r["workers_cpu"])
        print(
            f"backlog, {n} worker(s): {r['rate']:>9,.0f} msg/s ({r['elapsed']:.1f} s) | CPU s:"
            f" workers {cpu}, {_servers(r)}, whole machine {r['machine_cpu']:.1f}"
            f" of {r['elapsed'] * (os.cpu_count() or 1):.1f}; load average {r['load'][0]:.2f}"
        )
    ratio = backlog[2]["rate"] / backlog[1]["rate"]
    print(f"2 workers vs 1, backlog: {ratio:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
