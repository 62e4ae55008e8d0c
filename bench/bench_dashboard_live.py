"""Benchmark the dashboard end to end in headless Chromium: latency and a soak run.

``python bench/bench_dashboard_live.py latency`` starts ``panel serve dashboard/app.py``
(embedded default, simulated build at ``--rate`` msg/s, loopback only), opens one page
and records, for every refresh the page shows, how old the newest message on it is:
browser clock minus the message's own timestamp (the simulator stamps each message
with the time it is due and publishes it then, so this is produce -> visible). It also
records produce -> point visible in the live plot: the newest x of the plot's data
sources, read from Bokeh's document in the page every animation frame, taken at the
end of its time bin (the newest message the point can hold). Printed: p50/p95 of both
for the default refresh period (500 ms) and for ``?period=100``.

``python bench/bench_dashboard_live.py soak --minutes 20`` opens three pages at 5 k
msg/s and samples the server's RSS every 15 s and each page's updates per second
(``--period 250`` opens them with ``?period=250``: the default 500 ms allows 2 at most).
Targets (dashboard issues): status line p95 < 250 ms and plot p95 < 500 ms at 10 k
msg/s; >= 2 updates/s per session;
RSS within 10 % over the run (measured after a warm-up of a quarter of the run, at
most 2 minutes). Figures are printed; nothing is asserted on time.

Needs Debian's ``chromium`` (``AMQADF_CHROMIUM`` overrides the path) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("AMQADF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
#: Time bin (ms) of the live plots' points (LiveSignals.bin_seconds).
BIN_MS = 100.0

# The first element matching a selector, looking inside shadow roots (Panel's views).
DEEP_FIND = """(selector) => {
  const stack = [document];
  while (stack.length) {
    const root = stack.pop();
    const el = root.querySelector(selector);
    if (el) return el;
    root.querySelectorAll('*').forEach((e) => e.shadowRoot && stack.push(e.shadowRoot));
  }
  return null;
}"""

# Installed in each page: follows the header's data-newest (epoch ms of the newest
# message shown) on every animation frame and records its age when it changes; the
# same for the newest x (epoch ms, a time bin's centre) of the live plots' data sources
# in Bokeh's document, aged from the end of that bin.
SAMPLER = """(binMs) => {
  const state = {lat: [], server: [], plot: [], updates: 0, started: performance.now()};
  window.__amqBench = state;
  const find = () => (DEEP_FIND)('.amq-hdr-msgs');
  let el = null, last = null, sources = [], found = 0, lastPlot = null;
  const timeSources = () => {
    const out = [];
    for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
      for (const m of doc._all_models.values()) {
        const d = m.data;
        if (d == null || m.selected === undefined) continue;  // column data sources only
        const time = d instanceof Map ? d.get('time') : d.time;
        if (time != null) out.push(m);
      }
    }
    return out;
  };
  const newestPlot = () => {
    let best = null;
    for (const m of sources) {
      const t = m.data instanceof Map ? m.data.get('time') : m.data.time;
      if (t && t.length && (best == null || t[t.length - 1] > best)) best = t[t.length - 1];
    }
    return best;
  };
  const tick = () => {
    const now = performance.now();
    if (now - found > 2000) { sources = timeSources(); found = now; }  // views re-created
    const p = newestPlot();
    if (p != null && p !== lastPlot) {
      lastPlot = p;
      state.plot.push(Date.now() - (Number(p) + binMs / 2));
    }
    if (el == null || !el.isConnected) el = find();
    const newest = el && el.getAttribute('data-newest');
    if (newest && newest !== last) {
      last = newest;
      state.updates += 1;
      state.lat.push(Date.now() - Number(newest));
      state.server.push(Number(el.getAttribute('data-sent')) - Number(newest));
    }
    requestAnimationFrame(tick);
  };
  tick();
}""".replace("DEEP_FIND", DEEP_FIND)


# The voxel grid's bytes from the sidebar's health figures (data-grid-bytes).
GRID_BYTES = """() => {
  const el = (DEEP_FIND)('[data-grid-bytes]');
  return el && el.getAttribute('data-grid-bytes');
}""".replace("DEEP_FIND", DEEP_FIND)


# Updates counted since the last read (None if the page reloaded and lost the sampler).
READ_AND_RESET = """() => {
  const s = window.__amqBench;
  if (s == null) return null;
  const n = s.updates;
  s.updates = 0;
  s.lat.length = 0;
  s.server.length = 0;
  s.plot.length = 0;
  return n;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    rate: float,
    data_dir: str,
    env: dict[str, str] | None = None,
    apps: tuple[str, ...] = ("app.py",),
    plugins: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, str]:
    """Start the dashboard (``apps`` of ``dashboard/``, with ``env`` added to this
    process's environment, ``plugins`` as ``panel serve --plugins``); its output goes
    to ``data_dir``/server.log."""
    port = free_port()
    env = {**os.environ, "AMQADF_RATE": str(rate), "AMQADF_DATA_DIR": data_dir, **(env or {})}
    cmd = [
        sys.executable, "-m", "panel", "serve", *(str(ROOT / "dashboard" / a) for a in apps),
        "--address", "127.0.0.1", "--port", str(port),
        "--allow-websocket-origin", f"127.0.0.1:{port}", "--liveness",
        *(["--plugins", *plugins] if plugins else []),
    ]  # fmt: skip
    log = open(Path(data_dir) / "server.log", "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/app"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            # /liveness answers without building a session (a GET of /app builds one,
            # which on a busy machine can take longer than any probe timeout)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness", timeout=5).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the dashboard did not start within 90 s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def grid_mib(page) -> float:
    """The voxel grid's memory as the page's health figures show it (NaN if unseen)."""
    try:
        value = page.evaluate(GRID_BYTES)
    except Exception:  # the page is reloading
        return float("nan")
    return int(value) / 2**20 if value else float("nan")


def open_pages(browser, url: str, n: int, query: str = "", init_script: str = "") -> list:
    """``n`` pages of ``url + query``, each loaded (``init_script`` runs in every page
    load, reloads included)."""
    pages = []
    for _ in range(n):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        if init_script:
            page.add_init_script(init_script)
        page.goto(url + query, timeout=90_000)
        page.wait_for_selector(".amq-hdr-msgs", timeout=90_000)
        pages.append(page)
    return pages


def latency(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    print(f"produce -> visible latency at {args.rate:,.0f} msg/s, {args.seconds} s each")
    for query in ("", "?period=100"):
        # a fresh server per setting, measured after a warm-up: a server start leaves a
        # backlog (the simulator runs while the first page loads) that says nothing about
        # the steady state
        with tempfile.TemporaryDirectory() as data_dir, sync_playwright() as p:
            proc, url = start_server(args.rate, data_dir)
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                (page,) = open_pages(browser, url, 1, query)
                time.sleep(args.warmup)
                page.evaluate(SAMPLER, BIN_MS)
                time.sleep(args.seconds)
                s = page.evaluate("window.__amqBench")
            finally:
                browser.close()
                proc.terminate()
                proc.wait(timeout=30)
        lat = np.asarray(s["lat"], dtype=float)
        server = np.asarray(s["server"], dtype=float)  # newest message -> line sent
        p50, p95 = np.percentile(lat, [50, 95]) if lat.size else (np.nan, np.nan)
        s50, s95 = np.percentile(server, [50, 95]) if server.size else (np.nan, np.nan)
        b50, b95 = np.percentile(lat - server, [50, 95]) if lat.size else (np.nan, np.nan)
        plot = np.asarray(s["plot"], dtype=float)
        q50, q95 = np.percentile(plot, [50, 95]) if plot.size else (np.nan, np.nan)
        print(
            f"  period {'100' if query else '500'} ms: {lat.size / args.seconds:.1f} updates/s, "
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms ({'PASS' if p95 < 250 else 'MISS'} p95 < 250 ms)\n"
            f"    of which server (message -> status line sent) p50 {s50:.0f} / p95 {s95:.0f} ms, "
            f"browser (sent -> shown) p50 {b50:.0f} / p95 {b95:.0f} ms\n"
            f"    live plot (produce -> point visible): {plot.size / args.seconds:.1f} updates/s, "
            f"p50 {q50:.0f} ms, p95 {q95:.0f} ms ({'PASS' if q95 < 500 else 'MISS'} p95 < 500 ms)"
        )


def soak(args: argparse.Namespace) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    duration = args.minutes * 60
    warmup = min(duration / 4, 120)
    with tempfile.TemporaryDirectory() as data_dir, sync_playwright() as p:
        proc, url = start_server(args.rate, data_dir)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            query = f"?period={args.period}" if args.period else ""
            pages = open_pages(browser, url, args.sessions, query)
            updates = [0] * len(pages)
            reloads = [0] * len(pages)
            for page in pages:
                page.evaluate(SAMPLER, BIN_MS)
            t0 = time.monotonic()
            samples: list[tuple[float, float, float]] = []  # (s, RSS MiB, voxel grid MiB)
            while (t := time.monotonic() - t0) < duration:
                samples.append((t, rss_mib(proc.pid), grid_mib(pages[0])))
                time.sleep(min(15, duration - t))
                for i, page in enumerate(pages):  # collect, and notice pages that reloaded
                    try:
                        got = page.evaluate(READ_AND_RESET)
                    except PlaywrightError:  # reloading right now
                        got = None
                    if got is None:
                        reloads[i] += 1
                        try:  # back on its feet? if not, try again at the next sample
                            page.wait_for_selector(".amq-hdr-msgs", timeout=10_000)
                            page.evaluate(SAMPLER, BIN_MS)
                        except PlaywrightError:
                            pass
                    else:
                        updates[i] += got
            samples.append((time.monotonic() - t0, rss_mib(proc.pid), grid_mib(pages[0])))
        finally:
            browser.close()
            proc.terminate()
            proc.wait(timeout=30)
        log_lines = (Path(data_dir) / "server.log").read_text().splitlines()
    slow = [line for line in log_lines if "took" in line]
    after = [(r, g) for t, r, g in samples if t >= warmup]
    (base, grid0), (end, grid1) = after[0], after[-1]
    peak = max(r for r, _ in after)
    drift = (end - base) / base * 100
    # the voxel grid holds the build itself: it grows with the build, by design
    other = ((end - grid1) - (base - grid0)) / (base - grid0) * 100
    rates = [n / duration for n in updates]
    period = f", ?period={args.period}" if args.period else ""
    print(f"soak: {args.sessions} sessions, {args.rate:,.0f} msg/s, {args.minutes:g} min{period}")
    print(f"  updates/s per session: {', '.join(f'{r:.2f}' for r in rates)} "
          f"({'PASS' if min(rates) >= 2 else 'MISS'} >= 2)")  # fmt: skip
    print(f"  samples (every 15 s) without the page's sampler (reloading or reloaded): {reloads}")
    print(
        f"  server RSS after {warmup:.0f} s warm-up {base:.0f} MiB -> end {end:.0f} MiB "
        f"(peak {peak:.0f}): {drift:+.1f} % ({'PASS' if abs(drift) <= 10 else 'MISS'} within 10 %)"
    )
    print(
        f"  of which the voxel grid (the build's data) {grid0:.0f} -> {grid1:.0f} MiB; "
        f"the rest {other:+.1f} % ({'PASS' if abs(other) <= 10 else 'MISS'} within 10 %)"
    )
    print(
        "  RSS / grid samples (s: MiB/MiB):",
        ", ".join(f"{t:.0f}:{r:.0f}/{g:.0f}" for t, r, g in samples[::4]),
    )
    print(f"  server refreshes over 1 s: {len(slow)}; the last ones:")
    for line in slow[-5:]:
        print("   ", line[:200])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what")  # none: latency, then the soak (about 25 min)
    lat = sub.add_parser("latency", help="produce -> visible latency, one session")
    lat.add_argument("--rate", type=float, default=10_000)
    lat.add_argument("--seconds", type=int, default=60)
    lat.add_argument("--warmup", type=int, default=30, help="seconds before measuring")
    so = sub.add_parser("soak", help="several sessions: updates/s and server RSS")
    so.add_argument("--rate", type=float, default=5_000)
    so.add_argument("--sessions", type=int, default=3)
    so.add_argument("--minutes", type=float, default=20)
    so.add_argument("--period", type=int, default=0, help="refresh period (ms); 0: the app's")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
        return 1
    if args.what is None:
        latency(lat.parse_args([]))
        soak(so.parse_args([]))
    else:
        (latency if args.what == "latency" else soak)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
