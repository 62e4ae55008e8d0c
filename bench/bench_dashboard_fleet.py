"""Dashboard server CPU per session of a fleet machine's page at 5 k vs 50 k msg/s.

A dashboard of the fleet reads derived state only (snapshots, windows, alerts, voxel
deltas a worker publishes a few times a second), so its CPU per session should not
follow the plant's message rate. This bench, loopback only and bounded in time:

* makes a 6-partition topic on Kafka (``AMQADF_KAFKA``, 127.0.0.1:9092) and starts
  ``--workers`` ``am-qadf worker`` processes (embedded history, state in Redis
  ``AMQADF_REDIS_URL`` under a prefix of this run, as ``bench_fleet.py`` does);
* serves ``panel serve dashboard/app.py`` (and ``dashboard/fleet.py`` when there is
  one) with ``AMQADF_STATE`` set and opens ``--sessions`` pages of
  ``/app?machine=m01`` in headless Chromium;
* for each total rate of ``--rates`` (default 5,000 then 50,000 msg/s) runs
  ``am-qadf simulate --machines N`` at that total (machine ``i`` at ``1 + 0.3 i`` times
  the first one's rate; a rate above ``--live-max``, which the workers cannot take
  live here, is published as a ``--backlog-seconds`` backlog with the workers stopped,
  then measured while they consume it), waits ``--warmup`` s, then over ``--seconds`` s
  measures the dashboard server's CPU (utime + stime from /proc), each page's
  status-line updates (counted across reloads) and the rates reached: produced (the
  topic's end offsets) and processed (the workers' group's committed offsets);
* with ``/fleet`` served, opens it last and counts how often its tiles change.

Printed: CPU-s per session per minute at each rate, their ratio to the first rate's
(target within 20 %), updates/s per page, load average. Nothing is asserted. On this
2-core host shared with Kafka, Redis, the workers, the simulator and Chromium, the
rate asked for may not be reached: the rates reached are what the figures stand on.

Run: python bench/bench_dashboard_fleet.py [--rates 5000,50000] [--seconds 60]
[--server-nice -5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def share_of_first(total: float, machines: int) -> float:
    """The first machine's rate when ``machines`` simulated machines publish ``total``
    msg/s together (machine ``i`` publishes ``1 + 0.3 i`` times the first one's).

    >>> round(share_of_first(16_400, 8))
    1000
    """
    return total / sum(1.0 + 0.3 * i for i in range(machines))


def simulate(topic: str, total_rate: float, machines: int, seed: int) -> subprocess.Popen:
    """``am-qadf simulate --machines`` publishing ``total_rate`` msg/s in all."""
    cmd = [
        sys.executable, "-m", "am_qadf.cli", "simulate", "--machines", str(machines),
        "--bootstrap", KAFKA, "--topic", topic, "--seed", str(seed), "--builds", "100",
        "--rate", f"{share_of_first(total_rate, machines):.3f}",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
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
    pages: list,
    consumer: Consumer,
    group: Consumer,
    topic: str,
    backlog: bool,
) -> dict:
    """One window of ``args.seconds`` at the current rate (a backlog: until it is
    consumed, if that comes first)."""
    counts0 = read_counts(pages)
    cpu0, made0, done0 = (
        cpu_seconds(server.pid),
        end_offsets(consumer, topic),
        committed(group, topic),
    )
    box0 = machine_cpu()
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < args.seconds:
        time.sleep(min(1.0, args.seconds - elapsed))
        if backlog and committed(group, topic) >= made0:
            break  # drained: what follows would be an idle plant
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(server.pid) - cpu0
    made, done = end_offsets(consumer, topic) - made0, committed(group, topic) - done0
    busy = (machine_cpu() - box0) / elapsed / (os.cpu_count() or 1)
    counts = read_counts(pages)
    updates = [c[0] - c0[0] for c, c0 in zip(counts, counts0, strict=True)]
    shown = sum(updates)
    return {
        "rate": rate,
        "backlog": backlog,
        "elapsed": elapsed,
        "cpu_per_update_ms": cpu / shown * 1e3 if shown else float("nan"),
        "produced": made / elapsed,
        "processed": done / elapsed,
        "cpu_per_session_min": cpu / len(pages) / (elapsed / 60),
        "server_cpu_share": cpu / elapsed,
        "updates": [u / elapsed for u in updates],
        "reloads": sum(c[1] - c0[1] for c, c0 in zip(counts, counts0, strict=True)),
        "load": os.getloadavg(),
        "busy": busy,
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
    ap.add_argument("--rates", default="5000,50000", help="total msg/s, comma-separated")
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds at a rate before")
    ap.add_argument("--seconds", type=float, default=60.0, help="measuring window per rate")
    ap.add_argument(
        "--live-max",
        type=float,
        default=20_000,
        help="rates above this are published as a backlog first, with the workers "
        "stopped, and measured while the workers consume it (they cannot keep up live)",
    )
    ap.add_argument("--backlog-seconds", type=float, default=40.0, help="seconds of backlog")
    ap.add_argument(
        "--server-nice",
        type=int,
        default=0,
        help="niceness of the dashboard server (e.g. -5 as root): on a host so busy that "
        "the server gets only its share of the cores, its CPU says nothing of its demand",
    )
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if rates[0] > args.live_max:
        ap.error("the first rate must be one the workers take live (<= --live-max)")
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
        return 1
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
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        try:
            procs = spawn(args.workers, tag, False, Path(tmp))
            wait_assigned(admin, topic, args.workers)
            sim = simulate(topic, rates[0], args.machines, seed=11)
            deadline = time.monotonic() + 120
            while "m01" not in state.machines():
                if time.monotonic() > deadline:
                    raise RuntimeError("no state of m01 within 120 s")
                time.sleep(0.2)
            env = {"AMQADF_STATE": REDIS, "AMQADF_STATE_PREFIX": prefix, "AMQADF_MONGO_URI": "none"}
            server, url = start_server(rates[0], tmp, env=env, apps=apps)
            if args.server_nice:
                os.setpriority(os.PRIO_PROCESS, server.pid, args.server_nice)
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = open_pages(browser, url, args.sessions, "?machine=m01", COUNTER)
            for i, rate in enumerate(rates):
                backlog = rate > args.live_max
                if i:  # the next rate: a new simulator (new builds), same server and pages
                    if sim is not None:
                        os.killpg(sim.pid, signal.SIGTERM)
                        sim.wait(30)
                    seed = 11 + 100 * i
                    if backlog:  # workers stopped (offsets committed) while it piles up
                        stop(procs)
                        sim = simulate(topic, rate, args.machines, seed=seed)
                        time.sleep(args.backlog_seconds)
                        os.killpg(sim.pid, signal.SIGTERM)
                        sim.wait(30)
                        sim = None
                        procs = spawn(args.workers, tag, False, Path(tmp))
                        wait_assigned(admin, topic, args.workers)
                    else:
                        sim = simulate(topic, rate, args.machines, seed=seed)
                time.sleep(args.warmup)
                results.append(measure(args, rate, server, pages, consumer, group, topic, backlog))
            if "fleet.py" in apps:  # last: its session starts the process's FleetReader
                fleet_rate = fleet_page_updates(browser, url.rsplit("/", 1)[0], 20.0)
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
    base = results[0]["cpu_per_session_min"]
    print(
        f"dashboard server CPU per session of /app?machine=m01: {args.sessions} sessions, "
        f"{args.machines} machines, {args.workers} workers, {os.cpu_count()} cores, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s per rate, server nice {args.server_nice}"
    )
    for r in results:
        ratio = r["cpu_per_session_min"] / base
        ups = ", ".join(f"{u:.2f}" for u in r["updates"])
        how = "backlog" if r["backlog"] else "live"
        print(
            f"  {r['rate']:>7,.0f} msg/s asked ({how}, {r['elapsed']:.0f} s): produced "
            f"{r['produced']:>7,.0f}, processed {r['processed']:>7,.0f} msg/s | server "
            f"{r['cpu_per_session_min']:.2f} CPU-s per session per minute "
            f"({r['server_cpu_share'] * 100:.0f} % of a core in all), {ratio:.2f}x the first "
            f"({'PASS' if abs(ratio - 1) <= 0.2 else 'MISS'} within 20 %), "
            f"{r['cpu_per_update_ms']:.0f} CPU-ms per page update | updates/s per page {ups}"
            f" ({r['reloads']} page reloads)"
            f" | load {' '.join(f'{x:.1f}' for x in r['load'])}, host {r['busy'] * 100:.0f} % busy"
        )
    if "fleet.py" in apps:
        shown = "not measured" if fleet_rate is None else f"{fleet_rate:.2f}"
        print(f"  /fleet tile changes per second: {shown} (target >= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
