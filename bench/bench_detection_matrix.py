"""Detection matrix: scenarios x defect types through the public processors.

Each scenario is a stream generated here, independently of the project's
simulator (its own noise model, its own defects), and fed as message dicts in
batches of 1,000 through ``default_processors()`` -- the public path, no chart
internals. Scenarios: white noise; AR(1) noise with phi 0.3 / 0.7 / 0.9;
another material's nominal values (2,400 K); heteroscedastic noise (sd grows
with the level) with layer offsets; layer-to-layer level shifts; all with
scan-vector start transients. Defects are sized in sigma, in one of two units
(``--sigma-unit``):

* ``issue`` (default, the unit issue 16 states): the signal's marginal in-control
  sd, measured per scenario and signal as the sd of the generated stream without
  its defects (the same realisation: every layer with its offset and noise scale,
  every transient), over the whole stream;
* ``layer``: the marginal sd of the AR noise alone, i.e. of the signal within a
  layer whose offset is 0 (scale 1) -- smaller when layers shift, so stricter.

Defect types:

* ``shift``: all melt-pool signals +-2 sigma for 500-1,500 points
* ``drift``: temperature ramps +-1 sigma per 1,000 points for 1,500 points
* ``variance``: temperature noise sd x sqrt(2) (the noise's own variance x2, a ratio:
  the same in both units) for 1,000-2,000 points
* ``one_signal``: area or intensity alone +-3 sigma for 500-1,000 points
* ``spike``: one signal +-6 sigma for 2-5 points
* ``dropout``: 20-40 points of NaN / None / missing keys / dropped messages

Reported per scenario and type: recall (an alert within 1,000 points of the
start), median and max delay, alerts per defect (episode); per scenario: false
alerts per 100 k in-control points (alerts not within a defect or the 1,000
points after it). PASS needs recall >= 95 % for every type and < 1 false alert
per 100 k.

    python bench/bench_detection_matrix.py [--points 2000000] [--quick] [--seed 11]
        [--sigma-unit issue|layer] [--classic]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.monitoring.autocorrelation import ARFit, ar_filter  # noqa: E402
from am_qadf.monitoring.processors import default_processors  # noqa: E402

RATE_HZ = 20_000.0
WINDOW = 1_000
TAIL = 1_000
TYPES = ("shift", "drift", "variance", "one_signal", "spike", "dropout")
MELT = ("temperature", "melt_pool_area", "intensity")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    name: str
    phi: tuple[float, ...] = ()
    nominal: tuple[float, float, float] = (1900.0, 0.015, 1000.0)
    sigma: tuple[float, float, float] = (35.0, 0.0009, 40.0)
    layer_points: int = 50_000
    layer_shift: float = 0.0  # sd of the per-layer offset, in sigma
    hetero: float = 0.0  # noise sd multiplied by exp(hetero * offset in sigma)
    transient: float = 1.5  # overshoot at every scan-vector start, in sigma
    limits: dict[str, dict[str, float]] | None = None


def _material_limits(sc: Scenario) -> dict[str, dict[str, float]]:
    """Absolute limits a machine profile would give another material (7 sigma)."""
    out = {
        s: {"low": n - 7 * sd, "high": n + 7 * sd}
        for s, n, sd in zip(MELT, sc.nominal, sc.sigma, strict=True)
    }
    out["temperature"]["max_change"] = 11 * sc.sigma[0]
    out["power"] = {"low": 150.0, "high": 320.0}
    out["scan_speed"] = {"low": 600.0, "high": 1150.0}
    return out


SCENARIOS = [
    Scenario("white noise"),
    Scenario("AR(1) phi=0.3", phi=(0.3,)),
    Scenario("AR(1) phi=0.7", phi=(0.7,)),
    Scenario("AR(1) phi=0.9", phi=(0.9,)),
    Scenario(
        "2,400 K material, AR(1) 0.7",
        phi=(0.7,),
        nominal=(2400.0, 0.03, 3000.0),
        sigma=(60.0, 0.002, 150.0),
    ),  # fmt: skip
    Scenario("heteroscedastic, AR(1) 0.5", phi=(0.5,), layer_shift=0.5, hetero=0.3),
    Scenario("layer shifts 1 sigma, AR(1) 0.5", phi=(0.5,), layer_points=25_000, layer_shift=1.0),
]


@dataclass
class Defect:
    kind: str
    start: int
    end: int
    signals: tuple[str, ...]
    magnitude: float  # sigma (shift/one_signal/spike), sigma per 1000 (drift), var ratio
    sign: float = 1.0
    mode: str = ""


@dataclass
class Stream:
    cols: dict[str, np.ndarray]
    defects: list[Defect]
    dropped: np.ndarray
    none_mask: np.ndarray
    missing_mask: np.ndarray
    in_control: int = 0
    units: dict[str, SigmaUnits] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SigmaUnits:
    """One signal's two sigma units (in its own units) and what makes up their ratio.

    >>> SigmaUnits(issue=49.0, layer=35.0, expected_ratio=1.4, transient_ratio=1.006).ratio
    1.4
    """

    issue: float  # sd of the in-control stream (defects left out), whole stream
    layer: float  # marginal sd of the AR noise: the signal within a layer at offset 0
    expected_ratio: float  # sqrt(var(offsets + transients) + mean(noise scale^2))
    transient_ratio: float  # sqrt(1 + var(transients)): the ratio were nothing else there

    @property
    def ratio(self) -> float:
        return self.issue / self.layer


SIGMA_UNITS = ("issue", "layer")


def plan(rng: np.random.Generator, n: int, first: int) -> list[Defect]:
    out: list[Defect] = []
    pos = first
    while True:
        kind = TYPES[int(rng.integers(len(TYPES)))]  # random order: no period to meet layers
        sign = float(rng.choice((-1.0, 1.0)))
        if kind == "shift":
            ln, sig, mag = int(rng.integers(500, 1501)), MELT, 2.0
        elif kind == "drift":
            ln, sig, mag = 1500, ("temperature",), 1.0
        elif kind == "variance":
            ln, sig, mag = int(rng.integers(1000, 2001)), ("temperature",), 2.0
        elif kind == "one_signal":
            ln, sig, mag = int(rng.integers(500, 1001)), (MELT[1 + int(rng.integers(2))],), 3.0
        elif kind == "spike":
            ln, sig, mag = int(rng.integers(2, 6)), (MELT[int(rng.integers(3))],), 6.0
        else:
            ln, sig, mag = int(rng.integers(20, 41)), MELT, 0.0
        start = pos + int(rng.integers(0, 2000))
        if start + ln + TAIL + 2000 > n:
            break
        modes = ("nan", "none", "missing", "dropped")
        mode = modes[int(rng.integers(4))] if kind == "dropout" else ""
        out.append(Defect(kind, start, start + ln, sig, mag, sign, mode))
        pos = start + ln + TAIL + 2000
    return out


def generate(sc: Scenario, n: int, seed: int, first: int, sigma_unit: str = "issue") -> Stream:
    """The scenario's stream with its defects, sized in ``sigma_unit`` (see the module doc).

    The in-control stream is generated first and the defects are added to it, so
    both units come from the same random draws and the layer unit reproduces the
    stream the bench generated before it had the issue unit."""
    if sigma_unit not in SIGMA_UNITS:
        raise ValueError(f"sigma_unit must be one of {SIGMA_UNITS}, got {sigma_unit!r}")
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    layer = i // sc.layer_points
    n_layers = int(layer[-1]) + 1
    offsets = rng.normal(0.0, sc.layer_shift, n_layers) if sc.layer_shift else np.zeros(n_layers)
    offsets[0] = 0.0
    # scan vectors of 100-400 points; j = points since the vector began
    vec_len = rng.integers(100, 401, size=n // 100 + 2)
    starts = np.cumsum(np.concatenate(([0], vec_len)))
    starts = starts[starts < n]
    j = i - starts[np.searchsorted(starts, i, side="right") - 1]
    transient = sc.transient * np.exp(-j / 1.5)
    unit = ARFit(0.0, sc.phi, 1.0).marginal_sigma
    defects = plan(rng, n, first)
    cols: dict[str, np.ndarray] = {}
    units: dict[str, SigmaUnits] = {}
    burn = 2000
    level_sig = offsets[layer] + transient  # in layer sigmas
    scale0 = np.exp(sc.hetero * offsets[layer])
    expected = math.sqrt(float(level_sig.var() + np.mean(scale0**2)))
    from_transient = math.sqrt(1.0 + float(transient.var()))
    for s, nom, sd in zip(MELT, sc.nominal, sc.sigma, strict=True):
        noise = ar_filter(rng.normal(size=n + burn), sc.phi)[burn:] / unit
        scale = scale0
        in_control_sd = float(np.std(level_sig + scale * noise))  # in layer sigmas
        units[s] = SigmaUnits(sd * in_control_sd, sd, expected, from_transient)
        k = in_control_sd if sigma_unit == "issue" else 1.0  # one defect sigma, in layer sigmas
        dev = np.zeros(n)  # defect deviations, in layer sigmas
        for d in defects:
            if s not in d.signals:
                continue
            sl = slice(d.start, d.end)
            if d.kind in ("shift", "one_signal", "spike"):
                dev[sl] += d.sign * d.magnitude * k
            elif d.kind == "drift":
                dev[sl] += d.sign * d.magnitude * k * np.arange(1, d.end - d.start + 1) / 1000.0
            elif d.kind == "variance":
                scale = scale.copy()
                scale[sl] *= math.sqrt(d.magnitude)
        x = nom + sd * (level_sig + dev + scale * noise)
        cols[s] = x
    cols["power"] = 280.0 + rng.normal(0.0, 0.8, n)
    cols["scan_speed"] = 1000.0 + rng.normal(0.0, 1.5, n)
    cols["layer"] = layer
    dropped = np.zeros(n, bool)
    none_mask = np.zeros(n, bool)
    missing_mask = np.zeros(n, bool)
    for d in defects:
        if d.kind != "dropout":
            continue
        sl = slice(d.start, d.end)
        if d.mode == "nan":
            for s in MELT:
                cols[s][sl] = np.nan
        else:
            {"none": none_mask, "missing": missing_mask, "dropped": dropped}[d.mode][sl] = True
    covered = np.zeros(n + 1, np.int64)
    for d in defects:
        covered[d.start] += 1
        covered[min(d.end + TAIL, n)] -= 1
    mask = np.cumsum(covered)[:-1] > 0
    return Stream(cols, defects, dropped, none_mask, missing_mask, int(n - mask.sum()),
                  units, {"defect_mask": mask})  # fmt: skip


def messages(st: Stream, lo: int, hi: int) -> list[dict[str, Any]]:
    keep = np.flatnonzero(~st.dropped[lo:hi]) + lo
    c = st.cols
    times = [T0 + timedelta(microseconds=int(k * 50)) for k in keep.tolist()]
    rows = zip(
        times,
        c["layer"][keep].tolist(),
        c["power"][keep].tolist(),
        c["scan_speed"][keep].tolist(),
        c["temperature"][keep].tolist(),
        c["melt_pool_area"][keep].tolist(),
        c["intensity"][keep].tolist(),
        strict=True,
    )
    out = [
        {"timestamp": t, "layer": la, "x": 0.0, "y": 0.0, "z": 0.04 * la, "power": p,
         "scan_speed": v, "temperature": te, "melt_pool_area": a, "intensity": it}
        for t, la, p, v, te, a, it in rows
    ]  # fmt: skip
    odd = np.flatnonzero(st.none_mask[keep] | st.missing_mask[keep])
    for q in odd.tolist():
        m = out[q]
        for s in MELT:
            if st.none_mask[keep[q]]:
                m[s] = None
            else:
                del m[s]
    return out


CLASSIC = {
    "spc_options": {
        "sigma_method": "moving_range",
        "recenter_points": None,
        "residual_L": None,
        "variance_L": None,
    },
    "ewma_lambda": 0.01,
    "ewma_L": 6.0,
}
"""The chart default_processors() ran before issue 16, for comparison (--classic)."""


def run(
    sc: Scenario,
    n: int,
    seed: int,
    batch: int = 1000,
    options: dict[str, Any] | None = None,
    sigma_unit: str = "issue",
) -> dict[str, Any]:
    st = generate(sc, n, seed, first=10_000, sigma_unit=sigma_unit)
    procs = default_processors(sample_rate_hz=RATE_HZ, limits=sc.limits, **(options or {}))
    alert = procs["alert_processor"]
    alerts: list[dict[str, Any]] = []
    cpu = 0.0
    for lo in range(0, n, batch):
        msgs = messages(st, lo, min(n, lo + batch))
        c0 = time.process_time()
        out = alert(msgs)
        cpu += time.process_time() - c0
        alerts.extend(out["alerts"])
    idx = np.array(
        [round((datetime.fromisoformat(a["time"]) - T0).total_seconds() * RATE_HZ) for a in alerts],
        dtype=np.int64,
    )
    idx.sort()
    rows: dict[str, list[tuple[bool, int | None, int]]] = {k: [] for k in TYPES}
    for d in st.defects:
        lo_ = int(np.searchsorted(idx, d.start))
        hi_ = int(np.searchsorted(idx, d.start + WINDOW, side="right"))
        during = int(np.searchsorted(idx, d.end + TAIL) - lo_)
        hit = hi_ > lo_
        rows[d.kind].append((hit, int(idx[lo_] - d.start) if hit else None, during))
    mask = st.extra["defect_mask"]
    ok = (idx >= 0) & (idx < n)
    false = int(np.count_nonzero(~mask[idx[ok]]))
    return {
        "rows": rows,
        "fa": false / st.in_control * 1e5,
        "n_false": false,
        "in_control": st.in_control,
        "n_alerts": len(alerts),
        "units": st.units,
        "rate": n / cpu if cpu else float("nan"),
    }


def drift_bound(
    phi: tuple[float, ...], slope: float = 1.0, fa_per_100k: float = 1.0, seed: int = 0
) -> tuple[float, float, float]:
    """An upper bound on the recall of a drift of ``slope`` sigma per 1,000 points within
    ``WINDOW`` points on AR(``phi``) noise, sigma being that noise's marginal sd (the
    layer unit; for the issue unit pass its ratio to the layer unit): the matched filter
    for exactly this ramp (its shape and slope known, the level before it known, only its
    start unknown), slid over 4 M points of the model's prediction errors with the
    two-sided threshold that gives it alone ``fa_per_100k`` false alerts (episodes) per
    100 k points, and 2,000 ramps put on that noise. Returns (threshold, signal-to-noise
    ratio after WINDOW points, recall). Every real detector knows less and shares the
    false-alert budget with others."""
    rng = np.random.default_rng(seed)
    fit = ARFit(0.0, phi, 1.0)
    k = np.arange(1, WINDOW + 1, dtype=np.float64)
    ramp = slope / 1000.0 * k * fit.marginal_sigma  # in sigma_e units (sigma_e = 1)
    sig = fit.residuals(ramp)  # what the ramp leaves in the one-step prediction errors
    w = sig / np.linalg.norm(sig)
    e = rng.normal(size=4_000_000)
    t = np.convolve(e, w[::-1], mode="valid")  # at each point: the ramp began WINDOW ago
    a = np.abs(t)

    def episodes(u: float) -> float:
        over = np.flatnonzero(a > u)
        n = 0 if over.size == 0 else 1 + int(np.count_nonzero(np.diff(over) >= WINDOW))
        return n / (t.size / 1e5)

    lo, hi = 1.0, 8.0
    for _ in range(40):
        lo, hi = (lo, 0.5 * (lo + hi)) if episodes(0.5 * (lo + hi)) <= fa_per_100k else (
            0.5 * (lo + hi), hi)  # fmt: skip
    u = hi
    part = np.array([w[WINDOW - j :] @ sig[:j] for j in range(1, WINDOW + 1)])
    pos = rng.integers(0, t.size - WINDOW, 2000)
    hit = ((t[pos[:, None] + np.arange(WINDOW)] + part) > u).any(axis=1)
    return u, float(np.linalg.norm(sig)), float(hit.mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2_000_000, help="points per scenario")
    ap.add_argument("--quick", action="store_true", help="300 k points per scenario")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--scenario", default=None, help="run only scenarios whose name contains this")
    ap.add_argument(
        "--classic", action="store_true", help="the pre-issue-16 chart (moving range, no recentre)"
    )
    ap.add_argument(
        "--sigma-unit",
        choices=SIGMA_UNITS,
        default="issue",
        help="issue: sd of the in-control stream (default); layer: AR noise sd within a layer",
    )
    args = ap.parse_args(argv)
    n = 300_000 if args.quick else args.points
    t0 = time.perf_counter()
    what = "classic chart (moving-range sigma, no recentring)" if args.classic else "defaults"
    print(f"detection matrix: {n:,} points per scenario, seed {args.seed}, ", end="")
    print(f"batches of 1,000, {what}")
    if args.sigma_unit == "issue":
        print("sigma unit: issue -- the sd of each signal's in-control stream (no defects; all")
        print("layers with their offsets and noise scales, all transients), whole stream")
    else:
        print("sigma unit: layer -- the marginal sd of the AR noise, i.e. of a signal within a")
        print("layer at offset 0 (stricter than the issue's unit when layers shift)")
    print("recall within 1,000 points / median delay / max delay / alerts per defect")
    head = f"{'scenario':<34}" + "".join(f"{k:>22}" for k in TYPES)
    print(head + f"{'FA/100k':>9}{'M pts/s':>9}  verdict")
    all_pass = True
    ran: list[tuple[Scenario, dict[str, SigmaUnits]]] = []
    for k, sc in enumerate(SCENARIOS):
        if args.scenario and args.scenario not in sc.name:
            continue
        if sc.nominal[0] != 1900.0:
            sc = Scenario(**{**sc.__dict__, "limits": _material_limits(sc)})
        options = CLASSIC if args.classic else None
        r = run(sc, n, args.seed * 100 + k, options=options, sigma_unit=args.sigma_unit)
        ran.append((sc, r["units"]))
        cells = []
        ok = r["fa"] < 1.0
        for kind in TYPES:
            rows = r["rows"][kind]
            hits = [x for x in rows if x[0]]
            rec = len(hits) / len(rows) if rows else float("nan")
            ok = ok and rec >= 0.95
            dl = [x[1] for x in hits]
            med = f"{np.median(dl):.0f}" if dl else "-"
            mx = f"{max(dl)}" if dl else "-"
            ape = np.mean([x[2] for x in rows]) if rows else float("nan")
            cells.append(f"{rec:>5.0%} {med:>4}/{mx:>4} {ape:4.1f}")
        all_pass = all_pass and ok
        print(f"{sc.name:<34}" + "".join(f"{c:>22}" for c in cells), end="")
        print(f"{r['fa']:>9.2f}{r['rate'] / 1e6:>9.2f}  {'PASS' if ok else 'FAIL'}")
        sys.stdout.flush()
    print("sigma units per scenario: issue / layer for temperature, area, intensity;")
    print("expected from the parts, sqrt(var(offsets + transients) + mean(noise scale^2));")
    print("the transients alone, sqrt(1 + var(transients))")
    for sc, units in ran:
        r3 = " ".join(f"{units[s].ratio:6.3f}" for s in MELT)
        u0 = units[MELT[0]]
        print(f"  {sc.name:<34}{r3}  expected {u0.expected_ratio:6.3f}", end="")
        print(f"  transients {u0.transient_ratio:6.3f}")
    print("drift bound (matched filter for the exact ramp, its start unknown, alone at 1 false")
    print("alert per 100 k points), the ramp 1 sigma per 1,000 points in the unit above, i.e.")
    print("'slope' AR-noise sds: slope / threshold / SNR after 1,000 points / recall within 1,000")
    for sc, units in ran:
        slope = units["temperature"].ratio if args.sigma_unit == "issue" else 1.0
        u, snr, rec = drift_bound(sc.phi, slope)
        print(f"  {sc.name:<34}{slope:6.3f} / {u:5.2f} / {snr:5.2f} / {rec:5.1%}")
    print(f"defects per type per scenario: about {n // 5000 // len(TYPES)}; ", end="")
    print(f"total time {time.perf_counter() - t0:.0f} s")
    print("ALL PASS" if all_pass else "SOME FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
