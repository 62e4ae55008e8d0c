"""Detection quality and speed of the SPC + alert processors on a simulated build.

Feeds a seeded simulated build (>= 20 injected defects over 1 M points by
default) in batches of 1,000 messages through ``default_processors()`` and
reports, per defect type, recall within 1,000 points of the defect start and
the detection delay; the false-alarm rate on in-control points; and the
throughput of SPC + alerts, both on message dicts (the streaming path,
including the dict -> column conversion) and on numpy columns.

    python bench/bench_detection.py [--points 1000000] [--seed 7] [--batch 1000] [--repeats 3]

The message-path rate is the median of ``--repeats`` passes (best printed too); beside
it are the bare numpy-column path, the dict -> column conversion of the fields SPC +
alerts read (in the streaming client the validator does it once per batch for every
processor) and the time to free each batch of dicts, so one sees where time goes.

Exit status is 0 unless a correctness check fails (determinism, ground truth,
unique alert ids); a missed target prints MISS but does not fail the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.monitoring.processors import default_processors  # noqa: E402
from am_qadf.simulation import DEFECT_TYPES, BuildSimulator  # noqa: E402
from am_qadf.streaming.message_columns import ColumnCache  # noqa: E402

DETECTION_WINDOW = 1_000  # points after a defect start within which an alert must come
TAIL = 1_000  # points after an event's end still attributed to it (recovery, cooldown)
TARGET_RECALL = 0.95
TARGET_FA_PER_100K = 1.0
TARGET_RATE = 1_000_000.0


def _check(ok: bool, what: str, failures: list[str]) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        failures.append(what)


class Clock:
    """Accumulates wall time and this process's CPU time of the timed sections.

    On a shared machine the wall figure includes time the OS gave to other
    processes; the CPU figure is what one dedicated core achieves.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def run_messages(
    sim: BuildSimulator, batch: int
) -> tuple[list[dict[str, Any]], dict[str, Clock], int, list[str]]:
    """Feed message batches through the default processors as the streaming client does
    (quality, then SPC, then alerts, sharing one column cache); time each part.

    Clocks: ``spc_alerts`` (SPC + alerts; the signals' columns were converted by the
    quality processor, as the client's validator converts every field before any
    processor runs), ``quality``, ``convert`` (converting the fields SPC + alerts read to
    columns, on a cache of its own, outside the others) and ``free`` (releasing a batch
    after use: in the client the storage writer holds it longer, so it is timed on its
    own here instead of landing in whichever processor happens to drop it last).
    """
    procs = default_processors(sample_rate_hz=sim.sensor_rate_hz)
    quality, spc = procs["quality_processor"], procs["spc_processor"]
    alert = procs["alert_processor"]
    read = {"layer", *spc.signals, *(r.metric for r in alert.threshold_rules)}
    fields = sorted(read - {"timestamp"})
    alerts: list[dict[str, Any]] = []
    clocks = {k: Clock() for k in ("spc_alerts", "quality", "convert", "free")}
    n = 0
    prev: list[dict[str, Any]] | None = None
    for msgs in sim.iter_batches(batch_size=batch):
        with clocks["quality"]:
            quality(msgs)
        with clocks["spc_alerts"]:
            spc(msgs)
            out = alert(msgs)
        with clocks["convert"]:  # after the others: it must not warm their caches
            ColumnCache().columns(msgs, fields)
        alerts.extend(out["alerts"])
        n += len(msgs)
        with clocks["free"]:
            prev = msgs  # the batch before is released here
    with clocks["free"]:
        del prev
    return alerts, clocks, n, fields


def run_arrays(sim: BuildSimulator, batch: int, repeats: int = 3) -> tuple[Clock, int, int]:
    """Same processors on ready-made numpy columns; the best of ``repeats`` passes."""
    chunks = list(sim.iter_arrays(chunk_size=batch))
    best: Clock | None = None
    n_alerts = 0
    for _ in range(repeats):
        procs = default_processors(sample_rate_hz=sim.sensor_rate_hz)
        spc, alert = procs["spc_processor"], procs["alert_processor"]
        n_alerts = 0
        clock = Clock()
        with clock:
            for c in chunks:
                spc.process_arrays(c)
                n_alerts += len(alert.process_arrays(c)["alert_ids"])
        if best is None or clock.cpu < best.cpu:
            best = clock
    assert best is not None
    return best, sum(c["x"].size for c in chunks), n_alerts


def evaluate(sim: BuildSimulator, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    idx = np.array(
        [sim.index_of(datetime.fromisoformat(a["time"])) for a in alerts], dtype=np.int64
    )
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    alerts = [alerts[i] for i in order]
    covered = np.zeros(sim.total_points + 1, dtype=np.int8)  # +1 diff trick
    per_type: dict[str, list[tuple[bool, int | None, str]]] = defaultdict(list)
    for ev in sim.ground_truth:
        lo = int(np.searchsorted(idx, ev.start_index))
        hi = int(np.searchsorted(idx, ev.start_index + DETECTION_WINDOW, side="right"))
        hit = hi > lo
        delay = int(idx[lo] - ev.start_index) if hit else None
        rule = f"{alerts[lo]['metric']}/{alerts[lo]['rule']}" if hit else "-"
        per_type[ev.kind].append((hit, delay, rule))
        covered[ev.start_index] += 1
        covered[min(ev.end_index + TAIL, sim.total_points)] -= 1
    in_zone = np.zeros(sim.total_points + 1, dtype=np.int8)
    for z in sim.hot_zones:
        in_zone[z.start_index] += 1
        in_zone[min(z.end_index + TAIL, sim.total_points)] -= 1
    defect_mask = np.cumsum(covered)[:-1] > 0
    zone_mask = (np.cumsum(in_zone)[:-1] > 0) & ~defect_mask
    ok = (idx >= 0) & (idx < sim.total_points)
    a_def = np.zeros(idx.size, bool)
    a_zone = np.zeros(idx.size, bool)
    a_def[ok] = defect_mask[idx[ok]]
    a_zone[ok] = zone_mask[idx[ok]]
    false = ~a_def & ~a_zone
    in_control = int(sim.total_points - defect_mask.sum() - zone_mask.sum())
    fa_rules: dict[str, int] = defaultdict(int)
    for i in np.flatnonzero(false):
        fa_rules[f"{alerts[i]['metric']}/{alerts[i]['rule']}"] += 1
    return {
        "per_type": per_type,
        "n_alerts": len(alerts),
        "n_defect_alerts": int(a_def.sum()),
        "n_zone_alerts": int(a_zone.sum()),
        "n_false": int(false.sum()),
        "in_control": in_control,
        "fa_rules": dict(fa_rules),
    }


def _target(ok: bool, text: str) -> None:
    print(f"  [{'PASS' if ok else 'MISS'}] {text}")


def _table(ev: dict[str, Any]) -> float:
    """Print recall and delay per defect type; return the overall recall."""
    head = (
        f"{'defect type':<16}{'n':>4}{'found':>7}{'recall':>9}{'median delay':>14}{'max delay':>11}"
    )
    print(head + "  first alert (most common)")
    tot = hit_tot = 0
    for kind in DEFECT_TYPES:
        rows = ev["per_type"].get(kind, [])
        if not rows:
            continue
        hits = [r for r in rows if r[0]]
        delays = [r[1] for r in hits]
        firsts = [r[2] for r in hits]
        common = max(set(firsts), key=firsts.count) if hits else "-"
        med = f"{np.median(delays):.0f}" if delays else "-"
        mx = f"{max(delays)}" if delays else "-"
        rec = len(hits) / len(rows)
        print(f"{kind:<16}{len(rows):>4}{len(hits):>7}{rec:>9.0%}{med:>14}{mx:>11}  {common}")
        tot += len(rows)
        hit_tot += len(hits)
    recall = hit_tot / tot if tot else float("nan")
    print(f"{'all':<16}{tot:>4}{hit_tot:>7}{recall:>9.1%}")
    return recall


def _correctness(
    sim: BuildSimulator, cols: dict[str, np.ndarray], args: Any, failures: list[str]
) -> None:
    again = BuildSimulator(seed=args.seed, n_points=args.points, n_defects=sim_defects(args))
    cols2 = again.columns(50_000)
    same = all(np.array_equal(cols[k][: cols2[k].size], cols2[k], equal_nan=True) for k in cols2)
    same = same and [e.to_dict() for e in again.ground_truth] == [
        e.to_dict() for e in sim.ground_truth
    ]
    _check(same, "same seed gives the same build and ground truth", failures)
    gt = sim.ground_truth
    in_range = all(0 <= e.start_index < e.end_index <= sim.total_points for e in gt)
    apart = all(a.end_index <= b.start_index for a, b in zip(gt, gt[1:], strict=False))
    _check(in_range and apart, "ground truth events are in range and do not overlap", failures)
    kinds = {e.kind for e in gt}
    _check(
        kinds == set(DEFECT_TYPES) or len(gt) < len(DEFECT_TYPES),
        "every defect type is injected",
        failures,
    )
    if args.points >= 1_000_000:
        _check(len(gt) >= 20, "at least 20 injected defects on 1 M points", failures)


def sim_defects(args: Any) -> int:
    return args.defects if args.defects is not None else max(5, round(24 * args.points / 1e6))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="points to simulate")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--defects", type=int, default=None, help="default: 24 per 1e6 points")
    ap.add_argument(
        "--repeats", type=int, default=3, help="passes over the message batches timed (>= 1)"
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    failures: list[str] = []

    print(f"AM-QADF Live detection bench: {args.points:,} points, seed {args.seed}, ", end="")
    print(f"batches of {args.batch}")
    t0 = time.perf_counter()
    sim = BuildSimulator(seed=args.seed, n_points=args.points, n_defects=sim_defects(args))
    gen = Clock()
    with gen:
        cols = sim.columns()
    print(f"simulator: {sim.total_points:,} points, {len(sim.ground_truth)} defects, ", end="")
    print(f"{len(sim.hot_zones)} overhang hot zones; numpy generation ", end="")
    print(f"{sim.total_points / gen.cpu / 1e6:.2f} M points/s per CPU-second ", end="")
    print(f"({sim.total_points / gen.wall / 1e6:.2f} wall)")

    print("correctness checks")
    _correctness(sim, cols, args, failures)
    alerts, clocks, n_msgs, fields = run_messages(sim, args.batch)
    msg_rates = [n_msgs / clocks["spc_alerts"].cpu]
    for _ in range(args.repeats - 1):  # timing only; the first pass's alerts are evaluated
        msg_rates.append(n_msgs / run_messages(sim, args.batch)[1]["spc_alerts"].cpu)
    ids = [a["id"] for a in alerts]
    _check(len(set(ids)) == len(ids), "alert ids are unique", failures)
    located = all(a["time"] is not None and a["layer"] is not None for a in alerts)
    _check(located, "every alert carries a time and a layer", failures)
    t_np, n_np, n_alerts_np = run_arrays(sim, args.batch)
    same = n_alerts_np == len(alerts)
    _check(same, f"array path raises as many alerts ({n_alerts_np} vs {len(alerts)})", failures)

    ev = evaluate(sim, alerts)
    print()
    recall = _table(ev)
    fa_rate = ev["n_false"] / ev["in_control"] * 1e5 if ev["in_control"] else float("nan")
    print()
    print(
        f"alerts: {ev['n_alerts']} total, {ev['n_defect_alerts']} during defects (+{TAIL} pts), ",
        end="",
    )
    print(f"{ev['n_zone_alerts']} in expected overhang hot zones, {ev['n_false']} false")
    if ev["fa_rules"]:
        rules = ", ".join(f"{k}: {v}" for k, v in sorted(ev["fa_rules"].items()))
        print(f"false alerts by metric/rule: {rules}")
    print(f"in-control points: {ev['in_control']:,}; ", end="")
    print(f"false alarms per 100k in-control points: {fa_rate:.2f}")
    print()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"throughput (load average {load:.1f} on {os.cpu_count()} CPUs)", end="")
    print(" " * 35 + "per CPU-second   wall")
    t_sa = clocks["spc_alerts"]
    speeds = [
        ("SPC + alerts on message dicts (columns shared via the cache)", n_msgs, t_sa),
        ("SPC + alerts on numpy columns (bare column path, best of 3)", n_np, t_np),
        (
            f"dict->column conversion of the {len(fields)} fields they read",
            n_msgs,
            clocks["convert"],
        ),
        ("quality processor on message dicts", n_msgs, clocks["quality"]),
        ("freeing each message batch after use", n_msgs, clocks["free"]),
    ]
    for label, n, clock in speeds:
        print(f"  {label:<62}{n / clock.cpu / 1e6:6.2f} M/s   {n / clock.wall / 1e6:6.2f} M/s")
    strict = n_msgs / (t_sa.cpu + clocks["convert"].cpu)
    print(f"  SPC + alerts incl. converting their fields ({', '.join(fields)}): ", end="")
    print(f"{strict / 1e6:.2f} M/s")
    rate_msgs, rate_np = float(np.median(msg_rates)), n_np / t_np.cpu
    print(f"  SPC + alerts on message dicts in {len(msg_rates)} passes: ", end="")
    print(f"best {max(msg_rates) / 1e6:.2f} M/s, median {rate_msgs / 1e6:.2f} M/s")
    print()
    print("targets (throughput per CPU-second)")
    _target(
        recall >= TARGET_RECALL, f"recall within {DETECTION_WINDOW} points >= 95%: {recall:.1%}"
    )
    _target(
        fa_rate < TARGET_FA_PER_100K, f"false alarms < 1 per 100k in-control points: {fa_rate:.2f}"
    )
    _target(
        rate_msgs >= TARGET_RATE,
        f"SPC + alerts >= 1 M points/s (messages, median): {rate_msgs / 1e6:.2f} M/s",
    )
    _target(
        rate_np >= TARGET_RATE, f"SPC + alerts >= 1 M points/s (numpy): {rate_np / 1e6:.2f} M/s"
    )
    print(f"total bench time {time.perf_counter() - t0:.1f} s")
    if failures:
        print(f"{len(failures)} correctness check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
