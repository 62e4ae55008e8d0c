"""Dashboard server CPU per session of a fleet machine's page at 5 k vs 50 k msg/s.

A dashboard of the fleet reads derived state only (snapshots, windows, alerts, voxel
deltas a worker publishes at most ten times a second per machine), so its CPU per
session should not follow the plant's message rate. This bench, loopback only and
bounded in time, runs ONE plant whose rate is switched mid-run, so that the phases
differ in the message rate only (same workers, same builds, same server and pages):

* makes a 6-partition topic on Kafka (``AMQADF_KAFKA``, 127.0.0.1:9092) and starts
  ``--workers`` ``am-qadf worker`` processes (embedded history, state in Redis
  ``AMQADF_REDIS_URL`` under a prefix of this run, as ``bench_fleet.py`` does);
* starts one producer process (this file with ``--produce``) publishing ``--machines``
  simulated builds (machine ``i`` at ``1 + 0.3 i`` times the first one's share, the
  fleet simulator's layouts and defect plans), each message stamped with the wall
  clock when it is produced, so data time keeps step with the wall clock at any rate;
  it starts at the first of ``--rates`` and moves to the next one on SIGUSR1 (the
  builds go on: a machine's points per second change, nothing else);
* serves ``panel serve dashboard/app.py dashboard/fleet.py`` with ``AMQADF_STATE`` set
  and opens ``--sessions`` pages of ``/app?machine=m01`` in headless Chromium;
* per phase waits ``--warmup`` s, then over ``--seconds`` s measures: the rate the
  workers processed (their group's committed offsets) and the rate produced (the
  topic's end offsets), the dashboard server's CPU (utime + stime from /proc), each
  page's status-line updates (counted across reloads), the server's refreshes
  (``amqadf_dashboard_refresh_seconds_count`` of its ``/metrics``) and the bytes it read
  from Redis (``ss -ti`` of its connections to the Redis port);
* with ``--profile DIR`` also samples the server with py-spy during each window
  (``DIR/<rate>.txt``, collapsed stacks, and the top functions printed);
* with ``/fleet`` served, opens it last and counts how often its tiles change.

This 2-core host cannot process 50 k msg/s live (two workers reach 10-16 k msg/s):
a phase whose rate the workers cannot follow is a backlog they process as fast as they
can, and the rates they processed are what the figures stand on. Nothing is asserted.

Run: python bench/bench_dashboard_fleet.py [--rates 5000,50000] [--seconds 60]
[--server-nice -5] [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from am_qadf.fleet.state_store import RedisStateStore  # noqa: E402
from bench.bench_dashboard_live import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    DEEP_FIND,
    open_pages,
    start_server,
)
from bench.bench_fleet import (  # noqa: E402
    KAFKA,
    REDIS,
    ROOT,
    cpu_seconds,
    machine_cpu,
    spawn,
    stop,
    wait_assigned,
)

PARTITIONS = 6

# Run in every load of a machine page: counts the status line's updates (its
# data-newest changing) and the page's loads in sessionStorage, which a reload (the
# watchdog's, or Panel's reconnect) keeps.
COUNTER = """(() => {
  const get = (key) => Number(sessionStorage.getItem(key) || 0);
  const add = (key) => sessionStorage.setItem(key, String(get(key) + 1));
  add('amqLoads');
  let el = null, last = null;
  const tick = () => {
    if (el == null || !el.isConnected) el = (DEEP_FIND)('.amq-hdr-msgs');
    const newest = el && el.getAttribute('data-newest');
    if (newest && newest !== last) {
      if (last !== null) add('amqUpdates');
      last = newest;
    }
    setTimeout(tick, 50);
  };
  tick();
})();""".replace("DEEP_FIND", DEEP_FIND)

COUNTS = "() => ['amqUpdates', 'amqLoads'].map((k) => Number(sessionStorage.getItem(k) || 0))"

# Installed in the /fleet page: counts the 50-ms checks in which the text of any
# machine tile had changed.
FLEET_SAMPLER = """() => {
  const state = {changes: 0};
  window.__amqFleet = state;
  let last = null;
  const tiles = () => {
    const out = [];
    const stack = [document];
    while (stack.length) {
      const root = stack.pop();
      root.querySelectorAll('.amq-fl-tile').forEach((e) => out.push(e.textContent));
      root.querySelectorAll('*').forEach((e) => e.shadowRoot && stack.push(e.shadowRoot));
    }
    return out.join('|');
  };
  const tick = () => {
    const now = tiles();
    if (last !== null && now !== last) state.changes += 1;
    last = now;
    setTimeout(tick, 50);
  };
  tick();
}"""


BATCH = 250  # messages per produced batch (one machine's)
# the builds' sensor rate (msg/s of the whole plant), which sets their point spacing:
# the same geometry at any rate a phase asks for
GEOMETRY_RATE = 5000.0
# the sampling profiler of --profile: beside this Python, else on the PATH
PY_SPY = next(
    (str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()), shutil.which("py-spy")
)
REDIS_PORT = int(re.search(r":(\d+)(?:/|$)", REDIS.split("//", 1)[-1]).group(1))


def shares(machines: int) -> np.ndarray:
    """Each machine's share of the total rate (machine ``i`` at ``1 + 0.3 i`` times the
    first one's, as ``am-qadf simulate --machines`` has them).

    >>> shares(3).round(3).tolist()
    [0.256, 0.333, 0.41]
    """
    w = 1.0 + 0.3 * np.arange(machines)
    return w / w.sum()


def endless_builds(i: int, key: str, seed: int, sensor_rate: float):
    """Machine ``i``'s batches of one simulated build after another (the fleet
    simulator's layout and defect plan of machine ``i``)."""
    from am_qadf.fleet.fleet_simulation import DEFECT_PLANS, FLEET_LAYOUTS
    from am_qadf.simulation.build_simulator import BuildSimulator

    k = 0
    while True:
        s = seed + 100 * i + k
        sim = BuildSimulator(
            s,
            n_points=None,
            n_defects=DEFECT_PLANS[i % len(DEFECT_PLANS)],
            sensor_rate_hz=sensor_rate,
            parts=FLEET_LAYOUTS[i % len(FLEET_LAYOUTS)],
            build_id=f"{key}-{s}",
        )
        yield from sim.iter_batches(BATCH)
        k += 1


def produce(args: argparse.Namespace) -> int:
    """The producer process: ``args.machines`` machines at the first of ``args.rates``
    msg/s in all, the next rate on each SIGUSR1, until SIGTERM. Each message is stamped
    with the wall clock (a batch's stamps spread evenly since the machine's previous
    batch), so data time runs with the wall clock whatever the rate; the builds'
    geometry (their sensor rate) is :data:`GEOMETRY_RATE`'s in every phase."""
    from am_qadf.fleet.fleet_simulation import machine_ids
    from am_qadf.streaming.kafka_producer import KafkaProducer

    rates = [float(r) for r in args.rates.split(",")]
    phase = [0]

    def advance(*_: object) -> None:
        phase[0] = min(phase[0] + 1, len(rates) - 1)

    def finish(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGUSR1, advance)
    signal.signal(signal.SIGTERM, finish)
    keys, share = machine_ids(args.machines), shares(args.machines)
    producer = KafkaProducer([KAFKA], args.topic)
    gens = [endless_builds(i, k, args.seed, GEOMETRY_RATE * share[i]) for i, k in enumerate(keys)]
    sent = np.zeros(len(keys))
    stamped = [time.time()] * len(keys)
    current, t0, base = -1, 0.0, sent.copy()
    try:
        while True:
            if phase[0] != current:
                current, t0, base = phase[0], time.monotonic(), sent.copy()
            behind = base + rates[current] * share * (time.monotonic() - t0) - sent
            i = int(np.argmax(behind))
            if behind[i] < BATCH:
                time.sleep(0.002)
                continue
            batch = next(gens[i])
            now = time.time()
            first = datetime.fromtimestamp(stamped[i], UTC)
            step = timedelta(seconds=(now - stamped[i]) / len(batch))
            for j, msg in enumerate(batch, 1):
                msg["timestamp"] = first + step * j
            stamped[i] = now
            producer.produce_batch(batch, key=keys[i])
            sent[i] += len(batch)
    finally:
        producer.close()


def renice(pid: int, niceness: int) -> None:
    """Set the niceness of every thread of process ``pid`` (a niceness is per thread
    on Linux; threads it starts later inherit their creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
        except ProcessLookupError:  # a thread that just ended
            continue


def redis_bytes_read(pid: int) -> int:
    """Bytes process ``pid`` has received so far on its open connections to Redis."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{REDIS_PORT} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total, ours = 0, False
    for line in out.splitlines():
        if not line[:1].isspace():  # a socket's line; its TCP info follows, indented
            ours = f"pid={pid}," in line
        elif ours and (m := re.search(r"bytes_received:(\d+)", line)):
            total += int(m.group(1))
    return total


def refreshes(base: str) -> float:
    """Page refreshes the server has made (``/metrics``; NaN without the plugin)."""
    try:
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    except OSError:
        return float("nan")
    found = re.findall(r'^amqadf_dashboard_refresh_seconds_count\{page="app"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def top_functions(
    path: Path, n: int = 12
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: the ``n`` functions with the most samples on
    top of the stack (self) and anywhere in it (inclusive), as shares of all samples."""
    own, incl, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        frames = [re.sub(r" \((.*/)?", " (", f) for f in stack.split(";")]
        total += k
        if frames:
            own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    total = total or 1
    return (
        [(f, c / total) for f, c in own.most_common(n)],
        [(f, c / total) for f, c in incl.most_common(n)],
    )


def end_offsets(consumer: Consumer, topic: str) -> int:
    """Messages in ``topic`` so far (the sum of its partitions' end offsets)."""
    return sum(
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in range(PARTITIONS)
    )


def committed(group: Consumer, topic: str) -> int:
    """Messages the workers' group has processed and committed (a restarted worker's
    snapshots count from zero again; the group's offsets do not)."""
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    return sum(max(0, tp.offset) for tp in group.committed(parts, timeout=10))


def read_counts(pages: list) -> list[tuple[int, int]]:
    """``(status-line updates, loads)`` each page counted so far."""
    out = []
    for page in pages:
        for _ in range(60):  # a page reloading right now answers a moment later
            try:
                out.append(tuple(page.evaluate(COUNTS)))
                break
            except Exception:
                time.sleep(0.5)
        else:
            raise RuntimeError("a page did not answer for 30 s")
    return out


def measure(
    args: argparse.Namespace,
    rate: float,
    server: subprocess.Popen,
    base: str,
    pages: list,
    consumer: Consumer,
    group: Consumer,
    topic: str,
) -> dict:
    """One window of ``args.seconds`` at the current rate."""
    spy = None
    if args.profile:
        out = Path(args.profile) / f"{rate:.0f}.txt"
        spy = subprocess.Popen(
            [PY_SPY, "record", "--pid", str(server.pid), "--duration", f"{args.seconds:.0f}",
             "--rate", "50", "--nonblocking", "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    counts0 = read_counts(pages)
    cpu0, made0, done0 = (
        cpu_seconds(server.pid),
        end_offsets(consumer, topic),
        committed(group, topic),
    )
    ticks0, read0, box0 = refreshes(base), redis_bytes_read(server.pid), machine_cpu()
    t0 = time.monotonic()
    time.sleep(args.seconds)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(server.pid) - cpu0
    read, ticks = redis_bytes_read(server.pid) - read0, refreshes(base) - ticks0
    made, done = end_offsets(consumer, topic) - made0, committed(group, topic) - done0
    busy = (machine_cpu() - box0) / elapsed / (os.cpu_count() or 1)
    counts = read_counts(pages)
    updates = [c[0] - c0[0] for c, c0 in zip(counts, counts0, strict=True)]
    profile = None
    if spy is not None:
        spy.wait(timeout=args.seconds + 60)
        if out.exists():
            profile = top_functions(out)
    return {
        "rate": rate,
        "elapsed": elapsed,
        "produced": made / elapsed,
        "processed": done / elapsed,
        "cpu_per_session_min": cpu / len(pages) / (elapsed / 60),
        "server_cpu_share": cpu / elapsed,
        "refreshes": ticks / elapsed,
        "cpu_per_refresh_ms": cpu / ticks * 1e3 if ticks else float("nan"),
        "redis_bytes": read / elapsed,
        "updates": [u / elapsed for u in updates],
        "reloads": sum(c[1] - c0[1] for c, c0 in zip(counts, counts0, strict=True)),
        "load": os.getloadavg(),
        "busy": busy,
        "profile": profile,
    }


def fleet_page_updates(browser, base: str, seconds: float) -> float | None:
    """Tile changes per second of ``/fleet`` (None when the server has no such page)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        response = page.goto(base + "/fleet", timeout=90_000)
        if response is None or response.status == 404:
            return None
        page.wait_for_function(
            "() => (DEEP_FIND)('.amq-fl-tile') !== null".replace("DEEP_FIND", DEEP_FIND),
            timeout=90_000,
        )
        time.sleep(5)
        page.evaluate(FLEET_SAMPLER)
        time.sleep(seconds)
        return page.evaluate("window.__amqFleet.changes") / seconds
    finally:
        page.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="5000,50000", help="total msg/s per phase, in order")
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds at a rate before")
    ap.add_argument("--seconds", type=float, default=60.0, help="measuring window per rate")
    ap.add_argument(
        "--server-nice",
        type=int,
        default=0,
        help="niceness of the dashboard server (e.g. -5 as root): on a host so busy that "
        "the server gets only its share of the cores, its CPU says nothing of its demand",
    )
    ap.add_argument(
        "--plant-nice",
        type=int,
        default=0,
        help="niceness of the workers (e.g. -5 as root), so that other work on the host "
        "does not decide the rates they reach",
    )
    ap.add_argument(
        "--producer-nice",
        type=int,
        default=10,
        help="niceness of the producer: lower priority than the workers, so that a phase "
        "the workers cannot follow (a producer at full speed) leaves them the cores",
    )
    ap.add_argument("--profile", metavar="DIR", help="sample the server with py-spy into DIR")
    ap.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=11, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:  # the producer process this bench starts
        return produce(args)
    rates = [float(r) for r in args.rates.split(",")]
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
        return 1
    if args.profile and PY_SPY is None:
        ap.error("--profile needs py-spy (pip install py-spy)")
    from playwright.sync_api import sync_playwright

    tag = f"dash-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    topic = prefix = f"bench-fleet-{tag}"  # spawn()'s names
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": f"{topic}-offsets"})
    group = Consumer({"bootstrap.servers": KAFKA, "group.id": topic})  # reads, never joins
    state = RedisStateStore(REDIS, prefix=prefix)
    apps = ("app.py", "fleet.py") if (ROOT / "dashboard" / "fleet.py").exists() else ("app.py",)
    results: list[dict] = []
    fleet_rate: float | None = None
    procs: list[subprocess.Popen] = []
    sim: subprocess.Popen | None = None
    server: subprocess.Popen | None = None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        try:
            procs = spawn(args.workers, tag, False, Path(tmp))
            wait_assigned(admin, topic, args.workers)
            sim = subprocess.Popen(
                [sys.executable, __file__, "--produce", "--topic", topic, "--rates", args.rates,
                 "--machines", str(args.machines), "--seed", str(args.seed)],
                cwd=ROOT, start_new_session=True,
            )  # fmt: skip
            for proc in procs:
                renice(proc.pid, args.plant_nice)
            renice(sim.pid, args.producer_nice)
            deadline = time.monotonic() + 120
            while "m01" not in state.machines():
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise RuntimeError("no state of m01 within 120 s")
                time.sleep(0.2)
            env = {"AMQADF_STATE": REDIS, "AMQADF_STATE_PREFIX": prefix, "AMQADF_MONGO_URI": "none"}
            server, url = start_server(
                rates[0], tmp, env=env, apps=apps, plugins=("dashboard.metrics_plugin",)
            )
            base = url.rsplit("/", 1)[0]
            if args.server_nice:
                renice(server.pid, args.server_nice)
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = open_pages(browser, url, args.sessions, "?machine=m01", COUNTER)
            for i, rate in enumerate(rates):
                if i:  # the next rate: same producer, builds, workers, server and pages
                    os.kill(sim.pid, signal.SIGUSR1)
                time.sleep(args.warmup)
                results.append(measure(args, rate, server, base, pages, consumer, group, topic))
            if "fleet.py" in apps:  # last: its session starts the process's FleetReader
                fleet_rate = fleet_page_updates(browser, base, 20.0)
            browser.close()
        finally:
            if sim is not None and sim.poll() is None:
                os.killpg(sim.pid, signal.SIGTERM)
                sim.wait(30)
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
                log = Path(tmp) / "server.log"  # kept for post-mortems
                if log.exists():
                    shutil.copy(log, Path(tempfile.gettempdir()) / "amqadf-bench-dashfleet.log")
            stop(procs)
            state.clear()
            state.close()
            consumer.close()
            group.close()
            admin.delete_topics([topic, topic + ".dlq"])
    first = results[0]
    print(
        f"dashboard server CPU per session of /app?machine=m01: {args.sessions} sessions, "
        f"{args.machines} machines, {args.workers} workers, {os.cpu_count()} cores, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s per rate, one producer whose rate "
        f"is switched (no restart); nice: server {args.server_nice}, workers "
        f"{args.plant_nice}, producer {args.producer_nice}"
    )
    for r in results:
        ratio = r["cpu_per_session_min"] / first["cpu_per_session_min"]
        per_refresh = r["cpu_per_refresh_ms"] / first["cpu_per_refresh_ms"]
        rate_x = r["processed"] / first["processed"] if first["processed"] else float("nan")
        ups = ", ".join(f"{u:.2f}" for u in r["updates"])
        print(
            f"  {r['rate']:>7,.0f} msg/s asked: produced {r['produced']:>7,.0f}, processed "
            f"{r['processed']:>7,.0f} msg/s ({rate_x:.1f}x the first) | server "
            f"{r['cpu_per_session_min']:.2f} CPU-s per session per minute "
            f"({r['server_cpu_share'] * 100:.0f} % of a core in all), {ratio:.2f}x the first "
            f"({'PASS' if abs(ratio - 1) <= 0.2 else 'MISS'} within 20 %) | "
            f"{r['refreshes']:.2f} refreshes/s ({r['cpu_per_refresh_ms']:.0f} CPU-ms each, "
            f"{per_refresh:.2f}x the first), "
            f"read from Redis {r['redis_bytes'] / 1e3:,.1f} kB/s | page updates/s {ups} "
            f"({r['reloads']} reloads) | load {' '.join(f'{x:.1f}' for x in r['load'])}, "
            f"host {r['busy'] * 100:.0f} % busy"
        )
        if r["profile"]:
            own, incl = r["profile"]
            print("    py-spy, self:      " + "; ".join(f"{f} {s:.0%}" for f, s in own))
            print("    py-spy, inclusive: " + "; ".join(f"{f} {s:.0%}" for f, s in incl))
    if "fleet.py" in apps:
        shown = "not measured" if fleet_rate is None else f"{fleet_rate:.2f}"
        print(f"  /fleet tile changes per second: {shown} (target >= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
